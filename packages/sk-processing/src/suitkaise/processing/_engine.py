"""The machinery behind ``Skprocess``: spawn, monitor, engine loop, run_inline.

Processes and channels of one ``start()``::

    parent process                                   child process (one per life lost to a crash)
    --------------                                   -------------
    user thread: start/tell/listen/wait/result       main thread: child_main -> Lifecycle.run()
         |  tell: conn.send_bytes(b"T"+cucumber)  ==>    reader thread: conn -> inbox (listen);
         |                                               EOF = parent gone -> os._exit
    monitor thread (one per start):              <==   tell: b"T"+cucumber   final: b"F"+cucumber
         waits on [conn, process sentinel, next section deadline]
         - b"T" -> inbox (parent's listen())
         - b"F" -> final state: result/error, current_run, error, timers
         - sentinel without b"F" -> crash: restart (lives left) or ProcessError
         - deadline + grace passed -> SIGKILL the child stuck in native code
    ctrl: RawArray('d', 7) shared by both:  [stop, deadline, timeout, section, run, lives, booted]

One ``start()``: the parent validates ``process_config``, creates the duplex
pipe and ``ctrl``, serializes the instance with cucumber (under fork in a
spawning context of our own, under spawn/forkserver while multiprocessing
pickles the ``Process``: Pipe points carry their fd either way) and starts the
child. The child sets PR_SET_PDEATHSIG, rebuilds the instance (real class),
applies ``@autoreconnect`` and runs the loop. ``stop()`` sets ``ctrl[stop]``
(checked before each iteration and after prerun/run: ~100 ns). Section
timeouts use ``setitimer`` in the child's main thread; the deadline is also
published in ``ctrl`` so that the parent can replace a child stuck in code
that never returns to Python. The final message carries the child's state;
the monitor applies it to the parent's instance, then resolves ``result()``.
No manager process, no temp files, no shared-memory names.
"""

from __future__ import annotations

import copy
import ctypes
import multiprocessing
import multiprocessing.connection as mpc
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing import context as mp_context
from typing import Any

from suitkaise import cucumber
from suitkaise.processing._config import validate
from suitkaise.processing._errors import (
    SECTION_ERRORS,
    ErrorHandlerError,
    ProcessError,
    ProcessTimeoutError,
    RemoteTraceback,
    ResultTimeoutError,
    _SectionError,
)
from suitkaise.processing._skprocess import _RUNTIME_ATTR, Skprocess
from suitkaise.processing._timers import ProcessTimers, TimedMethod

__all__ = ["child_main", "run_inline", "start"]

# ctrl slots
_STOP, _DEADLINE, _TIMEOUT, _SECTION, _RUN, _LIVES, _BOOTED = range(7)
_CTRL_SLOTS = 7
_SECTION_CODES = {name: i + 1 for i, name in enumerate(
    ("__prerun__", "__run__", "__postrun__", "__onfinish__", "__result__", "__error__"))}
_SECTION_NAMES = {code: name for name, code in _SECTION_CODES.items()}

_TAG_TELL = b"T"
_TAG_FINAL = b"F"
_TAG_ACK = b"A"  # child -> parent: one tell() message taken off the pipe

_PR_SET_PDEATHSIG = 1
_DEADLINE_POLL = 0.25
_SECTION_KEYS = ("prerun", "run", "postrun", "onfinish", "result", "error")
_BASE_FUNCS: dict[str, Any] = {}


def _grace(timeout: float) -> float:
    """How long past a section deadline the parent waits before killing the child.

    The child's own SIGALRM normally fires at the deadline; the parent only
    steps in for code that never returns to Python, so the margin is generous
    (a loaded machine must not turn a normal timeout into a kill).
    """
    return 1.0 + 0.5 * timeout


# ---------------------------------------------------------------------------
# The lifecycle engine (child process or run_inline)
# ---------------------------------------------------------------------------

def _resolve_section(cls: type, name: str) -> Callable[..., Any] | None:
    """The plain function implementing ``name`` on ``cls`` (``None`` = base no-op)."""
    for klass in cls.__mro__:
        attr = klass.__dict__.get(name)
        if attr is None:
            continue
        if isinstance(attr, TimedMethod):
            fn = attr.fn
            if klass is Skprocess and name not in ("__run__", "__result__", "__error__", "__onfinish__"):
                return None
            return fn
        return attr
    return None


def _format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class _Alarm:
    """SIGALRM-based section timeouts for the main thread (sub-second via setitimer)."""

    def __init__(self) -> None:
        self.armed: tuple[str, float, int] | None = None
        self.previous: Any = None
        self.installed = False

    def install(self) -> None:
        self.previous = signal.signal(signal.SIGALRM, self._handler)
        self.installed = True

    def uninstall(self) -> None:
        if self.installed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous if self.previous is not None else signal.SIG_DFL)
            self.installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        armed = self.armed
        if armed is not None:
            self.armed = None
            raise ProcessTimeoutError(armed[0], armed[1], armed[2])


