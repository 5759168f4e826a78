"""The engine of ``Pool``: jobs, chunks, worker processes and the manager thread.

::

    caller thread(s)                 manager thread (one per Pool)            workers
    ────────────────                 ──────────────────────────────           ──────────────
    LocalRun: pulls items,        ─► job.pending ─► plan: FN once per   ─────► socket ─► run
      serializes chunks, submits     (under lock)    worker, then TASKs        chunk
                                                     (≤ PREFETCH each)
    LocalRun: waits on cv, decodes ◄ job.results ◄── recv RESULT       ◄───── socket ◄─ RESULT
          results, raises errors                     wait([sockets, sentinels, wake pipe])
                                                     sentinel fired → crash error naming
                                                     the item, worker replaced on demand

One call's journey: ``Pool.map`` builds a ``Job`` (function serialized once)
and appends ``Chunk`` objects (items serialized by the caller, big buffers
out of band). The manager sends the function to each worker the first time it
gets a chunk of that job, then the chunks; results stream back one message per
chunk and are decoded by the caller, so the manager never runs user code. A
worker's death is seen on its process sentinel (never by waiting on a queue
alone), the chunk it was running fails with a ``ProcessError`` naming the item
and the signal or exit code, its prefetched chunk is re-queued.

Only the manager thread touches workers; ``lock`` guards jobs and the mode.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Any

from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._context import get_context
from suitkaise.processing._errors import (
    ProcessError,
    bootstrap_failure,
    check_can_start_processes,
    describe_exit,
    short_repr,
)
from suitkaise.processing._pdeathsig import preload as preload_libc
from suitkaise.processing._pool_worker import (
    PHASE_LOADING,
    PHASE_RUNNING,
    PHASE_SENDING,
    PROGRESS_SLOTS,
    worker_main,
)
from suitkaise.processing._trace import from_env

__all__ = ["Chunk", "Core", "Entry", "Job"]

PREFETCH = 2  # chunks in flight per worker: one running, one waiting in its inbox
SHORT_CHUNK = 0.05  # seconds: only chunks shorter than this are queued behind another

_RUN, _CLOSE, _TERMINATE = "run", "close", "terminate"

class Chunk:
    """Consecutive items of a job, serialized once by the caller."""

    __slots__ = ("buffers", "items", "job", "payload", "seq", "start")

    def __init__(self, job: Job, seq: int, start: int, items: list[Any], payload: bytes, buffers: list[memoryview]) -> None:
        self.job = job
        self.seq = seq
        self.start = start
        self.items = items
        self.payload = payload
        self.buffers = buffers


class Entry:
    """A chunk's result as received (decoded later by the caller)."""

    __slots__ = ("chunk", "message", "status")

    def __init__(self, chunk: Chunk, status: int, message: wire.Message) -> None:
        self.chunk = chunk
        self.status = status
        self.message = message


class Job:
    """One call of map/imap/...; shared by the caller and the manager (under ``Core.lock``)."""

    def __init__(self, job_id: int, name: str, fn_payload: bytes, fn_buffers: list[memoryview], flags: int, ordered: bool) -> None:
        self.id = job_id
        self.name = name
        self.fn_payload = fn_payload
        self.fn_buffers = fn_buffers
        self.flags = flags
        self.ordered = ordered
        self.pending: deque[Chunk] = deque()
        self.ordered_results: dict[int, Entry] = {}
        self.unordered_results: deque[Entry] = deque()
        self.inflight = 0
        self.fatal: BaseException | None = None
        self.error_seq: int | None = None  # lowest chunk whose result is an error
        self.closed = False
        self.abandoned = False  # set without the lock (from __del__)
        self.kill = False  # kill the workers running it (timeout)
        self.items_done = 0
        self.busy_time = 0.0

    def item_time(self) -> float | None:
        """Mean seconds per item measured in the workers, ``None`` before any result."""
        if self.items_done == 0:
            return None
        return self.busy_time / self.items_done

    def short_chunks(self) -> bool:
        """Measured chunks take under ``SHORT_CHUNK`` seconds (worth prefetching)."""
        per_item = self.item_time()
        return per_item is not None and bool(self.pending) and per_item * len(self.pending[0].items) < SHORT_CHUNK

    def _dispatchable(self) -> bool:
        if self.closed or self.abandoned or self.fatal is not None or not self.pending:
            return False
        return self.error_seq is None or self.pending[0].seq < self.error_seq


