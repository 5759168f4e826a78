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


_RESTARTED_ORPHAN_PARENT = textwrap.dedent(
    """
    import multiprocessing, os, signal, sys
    from skprocess_support import CrashThenSpin

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        proc = CrashThenSpin(sys.argv[2])
        proc.start()
        print(proc.listen(timeout=60), flush=True)  # from the second life
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_restarted_child_stuck_in_native_code_dies_with_its_parent(start_method, tmp_path):
    # A crashed child's replacement used to be forked by a short-lived thread, so it had no
    # PR_SET_PDEATHSIG (the signal follows the forking thread); holding the GIL, it outlived
    # its SIGKILLed parent.
    if start_method == "forkserver":
        pytest.skip("under forkserver the child's parent is the fork server (no PR_SET_PDEATHSIG)")
    script = tmp_path / "restarted_orphan_parent.py"
    script.write_text(_RESTARTED_ORPHAN_PARENT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    parent = subprocess.Popen(
        [sys.executable, str(script), start_method, str(tmp_path / "crashed-once")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=os.path.dirname(__file__),
    )
    try:  # (not communicate(): a surviving child holds the pipes open)
        line = parent.stdout.readline()  # type: ignore[union-attr]
        assert parent.wait(timeout=60) == -signal.SIGKILL, parent.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        parent.kill()
        parent.wait()
    child_pid = int(line)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _exited(child_pid):
        time.sleep(0.05)
    survived = not _exited(child_pid)
    if survived:
        os.kill(child_pid, signal.SIGKILL)
    parent.stdout.close()  # type: ignore[union-attr]
    parent.stderr.close()  # type: ignore[union-attr]
    assert not survived, "a restarted Skprocess child outlived its SIGKILLed parent"


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



_NO_GUARD = textwrap.dedent(
    """
    import multiprocessing, sys
    from suitkaise.processing import ProcessError, Skprocess

    multiprocessing.set_start_method(sys.argv[1], force=True)
    # a spawn/forkserver child imports this file as __mp_main__
    if sys.argv[2] == "raise" and __name__ != "__main__":
        raise ValueError("this script cannot be imported in a child")


    class Job(Skprocess):
        def __init__(self):
            self.process_config.runs = 1
            self.process_config.lives = 3

        def __result__(self):
            return "ran"


    print("MAIN" if __name__ == "__main__" else "CHILD", flush=True)
    try:
        print("RESULT", Job().run.timeout(60)(), flush=True)
    except ProcessError as e:
        print("ERROR", e, flush=True)
    """
)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("how", ["no-guard", "raise"])
def test_bootstrap_failure_names_the_main_module_import(method, how, tmp_path):
    """Issue 14.3: a script without the __main__ guard (or one that raises when a child
    re-imports it) is reported as exactly that, not as a mysterious exit code."""
    script = tmp_path / "noguard.py"
    script.write_text(_NO_GUARD)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, str(script), method, how],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1, (done.stdout, done.stderr)
    message = lines[0]
    assert "raised while importing the main module 'noguard.py'" in message
    assert 'if __name__ == "__main__":' in message
    assert f"{method!r} start method" in message
    assert "exited with code 1" in message
    assert "os._exit" not in message
    # deterministic, so not retried: one child was started, not one per life
    assert done.stdout.count("MAIN") == 1
    assert done.stdout.count("CHILD") == (1 if how == "no-guard" else 0)
