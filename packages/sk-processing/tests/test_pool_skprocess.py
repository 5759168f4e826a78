"""Pool with Skprocess classes as the mapped callable, with Share, and Ctrl-C handling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil  # type: ignore[import-untyped]
import pytest

from suitkaise.processing import Pool, ProcessError, RunError, Skprocess
from suitkaise.processing._errors import RemoteTraceback

pytestmark = pytest.mark.timeout(120)


class ProcessItem(Skprocess):
    def __init__(self, item: int) -> None:
        self.item = item
        self.process_config.runs = 1

    def __run__(self) -> None:
        self.result_data = self.item * 10

    def __result__(self) -> int:
        return self.result_data


class Summer(Skprocess):
    def __init__(self, a: int, b: int = 100) -> None:
        self.total = 0
        self.a, self.b = a, b
        self.process_config.runs = 3

    def __run__(self) -> None:
        self.total += self.a + self.b

    def __result__(self) -> int:
        return self.total


class Handled(Skprocess):
    def __init__(self, n: int) -> None:
        self.n = n
        self.process_config.runs = 1

    def __run__(self) -> None:
        raise ValueError(f"failed {self.n}")

    def __error__(self) -> object:
        return {"handled": self.n}


class Failing(Skprocess):
    def __init__(self, n: int) -> None:
        self.n = n
        self.process_config.runs = 2

    def __run__(self) -> None:
        if self.n == 2:
            raise ValueError(f"boom {self.n}")


class RetryOnce(Skprocess):
    """Fails on its first attempt; lives=2 gives it a second one in the same worker."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.attempts = 0
        self.process_config.runs = 1
        self.process_config.lives = 2

    def __run__(self) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("first attempt fails")

    def __result__(self) -> tuple[int, int]:
        return (self.n, self.attempts)


class IncrementProcess(Skprocess):
    def __init__(self, share: object) -> None:
        self.share = share
        self.process_config.runs = 10

    def __postrun__(self) -> None:
        self.share.counter += 1  # type: ignore[attr-defined]


def test_skprocess_items(start_method: str) -> None:
    with Pool(2) as pool:
        assert pool.map(ProcessItem, [1, 2, 3]) == [10, 20, 30]
        assert sorted(pool.unordered_imap(ProcessItem, [4, 5])) == [40, 50]
        # star: tuples unpacked into the constructor, anything else passed whole
        assert pool.star().map(Summer, [(1, 2), (3,), 5]) == [9, 309, 315]
        # __error__ returning a value: that value is the item's result
        assert pool.map(Handled, [1, 2]) == [{"handled": 1}, {"handled": 2}]
        assert pool.map(RetryOnce, [7]) == [(7, 2)]


def test_skprocess_item_error_type(start_method: str) -> None:
    with Pool(2) as pool:
        with pytest.raises(RunError) as info:
            pool.map(Failing, [1, 2, 3])
        assert isinstance(info.value.original_error, ValueError)
        assert "boom 2" in str(info.value.original_error)
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert pool.map(ProcessItem, [1]) == [10]


class ErrorFails(Skprocess):
    def __init__(self, n: int) -> None:
        self.process_config.runs = 1

    def __run__(self) -> None:
        raise ValueError("run failed")

    def __error__(self) -> object:
        raise KeyError("handler failed")


def test_skprocess_item_error_names_its_process_and_item(start_method: str) -> None:
    # what a started Skprocess says (``Failing (pid N): Error in __run__ ...``), plus the item:
    # it used to be only ``Error in __run__ on run 0: ...``, naming no process nor item
    with Pool(2) as pool:
        with pytest.raises(RunError) as info:
            pool.map(Failing, [1, 2, 3])
        with pytest.raises(ProcessError) as handler:
            pool.star().map(ErrorFails, [(0,), (1,)])
    err = info.value
    assert (err.process_name, err.index) == ("Failing", 1)
    assert isinstance(err.pid, int) and err.pid != os.getpid()
    assert str(err) == f"Failing (pid {err.pid}, item 1): Error in __run__ on run 0: ValueError: boom 2"
    direct = Failing(2)
    direct.start()
    with pytest.raises(RunError) as started:
        direct.result()
    assert str(started.value) == f"Failing (pid {started.value.pid}): Error in __run__ on run 0: ValueError: boom 2"
    # __error__ failing too: both errors name the process and the item
    outer = handler.value
    assert str(outer).startswith(f"ErrorFails (pid {outer.pid}, item {outer.index}): Error in __error__")
    handled = outer.handled_error  # type: ignore[attr-defined]
    assert str(handled).startswith(f"ErrorFails (pid {outer.pid}, item {outer.index}): Error in __run__")


