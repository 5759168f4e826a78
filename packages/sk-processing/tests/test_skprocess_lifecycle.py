"""Lifecycle, loop order, lives/retry, inheritance and final state in the parent."""

from __future__ import annotations

from fractions import Fraction

import pytest
from skprocess_support import (
    Child,
    Child2,
    Counter,
    CustomTimed,
    GrandChild,
    LabelledTimer,
    Logged,
    PausesItsTimer,
    TimerReader,
)

from suitkaise.processing import ProcessTimers, RunError, Skprocess
from suitkaise.timing import Sktimer


def test_a_section_timer_is_an_sktimer_even_for_a_section_not_defined(start_method):
    # the how-to page's `process.__prerun__.timer.total_time`, for a class without __prerun__
    # (before: AttributeError on None)
    proc = Counter(3)
    assert proc.__run__.timer.num_times == 0  # before start(): an empty timer
    proc.start()
    assert proc.wait(timeout=60) is True
    assert proc.timers.prerun is None  # decision 6: the attribute appears once the section ran
    timer = proc.__prerun__.timer
    assert isinstance(timer, Sktimer) and timer.num_times == 0
    assert timer.total_time is None and timer.percentile(95) is None
    assert proc.__run__.timer is proc.timers.run and proc.__run__.timer.num_times == 3


def test_counter_result_and_final_state(start_method):
    proc = Counter(10)
    assert proc.timers is None and proc.process_timer is None
    proc.start()
    assert proc.wait(timeout=60) is True
    assert proc.result() == 10
    assert proc.result() == 10  # cached
    # decision 6: the parent sees the child's final state
    assert proc.current_run == 10
    assert proc.error is None
    assert isinstance(proc.timers, ProcessTimers)
    assert isinstance(proc.timers.run, Sktimer)
    assert proc.__run__.timer is proc.timers.run
    assert proc.timers.run.num_times == 10
    assert proc.process_timer is proc.timers.full_run
    assert proc.process_timer.num_times == 10
    assert proc.timers.result.num_times == 1
    # the parent's own attributes are not overwritten by the child
    assert proc.counter == 0
    assert not proc.is_alive


def test_start_payload_carries_no_timers(start_method, monkeypatch):
    """The child makes its own timers: serializing empty ones into every start payload cost
    the parent and a fork child ~0.1 ms each. The parent's instance still gets fresh ones.
    (Under fork this instance of atoms is not serialized: the child runs the one it
    inherited, whose timers are None at the fork just the same.)"""
    from suitkaise import cucumber
    from suitkaise.processing import _parent

    seen = []
    serialize = cucumber.serialize
    fork_payload = _parent.fork_payload

    def spy(obj, *args, **kwargs):
        if isinstance(obj, Skprocess):
            seen.append(obj.__dict__.get("timers", "absent"))
        return serialize(obj, *args, **kwargs)

    def fork_spy(obj):
        payload = fork_payload(obj)
        if payload is obj:
            seen.append(obj.__dict__.get("timers", "absent"))
        return payload

    monkeypatch.setattr(cucumber, "serialize", spy)
    monkeypatch.setattr(_parent, "fork_payload", fork_spy)
    proc = Counter(3)
    proc.start()
    assert isinstance(proc.timers, ProcessTimers)
    assert proc.result() == 3
    assert seen == [None]
    assert proc.timers.run.num_times == 3


def test_paused_time_comes_back_with_the_timers(start_method):
    """The final message leaves out paused durations that are all zero (the loop's); the
    parent's timers have them back as zeros, and real pauses as they were."""
    proc = PausesItsTimer()
    proc.run()
    assert proc.timers.run.num_times == 2 and proc.timers.run.total_time_paused == 0.0
    assert proc.timers.run._paused_durations == [0.0, 0.0]
    full = proc.timers.full_run
    assert full.num_times == 3
    assert full._paused_durations[:2] == [0.0, 0.0] and full._paused_durations[2] >= 0.015
    assert full.total_time_paused >= 0.015


def test_equal_timer_lists_come_back_as_lists_of_their_own(start_method):
    """With ``__run__`` the only loop section, ``full_run`` and ``run`` record the same
    durations: the final message sends them once; the parent's timers still get a list each."""
    proc = Counter(5)
    proc.run()
    run, full = proc.timers.run, proc.timers.full_run
    assert run.times == full.times and len(run.times) == 5
    assert run.times is not full.times
    full.add_time(1.0)
    assert (run.num_times, full.num_times) == (5, 6)


def test_retry_repeats_the_same_iteration_with_state_kept(start_method):
    """Spec scenario 1, exactly."""
    log = Logged(runs=4, lives=2, fail_at=(2,), fail_times=1).run()
    assert log == [
        "pre0", "run0", "post0", "pre1", "run1", "post1",
        "pre2", "run2", "pre2", "run2", "post2", "pre3", "run3", "post3", "finish",
    ]


def test_lives_exhausted_raises_run_error(start_method):
    """Spec scenario 2."""
    proc = Logged(runs=4, lives=2, fail_at=(1, 2), fail_times=1)
    with pytest.raises(RunError) as info:
        proc.run()
    err = info.value
    assert err.current_run == 2
    assert isinstance(err.original_error, ValueError)
    assert str(err.original_error) == "boom at 2"
    assert str(err) == f"Logged (pid {err.pid}): Error in __run__ on run 2 (after 2 of 2 lives): ValueError: boom at 2"
    assert proc.current_run == 2
    assert isinstance(proc.error, RunError) and proc.error.current_run == 2


