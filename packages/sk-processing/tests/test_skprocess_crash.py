"""Hard crashes (decision 5), restarts with lives, and nothing outliving its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from skprocess_support import Crasher, CrashThenListen, Forever

from suitkaise.processing import ProcessError


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("exit", "exited with code 3"),
        ("sigkill", "signal SIGKILL (-9)"),
        ("segv", "signal SIGSEGV (-11)"),
        ("sysexit", "exited with code 4"),
    ],
)
def test_hard_crash_without_lives_raises(start_method, how, expected):
    proc = Crasher(how)
    with pytest.raises(ProcessError) as info:
        proc.run.timeout(60)()
    assert expected in str(info.value)
    assert "on run 1" in str(info.value)
    assert info.value.current_run == 1
    assert proc.error is info.value
    assert not proc.is_alive


def test_sigkill_from_outside(start_method):
    proc = Forever()
    proc.start()
    pid = proc.listen(timeout=60)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ProcessError, match=r"process was killed by signal SIGKILL \(-9\)"):
        proc.result.timeout(60)()


def test_crash_with_lives_left_restarts(start_method, tmp_path):
    marker = str(tmp_path / "crashed")
    proc = Crasher("sigkill", lives=2, marker=marker)
    assert proc.run.timeout(60)() == "survived"
    assert os.path.exists(marker)
    assert proc.current_run == 3
    assert proc.error is None


def test_lives_are_shared_between_errors_and_crashes(start_method, tmp_path):
    marker = str(tmp_path / "crashed")
    proc = Crasher("exit", lives=1, marker=marker)
    with pytest.raises(ProcessError, match="exited with code 3"):
        proc.run.timeout(60)()


_ORPHAN_PARENT = textwrap.dedent(
    """
    import multiprocessing, os, signal, sys, threading
    from skprocess_support import Forever

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        proc = Forever(nap=0.05)
        if sys.argv[2] == "thread":
            t = threading.Thread(target=proc.start)
            t.start()
            t.join()
        else:
            proc.start()
        print(proc.listen(timeout=60), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("started_from", ["main", "thread"])
def test_children_die_with_their_parent(start_method, started_from, tmp_path):
    script = tmp_path / "orphan_parent.py"
    script.write_text(_ORPHAN_PARENT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    parent = subprocess.Popen(
        [sys.executable, str(script), start_method, started_from],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=os.path.dirname(__file__),
    )
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == -signal.SIGKILL, err.decode()
    child_pid = int(out.decode().strip().splitlines()[-1])
    deadline = time.monotonic() + 10
    alive = True
    while time.monotonic() < deadline:
        try:
            alive = psutil.Process(child_pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if not alive:
            break
        time.sleep(0.05)
    if alive:
        os.kill(child_pid, signal.SIGKILL)
    assert not alive, "the Skprocess child outlived its SIGKILLed parent"


def _exited(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_tell_while_the_child_is_being_replaced_reaches_the_new_life(start_method, tmp_path):
    marker = tmp_path / "first-life-pid"
    proc = CrashThenListen(str(marker))
    proc.start()
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the first life never ran"
        time.sleep(0.01)
    first = int(marker.read_text())
    while not _exited(first):
        assert time.monotonic() < deadline, "the first life never died"
        time.sleep(0.001)
    proc.tell("for the next life")  # the first life is gone: never lost, delivered to the restart
    assert proc.result.timeout(60)() == "for the next life"

