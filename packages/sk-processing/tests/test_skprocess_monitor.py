"""One monitor thread per parent process watches every started Skprocess (``_monitor``)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest
from skprocess_support import Counter, Crasher, Echo, NativeBlock

from suitkaise.processing import ProcessError, ProcessTimeoutError


def _monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sk-monitor")]


def test_many_children_resolve_under_one_monitor(start_method, tmp_path):
    """20 children at once: one crashes and is restarted (lives), one is stuck in native code
    past its section timeout (killed by the parent), one crashes with no lives left, the
    others finish normally; every one resolves as it would alone."""
    restarted = Crasher("sigkill", lives=2, marker=str(tmp_path / "crashed"))
    stuck = NativeBlock(str(tmp_path / "blocked"), timeout=0.3, lives=1)
    dead = Crasher("exit")
    counters = [Counter(runs=n) for n in range(17)]
    t0 = time.monotonic()
    for proc in (restarted, stuck, dead, *counters):
        proc.start()
    assert len(_monitor_threads()) == 1
    with pytest.raises(ProcessTimeoutError) as info:
        stuck.result.timeout(60)()
    assert time.monotonic() - t0 < 30  # the 60 s native sleep was cut short
    assert (info.value.section, info.value.timeout) == ("__run__", 0.3)
    assert restarted.result.timeout(60)() == "survived"
    assert restarted.current_run == 3
    with pytest.raises(ProcessError, match="exited with code 3"):
        dead.result.timeout(60)()
    assert [proc.result.timeout(60)() for proc in counters] == list(range(17))
    assert len(_monitor_threads()) == 1


def test_no_thread_per_started_process(start_method):
    Counter(runs=1).run()  # the monitor exists from here on
    before = threading.active_count()
    procs = [Echo() for _ in range(10)]
    for proc in procs:
        proc.start()
    try:
        assert threading.active_count() <= before  # (a restart thread of an earlier test may end meanwhile)
    finally:
        for proc in procs:
            proc.tell("quit")
        assert [proc.result.timeout(60)() for proc in procs] == ["bye"] * 10
    assert threading.active_count() <= before


def _start_in_forked_child() -> None:
    proc = Counter(runs=3)
    proc.start()
    os._exit(0 if proc.result.timeout(30)() == 3 else 1)


def test_forked_child_starts_its_own_monitor(start_method):
    """A process forked from a parent whose monitor runs has no monitor thread: it must
    create its own, not register with the copy of the parent's (whose thread is not there)."""
    Counter(runs=1).run()
    assert len(_monitor_threads()) == 1
    child = multiprocessing.get_context("fork").Process(target=_start_in_forked_child)
    child.start()
    child.join(60)
    assert child.exitcode == 0
