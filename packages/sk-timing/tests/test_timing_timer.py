"""Sktimer: control methods, errors and warnings, statistics, threads, repr, Share hooks."""

from __future__ import annotations

import statistics
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from suitkaise.timing import Sktimer, TimerStats

NOT_RUNNING = r"^Sktimer is not running\. Call start\(\) first\.$"
MAX_TIMES = r"^max_times must be a positive integer or None$"


@contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def filled(*values: float, max_times: int | None = None) -> Sktimer:
    t = Sktimer(max_times=max_times)
    for v in values:
        t.add_time(v)
    return t


# -- construction --------------------------------------------------------------

def test_fresh_timer_state() -> None:
    t = Sktimer()
    assert t.times == []
    assert t.original_start_time is None
    assert t.max_times is None
    assert t.num_times == 0
    for name in ("most_recent", "result", "most_recent_index", "total_time",
                 "total_time_paused", "mean", "median", "min", "max", "fastest_time",
                 "slowest_time", "fastest_index", "slowest_index", "stdev", "variance"):
        assert getattr(t, name) is None, name
    assert t.get_stats() is None
    assert t.get_statistics() is None
    assert t.get_time(0) is None
    assert t.percentile(50) is None


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, [2]])
def test_constructor_rejects_bad_max_times(bad: object) -> None:
    with pytest.raises(ValueError, match=MAX_TIMES):
        Sktimer(max_times=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -5, 1.5, "2"])
def test_set_max_times_rejects_bad_values(bad: object) -> None:
    t = filled(1, 2, 3, max_times=5)
    with pytest.raises(ValueError, match=MAX_TIMES):
        t.set_max_times(bad)  # type: ignore[arg-type]
    assert t.max_times == 5
    assert t.times == [1, 2, 3]


# -- start / stop / nesting ---------------------------------------------------

def test_start_returns_perf_counter_and_sets_original_start() -> None:
    t = Sktimer()
    before = time.perf_counter()
    s = t.start()
    after = time.perf_counter()
    assert before <= s <= after
    assert t.original_start_time == s
    elapsed = t.stop()
    assert elapsed >= 0
    assert t.times == [elapsed]
    t.start()
    assert t.original_start_time == s, "only the first start() sets original_start_time"
    t.stop()


def test_scenario_1_nested_frames_are_lifo() -> None:
    t = Sktimer()
    with no_warnings():
        t.start()
    with pytest.warns(UserWarning, match=r"^Sktimer\.start\(\) called while timing is already "
                      r"in progress\. This creates a nested timing frame\.$"):
        t.start()
    a = t.stop()
    b = t.stop()
    assert a < b
    assert t.num_times == 2
    assert t.times == [a, b]


@pytest.mark.parametrize("method", ["stop", "discard", "lap", "pause", "resume"])
def test_methods_without_a_frame_raise(method: str) -> None:
    t = Sktimer()
    with pytest.raises(RuntimeError, match=NOT_RUNNING):
        getattr(t, method)()
    t.start()
    t.stop()
    with pytest.raises(RuntimeError, match=NOT_RUNNING):
        getattr(t, method)()


@pytest.mark.parametrize("method", ["stop", "lap", "pause", "resume"])
def test_a_call_from_another_thread_names_the_thread_that_is_timing(method: str) -> None:
    timer = Sktimer()
    started, done = threading.Event(), threading.Event()

    def timing() -> None:
        timer.start()
        started.set()
        done.wait(10)
        timer.stop()

    t = threading.Thread(target=timing, name="worker-7")
    t.start()
    try:
        assert started.wait(10)
        with pytest.raises(RuntimeError, match=r"not running in this thread \('MainThread'\); it is running in "
                                               r"'worker-7'.*from the thread that called start\(\)"):
            getattr(timer, method)()
    finally:
        done.set()
        t.join(10)
    assert timer.num_times == 1
    with pytest.raises(RuntimeError, match=NOT_RUNNING):  # nobody is timing: the plain message
        timer.stop()


def test_discard_records_nothing() -> None:
    t = Sktimer()
    t.start()
    e = t.discard()
    assert e >= 0
    assert t.num_times == 0
    with pytest.raises(RuntimeError, match=NOT_RUNNING):
        t.stop()


def test_lap_records_and_restarts() -> None:
    t = Sktimer()
    t.start()
    t.pause()
    l1 = t.lap()
    with no_warnings():
        t.pause()  # lap cleared the paused state: pausing again does not warn
        t.resume()
    l2 = t.lap()
    last = t.stop()
    assert t.times == [l1, l2, last]
    assert t.num_times == 3


def test_scenario_2_pause_excluded_and_counted() -> None:
    t = Sktimer()
    wall0 = time.perf_counter()
    t.start()
    t.pause()
    time.sleep(0.05)
    t.resume()
    measured = t.stop()
    wall = time.perf_counter() - wall0
    paused = t.total_time_paused
    assert paused is not None
    assert paused >= 0.05
    assert measured >= 0
    assert measured <= wall - 0.05 + 1e-6
    assert measured + paused <= wall + 1e-6


