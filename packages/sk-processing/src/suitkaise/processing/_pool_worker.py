"""The worker process of a ``Pool``.

::

    parent (manager thread)                    worker process
    ───────────────────────                    ───────────────────────────────
    socket end  ── FN / TASK / DROP / STOP ──► reader thread ──► inbox ──► main loop
                ◄────────── RESULT ─────────────────────────────────────── main loop
                ◄── LOG / INIT_FAILED / EXIT_FAILED ── _pool_life (initializer, logs, on_exit)
    progress[job, item, phase, booted, item start] ◄── written before every item (shared memory)
    fault pipe  ◄── faulthandler's dump when the worker dies of a signal it can catch

A worker is long-lived: it receives each job's function once (FN), then any
number of chunks (TASK), runs them item by item and streams one RESULT per
chunk back. The reader thread keeps the socket drained, so the parent can
push the next chunk while the current one runs without ever deadlocking on
full socket buffers (both sides writing, nobody reading). When the parent
disappears the reader sees EOF and the worker exits at once. Its life around
the loop (worker id and state, initializer, on_exit, live resources, log
records) is ``_pool_life``'s: ``start`` before the first message, ``loads``
for every function and chunk, ``finish`` after STOP.

``progress`` is a tiny shared array: if the process dies hard (segfault,
``os._exit``, SIGKILL), the parent reads which item was running and names it,
with the stack faulthandler wrote into the fault pipe. For a job with a per-item
timeout it also holds when the current item started, which the parent watches.

Limits (``max_tasks_per_worker``, ``max_memory_per_worker``) are checked after
each item: past them, the worker reports what it ran (RECYCLE), the parent
sends the rest of the chunk elsewhere, and the worker exits.
"""

from __future__ import annotations

import faulthandler
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from suitkaise.processing import _pool_life as life
from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._chunk import (
    P_BOOTED,
    P_ITEM,
    P_ITEM_START,
    P_JOB,
    P_LIVES,
    P_OFFSET,
    P_PHASE,
    PHASE_IDLE,
    PHASE_LOADING,
    PHASE_RUNNING,
    PHASE_SENDING,
    PHASE_STARTING,
    PROGRESS_SLOTS,
    ErrorRecord,
    FnJob,
    call_item,
    encode_outcome,
    progress_view,
    run_chunk,
    running_item,
    unframe,
)
from suitkaise.processing._pdeathsig import set_pdeathsig
from suitkaise.processing._trace import Trace, from_env

__all__ = ["PHASE_IDLE", "PHASE_LOADING", "PHASE_RUNNING", "PHASE_SENDING", "PROGRESS_SLOTS", "Limits", "worker_main"]


