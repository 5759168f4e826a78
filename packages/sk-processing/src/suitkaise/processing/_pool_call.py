"""The caller's side of one Pool call, whatever runs its items (the plan both backends share).

::

    Pool.map(fn, items)                        (_pool: the public methods)
      └─ Call(name, fn, items, star, ordered, eager, timeout, progress)
           └─ backend.start(call) ─► a CallBase subclass:
                _pool_local._Run    local worker processes (_pool_core, _pool_worker)
                _dask._DaskRun      a dask.distributed cluster
    open_input checks the arguments; CallBase sizes chunks, bounds read-ahead, iterates
    the results and rebuilds an item's error (an ``ErrorRecord``) as the exception to raise.

A subclass feeds chunks (``_top_up``), waits for the next finished chunk and
decodes it (``_take``), and says how long an item takes (``_item_time``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, TypeAlias

from suitkaise.processing._chunk import (
    FLAG_KEEP_GOING,
    FLAG_KWARGS,
    FLAG_SKPROCESS,
    FLAG_STAR,
    FLAG_TIMED,
    ErrorRecord,
)
from suitkaise.processing._errors import (
    ItemError,
    ProcessError,
    QuarantineError,
    ResultTimeoutError,
    WorkerCrashedError,
    short_repr,
    with_remote_cause,
)
from suitkaise.processing._runtime import is_skprocess_class

__all__ = ["ERRORS", "Call", "CallBase", "Progress", "check_item_options", "open_input", "rebuild_error"]

Progress: TypeAlias = "bool | Callable[[int, int | None], object] | None"
ERRORS = ("raise", "return", "skip")

_MAX_CHUNK = 4096  # adaptive chunks of an input of unknown length (read-ahead is 4 per worker)
_MAX_SIZED_CHUNK = 16384  # of an input whose length is known: map's size up to this
_READ_AHEAD_BYTES = 64 * 2**20  # imap: results in flight or waiting, about this much at most
# A chunk of a sized input whose time per item is known holds at least this much work (and
# every worker still gets one): each chunk costs about 0.1 ms of round trip and messages
_MIN_CHUNK_SECONDS = 0.001
# ... but only where the default chunks hold this many items already: a short input keeps its
# default chunks (four per worker) whatever the last call measured (its items may cost far more)
_MIN_FIT_ITEMS = 64


@dataclass(frozen=True)
class Call:
    """One call of a map method, as the caller described it."""

    name: str  # "map", "unordered_imap", ...: for messages
    fn: Any  # a function or an Skprocess class
    iterable: Any
    star: bool  # unpack tuple items as arguments (pool.star())
    ordered: bool  # results in input order (else completion order)
    eager: bool  # map/unordered_map: read the whole input first, timeout bounds the whole call;
    # imap/unordered_imap: read lazily, timeout bounds each wait for the next result
    timeout: float | None
    progress: Progress  # already resolved against the pool's default
    chunksize: int | None = None  # None: chosen by the pool
    item_timeout: float | None = None  # each item's limit: past it, its worker is killed
    errors: str = "raise"  # an item's failure: "raise" it, "return" it as its result, "skip" it
    retries: int = 0  # a worker crash re-runs its item on a fresh worker this many times
    kwargs: bool = False  # each item is (args, kwargs): Pool.submit

    @property
    def per_item(self) -> bool:
        """The timeout bounds each wait for a result (the lazy methods), not the whole call."""
        return not self.eager

    @property
    def flags(self) -> int:
        """How workers call ``fn`` (``_chunk.FLAG_*``)."""
        return (
            (FLAG_STAR if self.star else 0)
            | (FLAG_KWARGS if self.kwargs else 0)
            | (FLAG_SKPROCESS if is_skprocess_class(self.fn) else 0)
            | (FLAG_KEEP_GOING if self.errors != "raise" else 0)
            | (FLAG_TIMED if self.item_timeout is not None else 0)
        )


def check_item_options(
    where: str, *, chunksize: int | None = None, item_timeout: float | None = None, errors: str = "raise",
    retries: int = 0,
) -> None:
    """Refuse bad ``chunksize=``, ``item_timeout=``, ``errors=``, ``retries=`` values with a clear message."""
    if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1):
        raise ValueError(f"{where}: chunksize= must be a positive int or None, got {chunksize!r}")
    if item_timeout is not None:
        if isinstance(item_timeout, bool) or not isinstance(item_timeout, (int, float)) or not item_timeout > 0:
            raise ValueError(f"{where}: item_timeout= must be a positive number of seconds or None, got {item_timeout!r}")
        if item_timeout == math.inf:
            raise ValueError(f"{where}: item_timeout= must be finite (use None for no limit)")
    if errors not in ERRORS:
        raise ValueError(f'{where}: errors= must be "raise", "return" or "skip", got {errors!r}')
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"{where}: retries= must be an int >= 0, got {retries!r}")


def _sized_chunk(total: int, workers: int, per_item: float | None) -> int:
    """Items per chunk of a sized input: about four chunks per worker (a slow chunk is made
    up by the others); with items known to be tiny (``per_item`` seconds each), fewer
    chunks of at least ``_MIN_CHUNK_SECONDS`` of work, still one per worker."""
    size = math.ceil(total / (4 * workers))
    if per_item is not None and per_item > 0 and size >= _MIN_FIT_ITEMS:
        size = max(size, min(math.ceil(total / workers), math.ceil(_MIN_CHUNK_SECONDS / per_item)))
    return max(1, size)


def open_input(call: Call) -> Iterator[Any]:
    """Check the call's arguments; an iterator over its input."""
    if not callable(call.fn):
        raise TypeError(
            f"Pool.{call.name}: the first argument must be a function or an Skprocess class, "
            f"got {type(call.fn).__name__} {short_repr(call.fn)}"
        )
    try:
        return iter(call.iterable)
    except TypeError:
        raise TypeError(
            f"Pool.{call.name}: the second argument must be iterable, got {type(call.iterable).__name__} "
            f"{short_repr(call.iterable)}"
        ) from None


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


