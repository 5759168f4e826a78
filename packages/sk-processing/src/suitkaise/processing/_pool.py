"""``Pool``: map a function (or an ``Skprocess`` class) over items in worker processes.

::

    caller ──items──► [serialize chunk] ──► manager thread ──socket──► worker 1..N
           ◄─results─ [decode, raise]   ◄── (sentinels watched) ◄──────┘

See ``_pool_core`` for the manager thread and ``_pool_worker`` for the worker
loop. This module holds the public API and the caller's side of one call
(``_Run``): chunking, bounded read-ahead, ordering, timeouts, errors and
progress.

Decisions (where we differ from suitkaise 0.4.14):

- ``.timeout(s)`` on ``map``/``unordered_map`` bounds the **whole call**; on
  ``imap``/``unordered_imap`` it bounds **each wait for the next result**.
  Expiry raises ``ResultTimeoutError`` (a ``TimeoutError``); the workers busy
  with that call are killed and replaced, so a stuck task cannot poison the pool.
- A task's exception is re-raised with its own type and the worker's
  traceback as ``__cause__`` (``RemoteTraceback``); 0.4.14 raised ``RuntimeError``.
- A worker that dies hard raises ``ProcessError`` naming the item, never hangs.
- ``imap``/``unordered_imap`` read the input lazily with bounded read-ahead.
"""

from __future__ import annotations

import math
import os
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Protocol, TypeAlias

from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._errors import ProcessError, RemoteTraceback, ResultTimeoutError
from suitkaise.processing._modifiers import ModifiedCall, modifiable
from suitkaise.processing._pool_core import Chunk, Core, Entry, Job, short_repr
from suitkaise.processing._pool_worker import FLAG_SKPROCESS, FLAG_STAR

__all__ = ["Pool"]

Progress: TypeAlias = "bool | Callable[[int, int | None], object] | None"

_TARGET_CHUNK_SECONDS = 0.01  # adaptive imap chunks aim at this much work each
_MAX_CHUNK = 4096


def _is_skprocess_class(obj: Any) -> bool:
    if not isinstance(obj, type):
        return False
    try:
        from suitkaise.processing._skprocess import Skprocess
    except ImportError:  # Skprocess not available: a class is just a callable
        return False
    return issubclass(obj, Skprocess)


def _check_timeout(name: str, seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"{name}.timeout() needs a number of seconds >= 0, got {seconds!r}")
    return float(seconds)


class _ProgressReporter:
    """Calls ``progress(done, total)`` or drives a tqdm bar (only on a terminal)."""

    def __init__(self, option: Progress, total: int | None, desc: str) -> None:
        self._callback: Callable[[int, int | None], object] | None = None
        self._bar: Any = None
        self._text = False
        self._total = total
        self._desc = desc
        self._last = 0.0
        if option is None or option is False:
            return
        if option is not True:
            self._callback = option
            return
        if not sys.stderr.isatty():
            return  # silent when output is not a terminal
        try:
            from tqdm import tqdm
        except ImportError:
            self._text = True
        else:
            self._bar = tqdm(total=total, desc=desc, unit="item", leave=False)

    def update(self, done: int, delta: int) -> None:
        if self._callback is not None:
            self._callback(done, self._total)
        elif self._bar is not None:
            self._bar.update(delta)
        elif self._text:
            now = time.monotonic()
            if now - self._last > 0.1 or done == self._total:
                self._last = now
                total = "?" if self._total is None else self._total
                sys.stderr.write(f"\r{self._desc}: {done}/{total}")
                sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._text:
            sys.stderr.write("\n")
            self._text = False


