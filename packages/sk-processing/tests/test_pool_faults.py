"""Fault isolation in the map methods: errors="raise"|"return"|"skip", per-item timeouts
that kill only the item's worker, retries and quarantine of items that crash their
worker, and chunksize= -- each through the public API, across start methods."""

from __future__ import annotations

import gc
import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkaise.processing import (
    ItemTimeoutError,
    Pool,
    ProcessError,
    QuarantineError,
    WorkerCrashedError,
)
from suitkaise.processing._errors import RemoteTraceback

pytestmark = pytest.mark.timeout(300)

METHODS = ["map", "unordered_map", "imap", "unordered_imap"]


def raise_on_multiple_of_3(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"bad {x}")
    return x


def crash_on_37_mod_100(x: int) -> int:
    if x % 100 == 37:
        os._exit(3)
    return x


def segfault_on(x: int) -> int:
    if x in (5, 17):
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def stuck_in_c_on_3(x: int) -> int:
    if x == 3:
        sum(range(10**12))  # one long C call: the GIL held, no Python code runs
    return x


def sleep_ms(x: int) -> int:
    time.sleep(0.001)
    return x


def _call(pool: Pool, method: str, fn, items, **kwargs):  # type: ignore[no-untyped-def]
    out = getattr(pool, method)(fn, items, **kwargs)
    return out if isinstance(out, list) else list(out)


@pytest.mark.parametrize("method", METHODS)
def test_errors_return_and_skip(start_method, method):
    items = list(range(20))
    with Pool(2) as pool:
        returned = _call(pool, method, raise_on_multiple_of_3, items, errors="return", chunksize=4)
        skipped = _call(pool, method, raise_on_multiple_of_3, items, errors="skip", chunksize=4)
        with pytest.raises(ValueError, match="bad 0" if method in ("map", "imap") else r"bad \d+"):
            _call(pool, method, raise_on_multiple_of_3, items)
    errors = [r for r in returned if isinstance(r, BaseException)]
    assert sorted(str(e) for e in errors) == sorted(f"bad {x}" for x in items if x % 3 == 0)
    assert all(isinstance(e, ValueError) and isinstance(e.__cause__, RemoteTraceback) for e in errors)
    assert sorted(skipped) == [x for x in items if x % 3]
    if method in ("map", "imap"):
        assert [r if not isinstance(r, BaseException) else str(r) for r in returned] == [
            f"bad {x}" if x % 3 == 0 else x for x in items
        ]
        assert skipped == [x for x in items if x % 3]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.sampled_from([0, 1, 2, 3, 7, 64, 4095, 4097]),
    chunksize=st.one_of(st.none(), st.integers(1, 5000)),
    errors=st.sampled_from(["return", "skip"]),
    method=st.sampled_from(METHODS),
)
def test_errors_property_every_item_accounted_once(n, chunksize, errors, method):
    """Whatever the size and chunking: every good item's result once, every bad one
    returned (in place) or skipped."""
    with Pool(2) as pool:
        out = _call(pool, method, raise_on_multiple_of_3, range(n), errors=errors, chunksize=chunksize)
    good = [x for x in range(n) if x % 3]
    values = [r for r in out if not isinstance(r, BaseException)]
    failed = [r for r in out if isinstance(r, BaseException)]
    assert sorted(values) == good
    assert len(failed) == (n - len(good) if errors == "return" else 0)
    if method in ("map", "imap"):
        assert values == good


