"""``Pool.submit``: one call, one ``concurrent.futures.Future``, on the pool's workers.

::

    caller thread                    manager thread (_pool_core)          settle thread (one per Pool)
    ─────────────                    ───────────────────────────          ────────────────────────────
    submit(fn, *args, **kwargs)
     └─ (args, kwargs) serialized,
        joins fn's Job's last chunk
        if not sent yet (else a new
        one: core.submit_item)      ─► TASK (the chunk's frames) ─► worker ─► RESULT
                                      Entry ─► job.on_entry ─► queue ───► decode, set each Future's
                                      (under the lock: no user code)      result or exception (their
                                                                          callbacks run here)
    future.cancel(): unsent → skipped; running → its worker is killed and replaced (core.cancel)

A function's submissions share one ``Job``, so its code reaches each worker
once, not once per call; submissions made while the workers are busy share a
chunk (one message each way for many of them). Each submission fails alone: a
raised exception, a per-item timeout or a crashed worker settles only its own
Future (``errors="return"`` semantics, one future per item).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED
from typing import Any, TypeVar

from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._chunk import FLAG_KEEP_GOING, FLAG_KWARGS, FLAG_TIMED
from suitkaise.processing._errors import ItemError, ProcessError, short_repr
from suitkaise.processing._pool_call import rebuild_error
from suitkaise.processing._pool_core import Chunk, Core, Entry, Job
from suitkaise.processing._pool_local import decode_entry

__all__ = ["Submitter", "TaskFuture"]

R = TypeVar("R")

_KEEP_JOBS = 32  # functions whose Job (and loaded code in the workers) is kept between submissions
_BATCH = 256  # most submissions one chunk gathers while it waits to be sent


class TaskFuture(Future[R]):
    """The Future of one ``Pool.submit`` call.

    Unlike ``concurrent.futures``, ``cancel()`` also stops a task that is already
    running: its worker is killed and replaced, and the pool goes on.
    ``add_error_callback(fn)`` calls ``fn(exception)`` only if the task failed.
    """

    def __init__(self, fn: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self._core: Core | None = None  # None: a cluster backend's task (cancel() as concurrent.futures)
        self._chunk: Chunk | None = None
        self._offset = 0
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
        if not self._core.cancel(self._chunk, self._offset):
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

    def running(self) -> bool:
        """True while a worker runs the task (``concurrent.futures`` states cannot say so: the
        pool does not tell each future when its task starts)."""
        if self._core is None or self._chunk is None:
            return super().running()
        with self._condition:
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED):
                return False
        return self._core.is_running(self._chunk, self._offset)

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
        self._jobs: OrderedDict[tuple[int, float | None, int], tuple[Any, Job]] = OrderedDict()
        self._futures: dict[tuple[int, int], TaskFuture[Any]] = {}  # (job, index) -> its future
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
            payload, buffers = wire.dumps(item)
        except Exception as e:
            e.add_note(f"Pool.submit: the arguments of {short_repr(fn)} could not be serialized to send them to a worker")
            raise
        future: TaskFuture[R] = TaskFuture(fn)
        with self._lock:
            job = self._job_for(fn, item_timeout, retries)
            if self._thread is None:
                self._thread = threading.Thread(target=self._settle_loop, name="sk-pool-settle", daemon=True)
                self._thread.start()
            # under our lock: the index the core gives is the key the settle thread looks for
            chunk, offset = self._core.submit_item(job, _Shown(fn, args, kwargs), payload, buffers, _BATCH)
            future._core, future._chunk, future._offset = self._core, chunk, offset
            self._futures[(job.id, chunk.start + offset)] = future
        return future

    def _job_for(self, fn: Callable[..., Any], item_timeout: float | None, retries: int) -> Job:
        key = (id(fn), item_timeout, retries)
        found = self._jobs.get(key)
        if found is not None and found[0] is fn and found[1].fatal is None and not found[1].closed:
            self._jobs.move_to_end(key)
            return found[1]
        try:
            fn_payload, fn_buffers = wire.dumps(fn)
        except Exception as e:
            e.add_note(f"Pool.submit: {short_repr(fn)} could not be serialized to send it to the workers")
            raise
        flags = FLAG_KWARGS | FLAG_KEEP_GOING | (FLAG_TIMED if item_timeout is not None else 0)
        job = Job(self._core.new_job_id(), "submit", fn_payload, fn_buffers, flags, ordered=False,
                  item_timeout=item_timeout, retries=retries, keep_going=True, on_entry=self._on_entry)
        self._core.add_job(job)
        self._jobs[key] = (fn, job)
        self._evict()
        return job

    def _evict(self) -> None:
        """Forget the least recently used functions' jobs once none of their tasks is pending."""
        while len(self._jobs) > _KEEP_JOBS:
            for key, (_fn, job) in self._jobs.items():
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
        job_id = chunk.job.id
        with self._lock:
            futures = [self._futures.pop((job_id, chunk.start + i), None) for i in range(len(chunk.items))]
        try:
            values, error, failures = decode_entry(entry, "Pool.submit", keep_going=True)
        except BaseException as e:  # the results could not be read: every future of the chunk fails
            for future in futures:
                if future is not None:
                    self._set(future, e, None)
            return
        failed: dict[int, BaseException] = {}
        for failure in failures:
            if isinstance(failure, ItemError):
                failed[failure.index - chunk.start] = failure
            else:
                failed[failure.item - chunk.start] = rebuild_error("Pool.submit", chunk.start, chunk.items, failure,
                                                                   "parent")
        if error is not None:  # not expected (submissions go on after an error), but never lost
            failed[error.item - chunk.start] = rebuild_error("Pool.submit", chunk.start, chunk.items, error, "parent")
        cancelled = chunk.cancelled  # (added under the core's lock before the worker is killed)
        for i, future in enumerate(futures):
            if future is None or future.done() or i in cancelled:
                continue  # a cancelled one: its cancel() call marks it, however late it runs
            if i in failed:
                self._set(future, failed[i], None)
            elif i < len(values):
                self._set(future, None, values[i])
            else:
                self._set(future, ProcessError(f"Pool.submit: no result came back for {chunk.items[i]!r}"), None)

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