class _CallBase:
    """What every kind of call shares on the caller's side, whatever runs the items.

    Argument checks, chunk sizing (``map``: about four chunks per worker; ``imap``:
    adaptive, aiming at ``_TARGET_CHUNK_SECONDS`` of measured work) with bounded
    read-ahead, iteration, and rebuilding an item's error with its remote traceback.
    Subclasses provide ``_next_values`` (the next chunk's values, ``None`` at the end),
    ``_finish_on_error`` and ``_item_time`` (measured seconds per item, or ``None``).
    """

    _target_chunk_seconds = _TARGET_CHUNK_SECONDS

    def _open(self, name: str, fn: Any, iterable: Any) -> Iterator[Any]:
        if not callable(fn):
            raise TypeError(
                f"Pool.{name}: the first argument must be a function or an Skprocess class, "
                f"got {type(fn).__name__} {short_repr(fn)}"
            )
        try:
            source = iter(iterable)
        except TypeError:
            raise TypeError(
                f"Pool.{name}: the second argument must be iterable, got {type(iterable).__name__} "
                f"{short_repr(iterable)}"
            ) from None
        self._name = name
        return source

    def _plan(
        self, iterable: Any, source: Iterator[Any], *, eager: bool, workers: int,
        timeout: float | None, per_item: bool, progress: Progress,
    ) -> None:
        self._timeout = timeout
        self._per_item = per_item
        self._deadline = None if timeout is None or per_item else time.monotonic() + timeout
        total: int | None
        if eager:
            items = list(source)
            total = len(items)
            source = iter(items)
            self._chunksize = max(1, math.ceil(total / (4 * workers)))
            self._bound = math.inf
        else:
            try:
                total = len(iterable)
            except TypeError:
                total = None
            # adaptive; one item per chunk under a per-result timeout, so that the
            # timeout measures one item and not a whole chunk
            self._chunksize = 1 if timeout is not None else 0
            self._bound = 0.0
        self._cap = _MAX_CHUNK if total is None else max(1, min(_MAX_CHUNK, math.ceil(total / (4 * workers))))
        self._workers = workers
        self._source: Iterator[Any] | None = source
        self._total = total
        self._seq = 0  # next chunk number to submit
        self._next_start = 0
        self._consumed_seq = 0  # ordered: next chunk to yield
        self._items_submitted = 0
        self._items_consumed = 0
        self._ready: deque[Any] = deque()
        self._pending_error: BaseException | None = None
        self._done = False
        self._last_size = 0
        self._progress = _ProgressReporter(progress, total, f"Pool.{self._name}")

    # -- feeding ---------------------------------------------------------------

    def _item_time(self) -> float | None:
        raise NotImplementedError

    def _next_chunksize(self) -> int:
        if self._chunksize:
            return self._chunksize
        per_item = self._item_time()
        if per_item is None:
            size = 1  # nothing measured yet: a slow task must not hold up several items
        else:
            size = int(self._target_chunk_seconds / per_item) if per_item > 0 else self._cap
        size = max(1, min(size, self._cap))
        self._last_size = size
        return size

    def _read_chunk(self) -> list[Any] | None:
        """The next items to submit, or ``None`` (input exhausted, or read-ahead is full)."""
        if self._source is None:
            return None
        if self._bound != math.inf:
            self._bound = max(4 * self._workers * (self._last_size or 1), 2 * self._workers)
            if self._items_submitted - self._items_consumed >= self._bound:
                return None
        items = list(islice(self._source, self._next_chunksize()))
        if not items:
            self._source = None
            return None
        return items

    def _explain_serialization(
        self, items: list[Any], error: Exception, dumps: Callable[[Any], Any], where: str,
    ) -> None:
        for offset, item in enumerate(items):
            try:
                dumps(item)
            except Exception:
                error.add_note(
                    f"Pool.{self._name}: item {self._next_start + offset} ({short_repr(item)}) could not be "
                    f"serialized to send it to {where}"
                )
                return
        error.add_note(f"Pool.{self._name}: items {self._next_start}.. could not be serialized")

    # -- consuming -------------------------------------------------------------

    def __iter__(self) -> _CallBase:
        return self

    def __next__(self) -> Any:
        while not self._ready:  # a chunk may bring no value (error on its first item)
            values = self._guarded(self._next_values)
            if values is None:
                raise StopIteration
            self._ready.extend(values)
        return self._ready.popleft()

    def collect(self) -> list[Any]:
        """Every remaining result as a list (chunk by chunk, for ``map``)."""
        out = list(self._ready)
        self._ready.clear()
        while (values := self._guarded(self._next_values)) is not None:
            out.extend(values)
        return out

    def _next_values(self) -> list[Any] | None:
        raise NotImplementedError

    def _finish_on_error(self, error: BaseException) -> None:
        raise NotImplementedError

    def _guarded(self, step: Callable[[], list[Any] | None]) -> list[Any] | None:
        try:
            return step()
        except BaseException as error:  # errors, timeouts, Ctrl-C: end this call
            self._finish_on_error(error)
            raise

    def _timeout_error(self, consequence: str) -> ResultTimeoutError:
        assert self._timeout is not None
        what = "the next result" if self._per_item else "all results"
        return ResultTimeoutError(
            f"Pool.{self._name} timed out after {self._timeout:g}s waiting for {what} "
            f"({self._items_consumed} item(s) done); {consequence}"
        )

    def _rebuild_error(self, start: int, items: list[Any], record: tuple[Any, ...], side: str) -> BaseException:
        """An item's failure as the exception to raise, with the remote traceback as ``__cause__``."""
        index, exc, type_name, message, tb, why = record
        item = items[index - start] if 0 <= index - start < len(items) else "?"
        if exc is None:
            exc = ProcessError(
                f"Pool.{self._name}: item {index} ({short_repr(item)}) raised {type_name}: {message}\n"
                f"(the exception itself could not be sent to the {side}: {why})"
            )
        elif isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
            exc = ProcessError(
                f"Pool.{self._name}: item {index} ({short_repr(item)}) raised {type_name}({message})",
                original_error=exc,
            )
        exc.__cause__ = RemoteTraceback(tb)
        return exc