class Lifecycle:
    """Runs prerun/run/postrun loops, lives, onfinish, result and __error__ for one instance.

    ``ctrl`` is the shared control array (child) or a plain list (inline);
    ``remote`` adds tracebacks as text to errors that will cross a process.
    Returns ``("value", v)`` or ``("raise", ProcessError)``.
    """

    def __init__(
        self,
        proc: Skprocess,
        ctrl: Any,
        *,
        lives: int | None = None,
        remote: bool = False,
        stop_event: Any = None,
    ) -> None:
        self.proc = proc
        self.ctrl = ctrl
        self.cfg = proc.process_config
        self.lives = self.cfg.lives if lives is None else lives
        self.total_lives = self.cfg.lives  # as configured (the start state), for error messages
        self.remote = remote
        self.stop_event = stop_event
        self.alarm: _Alarm | None = None
        self.use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        cls = type(proc)
        self.fns = {name: _resolve_section(cls, name) for name in _SECTION_CODES}
        if proc.timers is None:
            proc.timers = ProcessTimers()

    # -- sections --------------------------------------------------------------------

    def _stopped(self) -> bool:
        if self.ctrl[_STOP]:
            return True
        ev = self.stop_event
        return ev is not None and ev.is_set()

    def _call(self, name: str, fn: Callable[..., Any], timeout: float | None) -> tuple[Any, float]:
        """Call one section with its timeout; return (value, elapsed); wrap failures."""
        proc = self.proc
        try:
            if timeout is None:
                t0 = time.perf_counter()
                value = fn(proc)
                return value, time.perf_counter() - t0
            return self._call_with_timeout(name, fn, timeout)
        except ProcessTimeoutError:
            proc.timers._ensure_timer(name)  # type: ignore[union-attr]
            raise
        except Exception as e:
            proc.timers._ensure_timer(name)  # type: ignore[union-attr]
            err = SECTION_ERRORS[name](proc._current_run, e)
            if self.remote:
                err.remote_traceback = _format_tb(e)
            raise err from e

    def _call_with_timeout(self, name: str, fn: Callable[..., Any], timeout: float) -> tuple[Any, float]:
        proc = self.proc
        ctrl = self.ctrl
        run = proc._current_run
        if self.use_alarm:
            alarm = self.alarm
            if alarm is None:
                alarm = self.alarm = _Alarm()
                alarm.install()
            ctrl[_TIMEOUT] = timeout
            ctrl[_SECTION] = _SECTION_CODES[name]
            ctrl[_DEADLINE] = time.monotonic() + timeout
            alarm.armed = (name, timeout, run)
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                value = fn(proc)
            finally:
                alarm.armed = None
                signal.setitimer(signal.ITIMER_REAL, 0)
                ctrl[_DEADLINE] = 0.0
            return value, time.perf_counter() - t0
        # Not the main thread (e.g. a Pool worker thread): run the section in a
        # daemon thread and stop waiting at the deadline; it cannot be interrupted.
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn(proc)
            except BaseException as e:
                box["error"] = e

        t0 = time.perf_counter()
        worker = threading.Thread(target=target, name=f"sk-section-{name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise ProcessTimeoutError(name, timeout, run)
        if "error" in box:
            raise box["error"]
        return box.get("value"), time.perf_counter() - t0

    def _timed(self, name: str, timeout: float | None) -> Any:
        """Run a once-only section (onfinish/result/error) and record its timer."""
        fn = self.fns[name]
        if fn is None:
            return None
        value, elapsed = self._call(name, fn, timeout)
        self.proc.timers._ensure_timer(name).add_time(elapsed)  # type: ignore[union-attr]
        return value

    # -- the loop --------------------------------------------------------------------

    def _loop(self, start_time: float) -> None:
        proc = self.proc
        ctrl = self.ctrl
        cfg = self.cfg
        runs = cfg.runs
        join_at = None if cfg.join_in is None else start_time + cfg.join_in
        timeouts = cfg.timeouts
        t_pre, t_run, t_post = timeouts.prerun, timeouts.run, timeouts.postrun
        pre, run, post = self.fns["__prerun__"], self.fns["__run__"], self.fns["__postrun__"]
        timers = proc.timers
        assert timers is not None
        full_run = timers.full_run
        call = self._call
        ev = self.stop_event
        publish = not isinstance(ctrl, list)
        pre_timer = run_timer = post_timer = None
        while True:
            if ctrl[_STOP] or (ev is not None and ev.is_set()):
                return
            cr = proc._current_run
            if runs is not None and cr >= runs:
                return
            if join_at is not None and time.monotonic() >= join_at:
                return
            if publish:
                ctrl[_RUN] = cr
            total = 0.0
            if pre is not None:
                _, el = call("__prerun__", pre, t_pre)
                if pre_timer is None:
                    pre_timer = timers._ensure_timer("prerun")
                pre_timer.add_time(el)
                total += el
                if ctrl[_STOP] or (ev is not None and ev.is_set()):
                    return
            if run is not None:
                _, el = call("__run__", run, t_run)
                if run_timer is None:
                    run_timer = timers._ensure_timer("run")
                run_timer.add_time(el)
                total += el
            if ctrl[_STOP] or (ev is not None and ev.is_set()):
                return
            if post is not None:
                _, el = call("__postrun__", post, t_post)
                if post_timer is None:
                    post_timer = timers._ensure_timer("postrun")
                post_timer.add_time(el)
                total += el
            proc._current_run = cr + 1
            if total > 0:
                full_run.add_time(total)

    def run(self) -> tuple[str, Any]:
        """The whole lifecycle; never raises for user errors (they come back as ``("raise", e)``)."""
        proc = self.proc
        try:
            cls = type(proc)
            if getattr(cls, "_auto_reconnect_enabled", False):
                try:
                    cucumber.reconnect_all(
                        proc,
                        start_threads=bool(getattr(cls, "_auto_reconnect_start_threads", False)),
                        **dict(getattr(cls, "_auto_reconnect_kwargs", {})),
                    )
                except Exception as e:
                    err = ProcessError(
                        f"@autoreconnect of {cls.__qualname__} failed: {type(e).__name__}: {e}", 0, e
                    )
                    return self._deliver_error(err)
            start_time = time.monotonic()
            while True:
                try:
                    self._loop(start_time)
                    break
                except (_SectionError, ProcessTimeoutError) as e:
                    self.lives -= 1
                    self.cfg.lives = self.lives
                    if not isinstance(self.ctrl, list):
                        self.ctrl[_LIVES] = self.lives
                    if self.lives <= 0:
                        e._note_lives(self.total_lives)
                        return self._deliver_error(e)
                    # retry the SAME iteration, state kept
            return self._finish()
        finally:
            if self.alarm is not None:
                self.alarm.uninstall()
                self.alarm = None

    def _finish(self) -> tuple[str, Any]:
        timeouts = self.cfg.timeouts
        try:
            self._timed("__onfinish__", timeouts.onfinish)
        except (_SectionError, ProcessTimeoutError) as e:
            return self._deliver_error(e)
        try:
            value = self._timed("__result__", timeouts.result)
        except (_SectionError, ProcessTimeoutError) as e:
            return self._deliver_error(e)
        return ("value", value)

    def _deliver_error(self, err: ProcessError) -> tuple[str, Any]:
        proc = self.proc
        proc.error = err
        try:
            value = self._timed("__error__", self.cfg.timeouts.error)
        except ErrorHandlerError as handler_err:
            handler_err.handled_error = err
            return ("raise", handler_err)
        except ProcessTimeoutError as timeout_err:
            return ("raise", timeout_err)
        if isinstance(value, BaseException):
            return ("raise", _as_process_error(value, err))
        return ("value", value)


def _as_process_error(value: BaseException, err: ProcessError) -> ProcessError:
    """Decision 3: an exception returned by ``__error__`` is raised as the matching ProcessError."""
    if isinstance(value, ProcessError):
        return value
    if isinstance(err, _SectionError):
        wrapped: ProcessError = type(err)(err.current_run, value)
    elif isinstance(err, ProcessTimeoutError):
        wrapped = ProcessTimeoutError(err.section, err.timeout, err.current_run)
        wrapped.original_error = value
        wrapped.__cause__ = value
    else:
        wrapped = ProcessError(f"{type(value).__name__}: {value}", err.current_run, value)
    wrapped.remote_traceback = err.remote_traceback
    if err.lives:
        wrapped._note_lives(err.lives)
    return wrapped


# ---------------------------------------------------------------------------
# run_inline: the whole lifecycle in the current process (Pool workers)
# ---------------------------------------------------------------------------

class _InlineRuntime:
    """Runtime of an Skprocess running inside the current process (no parent to talk to)."""

    def __init__(self, ctrl: list[float]) -> None:
        self.ctrl = ctrl

    def stop(self) -> None:
        self.ctrl[_STOP] = 1.0

    def kill(self) -> None:
        self.ctrl[_STOP] = 1.0

    def tell(self, data: Any) -> None:
        raise RuntimeError(
            "tell() is not available for an Skprocess running inline (e.g. inside a Pool worker): "
            "there is no other side to talk to; return data from __result__ or use a Share/Pipe"
        )

    def listen(self, timeout: float | None, sk_timeout: float | None) -> Any:
        raise RuntimeError(
            "listen() is not available for an Skprocess running inline (e.g. inside a Pool worker): "
            "there is no other side to talk to; pass data in __init__ or use a Share/Pipe"
        )

    def wait(self, timeout: float | None, sk_timeout: float | None) -> bool:
        raise RuntimeError("wait() cannot be called from inside the running Skprocess")

    def result(self, sk_timeout: float | None, what: str = "result") -> Any:
        raise RuntimeError(f"{what}() cannot be called from inside the running Skprocess")

    def live_current_run(self) -> int | None:
        return None

    def is_alive(self) -> bool:
        return True

    def describe(self) -> str:
        return "running inline"


def run_inline(process: Skprocess, stop_event: Any = None) -> Any:
    """Run ``process``'s whole lifecycle in THIS process and return its result.

    Used by Pool workers. Applies ``@autoreconnect`` first, honours lives,
    section timeouts (SIGALRM on the main thread, a watcher thread elsewhere),
    ``__onfinish__``/``__result__``/``__error__`` semantics, and ``stop()``
    (or ``stop_event.is_set()``, any object with ``is_set()``). Returns the
    result, or ``__error__``'s non-exception value; raises the ProcessError
    subclass otherwise. ``tell``/``listen`` raise ``RuntimeError`` inside.
    """
    if not isinstance(process, Skprocess):
        raise TypeError(f"run_inline() needs an Skprocess instance, got {type(process).__name__}")
    validate(process.process_config, type(process).__qualname__)
    ctrl = [0.0] * _CTRL_SLOTS
    d = process.__dict__
    previous = d.get(_RUNTIME_ATTR)
    d[_RUNTIME_ATTR] = _InlineRuntime(ctrl)
    try:
        kind, value = Lifecycle(process, ctrl, stop_event=stop_event).run()
    finally:
        d[_RUNTIME_ATTR] = previous
    if kind == "raise":
        raise value
    return value


# ---------------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------------

_libc: Any = None


def _set_pdeathsig(expected_ppid: int) -> bool:
    """Ask Linux to SIGKILL us when the parent (thread) dies; exit if it already did.

    Returns False when unavailable (then the reader thread watches the pipe's EOF).
    """
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # not Linux
        return False
    if expected_ppid and os.getppid() != expected_ppid:
        os._exit(1)
    return True


class _ChildRuntime:
    """Runtime of the instance inside its child: tell/listen over the pipe, stop via ctrl."""

    def __init__(self, conn: mpc.Connection, ctrl: Any, watch_parent: bool) -> None:
        self.conn = conn
        self.ctrl = ctrl
        self.inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.send_lock = threading.Lock()
        self.finishing = False
        self.reader: threading.Thread | None = None
        # Starting a thread in a fresh child costs ~1 ms, so the reader starts on the
        # first listen() unless it is also needed as the parent-death watchdog
        # (PR_SET_PDEATHSIG unavailable or unsafe for this child).
        if watch_parent:
            self._start_reader()

    def _start_reader(self) -> None:
        with self.send_lock:
            if self.reader is None:
                self.reader = threading.Thread(target=self._reader, name="sk-skprocess-reader", daemon=True)
                self.reader.start()

    def _reader(self) -> None:
        # SIGALRM must reach the main thread (section timeouts), never this one.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        conn = self.conn
        try:
            while True:
                data = conn.recv_bytes()
                if data[:1] == _TAG_TELL:
                    self.inbox.put(data[1:])
                    self.send(_TAG_ACK, b"")  # the parent may now forget it
        except (EOFError, OSError):
            pass
        if not self.finishing:
            # The parent is gone (its end of the pipe closed): nothing may outlive it.
            os._exit(1)

    def send(self, tag: bytes, payload: bytes) -> None:
        with self.send_lock:
            self.conn.send_bytes(tag + payload)

    def stop(self) -> None:
        self.ctrl[_STOP] = 1.0

    def kill(self) -> None:
        self.ctrl[_STOP] = 1.0

    def tell(self, data: Any) -> None:
        self.send(_TAG_TELL, cucumber.serialize(data))

    def listen(self, timeout: float | None, sk_timeout: float | None) -> Any:
        if self.reader is None:
            self._start_reader()
        limit = _min_timeout(timeout, sk_timeout)
        try:
            data = self.inbox.get(timeout=limit) if limit is not None else self.inbox.get()
        except queue.Empty:
            if sk_timeout is not None and (timeout is None or sk_timeout <= timeout):
                raise ResultTimeoutError(f"listen() timed out after {sk_timeout}s") from None
            return None
        return cucumber.deserialize(data)

    def wait(self, timeout: float | None, sk_timeout: float | None) -> bool:
        raise RuntimeError("wait() cannot be called from inside the running Skprocess")

    def result(self, sk_timeout: float | None, what: str = "result") -> Any:
        raise RuntimeError(f"{what}() cannot be called from inside the running Skprocess")

    def live_current_run(self) -> int | None:
        return None

    def is_alive(self) -> bool:
        return True

    def describe(self) -> str:
        return f"running in pid {os.getpid()}"


def _portable(obj: Any, fallback: Callable[[], Any]) -> Any:
    try:
        cucumber.serialize(obj)
        return obj
    except Exception:
        return fallback()


def _portable_error(err: BaseException | None) -> BaseException | None:
    """``err`` if cucumber can move it; else the same ProcessError class with a
    stand-in ``original_error`` (type, message and traceback kept as text)."""
    if err is None:
        return None
    try:
        cucumber.serialize(err)
        return err
    except Exception as e:
        problem = f"{type(e).__name__}: {e}"
    tb = getattr(err, "remote_traceback", None) or _format_tb(err)
    orig = getattr(err, "original_error", None)
    if isinstance(err, ProcessError) and orig is not None:
        clone = copy.copy(err)
        stand_in = ProcessError(
            f"{type(orig).__name__}: {orig} (the exception itself could not be sent: {problem})"
        )
        clone.original_error = stand_in
        clone.__cause__ = stand_in
        clone.__context__ = None
        clone.remote_traceback = tb
        try:
            cucumber.serialize(clone)
            return clone
        except Exception:
            pass
    generic = ProcessError(f"{type(err).__name__}: {err}", getattr(err, "current_run", 0))
    generic.remote_traceback = tb
    return generic


def _final_message(proc: Skprocess | None, kind: str, value: Any) -> bytes:
    state: dict[str, Any] = {"kind": kind, "value": value}
    if proc is not None:
        state["current_run"] = proc._current_run
        state["error"] = proc.error
        state["timers"] = proc.timers
    try:
        return cucumber.serialize(state)
    except Exception as e:
        if kind == "value":
            run = proc._current_run if proc is not None else 0
            err = _unserializable_result_error(run, e, value)
            state["kind"], state["value"] = "raise", err
        else:
            state["value"] = _portable_error(value)
        state["error"] = _portable_error(state.get("error"))
        state["timers"] = _portable(state.get("timers"), lambda: None)
        return cucumber.serialize(state)


def _unserializable_result_error(run: int, exc: BaseException, value: Any) -> ProcessError:
    err = SECTION_ERRORS["__result__"](run, ProcessError(
        f"__result__ returned a {type(value).__name__} that cannot be sent to the parent: "
        f"{type(exc).__name__}: {exc}"
    ))
    return err


def child_main(
    data: bytes,
    conn: mpc.Connection,
    ctrl: Any,
    close_in_child: Sequence[Any],
    pdeathsig: bool,
    ppid: int,
) -> None:
    """Entry point of the child process (target of ``multiprocessing.Process``)."""
    ctrl[_BOOTED] = 1.0  # multiprocessing's bootstrap (re-importing __main__ under spawn) is over
    for obj in close_in_child:  # fork: the parent's end of our pipe, so its EOF reaches us
        try:
            obj.close()
        except OSError:
            pass
    watch_parent = not (pdeathsig and _set_pdeathsig(ppid))
    rt = _ChildRuntime(conn, ctrl, watch_parent)
    proc: Skprocess | None = None
    try:
        proc = cucumber.deserialize(data)
        if not isinstance(proc, Skprocess):
            raise TypeError(f"expected an Skprocess, got {type(proc).__name__}")
    except Exception as e:
        err = ProcessError(f"the Skprocess could not be rebuilt in the child process: {type(e).__name__}: {e}", 0, e)
        err.remote_traceback = _format_tb(e)
        kind, value = "raise", err
        proc = None
    else:
        proc.__dict__[_RUNTIME_ATTR] = rt
        kind, value = Lifecycle(proc, ctrl, lives=int(ctrl[_LIVES]), remote=True).run()
    payload = _final_message(proc, kind, value)
    rt.finishing = True
    try:
        rt.send(_TAG_FINAL, payload)
    except OSError:  # parent gone
        pass


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------

class _ForkDupFd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def detach(self) -> int:
        return self.fd


class _ForkSpawningPopen:
    """Lets objects that reduce through ``multiprocessing.reduction.DupFd`` (Pipe points)
    serialize for a fork child: the child inherits the very same fd numbers."""

    DupFd = _ForkDupFd

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd


class _SpawnPayload:
    """Process argument that serializes the instance with cucumber while
    multiprocessing is spawning (DupFd of Pipe points needs that context)."""

    def __init__(self, proc: Skprocess) -> None:
        self.proc = proc

    def __reduce__(self) -> tuple[Any, ...]:
        return (bytes, (cucumber.serialize(self.proc),))


def _min_timeout(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _attach_remote_traceback(err: BaseException) -> None:
    """Show the child's traceback as the ``__cause__`` of ``original_error`` (like concurrent.futures)."""
    original = getattr(err, "original_error", None)
    if not isinstance(original, BaseException) or original.__cause__ is not None:
        return
    tb = getattr(err, "remote_traceback", None) or getattr(original, "__remote_traceback__", None)
    if tb:
        original.__cause__ = RemoteTraceback(tb)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "process ended without an exit code"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {
            "SIGKILL": " (killed from outside, or by the out-of-memory killer)",
            "SIGSEGV": " (segmentation fault, usually in native code)",
            "SIGABRT": " (aborted, usually by native code)",
            "SIGBUS": " (bus error in native code)",
        }.get(name, "")
        return f"process was killed by signal {name} ({code}){hint}"
    return f"process exited with code {code} before producing a result"


def _bootstrap_failure(name: str, method: str, exitcode: int) -> str:
    """The message for a child that died in multiprocessing's bootstrap, before our code ran."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    module = f"the main module {os.path.basename(path)!r}" if path else "the main module"
    return (
        f"{name}: the child process raised while importing {module}, before any Skprocess code "
        f"ran (process exited with code {exitcode}; its traceback is on the child's stderr). "
        f"Under the {method!r} start method every child re-imports the script that started it: "
        "put the code that starts processes under `if __name__ == \"__main__\":`."
    )


class ParentRun:
    """Parent-side state of one ``start()``: child process, pipe, ctrl, monitor thread."""

    def __init__(self, owner: Skprocess) -> None:
        self.owner = owner
        self.ctx = multiprocessing.get_context()
        self.method = self.ctx.get_start_method()
        self.ctrl = self.ctx.RawArray("d", _CTRL_SLOTS)
        self.ctrl[_LIVES] = owner.process_config.lives
        self.total_lives = owner.process_config.lives
        self.cond = threading.Condition(threading.Lock())
        self.inbox: deque[bytes] = deque()
        self.done = threading.Event()
        self.outcome: tuple[str, Any] | None = None
        self.killed = False
        self.consumed = False
        self.send_lock = threading.Lock()
        self.conn: mpc.Connection | None = None
        # tell() messages for the next life: those that found no live child, and those sent
        # to a life that died before taking them off the pipe (not acknowledged)
        self.undelivered: deque[bytes] = deque()
        self.unacked: deque[bytes] = deque()
        self.ack_lock = threading.Lock()  # guards unacked; never held while sending
        self.process: Any = None
        self.final: bytes | None = None
        self.timeout_kill: tuple[str, float, int] | None = None
        self.monitor: threading.Thread | None = None
        timeouts = owner.process_config.timeouts
        self.has_timeouts = any(getattr(timeouts, name) is not None for name in _SECTION_KEYS)

    # -- spawning ----------------------------------------------------------------------

    def spawn(self) -> None:
        """Start one child for the current life; raises SerializationError before spawning."""
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        owner = self.owner
        self.ctrl[_BOOTED] = 0.0
        thread = threading.current_thread()
        # PR_SET_PDEATHSIG fires when the *thread* that forked the child ends: only
        # safe from the main thread or from our monitor (which outlives the child).
        # Not under forkserver: the child's parent is the fork server, which itself
        # only exits once all its children (holding its "alive" fd) are gone.
        pdeathsig = self.method != "forkserver" and (
            thread is threading.main_thread() or thread is self.monitor
        )
        try:
            if self.method == "fork":
                mp_context.set_spawning_popen(_ForkSpawningPopen())  # type: ignore[arg-type]
                try:
                    payload: Any = cucumber.serialize(owner)
                finally:
                    mp_context.set_spawning_popen(None)
                close_in_child: list[Any] = [parent_conn]
                ppid = os.getpid()
            else:
                payload = _SpawnPayload(owner)
                close_in_child = []
                # forkserver: the parent of the child is the fork server
                ppid = os.getpid() if self.method == "spawn" else 0
            process = self.ctx.Process(
                target=child_main,
                args=(payload, child_conn, self.ctrl, close_in_child, pdeathsig, ppid),
                name=f"Skprocess-{type(owner).__qualname__}",
                daemon=False,
            )
            process.start()
        except BaseException:
            parent_conn.close()
            child_conn.close()
            raise
        child_conn.close()
        with self.send_lock:
            self.process = process  # before the pipe: tell() judges the pipe by this process
            self.conn = parent_conn
            # Messages the previous life never took off its pipe come first (they were
            # told first), then those told while it was being replaced.
            with self.ack_lock:
                self.unacked.extend(self.undelivered)
                self.undelivered, self.unacked = self.unacked, deque()
            while self.undelivered:
                try:
                    parent_conn.send_bytes(self.undelivered[0])
                except OSError:
                    break  # this child died too; the monitor restarts it or reports
                message = self.undelivered.popleft()
                with self.ack_lock:
                    self.unacked.append(message)
        self.final = None

    def begin(self) -> None:
        self.spawn()
        self.monitor = threading.Thread(
            target=self._monitor, name=f"sk-monitor-{type(self.owner).__qualname__}", daemon=True
        )
        self.monitor.start()

    # -- monitor thread ----------------------------------------------------------------

    def _monitor(self) -> None:
        try:
            while True:
                if not self._watch_child():
                    return
                if self.killed:
                    self._resolve(("killed", None))
                    return
                try:
                    self.spawn()
                except BaseException as e:
                    self._resolve(("raise", ProcessError(
                        f"{type(self.owner).__qualname__} could not be restarted after a crash: "
                        f"{type(e).__name__}: {e}", int(self.ctrl[_RUN]), e)))
                    return
                if self.killed:
                    self.process.kill()
        except BaseException as e:  # a bug here must not leave result() hanging
            self._resolve(("raise", ProcessError(f"internal error in the Skprocess monitor: {e!r}", 0, e)))
        finally:
            with self.send_lock:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None

    def _watch_child(self) -> bool:
        """Pump one child until it exits; return True if it must be restarted."""
        conn = self.conn
        process = self.process
        assert conn is not None and process is not None
        waitables: list[Any] = [conn, process.sentinel]
        ctrl = self.ctrl
        # With section timeouts configured, look at the published deadline a few
        # times a second (the child does not message us when it enters a section).
        poll = _DEADLINE_POLL if self.has_timeouts else None
        while True:
            wait_for = poll
            deadline = ctrl[_DEADLINE]
            if deadline > 0:
                wait_for = max(0.0, deadline + _grace(ctrl[_TIMEOUT]) - time.monotonic())
            ready = mpc.wait(waitables, wait_for)
            if conn in ready:
                try:
                    self._handle(conn.recv_bytes())
                except (EOFError, OSError):
                    waitables.remove(conn)
                continue
            if process.sentinel in ready:
                while conn in waitables:
                    try:
                        if not conn.poll(0):
                            break
                        self._handle(conn.recv_bytes())
                    except (EOFError, OSError):
                        break
                process.join()
                # Under the lock: a tell() racing with this close must not write to a reused
                # descriptor (the next life's pipe); it finds None and buffers. Bounded wait:
                # a tell() stuck on a full pipe must not stall the monitor.
                locked = self.send_lock.acquire(timeout=5.0)
                try:
                    conn.close()
                    self.conn = None
                finally:
                    if locked:
                        self.send_lock.release()
                return self._on_exit(process.exitcode)
            deadline = ctrl[_DEADLINE]
            if deadline > 0 and time.monotonic() > deadline + _grace(ctrl[_TIMEOUT]):
                # The child is stuck where SIGALRM cannot reach (native code): replace it.
                self.timeout_kill = (
                    _SECTION_NAMES.get(int(ctrl[_SECTION]), "__run__"), float(ctrl[_TIMEOUT]), int(ctrl[_RUN])
                )
                ctrl[_DEADLINE] = 0.0
                process.kill()

    def _handle(self, data: bytes) -> None:
        tag = data[:1]
        if tag == _TAG_TELL:
            with self.cond:
                self.inbox.append(data[1:])
                self.cond.notify_all()
        elif tag == _TAG_ACK:
            with self.ack_lock:
                if self.unacked:
                    self.unacked.popleft()
        elif tag == _TAG_FINAL:
            self.final = data[1:]

    def _on_exit(self, exitcode: int | None) -> bool:
        owner = self.owner
        if self.final is not None:
            try:
                state = cucumber.deserialize(self.final)
            except Exception as e:
                self._resolve(("raise", ProcessError(
                    f"the final state sent by {type(owner).__qualname__} could not be read: "
                    f"{type(e).__name__}: {e}", int(self.ctrl[_RUN]), e)))
                return False
            d = owner.__dict__
            if "current_run" in state:
                d["_current_run"] = state["current_run"]
                d["error"] = state["error"]
                if state["timers"] is not None:
                    d["timers"] = state["timers"]
            if state["kind"] == "raise":
                _attach_remote_traceback(state["value"])
            self._resolve((state["kind"], state["value"]))
            return False
        if self.killed:
            self._resolve(("killed", None))
            return False
        run = int(self.ctrl[_RUN])
        if not self.ctrl[_BOOTED] and self.method != "fork" and exitcode is not None and exitcode > 0:
            # Deterministic: every new child would fail the same way, so no restart.
            error = ProcessError(_bootstrap_failure(type(owner).__qualname__, self.method, exitcode), run)
            owner.__dict__["_current_run"] = run
            owner.__dict__["error"] = error
            self._resolve(("raise", error))
            return False
        lives = int(self.ctrl[_LIVES]) - 1
        total = self.total_lives
        if self.timeout_kill is not None:
            section, timeout, run = self.timeout_kill
            error: ProcessError = ProcessTimeoutError(section, timeout, run)
            if lives < 1:
                error._note_lives(total)
        else:
            used = f", after {total} of {total} lives" if total > 1 else ""
            error = ProcessError(
                f"{type(owner).__qualname__}: {_describe_exit(exitcode)} (on run {run}{used})", run
            )
            error.lives = total
        self.timeout_kill = None
        if lives >= 1:
            # Restart from the state the parent holds (the start state), one life less.
            self.ctrl[_LIVES] = lives
            self.ctrl[_DEADLINE] = 0.0
            self.ctrl[_RUN] = 0
            return True
        owner.__dict__["_current_run"] = run
        owner.__dict__["error"] = error
        self._resolve(("raise", error))
        return False

    def _resolve(self, outcome: tuple[str, Any]) -> None:
        with self.cond:
            if self.outcome is None:
                self.outcome = outcome
            self.cond.notify_all()
        self.done.set()

    # -- API used by Skprocess -----------------------------------------------------------

    def stop(self) -> None:
        if not self.done.is_set():
            self.ctrl[_STOP] = 1.0

    def kill(self) -> None:
        if self.done.is_set():
            return
        self.killed = True
        process = self.process
        if process is not None:
            try:
                process.kill()
            except (OSError, ValueError):
                pass
        self.done.wait(10.0)

    def wait(self, timeout: float | None, sk_timeout: float | None) -> bool:
        limit = _min_timeout(timeout, sk_timeout)
        if self.done.wait(limit):
            return True
        if sk_timeout is not None and (timeout is None or sk_timeout <= timeout):
            raise ResultTimeoutError(f"wait() timed out after {sk_timeout}s")
        return False

    def result(self, sk_timeout: float | None, what: str = "result") -> Any:
        if not self.done.wait(sk_timeout):
            raise ResultTimeoutError(f"{what}() timed out after {sk_timeout}s")
        if self.monitor is not None:
            self.monitor.join()
        self.consumed = True
        assert self.outcome is not None
        kind, value = self.outcome
        if kind == "raise":
            raise value
        if kind == "killed":
            return None
        return value

    def tell(self, data: Any) -> None:
        if self.consumed or self.done.is_set():
            raise RuntimeError("Cannot tell() - process finished")
        payload = _TAG_TELL + cucumber.serialize(data)
        with self.send_lock:
            conn = self.conn
            process = self.process
            # Between two lives (no pipe yet, or the child has exited and the monitor has
            # not replaced it yet), keep the message for the restarted child. The exit is
            # read from the sentinel, not inferred from EPIPE: another process forked while
            # the pipe was being set up may hold a copy of the child's end.
            if conn is None or (process is not None and mpc.wait([process.sentinel], 0)):
                self.undelivered.append(payload)
                return
            try:
                conn.send_bytes(payload)
            except OSError:
                # The child just died: if it is restarted, the new one gets the message.
                self.undelivered.append(payload)
            else:
                with self.ack_lock:
                    self.unacked.append(payload)  # until the child acknowledges it

    def listen(self, timeout: float | None, sk_timeout: float | None) -> Any:
        if self.consumed:
            raise RuntimeError("Cannot listen() - process finished (result() was already collected)")
        limit = _min_timeout(timeout, sk_timeout)
        end = None if limit is None else time.monotonic() + limit
        with self.cond:
            while not self.inbox:
                if self.outcome is not None:
                    return None  # finished and drained: nothing more can arrive
                if end is None:
                    self.cond.wait()
                    continue
                remaining = end - time.monotonic()
                if remaining <= 0:
                    if sk_timeout is not None and (timeout is None or sk_timeout <= timeout):
                        raise ResultTimeoutError(f"listen() timed out after {sk_timeout}s")
                    return None
                self.cond.wait(remaining)
            data = self.inbox.popleft()
        return cucumber.deserialize(data)

    def live_current_run(self) -> int | None:
        if self.done.is_set():
            return None
        return int(self.ctrl[_RUN])

    def is_alive(self) -> bool:
        return not self.done.is_set()

    def describe(self) -> str:
        if not self.done.is_set():
            pid = getattr(self.process, "pid", None)
            return f"running, pid {pid}"
        return "finished"


def start(owner: Skprocess) -> None:
    """``Skprocess.start()``: validate, reset the run state, spawn, start the monitor."""
    d = owner.__dict__
    if "process_config" not in d:
        raise TypeError(
            f"{type(owner).__qualname__} was not initialised: its __init__ must run "
            "(do not bypass Skprocess.__init__ with __new__)"
        )
    rt = d.get(_RUNTIME_ATTR)
    if isinstance(rt, ParentRun) and not rt.done.is_set():
        raise RuntimeError("process already started")
    if rt is not None and not isinstance(rt, ParentRun):
        raise RuntimeError("start() cannot be called from inside the running Skprocess")
    validate(owner.process_config, type(owner).__qualname__)
    d["timers"] = ProcessTimers()
    d["error"] = None
    d["_current_run"] = 0
    d[_RUNTIME_ATTR] = None  # the payload must not carry the previous run
    new = ParentRun(owner)
    new.begin()
    d[_RUNTIME_ATTR] = new