def test_timers_after_failures(start_method):
    """timing spec §3: failed sections create their timer but record nothing."""

    proc = Logged(runs=3, lives=2, fail_at=(1,), fail_times=2)
    with pytest.raises(RunError):
        proc.run()
    t = proc.timers
    assert t.prerun.num_times == 3
    assert t.run.num_times == 1
    assert t.postrun.num_times == 1
    assert t.error.num_times == 1
    assert t.full_run.num_times == 1
    assert t.onfinish is None and t.result is None


def test_zero_runs_still_finishes(start_method):
    proc = Logged(runs=0, lives=1)
    assert proc.run() == ["finish"]
    assert proc.current_run == 0


def test_inheritance_real_class_in_child(start_method):
    """Spec scenario 8 + decision 7: MRO, static/class methods, private, dunder, isinstance."""
    res = Child("c").run()
    assert res == {
        "items": [0 + 5, 10 + 5, 20 + 5],
        "cls": "Child",
        "is_base": True,
        "secret": "p",
        "len": 3,
        "tag": "c",
    }
    res2 = Child2().run()  # no __init__ of its own: Base.__init__ ran
    assert res2["items"] == [6, 16, 26]
    assert res2["cls"] == "Child2"
    res3 = GrandChild("g").run()  # inherited __init__ chain + own __postrun__
    assert res3["items"] == [10, -1, 20, -1, 30, -1]
    assert res3["len"] == 6


def test_class_defined_in_a_function_travels_by_value(start_method):
    factor = 7

    class Local(Skprocess):
        def __init__(self):
            self.total = 0
            self.fn = lambda x: x * factor
            self.process_config.runs = 3

        def __run__(self):
            self.total += self.fn(self._current_run)

        def __result__(self):
            return self.total, isinstance(self, Local), isinstance(self, Skprocess)

    assert Local().run() == (21, True, True)


def test_base_class_without_run_is_empty(start_method):
    proc = Skprocess()
    proc.process_config.runs = 2
    assert proc.run() is None
    assert proc.current_run == 2


def test_join_in_stops_at_iteration_boundary(start_method):
    """Spec scenario 4 (bounds, not timings: a loaded machine may fit fewer iterations)."""
    import time

    class Slow(Skprocess):
        def __init__(self):
            self.n = 0
            self.process_config.join_in = 0.5

        def __run__(self):
            time.sleep(0.2)
            self.n += 1

        def __result__(self):
            return self.n

    proc = Slow()
    n = proc.run.timeout(60)()
    assert 1 <= n <= 3
    assert proc.current_run == n


def test_restartable_after_completion(start_method):
    proc = Counter(5)
    assert proc.run() == 5
    assert proc.run() == 5  # fresh run from the parent's state
    assert proc.timers.run.num_times == 5


def test_start_while_running_raises(start_method):
    from skprocess_support import Forever

    proc = Forever()
    proc.start()
    try:
        with pytest.raises(RuntimeError, match="process already started"):
            proc.start()
        assert proc.is_alive
    finally:
        proc.stop()
        assert proc.wait(timeout=60)
    assert isinstance(proc.result(), int)


def test_timers_read_inside_the_loop_count_every_iteration(start_method):
    """The loop records durations without Sktimer.add_time: what the process reads of its
    own timers mid-run must still be exact, and the parent gets the same numbers."""
    proc = TimerReader(runs=6)
    seen = proc.run()
    # in __postrun__ of run i: i + 1 run durations, i completed iterations in full_run
    assert seen == [(i, i + 1, i) for i in range(6)]
    assert proc.timers.run.num_times == 6
    assert proc.timers.full_run.num_times == 6
    assert all(t >= 0 for t in proc.timers.run.times)


def test_a_window_set_on_a_timer_mid_run_is_honoured(start_method):
    proc = TimerReader(runs=6, window_at=3)
    seen = proc.run()
    # from run 3 on the run timer keeps at most two durations
    assert [n for _, n, _ in seen] == [1, 2, 3, 2, 2, 2]
    assert proc.timers.run.max_times == 2
    assert proc.timers.run.num_times == 2
    assert proc.timers.full_run.num_times == 6  # untouched


def test_final_state_with_a_replaced_timer_and_a_non_builtin_result(start_method):
    """The final message falls back to its full form (custom timer class, non-builtin
    result); the parent still adopts the child's timers with their class."""
    proc = CustomTimed()
    assert proc.run() == {"ratio": Fraction(1, 3)}
    assert isinstance(proc.timers.run, LabelledTimer)
    assert proc.timers.run.label == "mine"
    assert proc.timers.run.num_times == 3
    assert proc.current_run == 3


def test_a_finished_process_leaves_no_descriptor_for_the_garbage_collector(start_method):
    # before: each finished run kept the child's sentinel and a pipe (2 fds) until the cyclic
    # GC freed the owner <-> run cycle: with the GC frozen, a service ran out of descriptors
    import gc
    import os

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    enabled = gc.isenabled()
    gc.disable()
    try:
        procs = [Counter(1) for _ in range(20)]
        for p in procs[:5]:  # (the first runs may start a fork server or a resource tracker)
            assert p.run() == 1
        gc.collect()
        before = fds()
        for p in procs[5:]:
            assert p.run() == 1
        assert fds() == before, "descriptors kept by finished processes"
        assert all(not p.is_alive and "finished" in repr(p) for p in procs)
        procs[0].kill()  # after the end: still a no-op
        procs[0].stop()
    finally:
        if enabled:
            gc.enable()
