"""The worker process of a ``Pool``.

::

    parent (manager thread)                    worker process
    ───────────────────────                    ───────────────────────────────
    socket end  ── FN / TASK / DROP / STOP ──► reader thread ──► inbox ──► main loop
                ◄────────── RESULT ─────────────────────────────────────── main loop
                ◄── LOG / INIT_FAILED / EXIT_FAILED ── _pool_life (initializer, logs, on_exit)
    progress[job, item, phase] ◄── written before every item (shared memory)

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
``os._exit``, SIGKILL), the parent reads which item was running and names it.
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
    PHASE_IDLE,
    PHASE_LOADING,
    PHASE_RUNNING,
    PHASE_SENDING,
    ErrorRecord,
    FnJob,
    call_item,
    encode_outcome,
    run_chunk,
)
from suitkaise.processing._pdeathsig import set_pdeathsig
from suitkaise.processing._trace import Trace, from_env

__all__ = ["PHASE_IDLE", "PHASE_LOADING", "PHASE_RUNNING", "PHASE_SENDING", "PROGRESS_SLOTS", "worker_main"]

# progress[] slots: job, item, phase (_chunk.PHASE_*), booted (1 once worker_main runs:
# before it, a spawn/forkserver child is still importing the main module)
PROGRESS_SLOTS = 4


def _reader(fd: int, inbox: queue.SimpleQueue[Any]) -> None:
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
    conn: Any, progress: Any, close_fds: Sequence[int], ppid: int, slot: int = 0, life_args: Any = None
) -> None:
    """Entry point of a pool worker process.

    ``close_fds``: the parent's descriptors a forked worker inherited (its end of
    every worker's socket, the wake pipe); ``ppid``: the parent's pid, 0 if unknown;
    ``slot``: this worker's id; ``life_args``: initializer & co (``_pool_life.start``).
    """
    # SIGKILLed with the parent, even while a task holds the GIL in a long C call
    # (the reader thread's EOF check cannot run then). The manager thread that
    # forks us stops its workers before it ends, so the signal never fires early.
    progress[3] = 1
    set_pdeathsig(ppid)
    # Ctrl-C goes to the whole foreground process group: the parent reacts and
    # terminates us; a KeyboardInterrupt in a task would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # Native crashes print their stack. The parent's stderr may have no file
        # descriptor (pytest's capture, IDEs, GUI apps): then try the real one, else go without.
        faulthandler.enable()
    except (AttributeError, OSError, ValueError):
        try:
            faulthandler.enable(file=sys.__stderr__)  # type: ignore[arg-type]
        except (AttributeError, OSError, ValueError):
            pass
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
    if not life.start(fd, slot, life_args):
        # The initializer raised and the parent was told: it fails the calls and stops
        # us. Not exiting ourselves: the parent would only start a replacement.
        while inbox.get().kind != wire.STOP:
            pass
        conn.close()
        return
    jobs: dict[int, FnJob] = {}
    perf = time.perf_counter
    while True:
        progress[2] = PHASE_IDLE
        msg: wire.Message = inbox.get()
        if msg.kind == wire.STOP:
            break
        if msg.kind == wire.DROP:
            jobs.pop(msg.job, None)
            continue
        progress[0] = msg.job
        progress[1] = msg.a
        progress[2] = PHASE_LOADING
        if msg.kind == wire.FN:
            try:
                fn = life.loads(msg.payload, msg.buffers)
                err = None
            except BaseException as e:
                fn, err = None, e
            jobs[msg.job] = FnJob(fn, msg.flags, err)
            continue
        if msg.kind != wire.TASK:  # pragma: no cover - protocol error
            os._exit(70)
        _run_chunk(fd, msg, jobs.get(msg.job), progress, perf, trace)
    life.finish()
    conn.close()


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
    fd: int, msg: wire.Message, job: FnJob | None, progress: Any, perf: Callable[[], float], trace: Trace | None
) -> None:
    """Run one TASK message's chunk (``_chunk.run_chunk``) and send its RESULT."""
    start = msg.a

    def load() -> tuple[FnJob, list[Any]]:
        if job is None:
            raise RuntimeError("internal error: pool worker received a task before its function")
        if job.error is not None:
            raise job.error
        if trace is not None:
            return _traced(job, trace, msg.job, progress), life.loads(msg.payload, msg.buffers)
        return job, life.loads(msg.payload, msg.buffers)

    t0 = perf()
    outcome = run_chunk(load, start, progress)
    elapsed = perf() - t0
    progress[2] = PHASE_SENDING
    (payload, bufs), error = encode_outcome(outcome, start, _dumps)
    if error is None:
        status = wire.OK
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


def _traced(job: FnJob, trace: Trace, job_id: int, progress: Any) -> FnJob:
    """``job`` with an "item" / "item-end" trace event around each item (``SK_POOL_TRACE``)."""

    def fn(item: Any) -> Any:
        index = progress[1]  # set by run_chunk just before the call
        trace.event("item", job=job_id, item=index)
        value = call_item(job, item)
        trace.event("item-end", job=job_id, item=index)
        return value

    return FnJob(fn, 0)


def _dumps(results: list[Any], error: ErrorRecord | None) -> tuple[bytes, list[memoryview]]:
    return wire.dumps((results, error))