def test_stop_while_paused_excludes_open_pause() -> None:
    t = Sktimer()
    wall0 = time.perf_counter()
    t.start()
    t.pause()
    time.sleep(0.03)
    measured = t.stop()
    wall = time.perf_counter() - wall0
    paused = t.total_time_paused
    assert paused is not None and paused >= 0.03
    assert measured <= wall - 0.03 + 1e-6


def test_pause_twice_warns_and_changes_nothing() -> None:
    t = Sktimer()
    t.start()
    t.pause()
    with pytest.warns(UserWarning, match=r"^Sktimer is already paused\. Call resume\(\) first\.$"):
        t.pause()
    t.resume()
    t.stop()
    assert t.num_times == 1


def test_resume_without_pause_warns() -> None:
    t = Sktimer()
    t.start()
    with pytest.warns(UserWarning, match=r"^Sktimer is not paused\. Call pause\(\) first\.$"):
        t.resume()
    t.stop()
    assert t.total_time_paused == 0.0


# -- add_time / max_times / reset -------------------------------------------

def test_add_time_records_with_zero_pause() -> None:
    t = filled(1, 2.5)
    assert t.times == [1.0, 2.5]
    assert t.total_time_paused == 0.0
    assert t.original_start_time is None, "add_time never sets original_start_time"


@pytest.mark.parametrize("bad", ["1.0", None, [1], True, object()])
def test_add_time_rejects_non_numbers(bad: object) -> None:
    t = Sktimer()
    with pytest.raises(TypeError, match="elapsed_time must be a real number"):
        t.add_time(bad)  # type: ignore[arg-type]
    assert t.num_times == 0


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_add_time_rejects_impossible_durations(bad: float) -> None:
    t = Sktimer()
    with pytest.raises(ValueError, match="finite, non-negative"):
        t.add_time(bad)
    assert t.num_times == 0


def test_scenario_4_set_max_times_trims_immediately() -> None:
    t = filled(1, 2, 3, 4)
    t.set_max_times(2)
    assert t.times == [3, 4]
    assert t.max_times == 2
    t.add_time(5)
    assert t.times == [4, 5]
    t.set_max_times(None)
    t.add_time(6)
    assert t.times == [4, 5, 6]


def test_window_trims_paused_durations_too() -> None:
    t = Sktimer(max_times=2)
    t.start()
    t.pause()
    time.sleep(0.01)
    t.stop()
    assert t.total_time_paused is not None and t.total_time_paused >= 0.01
    t.add_time(1)
    t.add_time(2)  # the paused measurement falls out of the window
    assert t.times == [1, 2]
    assert t.total_time_paused == 0.0


def test_reset_clears_data_and_frames_keeps_max_times() -> None:
    t = filled(1, 2, 3, max_times=10)
    t.start()
    t.reset()
    assert t.times == []
    assert t.num_times == 0
    assert t.original_start_time is None
    assert t.total_time_paused is None
    assert t.max_times == 10
    with pytest.raises(RuntimeError, match=NOT_RUNNING):
        t.stop()


def test_reset_from_another_thread_drops_in_flight_frames() -> None:
    t = Sktimer()
    t.start()
    th = threading.Thread(target=t.reset)
    th.start()
    th.join()
    with pytest.raises(RuntimeError, match=NOT_RUNNING):
        t.stop()


# -- statistics ---------------------------------------------------------------

def test_scenario_3_statistics() -> None:
    t = filled(1, 2, 3, 4)
    assert t.percentile(25) == 1.75
    assert t.percentile(50) == 2.5
    assert t.percentile(0) == 1
    assert t.percentile(100) == 4
    assert t.median == 2.5
    assert t.mean == 2.5
    assert t.stdev == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert t.variance == pytest.approx(statistics.variance([1, 2, 3, 4]))
    assert t.total_time == 10
    assert (t.min, t.max, t.fastest_time, t.slowest_time) == (1, 4, 1, 4)
    assert (t.fastest_index, t.slowest_index) == (0, 3)
    assert t.most_recent == t.result == 4
    assert t.most_recent_index == 3
    stats = t.get_stats()
    assert isinstance(stats, TimerStats)
    t.add_time(100)
    assert stats.times == [1, 2, 3, 4]
    assert stats.num_times == 4
    assert stats.mean == 2.5
    assert stats.max == 4
    assert stats.percentile(25) == 1.75
    assert stats.get_time(-1) == 4
    assert t.max == 100


def test_timer_stats_is_frozen() -> None:
    stats = filled(1, 2).get_statistics()
    assert stats is not None
    with pytest.raises(AttributeError):
        stats.mean = 5  # type: ignore[misc]
    stats.times.append(99)  # a private copy: the timer does not see it
    assert "num_times=2" in repr(stats)


def test_timer_stats_has_every_field() -> None:
    t = filled(3, 1, 2)
    s = t.get_stats()
    assert s is not None
    for name in ("num_times", "most_recent", "most_recent_index", "total_time",
                 "total_time_paused", "mean", "median", "min", "max", "fastest_time",
                 "slowest_time", "fastest_index", "slowest_index", "stdev", "variance"):
        assert getattr(s, name) == getattr(t, name), name
    assert s.original_start_time is None
    assert s.times == t.times


