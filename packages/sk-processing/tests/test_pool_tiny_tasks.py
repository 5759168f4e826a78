"""Pool: many tiny items (issue 17): chunk sizes of sized inputs, results handed out a chunk
at a time -- the same results and errors whatever the size.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkaise.processing import Pool, WorkerCrashedError
from suitkaise.processing._pool_call import _MAX_CHUNK, _MAX_SIZED_CHUNK, Call, CallBase

pytestmark = pytest.mark.timeout(300)

METHODS = ["map", "unordered_map", "imap", "unordered_imap"]
# around the chunk caps (4096 for unknown lengths, 16384 for sized inputs) and 10^5
SIZES = [0, 1, 2, 3, 4095, 4096, 4097, 16383, 16384, 16385, 100_000]


class FailAt:
    """``x * 2``, except that item ``at`` raises ``ValueError(f"bad {x}")``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, x: int) -> int:
        if x == self.at:
            raise ValueError(f"bad {x}")
        return x * 2


def _call(pool: Pool, method: str, fn: object, items: object, **kwargs: object) -> list[object]:
    out = getattr(pool, method)(fn, items, **kwargs)
    return out if isinstance(out, list) else list(out)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.sampled_from(SIZES),
    where=st.floats(0, 1),
    fails=st.booleans(),
    errors=st.sampled_from(["raise", "return", "skip"]),
    method=st.sampled_from(METHODS),
    sized=st.booleans(),
)
def test_every_size_gives_every_result_once_and_the_failing_items_error(n, where, fails, errors, method, sized):
    """One item failing at a random index (or none): errors="raise" raises its exception,
    "return" puts it in its place, "skip" leaves it out; every other result arrives once."""
    at = min(int(where * n), n - 1) if fails and n else -1
    items: object = range(n) if sized else (x for x in range(n))
    expected: list[object] = [x * 2 for x in range(n)]
    with Pool(2) as pool:
        if at >= 0 and errors == "raise":
            with pytest.raises(ValueError, match=rf"^bad {at}$"):
                _call(pool, method, FailAt(at), items)
            return
        out = _call(pool, method, FailAt(at), items, errors=errors)
    if at >= 0:
        failed = [r for r in out if isinstance(r, BaseException)]
        if errors == "return":
            assert [str(e) for e in failed] == [f"bad {at}"]
            if method in ("map", "imap"):
                assert out.index(failed[0]) == at
        else:
            assert failed == []
        out = [r for r in out if not isinstance(r, BaseException)]
        del expected[at]
    assert (out if method in ("map", "imap") else sorted(out)) == expected  # type: ignore[type-var]


def _cap(iterable: object, workers: int = 2) -> int:
    call = Call("imap", abs, iterable, star=False, ordered=True, eager=False, timeout=None, progress=None)
    return CallBase(call, iter(iterable), workers)._cap  # type: ignore[call-overload]


def test_sized_inputs_get_chunks_up_to_maps_size_endless_ones_stay_small():
    """A sized input's adaptive chunks may grow to map's size (len / 4 per worker), up to
    _MAX_SIZED_CHUNK: fewer round trips for tiny items; an input of unknown length keeps
    _MAX_CHUNK, which bounds how far ahead of the consumer it is read."""
    assert _MAX_SIZED_CHUNK > _MAX_CHUNK
    assert _cap(range(100_000)) == 12_500
    assert _cap(range(10**9)) == _MAX_SIZED_CHUNK
    assert _cap(range(10)) == 2
    assert _cap(x for x in range(10**9)) == _MAX_CHUNK


