"""A Pool worker's life: initializer, on_exit, worker id and state, live resources, logs.

::

    parent                                              worker process (slot k)
    ──────                                              ───────────────────────
    Pool(initializer=, initargs=, on_exit=, auth=, nested=)
      └─ Spec: wire.dumps(Life) once ─► process args ─► start(): worker_id() = k, worker_state() = {}
         log_levels() at each spawn ──► process args      logging: records go to _Forward (root)
                                                          nested: may start processes of its own
                                                          initializer(*initargs)
    manager: INIT_FAILED ─► every call fails ◄───────────   raised: INIT_FAILED (type, message, traceback),
             (ProcessError naming the initializer,           then waits to be killed (no restart loop)
              the worker's traceback as __cause__)
    manager: LOG ─► LogPump thread ◄──────────────────── _Forward.emit: a prepared record (LOG)
       └─ logging.getLogger(record.name).handle(record)
                                                          loads(): fn / items that brought Reconnectors
                                                            └─ reconnect_all(cache=, **auth): one live
                                                               resource per worker, reused across calls
    STOP ──────────────────────────────────────────────► finish(): on_exit()
    manager: EXIT_FAILED ─► LogPump: a warning record ◄─  raised: EXIT_FAILED

The manager thread never runs user code for any of this: it decodes only plain
strings (the two failure messages) and hands log records, still serialized, to
the ``LogPump`` thread, which rebuilds and handles them (``QueueListener``'s
pattern). The worker side is a handful of module globals: a worker runs one
``start()`` and one ``finish()``.

Logging rule: records are forwarded only to a parent that has handlers for them
(a handler on the logger's chain, as ``Logger.callHandlers`` would find); the
worker takes the parent's levels when it starts, so a record the parent would
drop is never created, let alone serialized. Without handlers in the parent the
worker keeps Python's default (``logging.lastResort`` on its own stderr).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.queues
import os
import queue
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, NamedTuple

from suitkaise.cucumber import reconnect_all
from suitkaise.cucumber.reconnectors import rebuilt_count
from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._errors import (
    ProcessError,
    capture_traceback,
    describe_exception,
    with_remote_cause,
)
from suitkaise.processing._forkpayload import LiveArgs, loads_with_live

__all__ = [
    "LogPump",
    "Spec",
    "enter_dask_worker",
    "finish",
    "loads",
    "log_levels",
    "make_spec",
    "revive",
    "start",
    "worker_id",
    "worker_state",
]

# -- the public helpers ----------------------------------------------------------------

_slot: int | None = None
_state: dict[str, Any] = {}
_dask_thread = threading.local()  # .slot in a Dask worker's threads (enter_dask_worker)


def worker_id() -> int | None:
    """This Pool worker's slot, ``0 .. workers-1`` (a replacement takes the slot of the worker
    it replaces); ``None`` outside a Pool worker. On a Dask backend: the Dask worker's name
    when it is an int (a ``LocalCluster``'s are), else ``None``."""
    if _slot is None:
        return getattr(_dask_thread, "slot", None)
    return _slot


def worker_state() -> dict[str, Any]:
    """A dict that lives as long as this worker process, across items and calls.

    The usual use: load a model once per worker (in the initializer, or lazily in the
    task). Outside a Pool worker it is this process's own dict, so the task function
    also runs serially, e.g. in a test.
    """
    return _state


# -- parent side -----------------------------------------------------------------------


class Life(NamedTuple):
    """What a worker needs to live: travels once per worker start."""

    initializer: Callable[..., Any] | None
    initargs: tuple[Any, ...]
    on_exit: Callable[[], Any] | None
    auth: dict[str, Any]
    nested: bool


class Spec:
    """A Pool's ``Life``, serialized once, and the names its errors use.

    Live objects in it (a multiprocessing ``Queue``, ``Lock``, ``Event``, ``Value``, a
    ``Pipe()`` connection, a socket, a file open for writing: ``cucumber._handoff``) are
    not in the bytes: each worker gets them as it starts (``LiveArgs``), inherited under
    fork, pickled by multiprocessing with their descriptors under spawn/forkserver, as
    ``multiprocessing.Pool(initargs=...)`` hands them over.
    """

    __slots__ = ("initializer_name", "live", "nested", "on_exit_name", "payload")

    def __init__(self, life: Life) -> None:
        self.live = LiveArgs()
        data, buffers = self.live.dumps(wire.dumps, life)
        self.payload: tuple[bytes, list[bytes]] = (data, [bytes(b) for b in buffers])
        self.initializer_name = _name(life.initializer)
        self.on_exit_name = _name(life.on_exit)
        self.nested = life.nested

    def for_child(self, method: str) -> tuple[bytes, list[bytes], list[Any]]:
        """What a worker about to start by ``method`` loads its ``Life`` from."""
        return (*self.payload, self.live.for_child(method))


def _name(fn: Any) -> str:
    if fn is None:
        return ""
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if isinstance(qualname, str):
        return f"{module}.{qualname}" if isinstance(module, str) and module != "__main__" else qualname
    return repr(fn)


def make_spec(
    initializer: Any, initargs: Any, on_exit: Any, auth: Any, nested: Any
) -> Spec | None:
    """Check ``Pool``'s life keywords; ``None`` when they are all defaults (nothing to do)."""
    if initializer is not None and not callable(initializer):
        raise TypeError(f"Pool(initializer=...) must be callable or None, got {type(initializer).__name__}")
    if not isinstance(initargs, (tuple, list)):
        raise TypeError(f"Pool(initargs=...) must be a tuple of arguments, got {type(initargs).__name__}")
    if initargs and initializer is None:
        raise ValueError("Pool(initargs=...) was given without an initializer=")
    if on_exit is not None and not callable(on_exit):
        raise TypeError(f"Pool(on_exit=...) must be callable or None, got {type(on_exit).__name__}")
    if auth is None:
        auth = {}
    if not isinstance(auth, dict) or not all(isinstance(k, str) for k in auth):
        raise TypeError(
            "Pool(auth=...) must be a dict keyed by reconnector type, e.g. "
            "{'psycopg2.Connection': {'*': password}}"
        )
    if not isinstance(nested, bool):
        raise TypeError(f"Pool(nested=...) must be a bool, got {nested!r}")
    if initializer is None and on_exit is None and not auth and not nested:
        return None
    life = Life(initializer, tuple(initargs), on_exit, dict(auth), nested)
    try:
        return Spec(life)
    except Exception as e:
        e.add_note("Pool: initializer=, initargs=, on_exit= and auth= must be serializable to reach the workers")
        raise


def _forward_level(logger: logging.Logger) -> int | None:
    """The lowest level a record of ``logger`` reaches a handler at, ``None`` for no handler."""
    if logger.disabled:
        return None
    levels: list[int] = []
    c: logging.Logger | None = logger
    while c is not None:
        levels.extend(h.level for h in c.handlers)
        if not c.propagate:
            break
        c = c.parent
    if not levels:
        return None
    return max(logger.getEffectiveLevel(), min(levels), logging.root.manager.disable + 1)


LogLevels = dict[str, tuple[int, int | None, bool]]  # name -> (own level, forward level, disabled)


def log_levels() -> LogLevels | None:
    """The parent's loggers as a worker starting now should mirror them; ``None`` when no
    record would reach a handler here (the worker then keeps Python's defaults)."""
    loggers: list[tuple[str, logging.Logger]] = [("", logging.root)]
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            loggers.append((name, logger))
    out: LogLevels = {}
    for name, logger in loggers:
        out[name] = (logger.level, _forward_level(logger), logger.disabled)
    if all(v[1] is None for v in out.values()):
        return None
    return out


class LogPump:
    """The parent's thread that hands workers' log records to logging (one per manager run).

    The manager thread only queues bytes; decoding and handlers (user code) run here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def put(self, item: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=_pump, args=(self._queue,), name="sk-pool-logs", daemon=True
                )
                self._thread.start()
            self._queue.put(item)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what was queued, then end the thread (bounded: a handler may hang)."""
        with self._lock:
            thread, q = self._thread, self._queue
            self._thread = None
        if thread is not None:
            q.put(None)
            if thread is not threading.current_thread():
                thread.join(timeout)


def _pump(q: queue.SimpleQueue[Any]) -> None:
    while (item := q.get()) is not None:
        try:
            if isinstance(item, logging.LogRecord):
                record = item
            else:
                data, buffers = item
                record = logging.makeLogRecord(wire.loads(data, buffers))
            logger = logging.getLogger(None if record.name == "root" else record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        except Exception as e:  # never let one bad record stop the delivery of the others
            print(f"suitkaise Pool: a log record from a worker could not be delivered: {e!r}", file=sys.stderr)


def on_message(kind: int, payload: Any, buffers: list[wire.Buffer], slot: int, pid: int | None,
               spec: Spec | None, pump: LogPump) -> ProcessError | None:
    """The manager's handling of this module's message kinds; an error fails every call."""
    if kind == wire.LOG:
        pump.put((bytes(payload), buffers))
        return None
    type_and_message, tb = wire.loads(payload, buffers)  # two plain strings
    if kind == wire.INIT_FAILED:
        name = spec.initializer_name if spec is not None else "?"
        err = ProcessError(
            f"Pool: the initializer {name} raised in worker {slot} (pid {pid}): {type_and_message}. "
            "Its call failed; the workers are not restarted in a loop (the next call starts them, "
            "and runs the initializer, again)."
        )
        return with_remote_cause(err, tb)  # type: ignore[return-value]
    if kind == wire.EXIT_FAILED:
        name = spec.on_exit_name if spec is not None else "?"
        logger = logging.getLogger("suitkaise.processing")
        record = logger.makeRecord(
            logger.name, logging.WARNING, __file__, 0,
            f"Pool: on_exit {name} raised in worker {slot} (pid {pid}): {type_and_message}", (), None,
        )
        record.exc_text = f"Traceback in the worker:\n{tb}".rstrip()
        record.worker_id = slot
        if pid is not None:
            record.process = pid
        pump.put(record)
        return None
    raise RuntimeError(f"pool protocol error: unknown message kind {kind}")  # pragma: no cover


# -- worker side -----------------------------------------------------------------------


def enter_dask_worker() -> None:
    """In a Dask task: ``worker_id()`` is the Dask worker's name when it is an int.

    Kept per thread: a Dask worker's tasks run on its own threads, and several Dask
    workers may share one process (``processes=False``). ``worker_state()`` needs
    nothing: this module's dict lives as long as the process.
    """
    if hasattr(_dask_thread, "slot"):
        return
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        name = None
    _dask_thread.slot = name if isinstance(name, int) and not isinstance(name, bool) else None


_fd = -1
_life: Life | None = None
_cache: dict[Any, Any] = {}  # reconnect_all's cache: one live resource per worker
_handed: list[Any] = []  # the live objects of the initargs (LiveArgs), as this worker got them


def start(fd: int, slot: int, life_args: tuple[Any, Any] | None) -> bool:
    """Set up this worker (id, state, logs, nesting) and run the initializer.

    Returns False when the initializer raised: INIT_FAILED was sent, and the worker
    must only wait for the parent to stop it.
    """
    global _slot, _state, _fd, _life, _cache, _handed
    _slot = slot
    _state = {}  # a forked worker must not see the parent's dict
    _cache = {}
    _fd = fd
    payload, levels = life_args if life_args is not None else (None, None)
    if levels is not None:
        _forward_logs(levels)
    if payload is None:
        _life = None
        return True
    data, buffers, live = payload
    _handed = live
    try:
        mark = rebuilt_count()
        life: Life = loads_with_live(live, wire.loads, data, [bytearray(b) for b in buffers])
        _life = life  # its auth= is what revive() uses
        if rebuilt_count() != mark:  # the payload brought Reconnectors
            life = _life = Life(revive(life.initializer), revive(life.initargs), revive(life.on_exit),
                                life.auth, life.nested)
    except BaseException as e:
        _send_failure(wire.INIT_FAILED, e)
        return False
    if life.nested:
        _allow_children()
    if life.initializer is not None:
        try:
            life.initializer(*life.initargs)
        except BaseException as e:
            _send_failure(wire.INIT_FAILED, e)
            return False
    return True


def finish() -> None:
    """The worker stops gracefully: run ``on_exit`` (its failure is reported to the parent),
    then flush the queues it was handed."""
    if _life is not None and _life.on_exit is not None:
        try:
            _life.on_exit()
        except BaseException as e:
            _send_failure(wire.EXIT_FAILED, e)
    _flush_queues()


def _flush_queues() -> None:
    """What this worker put into a ``multiprocessing.Queue`` of its initargs goes into the
    queue's pipe now, before the worker closes its socket: the parent takes a worker whose
    socket closed for dead and kills it if it has not exited a second later, which would
    lose what the queue's feeder thread still held (as ``multiprocessing`` does at exit, this
    waits while the pipe is full: the parent must read a queue that gets more than it holds)."""
    for obj in _handed:
        if isinstance(obj, multiprocessing.queues.Queue):
            obj.close()
            obj.join_thread()


def _send_failure(kind: int, e: BaseException) -> None:
    tb = capture_traceback(e)
    data, buffers = wire.dumps((describe_exception(e), tb))
    try:
        wire.send_message(_fd, kind, payload=data, buffers=buffers)
    except OSError:
        os._exit(0)  # the parent is gone


def _allow_children() -> None:
    """``nested=True``: this worker may start processes (an Skprocess, a Pool).

    The parent starts it as a daemon, so that the parent's own exit never waits for
    it (its children die with it: parent-death signal); here it stops being one, as
    multiprocessing refuses children to daemons. A fork server inherited from the
    parent is forgotten: this worker starts its own if it needs one.
    """
    multiprocessing.current_process().daemon = False
    forkserver = sys.modules.get("multiprocessing.forkserver")
    server = getattr(forkserver, "_forkserver", None)
    if server is not None:
        server.__init__()


def loads(data: Any, buffers: list[wire.Buffer]) -> Any:
    """``wire.loads``; what brought Reconnectors gets live resources (``revive``)."""
    mark = rebuilt_count()
    obj = wire.loads(data, buffers)
    if rebuilt_count() != mark:
        obj = revive(obj)
    return obj


def revive(obj: Any) -> Any:
    """``obj`` with its Reconnectors replaced by live resources, one per worker and resource.

    ``reconnect_all`` does not walk into functions: a function's closure cells,
    defaults and (for a function that travelled by value) globals are walked here.
    """
    auth = _life.auth if _life is not None else {}
    obj = reconnect_all(obj, cache=_cache, **auth)
    if isinstance(obj, types.FunctionType):
        _revive_function(obj, auth)
    return obj


def _revive_function(fn: types.FunctionType, auth: dict[str, Any]) -> None:
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        new = reconnect_all(value, cache=_cache, **auth)
        if new is not value:
            cell.cell_contents = new
    if fn.__defaults__:
        fn.__defaults__ = reconnect_all(fn.__defaults__, cache=_cache, **auth)
    if fn.__kwdefaults__:
        reconnect_all(fn.__kwdefaults__, cache=_cache, **auth)
    module = sys.modules.get(fn.__module__)
    if module is None or fn.__globals__ is not vars(module):
        # travelled by value: its globals are a private dict of the names it uses
        reconnect_all(fn.__globals__, cache=_cache, **auth)


_PLAIN = (str, int, float, bool, type(None))


class _Forward(logging.Handler):
    """The worker's one root handler: records the parent has handlers for go to it (LOG)."""

    def __init__(self, levels: LogLevels) -> None:
        super().__init__()
        self._levels = {name: v[1] for name, v in levels.items()}
        self._resolved: dict[str, int | None] = {}
        self._pid = os.getpid()

    def _level(self, name: str) -> int | None:
        level = self._resolved.get(name, -1)
        if level != -1:
            return level
        probe = "" if name == "root" else name
        while probe not in self._levels:  # the nearest ancestor the parent knows
            probe = probe.rpartition(".")[0]
        self._resolved[name] = level = self._levels[probe]
        return level

    def emit(self, record: logging.LogRecord) -> None:
        # A process this worker forked (nested=True) inherits this handler, and maybe the
        # socket: it must never write there (frames would interleave with ours).
        level = self._level(record.name) if os.getpid() == self._pid else None
        if level is None:
            # No handler in the parent: what Python does without handlers, here.
            last = logging.lastResort
            if last is not None and record.levelno >= last.level:
                last.handle(record)
            return
        if record.levelno < level:
            return
        try:
            d = _prepare(record)
            try:
                data, buffers = wire.dumps(d)
            except Exception:  # an extra= value that cannot travel: its repr does
                data, buffers = wire.dumps({k: v if isinstance(v, _PLAIN) else repr(v) for k, v in d.items()})
        except Exception:
            self.handleError(record)
            return
        try:
            wire.send_message(_fd, wire.LOG, payload=data, buffers=buffers)
        except OSError:
            pass  # the parent is gone; the reader thread ends this process


def _prepare(record: logging.LogRecord) -> dict[str, Any]:
    """The record as plain data, message merged (``QueueHandler.prepare``), ``worker_id`` added."""
    d = dict(record.__dict__)
    d["msg"] = record.getMessage()
    d["args"] = None
    if record.exc_info:
        d["exc_text"] = record.exc_text or logging.Formatter().formatException(record.exc_info)
    d["exc_info"] = None
    d.pop("message", None)
    d["worker_id"] = _slot
    return d


def _forward_logs(levels: LogLevels) -> None:
    """Mirror the parent's levels and send records to it instead of local handlers
    (inherited under fork, or added by imports under spawn: the parent has them too)."""
    manager = logging.root.manager
    for logger in [logging.root, *(x for x in list(manager.loggerDict.values()) if isinstance(x, logging.Logger))]:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    for name, (own, _, disabled) in levels.items():
        logger = logging.getLogger(name or None)
        logger.setLevel(own)
        logger.disabled = disabled
        logger.propagate = True  # the parent applies its own propagate flags
    wire.guard(_fd)
    logging.root.addHandler(_Forward(levels))