@pytest.mark.parametrize("method", METHODS)
def test_item_timeout_kills_only_that_items_worker(start_method, method):
    with Pool(2) as pool:
        t0 = time.monotonic()
        out = _call(pool, method, stuck_in_c_on_3, range(12), item_timeout=1, errors="return", chunksize=4)
        elapsed = time.monotonic() - t0
        assert elapsed < 15
        timeouts = [r for r in out if isinstance(r, ItemTimeoutError)]
        assert len(timeouts) == 1 and timeouts[0].index == 3 and timeouts[0].timeout == 1
        assert sorted(r for r in out if not isinstance(r, BaseException)) == [x for x in range(12) if x != 3]
        # errors="raise" (default): the timeout raises, as itself (a TimeoutError)
        with pytest.raises(ItemTimeoutError, match=r"item 3 \(3\) ran longer than item_timeout=0.5s"):
            _call(pool, method, stuck_in_c_on_3, range(6), item_timeout=0.5)
        assert pool.map(abs, [-1]) == [1]  # the pool goes on


def test_item_timeout_cost_on_short_items():
    """500 items of 1 ms with a generous per-item timeout: all results, none timed out."""
    with Pool(2) as pool:
        assert pool.map(sleep_ms, range(500), item_timeout=30) == list(range(500))
        assert list(pool.imap(sleep_ms, range(500), item_timeout=30)) == list(range(500))


def test_retries_then_quarantine_while_the_rest_finishes(start_method):
    """The headline: items that crash their worker are retried on a fresh one, then
    quarantined with a report, while every other item finishes. 10^5 items, 1% crashing:
    2000 workers die. Fewer items where replacing a worker means importing the library
    again (spawn: a new interpreter, ~0.3 s each here; forkserver: a fork server started
    by an earlier test without the workers' modules preloaded, ~0.2 s)."""
    n = {"fork": 100_000, "forkserver": 2_000, "spawn": 2_000}[start_method]
    with Pool(2) as pool:
        with pytest.raises(QuarantineError) as info:
            pool.map(crash_on_37_mod_100, range(n), retries=1)
        error = info.value
        assert error.results == [x for x in range(n) if x % 100 != 37]
        assert [q.index for q in error.quarantined] == [x for x in range(n) if x % 100 == 37]
        first = error.quarantined[0]
        assert isinstance(first, WorkerCrashedError) and isinstance(first, ProcessError)
        assert first.attempts == 2 and first.exitcode == 3 and first.signal is None
        assert first.item == "37" and "on each of 2 attempts" in str(first)
        assert f"{n // 100} item(s) crashed their worker" in str(error)
        # errors="skip" / "return" with retries: no exception, the report in place
        out = pool.map(crash_on_37_mod_100, range(300), retries=1, errors="return")
        assert [r.index for r in out if isinstance(r, WorkerCrashedError)] == [37, 137, 237]


@pytest.mark.parametrize("method", ["imap", "unordered_imap"])
def test_quarantine_with_lazy_methods(method):
    with Pool(2) as pool:
        seen = []
        with pytest.raises(QuarantineError) as info:
            for value in getattr(pool, method)(segfault_on, range(30), retries=2):
                seen.append(value)
    assert sorted(seen) == [x for x in range(30) if x not in (5, 17)]
    assert [(q.index, q.signal, q.attempts) for q in info.value.quarantined] == [(5, "SIGSEGV", 3), (17, "SIGSEGV", 3)]
    assert all(q.fault and "segfault_on" in q.fault for q in info.value.quarantined)


def _thirty_then_broken():
    yield from range(30)
    raise LookupError("input broke at 30")


@pytest.mark.parametrize("method", ["imap", "unordered_imap"])
def test_quarantine_and_a_failing_input_raise_the_inputs_error_naming_the_items(start_method, method):
    """Both at the end of a lazy call: one exception only, the input's (as the builtin map
    would raise it), with a note naming the quarantined items."""
    with Pool(2) as pool:
        seen = []
        with pytest.raises(LookupError, match="input broke at 30") as info:
            for value in getattr(pool, method)(segfault_on, _thirty_then_broken(), retries=1):
                seen.append(value)
        assert sorted(seen) == [x for x in range(30) if x not in (5, 17)]
        assert "items 5, 17 crashed their worker on every attempt" in " ".join(info.value.__notes__)
        assert pool.map(abs, [-1]) == [1]


