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