def test_tiny_items_timed_before_get_fewer_bigger_chunks():
    """Known to take ~0.1 us each, 10,000 items go in two chunks of 5,000 (one per worker)
    instead of eight of 1,250: each chunk costs ~0.1 ms of round trip. Slow items, an
    explicit chunksize= or an input of unknown length keep their chunks."""

    def run(items: object, per_item: float | None, method: str = "map", **kw: object) -> CallBase:
        call = Call(method, abs, items, star=False, ordered=True, eager=method == "map", timeout=None,
                    progress=None, **kw)  # type: ignore[arg-type]
        run = CallBase(call, iter(items), 2)  # type: ignore[call-overload]
        run._fit(per_item)
        return run

    assert run(list(range(10_000)), None)._chunksize == 1_250  # nothing measured: four per worker
    assert run(list(range(10_000)), 1e-7)._chunksize == 5_000
    assert run(list(range(100_000)), 1e-7)._chunksize == 12_500  # already at least 1 ms each
    assert run(list(range(10_000)), 1e-3)._chunksize == 1_250  # slow items: four per worker
    assert run(list(range(10_000)), 1e-7, chunksize=100)._chunksize == 100
    assert run(range(10_000), 1e-7, "imap")._cap == 5_000
    assert run((x for x in range(10_000)), 1e-7, "imap")._cap == _MAX_CHUNK
    # a short input keeps one item per chunk: this call's items may cost far more than the
    # last call's (map(f, [1.5 s, 0, 0, 0]) after a call of instant items went [1.5, 0] + [0, 0])
    assert run([1.5, 0.0, 0.0, 0.0], 1e-7)._chunksize == 1
    assert run([1.5, 0.0, 0.0, 0.0], 1e-7, "unordered_imap")._cap == 1
    assert run(list(range(504)), 1e-7)._chunksize == 63  # four per worker: too few to merge
    assert run(list(range(512)), 1e-7)._chunksize == 256  # one per worker from 64 items a chunk on


class _RecordingCore:
    """What LocalRun asks of its Core while it feeds a call, recorded (no manager, no workers)."""

    limits = (None, None)

    def __init__(self) -> None:
        self.log: list[str] = []

    def new_job_id(self) -> int:
        return 1

    def item_time_of(self, fn_payload: bytes) -> float | None:
        return None

    def add_job(self, job: object) -> None:
        pass

    def submit(self, job: object, chunk: object, *, wake: bool = True) -> None:
        self.log.append("submit+wake" if wake else "submit")

    def handoff(self, job: object) -> None:
        self.log.append("handoff")

    def wake(self) -> None:
        self.log.append("wake")


def test_every_worker_gets_its_first_chunk_before_the_rest_is_serialized():
    """The caller holds the GIL while it serializes and the manager needs it to send: the
    first chunk of each worker is queued without waking the manager (woken at the first, it
    sent that one alone), then the caller lets the manager send them (handoff) before it
    serializes the rest of the input."""
    from suitkaise.processing._pool_local import LocalRun

    def feed(items: object, method: str = "map") -> list[str]:
        core = _RecordingCore()
        call = Call(method, abs, items, star=False, ordered=True, eager=method == "map", timeout=None,
                    progress=None)
        LocalRun(core, 2, call)  # type: ignore[arg-type]
        return core.log

    assert feed(list(range(80)))[:4] == ["submit", "submit+wake", "handoff", "submit+wake"]
    assert feed(list(range(80))).count("handoff") == 1
    assert feed([1, 2]) == ["submit", "submit+wake"]  # nothing left to serialize: no handoff
    assert feed([1]) == ["submit+wake"]
    # an input of unknown length: each chunk wakes the manager (the next one may be slow to come)
    assert feed((x for x in range(80)), "imap")[:3] == ["submit+wake", "submit+wake", "handoff"]


def test_a_functions_next_call_is_chunked_from_its_last_measurement(start_method):
    """imap sizes its chunks from the measured time per item: its first chunk used to be a
    single item on every call (nothing measured yet). A function called before starts
    from what its last call measured: tiny items get a full-size first chunk."""
    with Pool(2) as pool:
        assert pool.map(abs, range(-2000, 0))[0] == 2000  # measures abs
        done: list[int] = []
        out = list(pool.imap(abs, range(-2000, 0), progress=lambda n, total: done.append(n)))
        assert out == list(range(2000, 0, -1))
        assert done[0] > 1  # the first chunk held more than one item
        # another function has no measurement yet: one item first, as before
        done.clear()
        assert list(pool.imap(FailAt(-1), range(5), progress=lambda n, total: done.append(n))) == [0, 2, 4, 6, 8]
        assert done[0] == 1


def test_closing_an_imap_mid_chunk_stops_at_once(start_method):
    """Results are handed out from each chunk's list by itertools.chain: close() still ends
    the iteration right away, even with results of the current chunk not yet taken."""
    with Pool(2) as pool:
        it = pool.imap(abs, range(-50_000, 0))
        head = list(itertools.islice(it, 10))
        assert head == list(range(50_000, 49_990, -1))
        it.close()
        assert list(it) == []
        assert pool.map(abs, [-1, -2]) == [1, 2]