class _Run(_CallBase):
    """The caller's side of one call: feeds chunks, yields results, raises errors."""

    def __init__(
        self,
        core: Core,
        workers: int,
        name: str,
        fn: Any,
        iterable: Any,
        *,
        star: bool,
        ordered: bool,
        eager: bool,
        timeout: float | None,
        per_item: bool,
        progress: Progress,
    ) -> None:
        source = self._open(name, fn, iterable)
        self._core = core
        self._plan(iterable, source, eager=eager, workers=workers, timeout=timeout,
                   per_item=per_item, progress=progress)
        flags = (FLAG_STAR if star else 0) | (FLAG_SKPROCESS if _is_skprocess_class(fn) else 0)
        try:
            fn_payload, fn_buffers = wire.dumps(fn)
        except Exception as e:
            e.add_note(f"Pool.{name}: {short_repr(fn)} could not be serialized to send it to the workers")
            raise
        self._job = Job(core.new_job_id(), name, fn_payload, fn_buffers, flags, ordered)
        self._chunks_consumed = 0
        core.add_job(self._job)
        try:
            self._top_up()
        except BaseException:
            self._finish(kill=False)
            raise

    # -- feeding ---------------------------------------------------------------

    def _item_time(self) -> float | None:
        return self._job.item_time()

    def _top_up(self) -> None:
        while (items := self._read_chunk()) is not None:
            try:
                payload, buffers = wire.dumps(items)
            except Exception as e:
                self._explain_serialization(items, e, wire.dumps, "a worker")
                raise
            chunk = Chunk(self._job, self._seq, self._next_start, items, payload, buffers)
            self._seq += 1
            self._next_start += len(items)
            self._items_submitted += len(items)
            self._core.submit(self._job, chunk)

    def _finish_on_error(self, error: BaseException) -> None:
        if isinstance(error, KeyboardInterrupt):
            # Ctrl-C: stop every worker now (the pool restarts on the next call).
            self._core.terminate()
        self._finish(kill=False, error=error)

    def _next_values(self) -> list[Any] | None:
        """The values of the next chunk (may be empty), or ``None`` at the end."""
        if self._pending_error is not None:
            err, self._pending_error = self._pending_error, None
            raise err
        if self._done:
            return None
        self._top_up()
        entry = self._wait()
        if entry is None:
            self._finish(kill=False)
            return None
        return self._decode(entry)

    def _wait(self) -> Entry | None:
        job = self._job
        deadline = self._deadline
        if self._per_item and self._timeout is not None:
            deadline = time.monotonic() + self._timeout
        core = self._core
        with core.cv:
            while True:
                if job.fatal is not None:
                    raise job.fatal
                if job.ordered:
                    entry = job.ordered_results.pop(self._consumed_seq, None)
                else:
                    entry = job.unordered_results.popleft() if job.unordered_results else None
                if entry is not None:
                    self._consumed_seq += 1
                    self._chunks_consumed += 1
                    return entry
                if self._source is None and self._chunks_consumed == self._seq:
                    return None
                if job.closed:  # pragma: no cover - finished by another thread
                    raise ProcessError(f"Pool.{self._name}: this call was cancelled")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                core.cv.wait(remaining)
        self._finish(kill=True)
        raise self._timeout_error("the workers running it were stopped")

    def _decode(self, entry: Entry) -> list[Any]:
        chunk = entry.chunk
        msg = entry.message
        try:
            values, error = wire.loads(msg.payload, msg.buffers)
        except Exception as e:
            raise ProcessError(
                f"Pool.{self._name}: the results of items {chunk.start}..{chunk.start + len(chunk.items) - 1} "
                f"could not be deserialized in the parent: {type(e).__name__}: {e}"
            ) from e
        n = len(values)
        self._items_consumed += n + (1 if error is not None else 0)
        if n:
            self._progress.update(self._items_consumed, n)
        if error is not None:
            self._pending_error = self._rebuild_error(chunk.start, chunk.items, error, "parent")
        elif self._source is None and self._chunks_consumed == self._seq:
            self._finish(kill=False)
        return values

    def _finish(self, *, kill: bool, error: BaseException | None = None) -> None:
        if self._done and self._job.closed:
            return
        self._done = True
        self._source = None
        self._progress.close()
        self._core.finish(self._job, kill=kill, error=error)

    def close(self) -> None:
        """Stop early: the rest of the input is not read, pending work is cancelled."""
        if not self._job.closed:
            self._ready.clear()
            self._finish(kill=False)

    def __del__(self) -> None:
        # Lock-free: may run inside any thread while it holds the core lock.
        job = getattr(self, "_job", None)
        if job is not None and not job.closed:
            job.abandoned = True
            self._core.wake()