class _Worker:
    __slots__ = (
        "busy_since", "conn", "doomed", "fd", "inflight", "loaded", "method", "process", "progress", "retiring",
    )

    def __init__(self, process: Any, conn: Any, progress: Any, method: str) -> None:
        self.process = process
        self.method = method  # start method
        self.conn = conn
        self.fd: int = conn.fileno()
        self.progress = progress
        self.inflight: deque[Chunk] = deque()
        self.busy_since = 0.0  # when the chunk at the head of `inflight` started (about)
        self.loaded: set[int] = set()
        self.retiring = False  # announced its exit (after a MemoryError)
        self.doomed = False  # killed on purpose (timeout, terminate)


class Core:
    """State shared by a ``Pool``, its runs and its manager thread."""

    def __init__(self, size: int, context: Any = None) -> None:
        self.size = size
        self.context = context  # the Pool's context= (None: multiprocessing's default, read at each start)
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.jobs: dict[int, Job] = {}
        self.workers: list[_Worker] = []
        self.thread: threading.Thread | None = None
        self.mode = _RUN
        self._ids = itertools.count(1)
        self._rr = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._filling = False  # starting the missing workers, one per pass of the manager loop
        self.trace = from_env()  # python -m suitkaise report

    # -- called by callers -------------------------------------------------------

    def new_job_id(self) -> int:
        return next(self._ids)

    def wake(self) -> None:
        """Interrupt the manager's wait (lock-free: safe from ``__del__``)."""
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is already pending
            os.write(self._wake_w, b"x")

    def add_job(self, job: Job) -> None:
        check_can_start_processes(f"Pool.{job.name}")
        if self.trace is not None:
            self.trace.event("call", job=job.id, name=job.name)
        with self.lock:
            self.jobs[job.id] = job

    def submit(self, job: Job, chunk: Chunk) -> None:
        with self.lock:
            if job.closed:
                return
            job.pending.append(chunk)
            self._ensure_thread()
        self.wake()

    def finish(self, job: Job, *, kill: bool = False, error: BaseException | None = None) -> None:
        """The caller is done with ``job`` (completed, failed, timed out or abandoned)."""
        with self.lock:
            if job.closed:
                return
            if self.trace is not None:
                failure = error or job.fatal
                self.trace.event("call-end", job=job.id, name=job.name,
                                 error=None if failure is None else f"{type(failure).__name__}: {failure}")
            job.closed = True
            job.kill = kill and job.inflight > 0
            job.pending.clear()
            job.ordered_results.clear()
            job.unordered_results.clear()
            if not job.kill:
                self.jobs.pop(job.id, None)
        self.wake()

    def close(self) -> None:
        """Let queued work finish, then stop the workers gracefully (waits)."""
        self._stop(_CLOSE)

    def terminate(self) -> None:
        """Kill the workers now; work in flight fails with ``ProcessError``."""
        self._stop(_TERMINATE)

    def _stop(self, mode: str) -> None:
        if os.getpid() != self.pid:
            return  # a forked copy: the workers belong to the parent
        with self.lock:
            thread = self.thread
            if thread is None:
                return
            if self.mode != _TERMINATE:
                self.mode = mode
            if mode == _TERMINATE:
                for w in self.workers:  # do not wait for the manager to notice
                    w.doomed = True
                    with contextlib.suppress(Exception):
                        w.process.terminate()
        self.wake()
        if thread is not threading.current_thread():
            # close() waits for the submitted work, however long; terminate()
            # must return even if the manager were stuck (it never should be).
            thread.join(None if mode == _CLOSE else 10.0)

    def dispose(self) -> None:
        """Finalizer: terminate workers and release the wake-up pipe."""
        if os.getpid() != self.pid or self._closed:
            return
        self.terminate()
        self._closed = True
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _ensure_thread(self) -> None:
        if self.thread is None:
            self.mode = _RUN
            self.thread = threading.Thread(target=self._main, name="sk-pool-manager", daemon=True)
            self.thread.start()

    # -- manager thread ----------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # a bug here must not leave callers waiting forever
            with self.lock:
                workers, self.workers = self.workers, []
                self.thread = None
                error = ProcessError(f"Pool: internal error in the manager thread: {e!r}")
                error.__cause__ = e
                self._fail_all(error)
            self._kill(workers)
            # Not re-raised: the callers get the error; threading's excepthook would only
            # print an internal traceback on the user's stderr.

    def _loop(self) -> None:
        while True:
            with self.lock:
                self._reap()
                if self.mode == _TERMINATE or (self.mode == _CLOSE and not self._has_work()):
                    graceful = self.mode == _CLOSE
                    workers, self.workers = self.workers, []
                    self.thread = None
                    if not graceful:
                        self._fail_all(ProcessError("Pool.terminate() was called while this call was running"))
                    break
                more = self._spawn_if_needed()
                plan = self._plan()
                by_fd: dict[int, _Worker] = {}
                for w in self.workers:
                    by_fd[w.fd] = w
                    by_fd[w.process.sentinel] = w
            for _worker, send in plan:
                try:
                    send()
                except OSError:
                    pass  # the worker died; its sentinel tells us below
            ready = wait([self._wake_r, *by_fd], 0 if more else None)
            dead: list[_Worker] = []
            for fd in ready:
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        while os.read(self._wake_r, 4096):
                            pass
                    continue
                w = by_fd[fd]  # type: ignore[index]
                if w in dead:
                    continue
                if fd == w.fd:
                    try:
                        msg = wire.recv_message(w.fd)
                    except (EOFError, OSError):
                        dead.append(w)
                        continue
                    self._on_result(w, msg)
                else:
                    dead.append(w)
            for w in dead:
                self._on_death(w)
        if graceful:
            self._stop_workers(workers)
        else:
            self._kill(workers)

    def _has_work(self) -> bool:
        return any(j._dispatchable() for j in self.jobs.values()) or any(w.inflight for w in self.workers)

    def _fail_all(self, err: ProcessError) -> None:
        for job in self.jobs.values():
            if not job.closed and job.fatal is None and (job.pending or job.inflight):
                job.fatal = err
            job.pending.clear()
            job.inflight = 0
        self.cv.notify_all()

    def _reap(self) -> None:
        """Forget finished/abandoned jobs; kill workers running a timed-out job."""
        for job in list(self.jobs.values()):
            if job.abandoned and not job.closed:
                job.closed = True
                job.pending.clear()
                job.ordered_results.clear()
                job.unordered_results.clear()
            if not job.closed:
                continue
            if job.kill:
                for w in self.workers:
                    if not w.doomed and any(c.job is job for c in w.inflight):
                        w.doomed = True
                        with contextlib.suppress(Exception):
                            w.process.kill()
                job.kill = False
            del self.jobs[job.id]

    def _spawn_if_needed(self) -> bool:
        """Start the missing workers when work waits, one per pass of the loop: the first
        gets its chunk before the next fork (~1-2 ms each). True while more are missing
        (the loop then comes straight back instead of waiting)."""
        if len(self.workers) >= self.size:
            self._filling = False
            return False
        if not self._filling and not any(j._dispatchable() for j in self.jobs.values()):
            return False
        ctx = get_context(self.context)
        if len(self.workers) < self.size:
            parent, child = ctx.Pipe(duplex=True)
            progress = ctx.RawArray("q", PROGRESS_SLOTS)
            method = ctx.get_start_method()
            if method == "fork":
                preload_libc()
            # fork: the worker inherits our end of its own socket and of its siblings'
            # (and the wake pipe); it closes them, so that our death gives it EOF.
            close_fds = [parent.fileno(), *(w.fd for w in self.workers), self._wake_r, self._wake_w] if method == "fork" else []
            # forkserver: the worker's parent is the fork server (its pid is not ours).
            ppid = 0 if method == "forkserver" else os.getpid()
            process = ctx.Process(
                target=worker_main, args=(child, progress, close_fds, ppid), name="sk-pool-worker", daemon=True
            )
            try:
                process.start()
            finally:
                child.close()
            if self.trace is not None:
                self.trace.event("worker", worker=process.pid)
            self.workers.append(_Worker(process, parent, progress, method))
        self._filling = len(self.workers) < self.size
        return self._filling

    def _plan(self) -> list[tuple[_Worker, Any]]:
        """Decide what to send (under the lock); sending happens outside it."""
        plan: list[tuple[_Worker, Any]] = []
        jobs = [j for j in self.jobs.values() if j._dispatchable()]
        for w in self.workers:
            for jid in [j for j in w.loaded if j not in self.jobs]:
                w.loaded.discard(jid)
                plan.append((w, _sender(w.fd, wire.DROP, job=jid)))
        # First every idle worker gets a chunk; then, for short chunks only, a
        # second one to hide the round trip. A long chunk is never queued behind
        # another one: an idle worker could not take it back.
        now = time.monotonic()
        for depth in range(PREFETCH):
            for w in self.workers:
                if w.retiring or w.doomed or len(w.inflight) > depth or not jobs:
                    continue
                if depth > 0 and now - w.busy_since > SHORT_CHUNK:
                    # This worker's current chunk is already slower than "short": whatever
                    # we queue behind it could wait for it while another worker sits idle.
                    continue
                # Prefetch only short chunks, and never the tail of a job (no more chunks
                # left than workers): there a queued chunk could wait behind a slow one
                # while another worker goes idle.
                candidates = jobs if depth == 0 else [
                    j for j in jobs if j.short_chunks() and len(j.pending) > len(self.workers)
                ]
                if not candidates:
                    continue
                self._rr = (self._rr + 1) % len(candidates)
                job = candidates[self._rr]
                chunk = job.pending.popleft()
                job.inflight += 1
                if not job._dispatchable():
                    jobs.remove(job)
                if not w.inflight:
                    w.busy_since = now
                w.inflight.append(chunk)
                if job.id not in w.loaded:
                    w.loaded.add(job.id)
                    plan.append((w, _sender(w.fd, wire.FN, flags=job.flags, job=job.id,
                                            payload=job.fn_payload, buffers=job.fn_buffers)))
                plan.append((w, _sender(w.fd, wire.TASK, job=job.id, seq=chunk.seq, a=chunk.start,
                                        payload=chunk.payload, buffers=chunk.buffers)))
        return plan

    def _on_result(self, w: _Worker, msg: wire.Message) -> None:
        with self.lock:
            if not w.inflight or w.inflight[0].seq != msg.seq or w.inflight[0].job.id != msg.job:
                raise RuntimeError(f"pool protocol error: unexpected result for job {msg.job} chunk {msg.seq}")
            chunk = w.inflight.popleft()
            w.busy_since = time.monotonic()  # the prefetched chunk (if any) starts now
            job = chunk.job
            job.inflight -= 1
            if msg.flags == wire.RETIRE:
                # the worker exits now without running what it prefetched
                w.retiring = True
                self._requeue(w)
            if job.closed or job.fatal is not None:
                return
            job.items_done += max(msg.a, 1)
            job.busy_time += msg.elapsed
            if msg.flags != wire.OK:
                if job.error_seq is None or chunk.seq < job.error_seq:
                    job.error_seq = chunk.seq
                job.pending = deque(c for c in job.pending if c.seq < chunk.seq)
            entry = Entry(chunk, msg.flags, msg)
            if job.ordered:
                job.ordered_results[chunk.seq] = entry
            else:
                job.unordered_results.append(entry)
            self.cv.notify_all()

    def _requeue(self, w: _Worker) -> None:
        while w.inflight:
            chunk = w.inflight.pop()
            chunk.job.inflight -= 1
            if not chunk.job.closed and chunk.job.fatal is None:
                chunk.job.pending.appendleft(chunk)

    def _on_death(self, w: _Worker) -> None:
        # Read what it sent before dying (e.g. the RESULT announcing its retirement).
        while True:
            try:
                readable = select.select([w.fd], [], [], 0)[0]
                if not readable:
                    break
                msg = wire.recv_message(w.fd)
            except (EOFError, OSError, ValueError):
                break
            self._on_result(w, msg)
        w.process.join(1.0)
        if w.process.exitcode is None:  # connection lost but still running: make sure it is gone
            w.process.kill()
            w.process.join(1.0)
        code = w.process.exitcode
        if self.trace is not None and not w.doomed and not w.retiring:
            running = w.progress[1] if w.progress[2] == PHASE_RUNNING else None
            self.trace.event("death", worker=w.process.pid, item=running, job=w.progress[0],
                             exit=describe_exit(code))
        with self.lock:
            if w in self.workers:
                self.workers.remove(w)
            if w.inflight and not w.retiring and not w.doomed:
                chunk = w.inflight.popleft()
                chunk.job.inflight -= 1
                job = chunk.job
                if not job.closed and job.fatal is None:
                    job.fatal = ProcessError(self._crash_message(w, chunk, code))
                    job.pending.clear()
            elif w.doomed:
                # killed because its job timed out: drop that job's chunks, keep the others
                kept: deque[Chunk] = deque()
                for c in w.inflight:
                    if c.job.closed:
                        c.job.inflight -= 1
                    else:
                        kept.append(c)
                w.inflight = kept
            self._requeue(w)
            self.cv.notify_all()
        with contextlib.suppress(Exception):
            w.conn.close()
        with contextlib.suppress(Exception):
            w.process.close()

    def _crash_message(self, w: _Worker, chunk: Chunk, code: int | None) -> str:
        job_id, index, phase, booted = w.progress[0], w.progress[1], w.progress[2], w.progress[3]
        end = chunk.start + len(chunk.items)
        who = f"Pool.{chunk.job.name}: the worker process (pid {w.process.pid})"
        if not booted and code is not None and code > 0 and w.method != "fork":
            return bootstrap_failure(who, w.method, code) + " The rest of this call was cancelled."
        if job_id == chunk.job.id and phase == PHASE_RUNNING and chunk.start <= index < end:
            where = f"while running item {index} ({short_repr(chunk.items[index - chunk.start])})"
        elif job_id == chunk.job.id and phase == PHASE_SENDING:
            where = f"while sending back the results of items {chunk.start}..{end - 1}"
        elif phase == PHASE_LOADING and job_id == chunk.job.id:
            where = (f"while loading the function or items {chunk.start}..{end - 1} "
                     f"(first item: {short_repr(chunk.items[0])})")
        else:
            where = (f"before running item {chunk.start} ({short_repr(chunk.items[0])}) "
                     "(it had not started the task yet)")
        return (f"{who} died {where}: "
                f"it {describe_exit(code)}. The worker is replaced; the rest of this call was cancelled "
                "(items already running on other workers finish, their results are dropped).")

    def _stop_workers(self, workers: list[_Worker]) -> None:
        for w in workers:
            with contextlib.suppress(OSError):
                wire.send_message(w.fd, wire.STOP)
        for w in workers:
            w.process.join(5.0)
        self._kill(workers)

    def _kill(self, workers: list[_Worker]) -> None:
        for w in workers:
            if w.process.exitcode is None:
                with contextlib.suppress(Exception):
                    w.process.terminate()
        for w in workers:
            w.process.join(1.0)
            if w.process.exitcode is None:
                with contextlib.suppress(Exception):
                    w.process.kill()
                w.process.join(1.0)
            with contextlib.suppress(Exception):
                w.conn.close()
            with contextlib.suppress(Exception):
                w.process.close()


def _sender(fd: int, kind: int, **kwargs: Any) -> Any:
    return lambda: wire.send_message(fd, kind, **kwargs)