class CallBase:
    """What every kind of call shares on the caller's side, whatever runs the items.

    Chunk sizing (``map``: about four chunks per worker; ``imap``: adaptive, aiming at
    ``_target_chunk_seconds`` of measured work) with bounded read-ahead, iteration,
    timeouts, progress, and rebuilding an item's error with its remote traceback.
    Subclasses provide ``_top_up`` (submit chunks), ``_take`` (the next finished chunk's
    values, ``None`` at the end), ``_finish_on_error`` and ``_item_time`` (measured
    seconds per item, or ``None``).
    """

    _target_chunk_seconds = 0.01  # adaptive imap chunks aim at this much work each

    def __init__(self, call: Call, source: Iterator[Any], workers: int) -> None:
        self._name = call.name
        self._errors = call.errors
        self._quarantined: list[WorkerCrashedError] = []
        self._timeout = call.timeout
        self._per_item = call.per_item
        self._deadline = None if call.timeout is None or call.per_item else time.monotonic() + call.timeout
        total: int | None
        self._items: list[Any] | None = None  # a list input (map: any input), read a slice at a time
        self._read_at = 0  # the next item of _items to read
        if call.eager:
            # A list is read only through the chunks' slices, all taken before the call's first
            # wait: copying it first would be one more pass over every item (~10 ns each), and
            # so would reading its chunks through an iterator (islice: ~6 ns an item, a slice ~1).
            items = call.iterable if type(call.iterable) is list else list(source)
            total = len(items)
            source = iter(items)
            self._items = items
            self._chunksize = call.chunksize or _sized_chunk(total, workers, None)
            self._bound = math.inf
        else:
            try:
                total = len(call.iterable)
            except TypeError:
                total = None
            if type(call.iterable) is list:  # read lazily all the same: a slice at a time
                self._items = call.iterable
            # adaptive; one item per chunk under a per-result timeout, so that the
            # timeout measures one item and not a whole chunk
            self._chunksize = call.chunksize or (1 if call.timeout is not None else 0)
            self._bound = 0.0
        # A sized input gets bigger chunks than an endless one (fewer round trips, each of
        # which costs a tiny task's call ~0.1 ms in the parent and the worker); an input of
        # unknown length keeps small ones, which bound how far ahead of the consumer it is read.
        self._cap = _MAX_CHUNK if total is None else min(_MAX_SIZED_CHUNK, _sized_chunk(total, workers, None))
        if call.chunksize:
            self._cap = call.chunksize
        self._chosen = call.chunksize is None  # the pool sizes the chunks (_fit may resize them)
        self._workers = workers
        self._source: Iterator[Any] | None = source
        self._total = total
        self._seq = 0  # next chunk number to submit
        self._next_start = 0
        self._consumed_seq = 0  # ordered: next chunk to yield
        self._items_submitted = 0
        self._items_consumed = 0
        self._values = self._iterate()
        self._started = False
        self._current: list[Any] = []
        self._pending_error: BaseException | None = None
        self._input_error: Exception | None = None  # the input raised it: raised after the results before it
        self._done = False
        self._last_size = 0
        self._progress = _ProgressReporter(call.progress, total, f"Pool.{call.name}")

    # -- feeding ---------------------------------------------------------------

    def _fit(self, per_item: float | None) -> None:
        """Size the chunks of a sized input again, from a time per item measured before the
        first chunk is read (the function's previous call): tiny items get fewer chunks."""
        if per_item is None or self._total is None or not self._chosen or self._seq:
            return
        size = _sized_chunk(self._total, self._workers, per_item)
        if self._bound == math.inf:  # map: fixed chunks
            self._chunksize = size
        else:
            self._cap = min(_MAX_SIZED_CHUNK, size)

    def _item_time(self) -> float | None:
        raise NotImplementedError

    def _item_bytes(self) -> int:
        """Measured bytes of one item's result as received (0: not known)."""
        return 0

    def _next_chunksize(self) -> int:
        if self._chunksize:
            return self._chunksize
        per_item = self._item_time()
        if per_item is None:
            size = 1  # nothing measured yet: a slow task must not hold up several items
        else:
            size = int(self._target_chunk_seconds / per_item) if per_item > 0 else self._cap
        per_result = self._item_bytes()
        if per_result:  # big results: a chunk's share of the read-ahead budget at most
            size = min(size, _READ_AHEAD_BYTES // (2 * self._workers) // per_result)
        size = max(1, min(size, self._cap))
        self._last_size = size
        return size

    def _read_chunk(self) -> list[Any] | None:
        """The next items to submit, or ``None`` (input exhausted, or read-ahead is full)."""
        if self._source is None:
            return None
        if self._bound != math.inf:
            self._bound = max(4 * self._workers * (self._last_size or 1), 2 * self._workers)
            per_item = self._item_bytes()
            if per_item:  # big results: read ahead no more than _READ_AHEAD_BYTES of them
                self._bound = min(self._bound, max(2 * self._workers, _READ_AHEAD_BYTES // per_item))
            if self._items_submitted - self._items_consumed >= self._bound:
                return None
        if self._items is not None:  # a list input: a slice of it
            at = self._read_at
            items = self._items[at:at + self._next_chunksize()]
            self._read_at = at + len(items)
        else:
            # extend keeps the items read before the input raised: they still run
            items, size = [], self._next_chunksize()
            try:
                items.extend(islice(self._source, size))
            except Exception as error:
                self._input_failed(error, self._next_start + len(items))
                return items or None
        if not items:
            self._source = self._items = None
            return None
        return items

    def _input_failed(self, error: Exception, read: int) -> None:
        """The input raised ``error`` after ``read`` items: it has ended. Like ``map()``, the
        call yields the results of those items first and raises ``error`` after them, so
        that neither they are lost nor starting a lazy call raises it (a Ctrl-C is not
        deferred: only an ``Exception`` gets here)."""
        error.add_note(f"Pool.{self._name}: the input raised this after {read} item(s), whose results came first")
        self._input_error = error
        self._source = self._items = None

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

    def __iter__(self) -> Iterator[Any]:
        return self._values

    def __next__(self) -> Any:
        return next(self._values)

    def _iterate(self) -> Iterator[Any]:
        """The results one by one, handed out by ``chain`` in C from each chunk's list: a
        ``for`` loop over ``imap`` costs no Python call and no generator step per result."""
        return chain.from_iterable(self._chunk_values())

    def _chunk_values(self) -> Iterator[list[Any]]:
        self._started = True
        while (values := self._guarded(self._next_values)) is not None:
            self._current = values  # close() empties it: the chain stops at once
            yield values

    def _stop_iterating(self) -> None:
        """``close()``: results already received are not yielded any more."""
        self._current.clear()

    def collect(self) -> list[Any]:
        """Every remaining result as a list (chunk by chunk, for ``map``)."""
        if self._started:  # some were taken one by one: the rest from the same place
            return list(self._values)
        self._started = True
        out: list[Any] = []
        try:
            while (values := self._guarded(self._next_values)) is not None:
                out.extend(values)
        except QuarantineError as e:
            e.results = out
            raise
        return out

    def _next_values(self) -> list[Any] | None:
        """The values of the next chunk (may be empty), or ``None`` at the end
        (``QuarantineError`` at the end when items were quarantined)."""
        if self._pending_error is not None:
            err, self._pending_error = self._pending_error, None
            raise err
        values = None
        if not self._done:
            self._top_up()
            values = self._take()
        if values is None and self._input_error is not None:
            err, self._input_error = self._input_error, None
            if self._quarantined:  # one exception only: the input's, naming those items
                indices = ", ".join(str(q.index) for q in sorted(self._quarantined, key=lambda q: q.index))
                err.add_note(f"Pool.{self._name}: besides, items {indices} crashed their worker on every "
                             "attempt and were quarantined (no result)")
                self._quarantined = []
            raise err
        if values is None and self._quarantined:
            quarantined, self._quarantined = sorted(self._quarantined, key=lambda q: q.index), []
            raise QuarantineError(self._name, quarantined)
        return values

    def _settle(self, start: int, items: list[Any], values: list[Any], failures: list[Any], side: str) -> list[Any]:
        """Put the failed items of a chunk's ``values`` (the first is item ``start``) in their
        place: ``errors="return"``: their exceptions; ``"skip"``: left out.

        ``failures`` holds ``ErrorRecord``s from the worker (an item raised) and
        ``ItemError``s made here (a timeout, a crash); a crash quarantined after
        ``retries=`` under ``errors="raise"`` is left out and reported at the end.
        """
        if not failures:
            return values
        drop: set[int] = set()
        for failure in failures:
            offset = (failure.index if isinstance(failure, ItemError) else failure.item) - start
            if isinstance(failure, WorkerCrashedError) and self._errors == "raise":
                self._quarantined.append(failure)
                drop.add(offset)
            elif self._errors == "skip":
                drop.add(offset)
            else:
                values[offset] = failure if isinstance(failure, ItemError) else (
                    self._rebuild_error(start, items, failure, side))
        return [v for i, v in enumerate(values) if i not in drop] if drop else values

    def _top_up(self) -> None:
        """Submit chunks while the input lasts and read-ahead allows."""
        raise NotImplementedError

    def _take(self) -> list[Any] | None:
        """Wait for the next finished chunk(s); their values, or ``None`` at the end."""
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

    def _rebuild_error(self, start: int, items: list[Any], record: ErrorRecord, side: str) -> BaseException:
        return rebuild_error(f"Pool.{self._name}", start, items, record, side)


def rebuild_error(where: str, start: int, items: list[Any], record: ErrorRecord, side: str) -> BaseException:
    """An item's failure as the exception to raise, with the remote traceback as ``__cause__``."""
    index = record.item
    item = items[index - start] if 0 <= index - start < len(items) else "?"
    what = f"{where}: item {index} ({short_repr(item)}) raised {record.type_name}"
    exc = record.error
    if exc is None:
        exc = ProcessError(
            f"{what}: {record.message}\n"
            f"(the exception itself could not be sent to the {side}: {record.why_not_sent})"
        )
    elif isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
        exc = ProcessError(f"{what}({record.message})", original_error=exc)
    return with_remote_cause(exc, record.traceback)