class _Runner(Protocol):
    """One call in progress: the local ``_Run`` or a backend's (e.g. Dask's)."""

    def __next__(self) -> Any: ...
    def collect(self) -> list[Any]: ...
    def close(self) -> None: ...


class _ResultIterator(Iterator[Any]):
    """What ``imap``/``unordered_imap`` return: an iterator you may ``close()`` early."""

    def __init__(self, run: _Runner) -> None:
        self._run = run

    def __iter__(self) -> _ResultIterator:
        return self

    def __next__(self) -> Any:
        return next(self._run)

    def close(self) -> None:
        self._run.close()

    def __enter__(self) -> _ResultIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _IterMethod:
    """``pool.imap`` / ``pool.unordered_imap``: call it for an iterator; with
    ``.background()``/``.asynced()`` the results are collected into a list."""

    __slots__ = ("_ordered", "_owner", "_timeout")

    def __init__(self, owner: _Mapper, ordered: bool, timeout: float | None = None) -> None:
        self._owner = owner
        self._ordered = ordered
        self._timeout = timeout

    @property
    def _name(self) -> str:
        return "imap" if self._ordered else "unordered_imap"

    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *, progress: Progress = None) -> _ResultIterator:
        return self._owner._iterate(self._name, fn_or_process, iterable, self._ordered, self._timeout, progress)

    def timeout(self, seconds: float) -> _IterMethod:
        """Give up when the next result takes longer than ``seconds`` (``ResultTimeoutError``)."""
        return _IterMethod(self._owner, self._ordered, _check_timeout(self._name, seconds))

    def _collecting(self) -> ModifiedCall[list[Any]]:
        owner, name, ordered = self._owner, self._name, self._ordered

        def collect(fn_or_process: Any, iterable: Iterable[Any], *, progress: Progress = None,
                    _sk_timeout: float | None = None) -> list[Any]:
            return list(owner._iterate(name, fn_or_process, iterable, ordered, _sk_timeout, progress))

        return ModifiedCall(collect, name, timeout=self._timeout)

    def background(self) -> ModifiedCall[list[Any]]:
        """Run on a background thread; calling returns a Future whose result is a list."""
        return self._collecting().background()

    def asynced(self) -> ModifiedCall[list[Any]]:
        """Calling returns a coroutine whose result is a list."""
        return self._collecting().asynced()

    def __repr__(self) -> str:
        suffix = "" if self._timeout is None else f".timeout({self._timeout})"
        return f"<{self._name}{suffix}>"