def test_a_crash_without_retries_still_cancels_the_call(start_method):
    with Pool(2) as pool:
        with pytest.raises(WorkerCrashedError, match=r"died while running item 5 \(5\).*SIGSEGV"):
            pool.map(segfault_on, range(10), chunksize=1)
        assert pool.map(abs, [-3]) == [3]


def test_items_before_and_after_a_crash_in_one_chunk_run_exactly_once(tmp_path):
    """A chunk whose worker crashed mid-way is split: the items before the crash are run again
    (their results died with the worker), those after run once, nothing twice needlessly."""
    log = str(tmp_path / "log")
    with Pool(1) as pool:
        out = pool.map(_logged_crash, [(log, i) for i in range(10)], chunksize=10, retries=1, errors="return")
    assert [r for r in out if not isinstance(r, BaseException)] == [i for i in range(10) if i != 4]
    with open(log) as f:
        runs = [int(x) for x in f.read().split()]
    # items 0..3 ran, then 4 crashed; then 0..3 again (lost results), 4 alone (crashed again), 5..9
    assert runs == [0, 1, 2, 3, 0, 1, 2, 3, 5, 6, 7, 8, 9]


def _logged_crash(arg: tuple[str, int]) -> int:
    log, i = arg
    if i == 4:
        os._exit(1)
    with open(log, "a") as f:
        f.write(f"{i}\n")
    return i


@pytest.mark.parametrize("chunksize", [1, 3, 1000])
def test_chunksize_is_what_the_workers_get(chunksize):
    with Pool(2) as pool:
        pids_by_chunk = pool.map(_pid_and_item, range(30), chunksize=chunksize)
    runs: list[list[int]] = []
    last = None
    for pid, item in pids_by_chunk:
        if pid != last:
            runs.append([])
            last = pid
        runs[-1].append(item)
    # consecutive items of one chunk share a worker: no run is split below the chunk size
    assert all(len(run) % min(chunksize, 30) == 0 or run[-1] == 29 for run in runs)
    assert [item for _, item in pids_by_chunk] == list(range(30))


def _pid_and_item(x: int) -> tuple[int, int]:
    return os.getpid(), x


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"errors": "ignore"}, 'errors= must be "raise", "return" or "skip"'),
        ({"retries": -1}, "retries= must be an int >= 0"),
        ({"retries": 1.5}, "retries= must be an int >= 0"),
        ({"item_timeout": 0}, "item_timeout= must be a positive number"),
        ({"item_timeout": float("inf")}, "item_timeout= must be finite"),
        ({"chunksize": 0}, "chunksize= must be a positive int"),
        ({"chunksize": True}, "chunksize= must be a positive int"),
    ],
)
def test_bad_item_options_fail_clearly(kwargs, message):
    with Pool(1) as pool:
        with pytest.raises(ValueError, match=message):
            pool.map(abs, [1], **kwargs)


def _crash_and_time_out() -> None:
    with Pool(2) as pool:
        pool.map(segfault_on, range(30), retries=1, errors="skip")
        pool.map(stuck_in_c_on_3, range(6), item_timeout=0.3, errors="skip")


def test_no_descriptor_leaks_across_crashes():
    """Sockets and fault pipes of dead workers are closed (checked on the second round:
    the first one creates multiprocessing's shared-memory arena, which it keeps)."""
    _crash_and_time_out()
    gc.collect()
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(2):
        _crash_and_time_out()
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= len(before)


def _init_that_dies() -> None:
    os._exit(5)


def test_an_initializer_that_crashes_is_named_and_not_retried_forever(start_method):
    with Pool(2, initializer=_init_that_dies) as pool:
        t0 = time.monotonic()
        with pytest.raises(WorkerCrashedError, match=r"while running the pool's initializer .*_init_that_dies"):
            pool.map(abs, range(10))
        assert time.monotonic() - t0 < 60
