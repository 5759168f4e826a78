"""Section timeouts: SIGALRM in the child, and the parent replacing a child stuck in native code."""

from __future__ import annotations

import os
import time

import pytest
from skprocess_support import CatchesOSError, NativeBlock, Sleeper

from suitkaise.processing import ProcessTimeoutError


def test_run_timeout_sub_second(start_method):
    """Spec scenario 5: sub-second, and well before the 5 s sleep would end."""
    proc = Sleeper(nap=30, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(ProcessTimeoutError) as info:
        proc.run()
    assert time.monotonic() - t0 < 20  # must not wait for the 30 s sleep
    err = info.value
    assert (err.section, err.timeout, err.current_run) == ("__run__", 0.3, 0)
    assert err.original_error is None
    assert str(err) == f"Sleeper (pid {err.pid}): Timeout in __run__ after 0.3s on run 0"
    assert proc.timers.run.num_times == 0  # a timed-out section records nothing


def test_section_timeout_is_a_builtin_timeout_error(start_method):
    """Like ResultTimeoutError and ItemTimeoutError: ``except TimeoutError`` catches it."""
    with pytest.raises(TimeoutError) as info:
        Sleeper(nap=30, timeout=0.2).run.timeout(60)()
    assert isinstance(info.value, ProcessTimeoutError)
    assert str(info.value) == f"Sleeper (pid {info.value.pid}): Timeout in __run__ after 0.2s on run 0"


def test_section_timeout_is_not_swallowed_by_the_sections_except_oserror(start_method):
    """The alarm interrupts the section with an exception that is no OSError: the section's
    own ``except TimeoutError``/``except OSError`` must not eat the section timeout."""
    with pytest.raises(ProcessTimeoutError) as info:
        CatchesOSError(timeout=0.2).run.timeout(60)()
    assert info.value.section == "__run__"


def test_timeout_costs_a_life_and_retries_in_the_same_process(start_method):
    out = Sleeper(nap=30, timeout=0.3, lives=2, slow_times=1).run()
    assert out["attempts"] == 2  # state kept across the retry
    assert len(set(out["pids"])) == 1  # same child process


def test_onfinish_timeout_is_not_retried(start_method):
    proc = Sleeper(nap=30, timeout=0.3, lives=3, section="onfinish")
    with pytest.raises(ProcessTimeoutError) as info:
        proc.run()
    assert info.value.section == "__onfinish__"


def test_native_block_is_killed_without_lives(start_method, tmp_path):
    marker = str(tmp_path / "blocked")
    proc = NativeBlock(marker, timeout=0.3, lives=1)
    t0 = time.monotonic()
    with pytest.raises(ProcessTimeoutError) as info:
        proc.run()
    assert time.monotonic() - t0 < 30  # the 60 s native sleep was cut short
    assert (info.value.section, info.value.timeout) == ("__run__", 0.3)
    assert os.path.exists(marker)


def test_native_block_is_replaced_with_lives_left(start_method, tmp_path):
    marker = str(tmp_path / "blocked")
    proc = NativeBlock(marker, timeout=0.3, lives=2)
    assert proc.run.timeout(60)() == "recovered"
    assert proc.error is None
