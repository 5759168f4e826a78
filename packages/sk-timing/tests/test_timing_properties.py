"""Property tests: Sktimer statistics agree with the ``statistics`` module and plain list ops."""

from __future__ import annotations

import math
import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from suitkaise.timing import Sktimer

durations = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(durations, min_size=1, max_size=60)
SETTINGS = settings(max_examples=150, deadline=None, database=None)


def timer_of(values: list[float], max_times: int | None = None) -> Sktimer:
    t = Sktimer(max_times=max_times)
    for v in values:
        t.add_time(v)
    return t


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(samples)
def test_central_tendency_and_spread(values: list[float]) -> None:
    t = timer_of(values)
    assert t.num_times == len(values)
    assert close(t.mean, statistics.mean(values))
    assert close(t.median, statistics.median(values))
    assert close(t.total_time, math.fsum(values))
    if len(values) >= 2:
        assert close(t.stdev, statistics.stdev(values))
        assert close(t.variance, statistics.variance(values))
    else:
        assert t.stdev is None and t.variance is None


@SETTINGS
@given(samples)
def test_extremes_and_indices(values: list[float]) -> None:
    t = timer_of(values)
    assert t.min == t.fastest_time == min(values)
    assert t.max == t.slowest_time == max(values)
    assert t.fastest_index == values.index(min(values))
    assert t.slowest_index == values.index(max(values))
    assert t.most_recent == values[-1]
    assert t.most_recent_index == len(values) - 1


@SETTINGS
@given(st.lists(durations, min_size=2, max_size=60))
def test_percentile_matches_inclusive_quantiles(values: list[float]) -> None:
    t = timer_of(values)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for p, expected in enumerate(cuts, start=1):
        got = t.percentile(p)
        assert got is not None
        assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-6), (p, got, expected)
    assert t.percentile(0) == min(values)
    assert t.percentile(100) == max(values)
    assert close(t.percentile(50), statistics.median(values))


@SETTINGS
@given(samples, st.lists(st.floats(min_value=0, max_value=100), min_size=2, max_size=10))
def test_percentile_is_monotonic_and_bounded(values: list[float], ps: list[float]) -> None:
    t = timer_of(values)
    results = [t.percentile(p) for p in sorted(ps)]
    assert all(r is not None for r in results)
    assert all(min(values) <= r <= max(values) for r in results)  # type: ignore[operator]
    assert results == sorted(results)  # type: ignore[type-var]


@SETTINGS
@given(samples, st.integers(min_value=-80, max_value=80))
def test_get_time_is_python_indexing(values: list[float], index: int) -> None:
    t = timer_of(values)
    expected = values[index] if -len(values) <= index < len(values) else None
    assert t.get_time(index) == expected


@SETTINGS
@given(samples, st.integers(min_value=1, max_value=20))
def test_window_keeps_the_most_recent(values: list[float], window: int) -> None:
    t = timer_of(values, max_times=window)
    assert t.times == values[-window:]
    t2 = timer_of(values)
    t2.set_max_times(window)
    assert t2.times == values[-window:]
    assert len(t2._paused_durations) == len(t2.times)


@SETTINGS
@given(samples)
def test_snapshot_equals_live_values(values: list[float]) -> None:
    t = timer_of(values)
    s = t.get_stats()
    assert s is not None
    for name in ("num_times", "mean", "median", "min", "max", "stdev", "variance",
                 "total_time", "fastest_index", "slowest_index", "most_recent"):
        assert getattr(s, name) == getattr(t, name), name
    for p in (0, 10, 33.3, 50, 90, 100):
        assert s.percentile(p) == t.percentile(p)