def test_share_counter_through_pool(start_method: str) -> None:
    share_mod = pytest.importorskip("suitkaise.share")
    share = share_mod.Share()
    try:
        share.counter = 0
        pool = Pool(workers=4)
        try:
            pool.map(IncrementProcess, [share] * 10)
        finally:
            pool.close()
        assert share.counter == 100
    finally:
        share.stop() if hasattr(share, "stop") else share.exit()


# The script puts Python's own SIGINT handler back first: a suite started with SIGINT
# ignored (`cmd &`, nohup, some CI runners) passes SIG_IGN down, and Python then never
# installs KeyboardInterrupt, so the signal the test sends would do nothing.
# Both Ctrl-C scripts start alike: two workers, each marking its pid in a folder (argv[2])
# before it sleeps, so the test knows when to send the signal.
_HEAD = (
    """
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)

    import multiprocessing, os, sys, time
    from suitkaise.processing import Pool

    def slow(path):
        open(os.path.join(path, str(os.getpid())), "w").close()
        time.sleep(60)

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        pool = Pool(2)
"""  # (no indent here: the scripts' own lines follow)
)
SCRIPT = textwrap.dedent(
    _HEAD +
    """\
        try:
            pool.map(slow, [sys.argv[2]] * 4)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(1)
    """
)


def _interrupt(code: str, start_method: str, tmp_path: object, *, inherited: str = "default",
               times: int = 1) -> tuple[subprocess.Popen[bytes], bytes, bytes, list[int], float]:
    """Run ``code`` (its tasks mark their pid in a folder, then sleep), send it SIGINT
    ``times`` times (1 ms apart) once both workers are inside a task; the process, its
    output, the workers' pids and the seconds from the first signal to its exit.
    ``inherited="ignored"``: started with SIGINT ignored."""
    script = os.path.join(str(tmp_path), "interrupted.py")
    marks = os.path.join(str(tmp_path), "marks")
    os.mkdir(marks)
    with open(script, "w") as f:
        f.write(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    command = [sys.executable, script, start_method, marks]
    if inherited == "ignored":
        command = ["bash", "-c", 'trap "" INT; exec "$0" "$@"', *command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(os.listdir(marks)) < 2:  # both workers are inside a task
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "workers never started"
            time.sleep(0.05)
        workers = [int(name) for name in os.listdir(marks)]
        t0 = time.monotonic()
        for i in range(times):
            if i:
                time.sleep(0.001)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc, out, err, workers, elapsed


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_stops_every_worker(start_method: str, tmp_path: object, inherited: str) -> None:
    """``ignored``: started as from `cmd &`, nohup or a CI runner that ignores SIGINT
    (issue 14.5: the test passes under `bash -c 'trap "" INT; ...'`)."""
    proc, out, err, workers, elapsed = _interrupt(SCRIPT, start_method, tmp_path, inherited=inherited)
    assert proc.returncode == 0, err.decode()
    assert b"interrupted" in out
    for pid in workers:
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert not alive, f"worker {pid} survived Ctrl-C"
    assert elapsed < 10, f"Ctrl-C took {elapsed:.1f}s"


def test_crash_in_skprocess_item_is_reported(start_method: str) -> None:
    with Pool(1) as pool:
        with pytest.raises(ProcessError, match=r"item 1 .*exited with code 7"):
            pool.map(ExitingItem, [0, 1])
        assert pool.map(ProcessItem, [2]) == [20]


class ExitingItem(Skprocess):
    def __init__(self, n: int) -> None:
        self.n = n
        self.process_config.runs = 1

    def __run__(self) -> None:
        if self.n == 1:
            os._exit(7)

    def __result__(self) -> int:
        return self.n


TWICE = textwrap.dedent(
    _HEAD +
    """\
        first = [True]

        def step():
            if first[0]:
                first[0] = False
                try:
                    pool.map(slow, [sys.argv[2]] * 4)
                except KeyboardInterrupt:
                    print("interrupted", flush=True)
            print(pool.map(abs, [-5, -6]), flush=True)  # at once: the pool goes on

        for _ in range(5):  # the second signal may land anywhere, even in the next call
            try:
                step()
                break
            except KeyboardInterrupt:
                pass
        pool.close()
    """
)


def test_two_ctrl_c_in_a_row_leave_the_pool_usable(start_method: str, tmp_path: object) -> None:
    """New-user trial: a terminal's Ctrl-C passed on by a wrapper arrives twice; the second
    cut terminate() short and the next call failed with "terminate() was called"."""
    proc, out, err, _, _ = _interrupt(TWICE, start_method, tmp_path, times=2)
    assert proc.returncode == 0, err.decode()
    assert b"interrupted" in out and b"[5, 6]" in out, (out, err)