class _Mapper:
    """The four map methods, shared by ``Pool`` and ``pool.star()``."""

    _star = False

    def _pool(self) -> Pool:
        raise NotImplementedError

    @modifiable
    def map(self, fn_or_process: Any, iterable: Iterable[Any], *, progress: Progress = None,
            _sk_timeout: float | None = None) -> list[Any]:
        """Apply ``fn_or_process`` to every item; the list of results in input order.

        ``.timeout(s)`` bounds the whole call.
        """
        return (self._pool()._run("map", fn_or_process, iterable, self._star, True, True, _sk_timeout,
                                      False, progress).collect())

    @modifiable
    def unordered_map(self, fn_or_process: Any, iterable: Iterable[Any], *, progress: Progress = None,
                      _sk_timeout: float | None = None) -> list[Any]:
        """Like ``map``, but the list is in completion order."""
        return (self._pool()._run("unordered_map", fn_or_process, iterable, self._star, False, True,
                                      _sk_timeout, False, progress).collect())

    @property
    def imap(self) -> _IterMethod:
        """Iterator over results in input order; input read lazily. ``.timeout(s)`` is per result."""
        return _IterMethod(self, True)

    @property
    def unordered_imap(self) -> _IterMethod:
        """Iterator over results in completion order; input read lazily. ``.timeout(s)`` is per result."""
        return _IterMethod(self, False)

    def _iterate(self, name: str, fn: Any, iterable: Iterable[Any], ordered: bool, timeout: float | None,
                 progress: Progress) -> _ResultIterator:
        return _ResultIterator(self._pool()._run(name, fn, iterable, self._star, ordered, False, timeout, True,
                                                 progress))


class _StarView(_Mapper):
    """``pool.star()``: the same methods, with tuple items unpacked as arguments."""

    _star = True

    def __init__(self, pool: Pool) -> None:
        self.__pool = pool

    def _pool(self) -> Pool:
        return self.__pool

    def __repr__(self) -> str:
        return f"{self.__pool!r}.star()"


