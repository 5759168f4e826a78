"""The leak check itself must fail tests that leave things behind."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_a_leaked_child_process_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import subprocess, sys
        def test_leaks():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leak check: processes outlived the test*"])


def test_a_leaked_shared_memory_segment_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        def test_leaks():
            fd = os.open("/dev/shm/sk-testkit-selftest", os.O_CREAT | os.O_RDWR)
            os.close(fd)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*shared-memory segments leaked*sk-testkit-selftest*"])


def test_a_leaked_temp_file_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, tempfile
        def test_leaks():
            tempfile.mkstemp(prefix="sk-selftest-")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*temporary files leaked*sk-selftest-*"])
    import glob
    import os
    import tempfile

    for path in glob.glob(os.path.join(tempfile.gettempdir(), "sk-selftest-*")):
        os.unlink(path)


def test_a_clean_test_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import multiprocessing as mp
        def work():
            pass
        def test_clean(start_method):
            p = mp.Process(target=work)
            p.start()
            p.join()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--start-methods=fork,spawn")
    result.assert_outcomes(passed=2)


def test_servers_are_stopped_when_pytest_dies_before_their_teardown(pytester: pytest.Pytester) -> None:
    """A pytest killed by SIGKILL never runs its session fixtures' teardown: the servers'
    watchdogs stop them and remove their directories."""
    import json
    import os
    import shutil
    import time

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    record = pytester.path / "servers.json"
    pytester.makepyfile(
        f"""
        import json, os, signal
        def test_then_die(redis_server, postgres_server):
            with open(os.path.join(postgres_server._dir, "data", "postmaster.pid")) as f:
                pg_pid = int(f.readline())
            with open({str(record)!r}, "w") as f:
                json.dump({{"redis": redis_server.pid, "redis_dir": redis_server._dir,
                           "pg": pg_pid, "pg_dir": postgres_server._dir}}, f)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider")
    if not record.exists():
        pytest.skip("the servers could not be started here")
    seen = json.loads(record.read_text())

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = [k for k in ("redis", "pg") if alive(seen[k])] + [
            k for k in ("redis_dir", "pg_dir") if os.path.exists(seen[k])]
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"left running or on disk after pytest died: {left} ({seen})"
