"""Running one chunk of a Pool call's items: the same code in local and Dask workers.

::

    load() ─► (FnJob, items) ─► run_chunk: fn(item) for each item ─► Outcome
                                  (stops at the first error: ErrorRecord;
                                   errors="return"/"skip": records it, goes on)
    Outcome ─► encode_outcome(dumps) ─► bytes for the caller
                (a result that cannot be serialized becomes that item's error;
                 the results before it are kept)

A local worker (``_pool_worker``) loads the chunk from its socket message and
sends the bytes back as a RESULT; a Dask task (``_dask._dask_chunk``) loads it
from its arguments and returns the bytes. Either way the caller gets
``(results, error)`` and, from ``error``, rebuilds the item's exception with
the worker's traceback as its ``__cause__``.
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Callable, MutableSequence, Sequence
from typing import Any, NamedTuple, TypeVar

from suitkaise.cucumber import SerializationError, serialize
from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._errors import ProcessError, capture_traceback

__all__ = [
    "SKIP",
    "FLAG_KEEP_GOING",
    "FLAG_KWARGS",
    "FLAG_SKPROCESS",
    "FLAG_STAR",
    "FLAG_TIMED",
    "PHASE_IDLE",
    "PHASE_LOADING",
    "PHASE_RUNNING",
    "PHASE_SENDING",
    "PHASE_STARTING",
    "ErrorRecord",
    "FnJob",
    "Outcome",
    "call_item",
    "encode_outcome",
    "error_record",
    "frame",
    "new_progress",
    "progress_slots",
    "progress_view",
    "run_chunk",
    "running_item",
    "unframe",
]

# what a worker is doing, published in its progress array (read after a crash)
PHASE_IDLE = 0
PHASE_LOADING = 1  # deserializing a function or a chunk
PHASE_RUNNING = 2  # running progress[1]
PHASE_SENDING = 3  # serializing / sending results
PHASE_STARTING = 4  # running the Pool's initializer (before any item)

# kinds of jobs (FN flags)
FLAG_STAR = 1
FLAG_SKPROCESS = 2
FLAG_KWARGS = 4  # each item is (args, kwargs): Pool.submit
FLAG_KEEP_GOING = 8  # errors="return"/"skip": an item's error does not stop the chunk
FLAG_TIMED = 16  # per-item timeout: progress[4] = start of each item (monotonic ns)

# progress[] slots, read by the parent after a crash or to time an item
# (P_LIVES: the lives an Skprocess item has left, 0 for other items). The item running is
# P_ITEM + P_OFFSET (``running_item``): the hot loop of run_chunk leaves P_ITEM at its
# first item and stores each item's offset from it; every other loop stores P_ITEM and
# leaves P_OFFSET at 0 (the slots read while a worker runs, a timed or submitted item's,
# are those loops': P_ITEM alone).
P_JOB, P_ITEM, P_PHASE, P_BOOTED, P_ITEM_START, P_LIVES, P_OFFSET = range(7)
PROGRESS_SLOTS = 7
# A worker stores its item's position before every item: two workers' slots on one cache line
# made every store a cache miss on both cores (~130 ns per item instead of ~70). Each
# worker's slots sit between PROGRESS_PAD unused slots (64 bytes) on either side.
PROGRESS_PAD = 8


def new_progress(ctx: Any) -> Any:
    """A worker's progress slots in shared memory (``ctx.RawArray``, padded: ``progress_slots``)."""
    return ctx.RawArray("q", PROGRESS_PAD + PROGRESS_SLOTS + PROGRESS_PAD)


def progress_slots(raw: Any) -> Any:
    """The ``PROGRESS_SLOTS`` slots of ``new_progress``'s array, indexed by ``P_*`` (ctypes)."""
    return (ctypes.c_int64 * PROGRESS_SLOTS).from_buffer(raw, PROGRESS_PAD * 8)


def progress_view(raw: Any) -> memoryview:
    """The same slots as a memoryview: a store is ~60 ns cheaper than a ctypes array's,
    and a worker makes one before every item."""
    return memoryview(raw).cast("B").cast("q")[PROGRESS_PAD:PROGRESS_PAD + PROGRESS_SLOTS]


def running_item(progress: Any) -> int:
    """The index of the item a worker's ``progress`` names (the one running, if its phase
    is ``PHASE_RUNNING``)."""
    return int(progress[P_ITEM] + progress[P_OFFSET])

T = TypeVar("T")

# Submissions travel framed: each one serialized on its own by the caller that submitted
# it, joined into a chunk's payload when the chunk is sent: [length, buffers] data, ...
_FRAME = struct.Struct("<II")
_SKIPPED = 0xFFFFFFFF  # a submission cancelled before it was sent: nothing to run
SKIP: Any = object()  # what a skipped frame loads as


