"""``Pool.submit``: one call, one ``concurrent.futures.Future``, on the pool's workers.

::

    caller thread                    manager thread (_pool_core)          settle thread (one per Pool)
    ─────────────                    ───────────────────────────          ────────────────────────────
    submit(fn, *args, **kwargs)
     └─ Chunk of one (args, kwargs)
        on fn's Job (made once per
        function, kept while used) ─► TASK ─► worker ─► RESULT
                                      Entry ─► job.on_entry ─► queue ───► decode, set the Future's
                                      (under the lock: no user code)      result or exception (its
                                                                          callbacks run here)
    future.cancel(): queued → unqueued; running → its worker is killed and replaced (core.cancel)

A function's submissions share one ``Job``, so its code reaches each worker
once, not once per call. Each submission fails alone: a raised exception, a
per-item timeout or a crashed worker settles only its own Future.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED
from typing import Any, TypeVar

from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._chunk import FLAG_KWARGS, FLAG_TIMED
from suitkaise.processing._errors import ItemError, ProcessError, short_repr
from suitkaise.processing._pool_call import rebuild_error
from suitkaise.processing._pool_core import Chunk, Core, Entry, Job
from suitkaise.processing._pool_local import decode_entry

__all__ = ["Submitter", "TaskFuture"]

R = TypeVar("R")

_KEEP_JOBS = 32  # functions whose Job (and loaded code in the workers) is kept between submissions


class TaskFuture(Future[R]):
    """The Future of one ``Pool.submit`` call.

    Unlike ``concurrent.futures``, ``cancel()`` also stops a task that is already
    running: its worker is killed and replaced, and the pool goes on.
    ``add_error_callback(fn)`` calls ``fn(exception)`` only if the task failed.
    """

    def __init__(self, core: Core | None = None, chunk: Chunk | None = None, fn: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self._core = core  # None: a cluster backend's task (cancel() as concurrent.futures)
        self._chunk = chunk
        self._fn = getattr(fn, "__qualname__", None) or short_repr(fn)

    def cancel(self) -> bool:
        """Cancel the task, running or not; False if it already finished."""
        if self._core is None or self._chunk is None:
            return super().cancel()
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
        if not self._core.cancel(self._chunk):
            with self._condition:  # finished meanwhile: the settle thread sets the result
                if self._state != FINISHED:
                    self._condition.wait(5.0)
                return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)
        with self._condition:
            if self._state == FINISHED:
                return False
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:  # as_completed() and wait() see it now
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]  # concurrent.futures' own, as in Future.cancel
        return True

    def add_error_callback(self, fn: Callable[[BaseException], object]) -> None:
        """Call ``fn(exception)`` when the task fails (not when it succeeds or is cancelled)."""

        def on_done(future: Future[R]) -> None:
            if not future.cancelled() and (error := future.exception()) is not None:
                fn(error)

        self.add_done_callback(on_done)

    def __repr__(self) -> str:
        return f"<TaskFuture {self._state.lower()} {self._fn}()>"


class _Shown:
    """How a submission appears in error messages: ``fn(1, x=2)``."""

    __slots__ = ("args", "fn", "kwargs")
    _plain_repr = True  # short_repr: no type name in front

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__
        shown = [short_repr(a) for a in self.args] + [f"{k}={short_repr(v)}" for k, v in self.kwargs.items()]
        return f"{name}({', '.join(shown)})"


class Submitter:
    """The submissions of one ``Core``: a Job per (function, options), futures, a settle thread."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._jobs: OrderedDict[tuple[int, float | None, int], tuple[Any, Job, itertools.count[int]]] = OrderedDict()
        self._futures: dict[tuple[int, int], TaskFuture[Any]] = {}
        self._queue: queue.SimpleQueue[Entry | BaseException | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(
        self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any], item_timeout: float | None,
        retries: int,
    ) -> TaskFuture[R]:
        if not callable(fn):
            raise TypeError(f"Pool.submit: the first argument must be a function, got {type(fn).__name__} {short_repr(fn)}")
        item = (args, kwargs)
        try:
            payload, buffers = wire.dumps([item])
        except Exception as e:
            e.add_note(f"Pool.submit: the arguments of {short_repr(fn)} could not be serialized to send them to a worker")
            raise
        with self._lock:
            job, seq = self._job_for(fn, item_timeout, retries)
            chunk = Chunk(job, seq, seq, [_Shown(fn, args, kwargs)], payload, buffers)
            future: TaskFuture[R] = TaskFuture(self._core, chunk, fn)
            self._futures[(job.id, seq)] = future
            if self._thread is None:
                self._thread = threading.Thread(target=self._settle_loop, name="sk-pool-settle", daemon=True)
                self._thread.start()
        self._core.submit(job, chunk)
        return future

    def _job_for(self, fn: Callable[..., Any], item_timeout: float | None, retries: int) -> tuple[Job, int]:
        key = (id(fn), item_timeout, retries)
        found = self._jobs.get(key)
        if found is not None and found[0] is fn and found[1].fatal is None and not found[1].closed:
            self._jobs.move_to_end(key)
            return found[1], next(found[2])
        try:
            fn_payload, fn_buffers = wire.dumps(fn)
        except Exception as e:
            e.add_note(f"Pool.submit: {short_repr(fn)} could not be serialized to send it to the workers")
            raise
        flags = FLAG_KWARGS | (FLAG_TIMED if item_timeout is not None else 0)
        job = Job(self._core.new_job_id(), "submit", fn_payload, fn_buffers, flags, ordered=False,
                  item_timeout=item_timeout, retries=retries, keep_going=True, on_entry=self._on_entry)
        self._core.add_job(job)
        self._jobs[key] = (fn, job, itertools.count())
        self._evict()
        return job, next(self._jobs[key][2])

    def _evict(self) -> None:
        """Forget the least recently used functions' jobs once none of their tasks is pending."""
        while len(self._jobs) > _KEEP_JOBS:
            for key, (_fn, job, _seqs) in self._jobs.items():
                if not any(k[0] == job.id for k in self._futures):
                    del self._jobs[key]
                    self._core.finish(job)
                    break
            else:
                return

    def _on_entry(self, entry: Entry | BaseException) -> None:
        # manager thread, under the core's lock: hand over, nothing else
        self._queue.put(entry)

    def _settle_loop(self) -> None:
        while True:
            got = self._queue.get()
            if got is None:
                return
            if isinstance(got, Entry):
                self._settle(got)
            else:
                self._fail_job(got)

    def _settle(self, entry: Entry) -> None:
        chunk = entry.chunk
        with self._lock:
            future = self._futures.pop((chunk.job.id, chunk.seq), None)
        if future is None or future.done():
            return
        try:
            values, error, failures = decode_entry(entry, "Pool.submit")
            if error is not None:
                raise rebuild_error("Pool.submit", chunk.start, chunk.items, error, "parent")
            if failures:
                failure = failures[0]
                raise failure if isinstance(failure, ItemError) else rebuild_error(
                    "Pool.submit", chunk.start, chunk.items, failure, "parent")
            result = values[0]
        except BaseException as e:
            self._set(future, e, None)
        else:
            self._set(future, None, result)

    def _fail_job(self, error: BaseException) -> None:
        """The whole pool failed (``terminate()``): every pending future of every job gets ``error``."""
        with self._lock:
            futures = list(self._futures.values())
            self._futures.clear()
            self._jobs.clear()
        for future in futures:
            self._set(future, error, None)

    @staticmethod
    def _set(future: TaskFuture[Any], error: BaseException | None, result: Any) -> None:
        try:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        except Exception:  # cancelled meanwhile (InvalidStateError)
            pass

    def close(self) -> None:
        """Stop the settle thread (pending futures fail)."""
        self._fail_job(ProcessError("Pool: the pool was closed before this task ran"))
        if self._thread is not None:
            self._queue.put(None)
