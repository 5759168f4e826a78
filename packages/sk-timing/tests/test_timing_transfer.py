"""Sktimer across pickle, deepcopy, cucumber (same process and a fresh interpreter), processes and fork."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

import pytest

from sk_testkit import run_fresh
from suitkaise import cucumber
from suitkaise.timing import Sktimer

NOT_RUNNING = "Sktimer is not running"


def sample_timer() -> Sktimer:
    t = Sktimer(max_times=5)
    t.start()
    t.pause()
    time.sleep(0.01)
    t.resume()
    t.stop()
    t.add_time(0.25)
    t.add_time(0.5)
    t.start()  # an open frame: never transferred
    return t


def assert_same_data(a: Sktimer, b: Sktimer) -> None:
    assert b.times == a.times
    assert b._paused_durations == a._paused_durations
    assert b.max_times == a.max_times
    assert b.original_start_time == a.original_start_time
    assert b.total_time_paused == a.total_time_paused
    assert b.times is not a.times


def assert_fresh_runtime(t: Sktimer) -> None:
    with pytest.raises(RuntimeError, match=NOT_RUNNING):
        t.stop()  # the original's open frame did not travel
    t.add_time(1.0)
    t.start()
    t.stop()


def test_getstate_carries_data_only() -> None:
    state = sample_timer().__getstate__()
    assert set(state) == {"times", "_paused_durations", "_max_times", "original_start_time"}


@pytest.mark.parametrize("roundtrip", [
    pytest.param(lambda t: pickle.loads(pickle.dumps(t)), id="pickle"),
    pytest.param(copy.deepcopy, id="deepcopy"),
    pytest.param(copy.copy, id="copy"),
    pytest.param(lambda t: cucumber.deserialize(cucumber.serialize(t)), id="cucumber"),
])
def test_roundtrip_in_process(roundtrip) -> None:
    original = sample_timer()
    clone = roundtrip(original)
    assert type(clone) is Sktimer
    assert_same_data(original, clone)
    assert clone._lock is not original._lock
    assert_fresh_runtime(clone)
    assert original.num_times == 3, "the copy is independent"
    original.stop()  # the original's frame is untouched


def test_roundtrip_while_another_thread_times() -> None:
    t = Sktimer()
    started = threading.Event()
    done = threading.Event()

    def work() -> None:
        t.start()
        started.set()
        done.wait(timeout=30)
        t.stop()

    th = threading.Thread(target=work)
    th.start()
    assert started.wait(timeout=30)
    clone = pickle.loads(pickle.dumps(t))
    done.set()
    th.join(timeout=30)
    assert clone._sessions == {}
    assert t.num_times == 1


class LabelledTimer(Sktimer):
    """A subclass with its own state: extra attributes travel too."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label


def test_subclass_state_travels() -> None:
    t = LabelledTimer("io")
    t.add_time(2.0)
    for clone in (pickle.loads(pickle.dumps(t)), cucumber.deserialize(cucumber.serialize(t))):
        assert isinstance(clone, LabelledTimer)
        assert clone.label == "io"
        assert clone.times == [2.0]


def test_cucumber_roundtrip_in_fresh_interpreter() -> None:
    original = sample_timer()
    code = (
        "import sys\n"
        "from suitkaise import cucumber\n"
        "t = cucumber.deserialize(sys.stdin.buffer.read())\n"
        "assert type(t).__name__ == 'Sktimer', type(t)\n"
        "try:\n    t.stop()\nexcept RuntimeError:\n    pass\n"
        "else:\n    raise SystemExit('frame travelled')\n"
        "t.add_time(0.75)\n"
        "sys.stdout.buffer.write(cucumber.serialize(t))\n"
    )
    proc = run_fresh(code, stdin=cucumber.serialize(original))
    back = cucumber.deserialize(proc.stdout)
    assert back.times == [*original.times, 0.75][-5:]
    assert back.max_times == 5
    assert back.original_start_time == original.original_start_time
    assert back._paused_durations[:3] == original._paused_durations
    assert back.mean is not None


# -- real child processes under every start method -----------------------------

def child_adds_and_sends_back(timer: Sktimer, conn: Connection) -> None:
    timer.add_time(9.0)
    timer.start()
    timer.stop()
    conn.send(timer)
    conn.close()


def test_timer_travels_to_a_child_and_back(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    assert ctx.get_start_method() == start_method
    t = Sktimer(max_times=10)
    t.add_time(1.0)
    t.start()
    t.stop()
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_adds_and_sends_back, args=(t, child_end))
    proc.start()
    child_end.close()
    try:
        assert parent_end.poll(60), "child sent nothing"
        back = parent_end.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent_end.close()
    assert proc.exitcode == 0
    assert back.num_times == 4
    assert back.times[:2] == t.times
    assert back.times[2] == 9.0
    assert back.max_times == 10
    assert back.original_start_time is not None
    assert t.num_times == 2, "the parent's timer is not changed by the child"


# -- fork with the lock held by another thread ----------------------------------

def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("forked child deadlocked on the timer")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_lock() -> None:
    t = Sktimer()
    t.add_time(1.0)
    outer = t.start()  # the forking thread's own open frame survives into the child
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with t._lock:
            held.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=30)
        pid = os.fork()
        if pid == 0:  # child: only this thread exists; the old lock stays held forever
            code = 1
            try:
                inner = t.start()  # nested under the inherited frame
                t.stop()
                t.add_time(2.0)
                elapsed = t.stop()  # the inherited outer frame
                stats = t.get_stats()
                ok = (
                    inner > outer
                    and elapsed > 0
                    and t.num_times == 4
                    and t.times[0] == 1.0
                    and t.times[2] == 2.0
                    and stats is not None
                    and stats.num_times == 4
                )
                code = 0 if ok else 3
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        assert _wait_child(pid, timeout=30) == 0
    finally:
        release.set()
        holder.join(timeout=30)
    assert t.num_times == 1, "the parent's timer is not changed by the child"
    t.stop()
    assert t.num_times == 2


def test_fork_child_threads_share_the_rebuilt_timer(start_method: str) -> None:
    """Several threads of a fork/spawn/forkserver child use an inherited or shipped timer."""
    ctx = multiprocessing.get_context()
    t = Sktimer()
    t.add_time(0.5)
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_threads, args=(t, child_end))
    proc.start()
    child_end.close()
    try:
        assert parent_end.poll(60), "child sent nothing"
        count = parent_end.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent_end.close()
    assert count == 1 + 4 * 50


def child_threads(timer: Sktimer, conn: Connection) -> None:
    def work() -> None:
        for _ in range(50):
            timer.start()
            timer.stop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    conn.send(timer.num_times)
    conn.close()
    sys.stdout.flush()