class Pool(_Mapper):
    """A pool of long-lived worker processes.

    ``Pool(workers=None, *, progress=False)``: ``workers`` defaults to the
    number of CPUs. ``progress=True`` shows a tqdm bar (install
    ``sk-processing[progress]``; silent when stderr is not a terminal);
    ``progress=callable`` is called as ``callable(done, total)`` in the calling
    thread (``total`` is ``None`` for inputs without ``len``). Every map method
    also takes ``progress=`` to override the pool's default for one call.

    Workers start on first use and are restarted on demand, so the pool stays
    usable after ``close()``, ``terminate()``, a crashed worker or a timeout.

    ``backend=`` runs the same calls on a cluster instead of local processes:
    a ``DaskBackend``, or directly a ``distributed.Client``, a scheduler
    address (``"tcp://host:8786"``) or a Dask cluster object (install
    ``sk-processing[dask]``). ``workers`` then defaults to the cluster's
    thread count, read at each call.
    """

    _backend: Any = None

    def __init__(self, workers: int | None = None, *, progress: Progress = False, backend: Any = None) -> None:
        self._workers_given = workers
        if backend is not None:
            from suitkaise.processing._dask import DaskBackend

            self._backend = DaskBackend.wrap(backend)
        if workers is None:
            workers = os.cpu_count() or 1
        elif isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"Pool(workers=...) must be an int or None, got {type(workers).__name__} {workers!r}")
        elif workers < 1:
            raise ValueError(f"Pool(workers=...) must be at least 1, got {workers}")
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise TypeError(
                "Pool(progress=...) must be True/False or a callable(done, total), "
                f"got {type(progress).__name__}"
            )
        self._workers = workers
        self._progress_default = progress
        self._core = Core(workers)
        self._finalizer = weakref.finalize(self, Core.dispose, self._core)

    @property
    def workers(self) -> int:
        """Number of worker processes (with a cluster backend: its worker threads, unless given)."""
        if self._backend is not None and self._workers_given is None:
            return int(self._backend.total_threads())
        return self._workers

    def _pool(self) -> Pool:
        return self

    def star(self) -> _StarView:
        """The map methods with tuple items unpacked: ``fn(*item)`` (other items are passed whole)."""
        return _StarView(self)

    def _current_core(self) -> Core:
        if self._core.pid != os.getpid():
            # used in a forked child: the workers belong to the parent; start afresh
            self._core = Core(self._workers)
            self._finalizer = weakref.finalize(self, Core.dispose, self._core)
        return self._core

    def _run(self, name: str, fn: Any, iterable: Iterable[Any], star: bool, ordered: bool, eager: bool,
             timeout: float | None, per_item: bool, progress: Progress) -> _Runner:
        if timeout is not None:
            timeout = _check_timeout(name, timeout)
        if self._backend is not None:
            return self._backend.run(
                name, fn, iterable, star=star, ordered=ordered, eager=eager, timeout=timeout, per_item=per_item,
                progress=self._progress_default if progress is None else progress, workers=self._workers_given,
            )
        return _Run(
            self._current_core(), self._workers, name, fn, iterable, star=star, ordered=ordered,
            eager=eager, timeout=timeout, per_item=per_item,
            progress=self._progress_default if progress is None else progress,
        )

    def close(self) -> None:
        """Wait for the work already submitted, then stop the workers (they restart on demand)."""
        if self._backend is not None:
            self._backend.close()
            return
        self._current_core().close()

    def terminate(self) -> None:
        """Kill the workers now; calls in progress raise ``ProcessError``."""
        if self._backend is not None:
            self._backend.terminate()
            return
        self._current_core().terminate()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

    def __reduce__(self) -> tuple[Any, ...]:
        # Only the configuration travels: the copy is a new, working pool.
        progress = self._progress_default if isinstance(self._progress_default, bool) else False
        if self._backend is not None:
            return (Pool, (self._workers_given,), {"_progress_default": progress, "_backend": self._backend})
        return (Pool, (self._workers,), {"_progress_default": progress})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._progress_default = state.get("_progress_default", False)
        if state.get("_backend") is not None:
            self._backend = state["_backend"]

    def __repr__(self) -> str:
        if self._backend is not None:
            workers = "" if self._workers_given is None else f"workers={self._workers_given}, "
            return f"Pool({workers}backend={self._backend!r})"
        return f"Pool(workers={self._workers})"