def frame(frames: Sequence[tuple[bytes, list[memoryview]]], skipped: set[int]) -> tuple[bytes, list[memoryview]]:
    """The payload and buffers of a chunk of submissions (``skipped``: offsets to leave out)."""
    parts: list[bytes] = []
    buffers: list[memoryview] = []
    for i, (data, bufs) in enumerate(frames):
        if i in skipped:
            parts.append(_FRAME.pack(_SKIPPED, 0))
            continue
        parts.append(_FRAME.pack(len(data), len(bufs)))
        parts.append(data)
        buffers.extend(bufs)
    return b"".join(parts), buffers


def unframe(
    payload: bytes | memoryview, buffers: Sequence[Any], lo: int, hi: int,
    loads: Callable[[Any, list[Any]], Any] = wire.loads,
) -> list[Any]:
    """Submissions ``lo..hi-1`` of a framed payload, each ``loads(data, buffers)`` (``SKIP`` for
    a skipped one)."""
    view = memoryview(payload)
    items: list[Any] = []
    at = nbuf = 0
    for i in range(hi):
        length, count = _FRAME.unpack_from(view, at)
        at += _FRAME.size
        if length == _SKIPPED:
            if i >= lo:
                items.append(SKIP)
            continue
        if i >= lo:
            items.append(loads(view[at:at + length], list(buffers[nbuf:nbuf + count])))
        at += length
        nbuf += count
    return items


class FnJob:
    """A call's function as a worker holds it (``error``: why it could not be loaded)."""

    __slots__ = ("error", "fn", "keep_going", "kwargs", "run_process", "skprocess", "star", "timed")

    def __init__(self, fn: Any, flags: int, error: BaseException | None = None) -> None:
        self.fn = fn
        self.star = bool(flags & FLAG_STAR)
        self.skprocess = bool(flags & FLAG_SKPROCESS)
        self.kwargs = bool(flags & FLAG_KWARGS)
        self.keep_going = bool(flags & FLAG_KEEP_GOING)
        self.timed = bool(flags & FLAG_TIMED)
        self.error = error
        # how an Skprocess item runs (a local worker's: with its lives and checkpoint)
        self.run_process: Callable[[Any], Any] | None = None

    @property
    def plain(self) -> bool:
        """``fn(item)`` and nothing else per item: the hot loop."""
        return not (self.skprocess or self.star or self.kwargs or self.keep_going or self.timed)


class ErrorRecord(NamedTuple):
    """An item's failure as it travels from a worker to the caller."""

    item: int  # the position in the call's input of the item that failed
    error: BaseException | None  # the exception itself; None when it cannot travel
    type_name: str  # module.QualName of the exception
    message: str
    traceback: str  # formatted in the worker
    why_not_sent: str | None  # why ``error`` is None


class Outcome(NamedTuple):
    """What running a chunk produced."""

    results: list[Any]  # the values of the items run (before the first error; keep_going:
    # all of them, ``None`` in place of each failed one)
    error: ErrorRecord | None  # the error that stopped the chunk
    retire: bool  # MemoryError: the worker should be replaced after reporting it
    failures: list[ErrorRecord] = []  # keep_going: the items that raised
    stopped: bool = False  # ``stop()`` asked to end after the last item run (worker limits)


def error_record(exc: BaseException, index: int) -> ErrorRecord:
    """``exc`` (raised by item ``index``) as a record; the exception is kept only if it
    survives a round trip, so the caller never fails to decode it."""
    tb = capture_traceback(exc)
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
        return ErrorRecord(index, None, name, message, tb, f"{type(e).__name__}: {e}")
    return ErrorRecord(index, exc, name, message, tb, None)


def call_item(job: FnJob, item: Any, index: int) -> Any:
    """``job``'s function applied to item ``index`` (star, kwargs, Skprocess classes), as workers
    call it."""
    if job.kwargs:
        if item is SKIP:
            return None
        args, kwargs = item
        return job.fn(*args, **kwargs)
    if job.skprocess:
        instance = job.fn(*item) if job.star and isinstance(item, tuple) else job.fn(item)
        try:
            if job.run_process is not None:
                return job.run_process(instance)
            # imported on first use: workers that never run an Skprocess skip its machinery
            from suitkaise.processing._inline import run_inline

            return run_inline(instance)
        except ProcessError as e:  # named as a started Skprocess's error is, plus the item
            name, pid = type(instance).__qualname__, os.getpid()
            for err in (e, getattr(e, "handled_error", None)):
                if isinstance(err, ProcessError) and err.process_name is None:
                    err._note_process(name, pid, index)
            raise
    if job.star and isinstance(item, tuple):
        return job.fn(*item)
    return job.fn(item)


