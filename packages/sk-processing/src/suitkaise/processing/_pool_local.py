"""The local backend: a Pool call's items run in this machine's worker processes.

::

    LocalRun (caller thread)            Core + manager thread (_pool_core)     workers (_pool_worker)
    ────────────────────                 ──────────────────────────────────     ──────────────────────
    wire.dumps(fn) once ─► Job ────────► FN to each worker on first use ──────► FnJob
    wire.dumps(chunk) ───► Chunk ──────► TASK (bounded prefetch per worker) ──► _chunk.run_chunk
    _wait() on core.cv ◄── Entry ◄────── RESULT (results, ErrorRecord) ◄─────── _chunk.encode_outcome
    _decode(): values, or the item's error rebuilt (CallBase._rebuild_error)

``CallBase`` (``_pool_call``) holds what the Dask backend shares: chunk sizing,
read-ahead, iteration, timeouts and progress.
"""

from __future__ import annotations

import time
from typing import Any

from suitkaise.processing import _pool_wire as wire
from suitkaise.processing._chunk import ErrorRecord
from suitkaise.processing._errors import ItemError, ProcessError, short_repr
from suitkaise.processing._pool_call import Call, CallBase, open_input
from suitkaise.processing._pool_core import Chunk, Core, Entry, Job

__all__ = ["LocalRun", "decode_entry"]


def decode_entry(
    entry: Entry, where: str, *, keep_going: bool = False,
) -> tuple[list[Any], ErrorRecord | None, list[Any]]:
    """A finished chunk's results, in item order: ``(values, error, failures)``.

    ``values`` holds ``None`` for each failed item (its record is in ``failures``: an
    ``ErrorRecord`` from the worker or an ``ItemError`` made by the manager); ``error``
    is the item error that stopped the chunk (``errors="raise"``), if any; with
    ``keep_going`` such an error (a ``MemoryError`` that retired a worker) is a failure.
    """
    chunk = entry.chunk
    pieces: list[tuple[int, Any]] = [*entry.parts, *((f.index - chunk.start, f) for f in entry.failures)]
    pieces.sort(key=lambda piece: piece[0])
    values: list[Any] = []
    failures: list[Any] = []
    error: ErrorRecord | None = None
    for lo, piece in pieces:
        if isinstance(piece, ItemError):
            values.append(None)
            failures.append(piece)
            continue
        try:
            part_values, part_error, part_failures = wire.loads(piece.payload, piece.buffers)
        except Exception as e:
            first = chunk.start + lo
            raise ProcessError(
                f"{where}: the results of items {first}..{first + max(piece.a, 1) - 1} "
                f"could not be deserialized in the parent: {type(e).__name__}: {e}"
            ) from e
        if values:
            values.extend(part_values)
        else:  # the common case, one part: its list as it is (no copy of every result)
            values = part_values
        failures.extend(part_failures)
        if part_error is not None and keep_going:
            values.append(None)
            failures.append(part_error)
        elif part_error is not None:
            error = part_error
    return values, error, failures


class LocalRun(CallBase):
    """The caller's side of one call: feeds chunks, yields results, raises errors."""

    def __init__(self, core: Core, workers: int, call: Call) -> None:
        source = open_input(call)
        super().__init__(call, source, workers)
        self._core = core
        try:
            fn_payload, fn_buffers = wire.dumps(call.fn)
        except Exception as e:
            e.add_note(f"Pool.{call.name}: {short_repr(call.fn)} could not be serialized to send it to the workers")
            raise
        self._job = Job(core.new_job_id(), call.name, fn_payload, fn_buffers, call.flags, call.ordered,
                        item_timeout=call.item_timeout, retries=call.retries, keep_going=call.errors != "raise",
                        prior=core.item_time_of(fn_payload))
        self._fit(self._job.prior)
        max_items = core.limits[0]
        if max_items is not None:  # a chunk never outlives its worker by much
            self._cap = min(self._cap, max_items)
            if self._chunksize:
                self._chunksize = min(self._chunksize, max_items)
        self._chunks_consumed = 0
        self._items_received = 0  # for the read-ahead's byte budget
        self._bytes_received = 0
        core.add_job(self._job)
        try:
            self._top_up()
        except BaseException:
            self._finish(kill=False)
            raise

    # -- feeding ---------------------------------------------------------------

    def _item_time(self) -> float | None:
        return self._job.item_time()

    def _item_bytes(self) -> int:
        return self._bytes_received // self._items_received if self._items_received else 0

    def _top_up(self) -> None:
        # The caller holds the GIL while it serializes, the manager needs it to send. A sized
        # input's first chunks (one per worker, read at once) are queued without waking the
        # manager, so that its first pass sends them all; then, with input left, the caller
        # lets it send them before serializing the rest (handoff): every worker starts at once.
        asleep = False  # chunks queued without a wake-up
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
            more = self._total is None or self._next_start < self._total
            asleep = self._seq < self._workers and more and self._total is not None
            self._core.submit(self._job, chunk, wake=not asleep)
            if self._seq == self._workers and more:
                self._core.handoff(self._job)
        if asleep:  # read-ahead full before every worker had a chunk
            self._core.wake()
        if self._source is None or (self._total is not None and self._next_start >= self._total):
            # Every chunk is queued (under the core's lock, before this): the manager may drop
            # the function from the workers once they are all done (Job.complete). Only ever
            # set, after the chunks it speaks of: no lock needed.
            self._job.fed = True

    def _finish_on_error(self, error: BaseException) -> None:
        if isinstance(error, KeyboardInterrupt):
            # Ctrl-C: stop every worker now (the pool restarts on the next call).
            self._core.terminate()
        self._finish(kill=False, error=error)

    def _take(self) -> list[Any] | None:
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
        # `with core.lock`, not `with core.cv`: Condition.__enter__ is a Python function, and
        # a Ctrl-C raised as its lock call returned left the lock held for good (the next
        # call, and the manager thread, then waited on it forever); core.wait: see there
        with core.lock:
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
                core.wait(remaining)
        self._finish(kill=True)
        raise self._timeout_error("the workers running it were stopped")

    def _decode(self, entry: Entry) -> list[Any]:
        values, error, failures = decode_entry(entry, f"Pool.{self._name}", keep_going=self._errors != "raise")
        chunk = entry.chunk
        n = len(values)
        self._items_received += n + 1
        self._bytes_received += sum(len(m.payload) + sum(len(b) for b in m.buffers) for _, m in entry.parts)
        self._items_consumed += n + (1 if error is not None else 0)
        if n:
            self._progress.update(self._items_consumed, n)
        if error is not None:
            self._pending_error = self._rebuild_error(chunk.start, chunk.items, error, "parent")
        elif self._source is None and self._chunks_consumed == self._seq:
            self._finish(kill=False)
        return self._settle(chunk.start, chunk.items, values, failures, "parent")

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
            self._stop_iterating()
            self._finish(kill=False)

    def __del__(self) -> None:
        # Lock-free: may run inside any thread while it holds the core lock.
        job = getattr(self, "_job", None)
        if job is not None and not job.closed:
            job.abandoned = True
            self._core.wake()
