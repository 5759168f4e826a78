"""A Ctrl-C landing anywhere in the caller's part of a Pool call leaves the pool usable.

Python runs a signal's handler (``KeyboardInterrupt``) at the first line of every Python
function and as C calls return. ``sys.setprofile`` sees exactly those points ("call",
"c_return") in the calling thread: the test raises ``KeyboardInterrupt`` at each of them in
turn, one per call, and checks that the pool's lock is free and the next call works.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from suitkaise.processing import Pool


def _interrupted_call(pool: Pool, at: int) -> int:
    """Run a small map with a KeyboardInterrupt raised at event ``at`` (1-based) of the calling
    thread; the number of events seen (the whole call's when ``at`` is never reached)."""
    seen = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_return"):
            seen[0] += 1
            if seen[0] == at:
                raise KeyboardInterrupt  # (sys.setprofile stops profiling once it raises)

    sys.setprofile(profile)
    try:
        pool.map(abs, range(-20, 0))
    except KeyboardInterrupt:
        pass
    finally:
        sys.setprofile(None)
    return seen[0]


def _usable(pool: Pool) -> str | None:
    """None if the pool's lock is free and a call works (from another thread, with a deadline:
    a broken pool hangs), else what is wrong."""
    lock = pool._core.lock
    got: list[Any] = []

    def other() -> None:
        if not lock.acquire(timeout=5):
            got.append("the pool's lock is held for good")
            return
        lock.release()
        try:
            got.append(pool.map(abs, [-1, -2]))
        except BaseException as e:
            got.append(f"the next call raised {e!r}")

    t = threading.Thread(target=other, daemon=True)
    t.start()
    t.join(30)
    if not got:
        return "the next call hung"
    return None if got[0] == [1, 2] else str(got[0])


# (an interrupt that lands in a finalizer is printed as "Exception ignored", as Python does)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_at_any_point_of_a_call_leaves_the_pool_usable(start_method: str) -> None:
    # Before: a Ctrl-C as Core.wake() began left its "a wake-up is pending" flag set with no
    # byte in the pipe (every later call then hung: the manager slept through it), and one
    # inside Condition.__enter__ or as Condition.wait() released the lock left the lock held
    # or released twice. 11 consecutive points of 527 broke the pool.
    with Pool(2) as pool:
        pool.map(abs, [1])
        total = _interrupted_call(pool, 0)  # (never raises: counts the events)
        assert total > 100
        broken = []
        for at in range(1, total + 1):
            _interrupted_call(pool, at)
            problem = _usable(pool)
            if problem is not None:
                broken.append((at, problem))
                if len(broken) >= 3:
                    break
        assert not broken, broken