def run_chunk(
    load: Callable[[], tuple[FnJob, list[Any]]],
    start: int,
    progress: MutableSequence[int],
    stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Run the items ``load()`` returns (the first is item ``start``) until one raises.

    Before each item runs, ``running_item(progress)`` is set to its index (and
    ``progress[P_PHASE]`` to the phase), so that a parent can name the item a crashed
    worker was running; for a timed job, ``progress[P_ITEM_START]`` is when it began.
    ``stop()``, asked after each item, ends the chunk early (the worker reached its limits).
    """
    try:
        job, items = load()
    except BaseException as e:
        return Outcome([], error_record(e, start), False)
    progress[P_ITEM] = start
    progress[P_OFFSET] = 0
    progress[P_PHASE] = PHASE_RUNNING
    results: list[Any] = []
    if job.plain and stop is None:
        # The hot path for tiny tasks: no per-item helper call, and per item only its offset
        # stored (P_ITEM stays at the first item; an index kept as well cost ~6 ns an item of
        # ~70) and its result put in place (a list made once: cheaper than append).
        fn = job.fn
        offset = 0
        try:
            results = [None] * len(items)
            for offset in range(len(items)):
                progress[P_OFFSET] = offset
                results[offset] = fn(items[offset])
        except BaseException as e:
            del results[offset:]
            # MemoryError: this process may be unusable (e.g. a task lowered
            # RLIMIT_AS); report the error, then let the parent replace us.
            return Outcome(results, error_record(e, start + offset), isinstance(e, MemoryError))
        return Outcome(results, None, False)
    append = results.append
    index = start
    failures: list[ErrorRecord] = []
    timed = job.timed
    clock = time.monotonic_ns
    for item in items:
        if timed:  # before the index: a parent that reads the new index sees the new start
            progress[P_ITEM_START] = clock()
        progress[P_ITEM] = index
        try:
            append(call_item(job, item, index))
        except BaseException as e:
            retire = isinstance(e, MemoryError)
            if not job.keep_going or retire:
                return Outcome(results, error_record(e, index), retire, failures)
            failures.append(error_record(e, index))
            append(None)
        index += 1
        if stop is not None and stop():
            return Outcome(results, None, False, failures, True)
    return Outcome(results, None, False, failures)


def encode_outcome(
    outcome: Outcome, start: int, dumps: Callable[[list[Any], ErrorRecord | None, list[ErrorRecord]], T],
    *, keep_going: bool = False,
) -> tuple[T, ErrorRecord | None]:
    """``dumps(results, error, failures)``; when a result cannot be serialized, the results
    before it and that item's error instead (``keep_going``: that item's failure, and the
    rest). Returns the encoded data and the error that stopped the chunk."""
    try:
        return dumps(outcome.results, outcome.error, outcome.failures), outcome.error
    except BaseException:
        pass
    results = outcome.results
    if keep_going:
        failures = list(outcome.failures)
        kept = list(results)
        for i, value in enumerate(results):
            if value is None:
                continue
            try:
                serialize(value)
            except BaseException as e:
                failures.append(_result_error(e, value, start + i))
                kept[i] = None
        failures.sort(key=lambda f: f.item)
        try:
            return dumps(kept, outcome.error, failures), outcome.error
        except BaseException:
            pass
    for i, value in enumerate(results):
        try:
            serialize(value)
        except BaseException as e:
            record = _result_error(e, value, start + i)
            failures = [f for f in outcome.failures if f.item < start + i]
            try:
                return dumps(results[:i], record, failures), record
            except BaseException:
                return dumps([], record, []), record
    # the error record itself failed (should not happen: it was round-tripped)
    assert outcome.error is not None
    record = outcome.error._replace(error=None, why_not_sent="the error could not be serialized")
    return dumps(results, record, outcome.failures), record


def _result_error(exc: BaseException, value: Any, index: int) -> ErrorRecord:
    what = f"the result of item {index} ({type(value).__name__}) could not be serialized to send it back to the caller"
    if not isinstance(exc, SerializationError):
        # The user's own __reduce__/__getstate__/__serialize__ raised: cucumber let it
        # through as itself (as pickle does), and so does the Pool, with a note.
        exc.add_note(f"Pool: {what}")
        return error_record(exc, index)
    try:
        raise SerializationError(f"{what}: {exc}") from exc
    except SerializationError as wrapped:
        return error_record(wrapped, index)
