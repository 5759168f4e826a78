"""Hard crashes (decision 5), restarts with lives, and nothing outliving its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from skprocess_support import Crasher, CrashThenListen, Forever

from sk_testkit import alive, kill_and_wait
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


def _orphans(script_text: str, args: list[str], tmp_path) -> list[int]:
    """Run a parent script that prints its Skprocess child's pid, then SIGKILLs itself; the
    child if it is still alive 10 s later (then SIGKILLed), else nothing."""
    script = tmp_path / "orphan_parent.py"
    script.write_text(script_text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    parent = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=os.path.dirname(__file__),
    )
    try:  # (not communicate(): a surviving child holds the pipes open)
        line = parent.stdout.readline()  # type: ignore[union-attr]
        assert parent.wait(timeout=120) == -signal.SIGKILL, parent.stderr.read().decode()  # type: ignore[union-attr]
        survivors, _ = kill_and_wait(parent, [int(line)], limit=10)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
        parent.stderr.close()  # type: ignore[union-attr]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    return survivors


@pytest.mark.parametrize("started_from", ["main", "thread"])
def test_children_die_with_their_parent(start_method, started_from, tmp_path):
    assert not _orphans(_ORPHAN_PARENT, [start_method, started_from], tmp_path), (
        "the Skprocess child outlived its SIGKILLed parent")


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
    args = [start_method, str(tmp_path / "crashed-once")]
    assert not _orphans(_RESTARTED_ORPHAN_PARENT, args, tmp_path), (
        "a restarted Skprocess child outlived its SIGKILLed parent")


def test_tell_while_the_child_is_being_replaced_reaches_the_new_life(start_method, tmp_path):
    marker = tmp_path / "first-life-pid"
    proc = CrashThenListen(str(marker))
    proc.start()
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the first life never ran"
        time.sleep(0.01)
    first = int(marker.read_text())
    while alive(first):
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