class Limits:
    """A worker's ``max_tasks_per_worker`` / ``max_memory_per_worker``: called after each
    item, true once the worker should be replaced."""

    def __init__(self, max_items: int | None, max_rss: int | None) -> None:
        self.left = max_items
        self.max_rss = max_rss
        self._statm: int | None = None
        if max_rss is not None:
            try:
                self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            except OSError:
                self._statm = None

    def __call__(self) -> bool:
        if self.left is not None:
            self.left -= 1
            if self.left <= 0:
                return True
        return self.max_rss is not None and self.rss() > self.max_rss

    def rss(self) -> int:
        """Resident set size in bytes (where /proc is missing: the peak, which is larger)."""
        if self._statm is not None:
            return int(os.pread(self._statm, 128, 0).split()[1]) * _PAGE
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Lives:
    """Skprocess items with lives: each runs with a checkpoint in a file the parent owns,
    and publishes its lives left in ``progress``, so that when this worker dies the parent
    can resume the item on a fresh worker from its last completed iteration."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.own: int | None = None  # this worker's checkpoint file (CHECKPOINT)
        self.resume: tuple[int, int] | None = None  # (file, lives left) for the next item (RESUME)

    @staticmethod
    def open(pid: int, fd: int) -> int:
        """Our own descriptor on the file another process (the parent) holds open."""
        return os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)

    def run(self, instance: Any) -> Any:
        from suitkaise.processing._checkpoint import Checkpoint, clear
        from suitkaise.processing._inline import run_inline

        resume, self.resume = self.resume, None
        config = instance.process_config
        fd: int | None
        if resume is not None:
            fd, lives = resume
        else:
            fd, lives = self.own, config.lives
            if fd is not None:
                clear(fd)  # the previous item's checkpoint is not this one's
        checkpoint = None
        # the last life still resumes (from the file it is given) but has no next one to save for
        if fd is not None and config.checkpoint is True and (resume is not None or lives > 1):
            checkpoint = Checkpoint(fd, type(instance).__qualname__)
        self.progress[P_LIVES] = lives if isinstance(lives, int) else 0
        try:
            return run_inline(instance, lives=lives, checkpoint=checkpoint)
        finally:
            self.progress[P_LIVES] = 0
            if resume is not None:
                os.close(resume[0])


def _reader(fd: int, inbox: queue.SimpleQueue[Any]) -> None:
    _batch_policy()
    try:
        while True:
            msg = wire.recv_message(fd)
            inbox.put(msg)
            if msg.kind == wire.STOP:
                return
    except BaseException:
        # EOF: the parent closed our socket or died. Nobody wants our results.
        os._exit(0)


def worker_main(
    conn: Any, progress: Any, close_fds: Sequence[int], ppid: int, fault: Any,
    limits: tuple[int | None, int | None], slot: int = 0, life_args: Any = None,
) -> None:
    """Entry point of a pool worker process.

    ``close_fds``: the parent's descriptors a forked worker inherited (its end of
    every worker's socket, the wake pipe); ``ppid``: the parent's pid, 0 if unknown;
    ``fault``: the write end of the pipe faulthandler dumps into; ``limits``:
    ``(max items, max RSS bytes)``, each ``None`` for no limit.
    ``slot``: this worker's id; ``life_args``: initializer & co (``_pool_life.start``).
    """
    # SIGKILLed with the parent, even while a task holds the GIL in a long C call
    # (the reader thread's EOF check cannot run then). The manager thread that
    # forks us stops its workers before it ends, so the signal never fires early.
    progress = progress_view(progress)
    progress[P_BOOTED] = 1
    set_pdeathsig(ppid)
    # Ctrl-C goes to the whole foreground process group: the parent reacts and
    # terminates us; a KeyboardInterrupt in a task would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Native crashes dump their stack into the fault pipe: the parent puts it in the
    # error of the item that was running.
    faulthandler.enable(file=fault.fileno())
    _release_forkserver()
    for inherited in close_fds:
        # Where PR_SET_PDEATHSIG is unavailable, the reader thread's EOF is what ends
        # us when the parent dies: no copy of the parent's ends may keep it away.
        try:
            os.close(inherited)
        except OSError:
            pass
    trace = from_env()  # python -m suitkaise report
    fd = conn.fileno()
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(fd, inbox), name="sk-pool-reader", daemon=True).start()
    progress[P_PHASE] = PHASE_STARTING  # a crash now is the initializer's
    if not life.start(fd, slot, life_args):
        # The initializer raised and the parent was told: it fails the calls and stops
        # us. Not exiting ourselves: the parent would only start a replacement.
        while inbox.get().kind != wire.STOP:
            pass
        conn.close()
        return
    jobs: dict[int, FnJob] = {}
    perf = time.perf_counter
    stop = None if limits == (None, None) else Limits(*limits)
    lives = _Lives(progress)
    while True:
        progress[P_PHASE] = PHASE_IDLE
        msg: wire.Message = inbox.get()
        if msg.kind == wire.STOP:
            break
        if msg.kind == wire.DROP:
            jobs.pop(msg.job, None)
            continue
        if msg.kind == wire.CHECKPOINT:
            lives.own = _Lives.open(msg.a, msg.b)
            continue
        if msg.kind == wire.RESUME:
            lives.resume = (_Lives.open(msg.a, msg.b), msg.c)
            continue
        progress[P_OFFSET] = 0  # first: a parent that reads the new job never adds a stale offset
        progress[P_JOB] = msg.job
        progress[P_ITEM_START] = time.monotonic_ns()  # a timed item's clock never reads a stale start
        progress[P_ITEM] = msg.a + msg.b
        progress[P_PHASE] = PHASE_LOADING
        if msg.kind == wire.FN:
            try:
                fn = life.loads(msg.payload, msg.buffers)
                err = None
            except BaseException as e:
                fn, err = None, e
            loaded = FnJob(fn, msg.flags, err)
            if loaded.skprocess:
                loaded.run_process = lives.run
            jobs[msg.job] = loaded
            # held by ``jobs`` only: a DROP lets the function (and what it holds) go at once
            del fn, err, loaded
            continue
        if msg.kind != wire.TASK:  # pragma: no cover - protocol error
            os._exit(70)
        if _run_chunk(fd, msg, jobs.get(msg.job), progress, perf, trace, stop):
            break  # limits reached: replaced by a fresh worker
    life.finish()
    conn.close()


def _batch_policy() -> None:
    """Run the calling thread (the reader) under ``SCHED_BATCH`` (Linux): same CPU share, but
    its wake-ups do not preempt the running thread. The parent's message used to wake the
    reader onto the parent's own core, which then sent the next worker its chunk only after
    this one had run (on two cores, workers ran one after the other: ~440 us later for a
    0.5 ms chunk, ~2 us with a batch reader). Only the reader: a task's own wake-ups (after a
    sleep, a lock, I/O) keep the normal policy (whole workers under SCHED_BATCH ran 500 x
    sleep(1 ms) 3x slower on a loaded machine)."""
    setter = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_BATCH", None)
    if setter is None or policy is None:
        return
    try:
        setter(0, policy, os.sched_param(0))
    except OSError:
        pass


def _release_forkserver() -> None:
    """Close this worker's copy of the fork server's "alive" pipe.

    Every forkserver child holds it (and a forked worker inherits the parent's),
    and the server, our parent under forkserver, runs until the last copy is
    closed: kept here, it would outlive the Pool's process and so would we (our
    parent-death signal waits for the server). A nested=True worker that starts processes
    starts its own server (_pool_life._allow_children).
    """
    # Not imported here when nobody used it: a fork server that was never started holds no
    # pipe, and importing the module costs a forked worker milliseconds.
    forkserver = sys.modules.get("multiprocessing.forkserver")
    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


def _run_chunk(
    fd: int, msg: wire.Message, job: FnJob | None, progress: Any, perf: Callable[[], float], trace: Trace | None,
    stop: Limits | None,
) -> bool:
    """Run one TASK message's items (``_chunk.run_chunk``) and send its RESULT.

    The message holds a whole chunk; it runs items ``lo..hi-1`` of it (a part sent again
    after a crash or a recycled worker). True when the worker must now exit (limits).
    """
    lo, hi = msg.b, msg.c
    start = msg.a + lo

    def load() -> tuple[FnJob, list[Any]]:
        if job is None:
            raise RuntimeError("internal error: pool worker received a task before its function")
        if job.error is not None:
            raise job.error
        if job.kwargs:  # submissions, each framed on its own
            items = unframe(msg.payload, msg.buffers, lo, hi, life.loads)
        else:
            items = life.loads(msg.payload, msg.buffers)
            if lo or hi < len(items):
                items = items[lo:hi]
        if trace is not None:
            return _traced(job, trace, msg.job, progress), items
        return job, items

    t0 = perf()
    outcome = run_chunk(load, start, progress, stop)
    elapsed = perf() - t0
    progress[P_PHASE] = PHASE_SENDING
    (payload, bufs), error = encode_outcome(outcome, start, _dumps, keep_going=job is not None and job.keep_going)
    if error is None:
        status = wire.RECYCLE if outcome.stopped else wire.OK
    elif outcome.retire:
        status = wire.RETIRE
    else:
        status = wire.ERROR
    try:
        wire.send_message(
            fd, wire.RESULT, flags=status, job=msg.job, seq=msg.seq, a=len(outcome.results),
            elapsed=elapsed, payload=payload, buffers=bufs,
        )
    except BaseException:
        os._exit(0)  # parent gone
    if outcome.retire:
        os._exit(0)
    return outcome.stopped


def _traced(job: FnJob, trace: Trace, job_id: int, progress: Any) -> FnJob:
    """``job`` with an "item" / "item-end" trace event around each item (``SK_POOL_TRACE``)."""

    def fn(item: Any) -> Any:
        index = running_item(progress)  # set by run_chunk just before the call
        trace.event("item", job=job_id, item=index)
        value = call_item(job, item, index)
        trace.event("item-end", job=job_id, item=index)
        return value

    traced = FnJob(fn, 0)
    traced.keep_going, traced.timed = job.keep_going, job.timed
    return traced


def _dumps(results: list[Any], error: ErrorRecord | None, failures: list[ErrorRecord]) -> tuple[bytes, list[memoryview]]:
    return wire.dumps((results, error, failures))
