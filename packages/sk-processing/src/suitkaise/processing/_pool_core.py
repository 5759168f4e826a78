"""The engine of ``Pool``: jobs, chunks, worker processes and the manager thread.

::

    caller thread(s)                 manager thread (one per Pool)            workers
    ────────────────                 ──────────────────────────────           ──────────────
    LocalRun: pulls items,        ─► job.pending ─► plan: FN once per   ─────► socket ─► run
      serializes chunks, submits     (under lock)    worker, then TASKs        chunk
                                                     (≤ PREFETCH each)
    LocalRun: waits on cv, decodes ◄ job.results ◄── recv RESULT       ◄───── socket ◄─ RESULT
          results, raises errors                     poll(sockets, sentinels, wake pipe)
                                                     sentinel fired → crash error naming
                                                     the item, worker replaced on demand

One call's journey: ``Pool.map`` builds a ``Job`` (function serialized once)
and appends ``Chunk`` objects (items serialized by the caller, big buffers
out of band). The manager sends the function to each worker the first time it
gets a chunk of that job, then ``Part``s of chunks (a new chunk is one part:
all its items); results stream back one message per part and are decoded by
the caller, so the manager never runs user code. A worker's death is seen on
its process sentinel (never by waiting on a queue alone), and the item it was
running (named in its progress array) fails with a ``WorkerCrashedError``
naming the signal or exit code; with ``retries=`` the item is re-run alone on a
fresh worker first, and quarantined after the last retry. The items of the
part before and after it are sent again as new parts, so nothing is lost:
the same happens when a worker is killed for a per-item timeout or a
cancelled future, or retires at its limits. Its prefetched parts are re-queued.

Only the manager thread touches workers; ``lock`` guards jobs and the mode.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import IO, Any

from suitkaise.processing import _pool_life as life
from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._chunk import (
    FLAG_SKPROCESS,
    P_BOOTED,
    P_ITEM,
    P_ITEM_START,
    P_JOB,
    P_LIVES,
    P_PHASE,
    PHASE_LOADING,
    PHASE_RUNNING,
    PHASE_SENDING,
    PHASE_STARTING,
    frame,
    new_progress,
    progress_slots,
    running_item,
)
from suitkaise.processing._context import get_context, preload_in_forkserver
from suitkaise.processing._errors import (
    ItemError,
    ItemTimeoutError,
    ProcessError,
    WorkerCrashedError,
    bootstrap_failure,
    check_can_start_processes,
    describe_exit,
    short_repr,
)
from suitkaise.processing._pdeathsig import preload as preload_libc
from suitkaise.processing._pool_worker import worker_main
from suitkaise.processing._trace import from_env

__all__ = ["Chunk", "Core", "Entry", "Job", "Part"]

PREFETCH = 2  # chunks in flight per worker: one running, one waiting in its inbox
SHORT_CHUNK = 0.05  # seconds: only chunks shorter than this are queued behind another
_REMEMBERED = 64  # functions whose measured time per item a Core keeps for their next call

_RUN, _CLOSE, _TERMINATE = "run", "close", "terminate"

class Chunk:
    """Consecutive items of a job, serialized once by the caller.

    Its results arrive as one message per part run; ``done`` collects them (and the
    failures made here: timeouts, crashes) until every item up to ``limit`` is covered.
    """

    __slots__ = (
        "attempts", "buffers", "cancelled", "covered", "done", "failures", "frames", "items", "job", "last_lives",
        "limit", "payload", "resume", "seq", "start",
    )

    def __init__(self, job: Job, seq: int, start: int, items: list[Any], payload: bytes, buffers: list[memoryview]) -> None:
        self.job = job
        self.seq = seq
        self.start = start
        self.items = items
        self.payload = payload
        self.buffers = buffers
        self.limit = len(items)  # an error stops the chunk after its item (errors="raise")
        self.covered = 0  # items below `limit` accounted for
        self.done: list[tuple[int, int, wire.Message | None]] = []  # (lo, hi, RESULT) per part
        self.failures: list[ItemError] = []  # items that failed without raising
        self.attempts: dict[int, int] = {}  # offset -> workers it crashed (retries=)
        self.cancelled: set[int] = set()  # offsets of cancelled submissions (results dropped)
        # submissions: one serialized item each, framed into `payload` when the chunk is
        # first sent (until then more submissions may join it); None for map chunks
        self.frames: list[tuple[bytes, list[memoryview]]] | None = None
        # offset -> (checkpoint file, lives left): an Skprocess item to resume on a fresh worker
        self.resume: dict[int, tuple[IO[bytes], int]] = {}
        self.last_lives = 0  # the lives the crashed item had left (for its message)

    def seal(self) -> None:
        """Frame the submissions into one payload (the chunk is being sent: no more joins)."""
        if self.frames is not None:
            self.payload, self.buffers = frame(self.frames, self.cancelled)
            self.frames = None

    def release(self) -> None:
        """Close the checkpoint files of items that were to resume (the chunk is over)."""
        for f, _lives in self.resume.values():
            f.close()
        self.resume.clear()


class Part:
    """Items ``lo..hi-1`` (offsets) of a chunk: what one TASK message asks a worker to run."""

    __slots__ = ("chunk", "hi", "lo")

    def __init__(self, chunk: Chunk, lo: int, hi: int) -> None:
        self.chunk = chunk
        self.lo = lo
        self.hi = hi


class Entry:
    """A chunk's results as received (decoded later by the caller).

    ``parts``: ``(lo, message)`` in item order; ``failures``: items that failed without
    raising (``ItemError``); ``status``: ``wire.OK`` or the status of the part that
    stopped the chunk.
    """

    __slots__ = ("chunk", "failures", "parts", "status")

    def __init__(self, chunk: Chunk, status: int, parts: list[tuple[int, wire.Message]], failures: list[ItemError]) -> None:
        self.chunk = chunk
        self.status = status
        self.parts = parts
        self.failures = failures


class Job:
    """One call of map/imap/... (or the submissions of one function); shared by the caller
    and the manager (under ``Core.lock``).

    ``keep_going``: an item's failure (raised, timed out, crashed) is that item's result
    and the job goes on (``errors="return"/"skip"``, ``submit``); otherwise it stops the
    job (``errors="raise"``), except crashes quarantined after ``retries``.
    ``on_entry``: called (under the lock) with each finished chunk instead of queueing it,
    and with the error when the whole job fails (``terminate()``).
    """

    def __init__(
        self, job_id: int, name: str, fn_payload: bytes, fn_buffers: list[memoryview], flags: int, ordered: bool,
        *, item_timeout: float | None = None, retries: int = 0, keep_going: bool = False,
        on_entry: Callable[[Entry | BaseException], None] | None = None, prior: float | None = None,
    ) -> None:
        self.id = job_id
        self.name = name
        self.fn_payload = fn_payload
        self.fn_buffers = fn_buffers
        self.flags = flags
        self.ordered = ordered
        self.item_timeout = item_timeout
        self.retries = retries
        self.keep_going = keep_going
        self.on_entry = on_entry
        self.submitted = 0  # submissions so far (their indices)
        self.pending: deque[Part] = deque()
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
        self.prior = prior  # seconds per item the last call of the same function measured
        self.handoff = False  # the caller waits for the manager's next pass to send its parts
        self.fed = False  # every chunk of the call is queued (set by the caller, without the lock)

    def complete(self) -> bool:
        """Every part of every chunk has run (or been settled here): the workers need the
        function no more, even before the caller has taken the results."""
        return self.fed and not self.pending and self.inflight == 0

    def item_time(self) -> float | None:
        """Mean seconds per item measured in the workers; before the first result, what the
        previous call of the same function measured (``prior``), else ``None``."""
        if self.items_done == 0:
            return self.prior
        return self.busy_time / self.items_done

    def short_chunks(self) -> bool:
        """Measured chunks take under ``SHORT_CHUNK`` seconds (worth prefetching)."""
        per_item = self.item_time()
        if per_item is None or not self.pending:
            return False
        part = self.pending[0]
        return per_item * (part.hi - part.lo) < SHORT_CHUNK

    def _dispatchable(self) -> bool:
        if self.closed or self.abandoned or self.fatal is not None or not self.pending:
            return False
        return self.error_seq is None or self.pending[0].chunk.seq <= self.error_seq


class _Worker:
    __slots__ = (
        "busy_since", "checkpoint", "conn", "doomed", "fault", "fd", "inflight", "killed_for", "loaded", "method",
        "process", "progress", "retiring", "slot",
    )

    def __init__(self, process: Any, conn: Any, progress: Any, method: str, fault: Any, slot: int = 0) -> None:
        self.slot = slot  # worker_id() in the worker: a replacement takes the slot it frees
        self.process = process
        self.method = method  # start method
        self.conn = conn
        self.fd: int = conn.fileno()
        self.progress = progress
        self.fault = fault  # read end of the pipe its faulthandler writes to
        self.inflight: deque[Part] = deque()
        self.busy_since = 0.0  # when the part at the head of `inflight` started (about)
        self.loaded: set[int] = set()
        self.retiring = False  # announced its exit (MemoryError, limits reached)
        self.doomed = False  # killed on purpose (timeout, terminate, cancel)
        self.killed_for: tuple[str, int] | None = None  # ("timeout" | "cancel", item index): one item's fault
        self.checkpoint: IO[bytes] | None = None  # its checkpoint file for Skprocess items (made on first use)

    def fault_dump(self) -> str | None:
        """What faulthandler wrote before the worker died (its stack), if anything."""
        chunks = []
        with contextlib.suppress(OSError, ValueError):
            fd = self.fault.fileno()
            os.set_blocking(fd, False)
            while data := os.read(fd, 65536):
                chunks.append(data)
        text = b"".join(chunks).decode("utf-8", "replace").strip()
        return text or None


class Core:
    """State shared by a ``Pool``, its runs and its manager thread."""

    def __init__(
        self, size: int, context: Any = None, life_spec: life.Spec | None = None, *,
        max_items: int | None = None, max_rss: int | None = None,
    ) -> None:
        self.size = size
        self.context = context  # the Pool's context= (None: multiprocessing's default, read at each start)
        self.life = life_spec  # initializer, on_exit, auth, nested (_pool_life); None: none of them
        self.logs = life.LogPump()  # workers' log records reach the parent's handlers through it
        self.limits = (max_items, max_rss)  # max_tasks_per_worker, max_memory_per_worker
        self.pid = os.getpid()
        # An RLock: it knows its owner, so a release by a thread that does not hold it is an
        # error, never the release of another thread's hold (see ``wait``)
        self.lock = threading.RLock()
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
        self._wake_pending = False  # a wake-up byte is in the pipe, not yet drained
        self._terminated: set[int] = set()  # jobs a terminate() in progress fails
        # hash of a function's payload -> seconds per item its last call measured: a new call
        # of it prefetches and sizes its chunks from its first part on (a hint: a collision
        # only misleads the first parts; the payload itself, maybe big, is not kept)
        self._item_times: dict[int, float] = {}
        self._poller: Any = None  # the manager's select.poll over _polled (see _ready)
        self._polled: tuple[int, ...] = ()
        self.trace = from_env()  # python -m suitkaise report

    # -- called by callers -------------------------------------------------------

    def new_job_id(self) -> int:
        return next(self._ids)

    def item_time_of(self, fn_payload: bytes) -> float | None:
        """Seconds per item the last call of the function serialized as ``fn_payload`` measured."""
        return self._item_times.get(hash(fn_payload))

    def handoff(self, job: Job, timeout: float = 0.005) -> None:
        """Wait (bounded) until the manager has sent what it could of ``job``'s queued parts.

        The caller holds the GIL while it serializes chunks, and the manager needs it to send
        one: without this, the workers would wait for the whole input to be serialized first.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            if self.thread is None or job.closed:
                return
            job.handoff = True
            self.wake()
            try:
                while job.handoff and job.fatal is None and (left := deadline - time.monotonic()) > 0:
                    self.wait(left)
            finally:
                job.handoff = False

    def wait(self, timeout: float | None) -> None:
        """``cv.wait(timeout)`` for a caller inside ``with self.lock:`` (held once), which
        holds the lock again however it ends. ``Condition.wait`` releases the lock, waits, and
        takes it back in a ``finally``; a Ctrl-C raised as the release returns (before that
        ``try``) left it without the lock, and the caller's ``with`` then released a lock it
        did not hold (over a plain Lock: maybe the manager's, two threads inside)."""
        try:
            self.cv.wait(timeout)
        except BaseException:
            if not self.lock._is_owned():  # type: ignore[attr-defined]
                # (RLock's C method: not interruptible, unlike acquire())
                self.lock._acquire_restore((1, threading.get_ident()))  # type: ignore[attr-defined]
            raise

    def wake(self) -> None:
        """Interrupt the manager's wait (lock-free: safe from ``__del__``).

        A wake-up already in the pipe is enough: the manager looks at every job after
        draining it, so a burst of submissions costs one system call, not one each.
        """
        if self._wake_pending or self._closed:
            # closed: the pipe's descriptor numbers may belong to other files by now
            return
        self._wake_pending = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # BlockingIOError: a wake-up is already pending
            pass
        except BaseException:
            # Ctrl-C before the byte went in (contextlib.suppress's Python-level __enter__ was
            # such a place): a flag left set with no byte made every later wake() a no-op,
            # and the manager slept through every later call. A byte that did go in leaves
            # the flag off: the next wake() writes another, harmless.
            self._wake_pending = False
            raise

    def add_job(self, job: Job) -> None:
        check_can_start_processes(f"Pool.{job.name}")
        if self.trace is not None:
            self.trace.event("call", job=job.id, name=job.name)
        with self.lock:
            self.jobs[job.id] = job

    def submit(self, job: Job, chunk: Chunk, *, wake: bool = True) -> None:
        """Queue a chunk; ``wake=False``: the caller wakes the manager later (more follow at once)."""
        with self.lock:
            if job.closed:
                return
            job.pending.append(Part(chunk, 0, len(chunk.items)))
            self._ensure_thread()
        if wake:
            self.wake()

    def submit_item(self, job: Job, shown: Any, payload: bytes, buffers: list[memoryview], batch: int) -> tuple[Chunk, int]:
        """Queue one submission: it joins the job's last chunk if that has not been sent yet
        (and holds fewer than ``batch``), else starts a new one. Returns its chunk and offset."""
        with self.lock:
            tail = job.pending[-1] if job.pending else None
            chunk = tail.chunk if tail is not None else None
            if chunk is not None and chunk.frames is not None and len(chunk.items) < batch:
                assert tail is not None
                chunk.items.append(shown)
                chunk.frames.append((payload, buffers))
                chunk.limit += 1
                tail.hi += 1
            else:
                chunk = Chunk(job, job.submitted, job.submitted, [shown], b"", [])
                chunk.frames = [(payload, buffers)]
                job.pending.append(Part(chunk, 0, 1))
            job.submitted += 1
            self._ensure_thread()
        self.wake()
        return chunk, len(chunk.items) - 1

    def cancel(self, chunk: Chunk, offset: int) -> bool:
        """Cancel a submission: unsent, it is skipped; running, its worker is killed; queued
        in a worker behind another item, it runs there and its result is dropped.
        False when it already finished."""
        with self.lock:
            job = chunk.job
            if job.closed or offset in chunk.cancelled or any(lo <= offset < hi for lo, hi, _ in chunk.done):
                return False
            chunk.cancelled.add(offset)
            index = chunk.start + offset
            for w in self.workers:
                if w.doomed or not w.inflight or w.inflight[0].chunk is not chunk:
                    continue
                part = w.inflight[0]
                progress = w.progress
                started = progress[P_JOB] == job.id and progress[P_PHASE] in (PHASE_RUNNING, PHASE_SENDING)
                # Running it, or about to run the part it is in (sent, nothing of it started: the
                # worker may still be booting): kill that worker, the rest of the part is resent.
                # Another item of the part running: it runs on, and ours after it.
                if (part.lo <= offset < part.hi
                        and (not started or progress[P_ITEM] == index)):
                    self._kill_for(w, "cancel", index)
                break
        self.wake()
        return True

    def is_running(self, chunk: Chunk, offset: int) -> bool:
        """A worker is running this submission now (lock-free: a snapshot)."""
        index = chunk.start + offset
        for w in list(self.workers):
            inflight = w.inflight
            if (inflight and inflight[0].chunk is chunk and w.progress[P_PHASE] == PHASE_RUNNING
                    and w.progress[P_ITEM] == index and w.progress[P_JOB] == chunk.job.id):
                return True
        return False

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
            # A completed call's function was dropped from the workers when its last result
            # came in (_plan): nothing left for the manager. Waking it would hand it the GIL
            # at the end of every call (~0.1 ms before the results are returned).
            idle = not job.kill and not any(job.id in w.loaded for w in self.workers)
        if not idle:
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
                self._terminated |= set(self.jobs)  # the calls it fails: not those started after it
                for w in self.workers:  # do not wait for the manager to notice
                    w.doomed = True
                    with contextlib.suppress(Exception):
                        w.process.terminate()
        self.wake()
        if thread is not threading.current_thread():
            # close() waits for the submitted work, however long; terminate()
            # must return even if the manager were stuck (it never should be).
            deadline = None if mode == _CLOSE else time.monotonic() + 10.0
            interrupted: BaseException | None = None
            while thread.is_alive():
                # A second Ctrl-C (a terminal's, passed on by a wrapper) must not cut the
                # terminate short: the manager would still fail whatever call comes next.
                try:
                    thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                except KeyboardInterrupt as e:
                    interrupted = e
                    continue
                break
            if interrupted is not None:
                raise interrupted

    def dispose(self) -> None:
        """Finalizer: stop the workers (gracefully when idle and they have an on_exit,
        else terminate them) and release the wake-up pipe."""
        if os.getpid() != self.pid or self._closed:
            return
        with self.lock:
            idle = not self._has_work()
        if idle and self.life is not None and self.life.on_exit_name:
            self.close()  # the workers run on_exit; bounded (_stop_workers)
        else:
            self.terminate()
        self._closed = True
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _ensure_thread(self) -> None:
        if self.thread is None:
            self.mode = _RUN
            self._terminated = set()
            self.thread = threading.Thread(target=self._main, name="sk-pool-manager", daemon=True)
            self.thread.start()

    # -- manager thread ----------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
            self.logs.stop()  # the records sent before the workers stopped are delivered
            with self.lock:
                # Calls that started while terminate() was stopping us were not its: they
                # get a manager of their own (and fresh workers).
                if self.thread is None and any(j._dispatchable() for j in self.jobs.values()):
                    self._ensure_thread()
        except BaseException as e:  # a bug here must not leave callers waiting forever
            with self.lock:
                workers, self.workers = self.workers, []
                self.thread = None
                error = ProcessError(f"Pool: internal error in the manager thread: {e!r}")
                error.__cause__ = e
                self._fail_all(error)
            self._kill(workers)
            self.logs.stop()
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
                        self._fail_all(ProcessError("Pool.terminate() was called while this call was running"),
                                       only=self._terminated)
                    break
                more = self._spawn_if_needed()
                plan = self._plan()
                # callers waiting for this pass (handoff): its plan has seen their parts
                handed = [j for j in self.jobs.values() if j.handoff]
                by_fd: dict[int, _Worker] = {}
                for w in self.workers:
                    by_fd[w.fd] = w
                    by_fd[w.process.sentinel] = w
            for _worker, send in plan:
                try:
                    send()
                except OSError:
                    pass  # the worker died; its sentinel tells us below
            with self.lock:
                if handed:
                    for job in handed:
                        job.handoff = False
                    self.cv.notify_all()
                check_in = 0 if more else self._enforce_item_timeouts()
            ready = self._ready((self._wake_r, *by_fd), check_in)
            dead: list[_Worker] = []
            for fd in ready:
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        while os.read(self._wake_r, 4096):
                            pass
                    # after the drain: a wake() from now on writes again (one that came
                    # between the drain and here left a byte: the next wait returns at once)
                    self._wake_pending = False
                    continue
                w = by_fd[fd]
                if w in dead:
                    continue
                if fd == w.fd:
                    try:
                        msg = wire.recv_message(w.fd)
                    except (EOFError, OSError):
                        dead.append(w)
                        continue
                    self._dispatch(w, msg)
                    del msg  # its buffers (shared memory) go with the results, not with this loop
                else:
                    dead.append(w)
            for w in dead:
                self._on_death(w)
        if graceful:
            self._stop_workers(workers)
        else:
            self._kill(workers)

    def _ready(self, fds: tuple[int, ...], timeout: float | None) -> list[int]:
        """The descriptors among ``fds`` that are readable or closed (``connection.wait``),
        waiting up to ``timeout`` seconds (``None``: no limit). One poll object serves while the
        descriptors stay the same: building a selector on every pass cost ~19 us, a poll ~1 us."""
        if fds != self._polled:
            self._poller = select.poll()
            for fd in fds:
                self._poller.register(fd, select.POLLIN)
            self._polled = fds
        ms = -1 if timeout is None else math.ceil(timeout * 1000)
        return [fd for fd, _events in self._poller.poll(ms)]

    def _enforce_item_timeouts(self) -> float | None:
        """Kill the workers whose current item is past its job's ``item_timeout``;
        seconds until the next one could be (``None``: no timed item running)."""
        soonest: float | None = None
        now = time.monotonic_ns()
        for w in self.workers:
            if w.doomed or w.retiring or not w.inflight:
                continue
            job = w.inflight[0].chunk.job
            if job.item_timeout is None:
                continue
            progress = w.progress
            left = 0.005  # not running it yet (loading): look again soon
            if progress[P_PHASE] == PHASE_RUNNING and progress[P_JOB] == job.id:
                index = progress[P_ITEM]  # read after the start: the worker writes the start first
                left = job.item_timeout - (now - progress[P_ITEM_START]) / 1e9
                if left <= 0:
                    self._kill_for(w, "timeout", index)
                    continue
            soonest = left if soonest is None else min(soonest, left)
        return soonest

    def _kill_for(self, w: _Worker, reason: str, index: int) -> None:
        """Kill one worker because of one item (its timeout, its cancelled future)."""
        w.doomed = True
        w.killed_for = (reason, index)
        with contextlib.suppress(Exception):
            w.process.kill()

    def _has_work(self) -> bool:
        return any(j._dispatchable() for j in self.jobs.values()) or any(w.inflight for w in self.workers)

    def _fail_all(self, err: ProcessError, only: set[int] | None = None) -> None:
        """Fail the running calls (``only``: those whose ids it holds)."""
        for job in self.jobs.values():
            if only is not None and job.id not in only:
                continue
            if not job.closed and job.fatal is None and (job.pending or job.inflight):
                job.fatal = err
                if job.on_entry is not None:
                    job.on_entry(err)
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
                    if not w.doomed and any(p.chunk.job is job for p in w.inflight):
                        w.doomed = True
                        with contextlib.suppress(Exception):
                            w.process.kill()
                job.kill = False
            del self.jobs[job.id]

    def _spawn_if_needed(self) -> bool:
        """Start a missing worker while work waits for one, one per pass of the loop: the
        first gets its chunk before the next fork (~1-2 ms each). A worker no part waits
        for is not started (a 1-item call on a fresh pool forks one worker, not all: the
        others would boot on the cores the first one needs, and close() would wait for
        them). True while more are missing (the loop then comes straight back instead of
        waiting)."""
        if len(self.workers) >= self.size or not any(j._dispatchable() for j in self.jobs.values()):
            return False
        ctx = get_context(self.context)
        method = ctx.get_start_method()
        levels = life.log_levels()  # the parent's logging as it is now, mirrored by new workers
        life_args = None if self.life is None and levels is None else (
            None if self.life is None else self.life.for_child(method), levels)
        taken = {w.slot for w in self.workers}
        slot = min(i for i in range(self.size + 1) if i not in taken)
        parent, child = ctx.Pipe(duplex=True)
        fault_r, fault_w = ctx.Pipe(duplex=False)
        progress = new_progress(ctx)
        if method == "fork":
            preload_libc()
        preload_in_forkserver(ctx, worker_main.__module__)
        # fork: the worker inherits our end of its own socket and of its siblings'
        # (and the wake pipe); it closes them, so that our death gives it EOF.
        close_fds = [
            parent.fileno(), fault_r.fileno(), *(fd for w in self.workers for fd in (w.fd, w.fault.fileno())),
            self._wake_r, self._wake_w,
        ] if method == "fork" else []
        # forkserver: the worker's parent is the fork server (its pid is not ours).
        ppid = 0 if method == "forkserver" else os.getpid()
        process = ctx.Process(
            target=worker_main, args=(child, progress, close_fds, ppid, fault_w, self.limits, slot, life_args),
            name="sk-pool-worker", daemon=True,
        )
        try:
            process.start()
        finally:
            child.close()
            fault_w.close()
        if self.trace is not None:
            self.trace.event("worker", worker=process.pid)
        self.workers.append(_Worker(process, parent, progress_slots(progress), method, fault_r, slot))
        return len(self.workers) < self.size

    def _plan(self) -> list[tuple[_Worker, Any]]:
        """Decide what to send (under the lock); sending happens outside it."""
        plan: list[tuple[_Worker, Any]] = []
        jobs = [j for j in self.jobs.values() if j._dispatchable()]
        for w in self.workers:
            # a job finished, or complete (its results not all taken yet: no need to wait for
            # the caller to say so, which would take a wake-up of its own at the end of a call)
            for jid in [j for j in w.loaded if j not in self.jobs or self.jobs[j].complete()]:
                w.loaded.discard(jid)
                plan.append((w, _sender(w.fd, wire.DROP, job=jid)))
        # First every idle worker gets a part; then, for short ones only, a second one
        # to hide the round trip. A long part is never queued behind another one: an
        # idle worker could not take it back.
        now = time.monotonic()
        for depth in range(PREFETCH):
            for w in self.workers:
                if w.retiring or w.doomed or len(w.inflight) > depth or not jobs:
                    continue
                if depth > 0 and now - w.busy_since > SHORT_CHUNK:
                    # This worker's current part is already slower than "short": whatever
                    # we queue behind it could wait for it while another worker sits idle.
                    continue
                # Prefetch only short parts, never the tail of a job (no more parts left
                # than workers: there a queued part could wait behind a slow one while
                # another worker goes idle), never for a timed job (its clock would
                # run while it waits).
                candidates = jobs if depth == 0 else [
                    j for j in jobs
                    if j.short_chunks() and len(j.pending) > len(self.workers) and j.item_timeout is None
                ]
                if not candidates:
                    continue
                self._rr = (self._rr + 1) % len(candidates)
                job = candidates[self._rr]
                part = job.pending.popleft()
                job.inflight += 1
                if not job._dispatchable():
                    jobs.remove(job)
                if not w.inflight:
                    w.busy_since = now
                w.inflight.append(part)
                if job.id not in w.loaded:
                    w.loaded.add(job.id)
                    plan.append((w, _sender(w.fd, wire.FN, flags=job.flags, job=job.id,
                                            payload=job.fn_payload, buffers=job.fn_buffers)))
                chunk = part.chunk
                chunk.seal()
                if job.flags & FLAG_SKPROCESS:
                    self._plan_lives(w, part, plan)
                plan.append((w, _sender(w.fd, wire.TASK, job=job.id, seq=chunk.seq, a=chunk.start, b=part.lo,
                                        c=part.hi, payload=chunk.payload, buffers=chunk.buffers)))
        return plan

    def _plan_lives(self, w: _Worker, part: Part, plan: list[tuple[_Worker, Any]]) -> None:
        """Skprocess items: give the worker its checkpoint file, or the one of the item it resumes."""
        if w.checkpoint is None:
            from suitkaise.processing._checkpoint import create_file

            w.checkpoint = create_file()
            plan.append((w, _sender(w.fd, wire.CHECKPOINT, a=self.pid, b=w.checkpoint.fileno())))
        resume = part.chunk.resume.get(part.lo)
        if resume is not None:
            plan.append((w, _sender(w.fd, wire.RESUME, a=self.pid, b=resume[0].fileno(), c=resume[1])))

    def _dispatch(self, w: _Worker, msg: wire.Message) -> None:
        if msg.kind in wire.LIFE_KINDS:
            self._on_life(w, msg)
        else:
            self._on_result(w, msg)

    def _on_life(self, w: _Worker, msg: wire.Message) -> None:
        """A log record, or a failed initializer / on_exit (``_pool_life``)."""
        error = life.on_message(msg.kind, msg.payload, msg.buffers, w.slot, w.process.pid, self.life, self.logs)
        if error is None:
            return
        # The initializer raised: fail the calls now, never restart workers in a loop
        # (multiprocessing.Pool's known defect). New calls start workers again.
        with self.lock:
            for job in self.jobs.values():
                if not job.closed and job.fatal is None and (job.pending or job.inflight):
                    job.fatal = error
                    job.pending.clear()
                    if job.on_entry is not None:  # submitted tasks: their futures fail too
                        job.on_entry(error)
            w.doomed = True
            self.cv.notify_all()
        with contextlib.suppress(Exception):
            w.process.kill()

    def _on_result(self, w: _Worker, msg: wire.Message) -> None:
        with self.lock:
            if not w.inflight or w.inflight[0].chunk.seq != msg.seq or w.inflight[0].chunk.job.id != msg.job:
                raise RuntimeError(f"pool protocol error: unexpected result for job {msg.job} chunk {msg.seq}")
            part = w.inflight.popleft()
            w.busy_since = time.monotonic()  # the prefetched part (if any) starts now
            chunk = part.chunk
            job = chunk.job
            job.inflight -= 1
            status = msg.flags
            if status in (wire.RETIRE, wire.RECYCLE):
                # the worker exits now without running what it prefetched
                w.retiring = True
                self._requeue(w)
            if job.closed or job.fatal is not None:
                return
            count = msg.a
            job.items_done += max(count, 1)
            job.busy_time += msg.elapsed
            self._remember(job)
            if status == wire.RECYCLE:
                end = part.lo + count
                if end < part.hi:
                    job.pending.appendleft(Part(chunk, end, part.hi))
            elif status == wire.OK:
                end = part.hi
            else:  # an item raised; keep_going: only a MemoryError (RETIRE) stops a part
                end = part.lo + count + 1
                if not job.keep_going:  # errors="raise": the chunk ends with it
                    self._stop_chunk_at(chunk, end)
                elif end < part.hi:
                    job.pending.appendleft(Part(chunk, end, part.hi))
            self._account(chunk, part.lo, end, msg)

    def _remember(self, job: Job) -> None:
        """Keep ``job``'s measured time per item for the next call of its function."""
        times = self._item_times
        key = hash(job.fn_payload)
        if key not in times and len(times) >= _REMEMBERED:
            del times[next(iter(times))]  # the oldest
        times[key] = job.busy_time / job.items_done

    def _stop_chunk_at(self, chunk: Chunk, end: int) -> None:
        """An item's error ends its chunk at offset ``end`` and its job after that chunk."""
        job = chunk.job
        if end < chunk.limit:
            chunk.limit = end
            chunk.covered = sum(min(hi, end) - lo for lo, hi, _ in chunk.done if lo < end)
            chunk.failures = [f for f in chunk.failures if f.index - chunk.start < end]
        if job.error_seq is None or chunk.seq < job.error_seq:
            job.error_seq = chunk.seq
        job.pending = deque(p for p in job.pending if p.chunk.seq < chunk.seq or (p.chunk is chunk and p.lo < end))

    def _account(self, chunk: Chunk, lo: int, hi: int, msg: wire.Message | None) -> None:
        """Items ``lo..hi-1`` of ``chunk`` are done (``msg`` holds their results, ``None`` for a
        failure made here); once all are, the chunk's ``Entry`` goes to its caller."""
        if lo >= chunk.limit:
            return
        chunk.done.append((lo, hi, msg))
        chunk.covered += min(hi, chunk.limit) - lo
        if chunk.covered < chunk.limit:
            return
        chunk.release()
        parts = sorted(((lo, m) for lo, _, m in chunk.done if m is not None and lo < chunk.limit), key=lambda p: p[0])
        last = parts[-1][1] if parts else None
        status = wire.OK if last is None or last.flags in (wire.OK, wire.RECYCLE) else last.flags
        if chunk.limit < len(chunk.items) and status == wire.OK:
            status = wire.ERROR  # stopped by a failure made here (not in the last part)
        entry = Entry(chunk, status, parts, sorted(chunk.failures, key=lambda f: f.index))
        job = chunk.job
        if job.on_entry is not None:
            job.on_entry(entry)
        elif job.ordered:
            job.ordered_results[chunk.seq] = entry
        else:
            job.unordered_results.append(entry)
        self.cv.notify_all()

    def _requeue(self, w: _Worker) -> None:
        """Give the parts a worker will not run back to their jobs (in their order)."""
        while w.inflight:
            part = w.inflight.pop()
            job = part.chunk.job
            job.inflight -= 1
            if not job.closed and job.fatal is None:
                job.pending.appendleft(part)

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
            self._dispatch(w, msg)
        w.process.join(1.0)
        if w.process.exitcode is None:  # connection lost but still running: make sure it is gone
            w.process.kill()
            w.process.join(1.0)
        code = w.process.exitcode
        fault = w.fault_dump()
        if self.trace is not None and not w.doomed and not w.retiring:
            running = running_item(w.progress) if w.progress[P_PHASE] == PHASE_RUNNING else None
            self.trace.event("death", worker=w.process.pid, item=running, job=w.progress[P_JOB],
                             exit=describe_exit(code))
        with self.lock:
            if w in self.workers:
                self.workers.remove(w)
            if w.inflight and not w.retiring and (not w.doomed or w.killed_for is not None):
                self._item_failed(w, w.inflight.popleft(), code, fault)
            elif w.doomed:
                # killed because its job timed out or the pool terminates: drop the
                # parts of closed jobs, keep the others
                kept: deque[Part] = deque()
                for p in w.inflight:
                    if p.chunk.job.closed:
                        p.chunk.job.inflight -= 1
                    else:
                        kept.append(p)
                w.inflight = kept
            self._requeue(w)
            self.cv.notify_all()
        self._release(w)

    def _release(self, w: _Worker) -> None:
        """Close what the parent held for a worker that is gone."""
        for conn in (w.conn, w.fault, w.checkpoint):
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()
        with contextlib.suppress(Exception):
            w.process.close()

    def _item_failed(self, w: _Worker, part: Part, code: int | None, fault: str | None) -> None:
        """The worker running ``part`` died (crash, item timeout, cancel): settle that item,
        send the rest of the part again."""
        chunk = part.chunk
        job = chunk.job
        job.inflight -= 1
        if job.closed or job.fatal is not None:
            return
        if w.killed_for is not None:
            reason, index = w.killed_for
        else:
            reason = "crash"
            running = w.progress[P_JOB] == job.id and w.progress[P_PHASE] == PHASE_RUNNING
            index = running_item(w.progress) if running else -1
        offset = index - chunk.start
        if not part.lo <= offset < part.hi:
            offset = part.lo  # died loading or sending: blame the part's first item
        if reason == "cancel":  # its future is settled already; the rest of the part goes on
            chunk.failures.append(ItemError("cancelled", index, short_repr(chunk.items[offset])))
            self._resend(chunk, [(part.lo, offset), (offset + 1, part.hi)])
            self._account(chunk, offset, offset + 1, None)
            return
        lives = w.progress[P_LIVES] if index == chunk.start + offset else 0
        chunk.last_lives = lives
        if reason == "crash" and lives > 1:
            # an Skprocess item with lives left: the next life resumes on a fresh worker from the
            # last iteration it completed (its checkpoint, in the file it was writing)
            taken = chunk.resume.pop(offset, None)
            f = taken[0] if taken is not None else w.checkpoint
            if taken is None:
                w.checkpoint = None  # now the item's
            if f is not None:
                chunk.resume[offset] = (f, lives - 1)
                self._resend(chunk, [(part.lo, offset), (offset, offset + 1), (offset + 1, part.hi)])
                return
        if reason == "crash" and chunk.attempts.get(offset, 0) < job.retries:
            chunk.attempts[offset] = chunk.attempts.get(offset, 0) + 1
            # the item alone, so that another crash costs only itself
            self._resend(chunk, [(part.lo, offset), (offset, offset + 1), (offset + 1, part.hi)])
            return
        error = self._item_error(w, chunk, offset, reason, code, fault)
        if job.keep_going or (reason == "crash" and job.retries):
            chunk.failures.append(error)
            self._resend(chunk, [(part.lo, offset), (offset + 1, part.hi)])
            self._account(chunk, offset, offset + 1, None)
        else:
            job.fatal = error
            job.pending.clear()

    def _resend(self, chunk: Chunk, ranges: list[tuple[int, int]]) -> None:
        for lo, hi in reversed(ranges):
            if lo < hi:
                chunk.job.pending.appendleft(Part(chunk, lo, hi))

    def _item_error(
        self, w: _Worker, chunk: Chunk, offset: int, reason: str, code: int | None, fault: str | None,
    ) -> ItemError:
        index = chunk.start + offset
        item = short_repr(chunk.items[offset])
        job = chunk.job
        if reason == "timeout":
            assert job.item_timeout is not None
            return ItemTimeoutError(
                f"Pool.{job.name}: item {index} ({item}) ran longer than item_timeout={job.item_timeout:g}s; "
                "its worker was killed and replaced, the other items go on",
                index, item, job.item_timeout,
            )
        attempts = chunk.attempts.get(offset, 0) + 1
        message = self._crash_message(w, chunk, offset, code, attempts)
        if fault:
            message += f"\nThe worker's stack when it died (faulthandler):\n{fault}"
        return WorkerCrashedError(message, index, item, code, attempts, fault)

    def _crash_message(self, w: _Worker, chunk: Chunk, offset: int, code: int | None, attempts: int) -> str:
        job_id, index, phase, booted = (w.progress[P_JOB], running_item(w.progress), w.progress[P_PHASE],
                                        w.progress[P_BOOTED])
        end = chunk.start + len(chunk.items)
        job = chunk.job
        who = f"Pool.{job.name}: the worker process (pid {w.process.pid})"
        if job.keep_going or job.retries:
            then = "the other items go on"
        else:
            then = ("the rest of this call was cancelled "
                    "(items already running on other workers finish, their results are dropped)")
        tries = f" (on each of {attempts} attempts: quarantined)" if attempts > 1 else ""
        if chunk.last_lives == 1 and chunk.resume:
            tries += " (in its last life: out of lives)"
        if not booted and code is not None and code > 0 and w.method != "fork":
            return bootstrap_failure(who, w.method, code) + f" {then[0].upper()}{then[1:]}."
        if job_id == job.id and phase == PHASE_RUNNING and chunk.start <= index < end:
            where = f"while running item {index} ({short_repr(chunk.items[index - chunk.start])})"
        elif phase == PHASE_STARTING:
            name = self.life.initializer_name if self.life is not None else "initializer"
            where = (f"while running the pool's initializer {name} (before item {chunk.start + offset}, "
                     f"{short_repr(chunk.items[offset])})")
        elif job_id == job.id and phase == PHASE_SENDING:
            where = f"while sending back the results of items from {chunk.start + offset} on"
        elif phase == PHASE_LOADING and job_id == job.id:
            where = (f"while loading the function or items from {chunk.start + offset} on "
                     f"(first item: {short_repr(chunk.items[offset])})")
        else:
            where = (f"before running item {chunk.start + offset} ({short_repr(chunk.items[offset])}) "
                     "(it had not started the task yet)")
        return f"{who} died {where}{tries}: it {describe_exit(code)}. The worker is replaced; {then}."

    def _stop_workers(self, workers: list[_Worker]) -> None:
        for w in workers:
            with contextlib.suppress(OSError):
                wire.send_message(w.fd, wire.STOP)
        # While they stop (on_exit runs), keep reading: their log records and on_exit
        # failures, and so that none blocks on a full socket. Bounded: then killed.
        deadline = time.monotonic() + 5.0
        watched: dict[int, _Worker] = {}
        for w in workers:
            watched[w.fd] = w
            watched[w.process.sentinel] = w
        while watched and (left := deadline - time.monotonic()) > 0:
            for ready in wait(list(watched), left):
                fd = ready if isinstance(ready, int) else -1  # wait() returns what it was given: ints
                found = watched.get(fd)
                if found is None:
                    continue
                if fd == found.fd:
                    if not self._read_life(found, block=True):
                        del watched[fd]
                else:
                    # Exited: what it wrote is in the socket now. Not waiting for EOF there:
                    # a child it started (nested=True) may hold a copy of the socket.
                    while self._read_life(found, block=False):
                        pass
                    watched.pop(found.fd, None)
                    del watched[fd]
        self._kill(workers)

    def _read_life(self, w: _Worker, *, block: bool) -> bool:
        """Read one message of a stopping worker (only its life's kinds matter now);
        False at EOF, or when nothing is there and ``block`` is false."""
        try:
            if not block and not select.select([w.fd], [], [], 0)[0]:
                return False
            msg = wire.recv_message(w.fd)
        except (EOFError, OSError, ValueError):
            return False
        if msg.kind in wire.LIFE_KINDS:
            self._on_life(w, msg)
        return True

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
            self._release(w)


def _sender(fd: int, kind: int, **kwargs: Any) -> Any:
    return lambda: wire.send_message(fd, kind, **kwargs)