def test_a_failing_input_after_some_chunks_were_submitted(start_method):
    """The chunks read before the input itself raised still run and all their results arrive
    in order (a chunk at a time), then the input's error is what the call raises."""

    def items() -> Iterator[int]:
        yield from range(1000)
        raise KeyError("the input broke")

    with Pool(2) as pool:
        seen: list[int] = []
        with pytest.raises(KeyError, match="the input broke"):
            for value in pool.imap(abs, items(), chunksize=10):
                seen.append(value)
        assert seen == list(range(1000))  # in order, none lost before the error
        assert pool.map(abs, range(-3, 0)) == [3, 2, 1]


def _policies(_: object) -> tuple[int, int]:
    """(this thread's scheduling policy, the worker's reader thread's)."""
    import os
    import threading

    reader = next(t for t in threading.enumerate() if t.name == "sk-pool-reader")
    assert reader.native_id is not None
    return os.sched_getscheduler(0), os.sched_getscheduler(reader.native_id)


@pytest.mark.skipif(not hasattr(__import__("os"), "SCHED_BATCH"), reason="SCHED_BATCH is Linux-only")
def test_a_workers_reader_runs_under_sched_batch_its_tasks_do_not(start_method):
    """The reader's wake-up must not preempt the parent that woke it: on a busy machine the
    parent then waited for the first worker's whole chunk before it could send the second
    worker its own (they ran one after the other). The tasks keep the normal policy: whole
    workers under SCHED_BATCH woke late from every sleep on a loaded machine."""
    import os

    with Pool(2) as pool:
        assert set(pool.map(_policies, range(4))) == {(os.SCHED_OTHER, os.SCHED_BATCH)}


def test_workers_progress_slots_share_no_cache_line(start_method):
    """Each worker stores its item index before every item; two workers' slots on one cache
    line made each store a cache miss on both cores (a tiny item took ~130 ns instead of ~70)."""
    import ctypes

    with Pool(3) as pool:
        assert pool.map(abs, range(-64, 0))[0] == 64
        core = pool._core
        with core.lock:
            spans = [(ctypes.addressof(w.progress), ctypes.sizeof(w.progress)) for w in core.workers]
        assert len(spans) == 3
        lines = [set(range(at // 64, (at + size - 1) // 64 + 1)) for at, size in spans]
        for a, b in itertools.combinations(lines, 2):
            assert not a & b


class _Recorder:
    """``x * 2``, noting the item the progress slots name while each item runs; raises at ``fail``."""

    def __init__(self, progress: list[int], fail: int | None = None) -> None:
        self.progress = progress
        self.fail = fail
        self.named: list[int] = []

    def __call__(self, x: int) -> int:
        from suitkaise.processing._chunk import running_item

        self.named.append(running_item(self.progress))
        if x == self.fail:
            raise ValueError(f"bad {x}")
        return x * 2


@pytest.mark.parametrize("fail", [None, 0, 3, 4])
def test_the_hot_loop_names_each_item_while_it_runs(fail):
    """The hot loop (a plain function) stores only each item's offset from the part's first
    item: the slots still name every item exactly while it runs, which is what names the
    item that killed a worker; a raising item (offset ``fail``) keeps the results before it."""
    from suitkaise.processing._chunk import PROGRESS_SLOTS, FnJob, run_chunk

    progress = [0] * PROGRESS_SLOTS
    fn = _Recorder(progress, None if fail is None else 10 + fail)
    job = FnJob(fn, 0)
    assert job.plain
    outcome = run_chunk(lambda: (job, [10, 11, 12, 13, 14]), 100, progress)
    ran = 5 if fail is None else fail + 1
    assert fn.named == [100 + i for i in range(ran)]
    assert outcome.results == [2 * (10 + i) for i in range(5 if fail is None else fail)]
    if fail is None:
        assert outcome.error is None
    else:
        assert outcome.error is not None and outcome.error.item == 100 + fail


def _crash_on(x: int) -> int:
    if x in (0, 9, 10, 15, 19):
        os._exit(7)
    return -x


def test_a_crash_in_the_hot_loop_names_its_item_wherever_it_is_in_its_part(start_method):
    """First, middle and last items of chunks, and of the parts sent again after a crash
    (which start mid-chunk): each crash is blamed on its own item."""
    with Pool(2) as pool:
        out = pool.map(_crash_on, range(20), chunksize=10, errors="return")
    crashed = {i: r for i, r in enumerate(out) if isinstance(r, WorkerCrashedError)}
    assert sorted(crashed) == [0, 9, 10, 15, 19]
    for i, error in crashed.items():
        assert error.index == i and f"while running item {i} ({i})" in str(error)
    assert [r for i, r in enumerate(out) if i not in crashed] == [-i for i in range(20) if i not in crashed]