def test_stdev_and_variance_need_two_values() -> None:
    t = filled(1.5)
    assert t.stdev is None
    assert t.variance is None
    stats = t.get_stats()
    assert stats is not None and stats.stdev is None and stats.variance is None
    assert t.mean == t.median == t.min == t.max == 1.5


def test_ties_report_first_index() -> None:
    t = filled(2, 1, 3, 1, 3)
    assert t.fastest_index == 1
    assert t.slowest_index == 2


def test_get_time_supports_negative_indices() -> None:
    t = filled(10, 20, 30)
    assert t.get_time(0) == 10
    assert t.get_time(2) == 30
    assert t.get_time(-1) == 30
    assert t.get_time(-3) == 10
    assert t.get_time(3) is None
    assert t.get_time(-4) is None
    with pytest.raises(TypeError, match="index must be an int"):
        t.get_time("0")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-0.1, 100.5, 150])
def test_percentile_out_of_range(bad: float) -> None:
    assert Sktimer().percentile(bad) is None, "empty timer: None even when out of range"
    with pytest.raises(ValueError, match=r"^Percentile must be between 0 and 100$"):
        filled(1, 2).percentile(bad)


def test_percentile_single_value() -> None:
    t = filled(7)
    assert t.percentile(0) == t.percentile(33.3) == t.percentile(100) == 7


# -- threads ------------------------------------------------------------------

def test_scenario_7_four_threads_hundred_each() -> None:
    t = Sktimer()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(100):
                t.start()
                t.stop()
        except BaseException as e:  # surfaced below
            errors.append(e)

    with no_warnings():  # no thread ever sees another thread's frame
        threads = [threading.Thread(target=work) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
    assert not errors
    assert t.num_times == 400
    assert len(t._paused_durations) == 400


def test_threads_keep_separate_sessions() -> None:
    t = Sktimer()
    t.start()  # main thread frame stays open while the worker times
    started = threading.Event()
    proceed = threading.Event()
    results: list[object] = []

    def work() -> None:
        try:
            with no_warnings():
                t.start()  # must not warn: the main thread's frame is not ours
            started.set()
            proceed.wait(timeout=30)
            t.pause()
            results.append(t.stop())
        except BaseException as e:
            results.append(e)

    th = threading.Thread(target=work)
    th.start()
    assert started.wait(timeout=30)
    with pytest.warns(UserWarning, match="already paused"):
        t.pause()
        t.pause()  # the main frame is paused; the worker's is not
    proceed.set()
    th.join(timeout=30)
    assert isinstance(results[0], float)
    main = t.stop()
    assert t.times == [results[0], main]


def test_sessions_of_dead_threads_are_purged() -> None:
    t = Sktimer()

    def leave_open() -> None:
        t.start()

    for _ in range(3):
        th = threading.Thread(target=leave_open)
        th.start()
        th.join()
    t.start()  # creating a session purges the dead threads' sessions
    assert len(t._sessions) == 1
    t.stop()
    assert t._sessions == {}


# -- repr and Share hooks -----------------------------------------------------

def test_repr() -> None:
    assert repr(Sktimer()) == "Sktimer(num_times=0, mean=None, max_times=None)"
    assert repr(filled(1, 2, max_times=5)) == "Sktimer(num_times=2, mean=1.5, max_times=5)"


def test_shared_meta_exact() -> None:
    meta = Sktimer._shared_meta
    methods = meta["methods"]
    assert methods["add_time"] == {"writes": ["times", "_paused_durations"]}
    assert methods["set_max_times"] == {"writes": ["times", "_paused_durations", "_max_times"]}
    assert methods["reset"] == {
        "writes": ["times", "_sessions", "_paused_durations", "original_start_time"]
    }
    for name in ("get_statistics", "get_stats", "get_time", "percentile"):
        assert methods[name] == {"reads": ["times"]}
    assert set(methods) == {"add_time", "set_max_times", "reset", "get_statistics",
                            "get_stats", "get_time", "percentile"}
    props = meta["properties"]
    times_props = {"num_times", "most_recent", "result", "most_recent_index", "total_time",
                   "mean", "median", "min", "max", "fastest_time", "slowest_time",
                   "fastest_index", "slowest_index", "stdev", "variance"}
    for name in times_props:
        assert props[name] == {"reads": ["times"]}
    assert props["total_time_paused"] == {"reads": ["_paused_durations"]}
    assert props["max_times"] == {"reads": ["_max_times"]}
    assert set(props) == times_props | {"total_time_paused", "max_times"}
    # every declared name exists on the class with the right kind
    for name in methods:
        assert callable(getattr(Sktimer, name))
    for name in props:
        assert isinstance(getattr(Sktimer, name), property)


def test_share_blocked_methods() -> None:
    blocked = Sktimer._share_blocked_methods
    assert set(blocked) == {"start", "stop", "pause", "resume", "lap", "discard"}
    for name, message in blocked.items():
        assert message.startswith(f"Sktimer.{name}() cannot be used through Share")
        assert "add_time(elapsed)" in message
