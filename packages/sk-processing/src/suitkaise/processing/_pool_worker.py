"""The worker process of a ``Pool``.

::

    parent (manager thread)                    worker process
    ───────────────────────                    ───────────────────────────────
    socket end  ── FN / TASK / DROP / STOP ──► reader thread ──► inbox ──► main loop
                ◄────────── RESULT ─────────────────────────────────────── main loop
    progress[job, item, phase] ◄── written before every item (shared memory)

A worker is long-lived: it receives each job's function once (FN), then any
number of chunks (TASK), runs them item by item and streams one RESULT per
chunk back. The reader thread keeps the socket drained, so the parent can
push the next chunk while the current one runs without ever deadlocking on
full socket buffers (both sides writing, nobody reading). When the parent
disappears the reader sees EOF and the worker exits at once.

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
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from suitkaise.cucumber import SerializationError
from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._pdeathsig import set_pdeathsig
from suitkaise.processing._trace import Trace, from_env

__all__ = ["PHASE_IDLE", "PHASE_LOADING", "PHASE_RUNNING", "PHASE_SENDING", "PROGRESS_SLOTS", "worker_main"]

PHASE_IDLE = 0
PHASE_LOADING = 1  # deserializing a function or a chunk
PHASE_RUNNING = 2  # running progress[1]
PHASE_SENDING = 3  # serializing / sending results

# progress[] slots: job, item, phase, booted (1 once worker_main runs: before it, a
# spawn/forkserver child is still importing the main module)
PROGRESS_SLOTS = 4

# kinds of jobs (FN flags)
FLAG_STAR = 1
FLAG_SKPROCESS = 2

_STOP = object()


class _Job:
    __slots__ = ("error", "fn", "skprocess", "star")

    def __init__(self, fn: Any, star: bool, skprocess: bool, error: BaseException | None) -> None:
        self.fn = fn
        self.star = star
        self.skprocess = skprocess
        self.error = error


def _error_record(exc: BaseException, index: int) -> tuple[Any, ...]:
    """(index, exception-or-None, type name, message, traceback text, why it could not travel)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__traceback__ = None
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        message = str(exc)
    except Exception as e:
        message = f"<str() failed: {e!r}>"
    try:
        # Round-trip here: an exception whose __init__ takes other arguments
        # than its args pickles fine but fails to unpickle in the parent.
        data, bufs = wire.dumps(exc)
        wire.loads(data, [bytearray(b) for b in bufs])
    except BaseException as e:
        return (index, None, name, message, tb, f"{type(e).__name__}: {e}")
    return (index, exc, name, message, tb, None)


def _call_item(job: _Job, item: Any) -> Any:
    if job.skprocess:
        from suitkaise.processing._engine import run_inline

        instance = job.fn(*item) if job.star and isinstance(item, tuple) else job.fn(item)
        return run_inline(instance)
    if job.star and isinstance(item, tuple):
        return job.fn(*item)
    return job.fn(item)


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


def worker_main(conn: Any, progress: Any, close_fds: Sequence[int], ppid: int) -> None:
    """Entry point of a pool worker process.

    ``close_fds``: the parent's descriptors a forked worker inherited (its end of
    every worker's socket, the wake pipe); ``ppid``: the parent's pid, 0 if unknown.
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
    jobs: dict[int, _Job] = {}
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
                fn = wire.loads(msg.payload, msg.buffers)
                err = None
            except BaseException as e:
                fn, err = None, e
            jobs[msg.job] = _Job(fn, bool(msg.flags & FLAG_STAR), bool(msg.flags & FLAG_SKPROCESS), err)
            continue
        if msg.kind != wire.TASK:  # pragma: no cover - protocol error
            os._exit(70)
        _run_chunk(fd, msg, jobs.get(msg.job), progress, perf, trace)
    conn.close()


def _release_forkserver() -> None:
    """Close this worker's copy of the fork server's "alive" pipe.

    Every forkserver child holds it (and a forked worker inherits the parent's),
    and the server, our parent under forkserver, runs until the last copy is
    closed: kept here, it would outlive the Pool's process and so would we (our
    parent-death signal waits for the server). Workers never start processes.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


def _run_chunk(
    fd: int, msg: wire.Message, job: _Job | None, progress: Any, perf: Callable[[], float], trace: Trace | None
) -> None:
    start = msg.a
    results: list[Any] = []
    error: tuple[Any, ...] | None = None
    retire = False
    t0 = perf()
    try:
        if job is None:
            raise RuntimeError("internal error: pool worker received a task before its function")
        if job.error is not None:
            raise job.error
        items = wire.loads(msg.payload, msg.buffers)
    except BaseException as e:
        error = _error_record(e, start)
        items = []
    progress[2] = PHASE_RUNNING
    index = start
    if error is None:
        assert job is not None
        fn = job.fn
        append = results.append
        try:
            if trace is not None:
                for item in items:
                    progress[1] = index
                    trace.event("item", job=msg.job, item=index)
                    append(_call_item(job, item))
                    trace.event("item-end", job=msg.job, item=index)
                    index += 1
            elif job.skprocess or job.star:
                for item in items:
                    progress[1] = index
                    append(_call_item(job, item))
                    index += 1
            else:  # the hot path for tiny tasks: no per-item helper call
                for item in items:
                    progress[1] = index
                    append(fn(item))
                    index += 1
        except BaseException as e:
            # MemoryError: this process may be unusable (e.g. a task lowered
            # RLIMIT_AS); report the error, then let the parent replace us.
            retire = isinstance(e, MemoryError)
            error = _error_record(e, index)
    elapsed = perf() - t0
    progress[2] = PHASE_SENDING
    del items
    try:
        payload, bufs = wire.dumps((results, error))
    except BaseException:
        # Some result cannot be serialized: find it, report it as that item's error.
        payload, bufs, error = _salvage(results, error, start)
    status = wire.OK if error is None else (wire.RETIRE if retire else wire.ERROR)
    try:
        wire.send_message(
            fd, wire.RESULT, flags=status, job=msg.job, seq=msg.seq, a=index - start,
            elapsed=elapsed, payload=payload, buffers=bufs,
        )
    except BaseException:
        os._exit(0)  # parent gone
    if retire:
        os._exit(0)


def _salvage(results: list[Any], error: tuple[Any, ...] | None, start: int) -> tuple[bytes, list[memoryview], tuple[Any, ...]]:
    for i, value in enumerate(results):
        try:
            wire.dumps(value)
        except BaseException as e:
            try:
                raise SerializationError(
                    f"the result of item {start + i} ({type(value).__name__}) could not be "
                    f"serialized to send it back to the parent: {e}"
                ) from e
            except SerializationError as wrapped:
                record = _error_record(wrapped, start + i)
            kept = results[:i]
            try:
                payload, bufs = wire.dumps((kept, record))
            except BaseException:
                payload, bufs = wire.dumps(([], record))
            return payload, bufs, record
    # the error record itself failed (should not happen: it was round-tripped)
    assert error is not None
    record = (error[0], None, error[2], error[3], error[4], "the error could not be serialized")
    payload, bufs = wire.dumps((results, record))
    return payload, bufs, record
