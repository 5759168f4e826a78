"""Small wall-clock helpers: ``time``, ``sleep`` (with ``sleep.asynced()``) and ``elapsed``.

These deal in wall-clock Unix time (``time.time()``), unlike ``Sktimer`` whose
measurements use the monotonic ``time.perf_counter()``.
"""

from __future__ import annotations

import asyncio
import math
import numbers
import time as _time
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["elapsed", "sleep", "time"]


def time() -> float:
    """Return the current wall-clock Unix time in seconds (``time.time()``)."""
    return _time.time()


def _check_seconds(seconds: object, who: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(
            f"{who}: seconds must be a real number, got {type(seconds).__name__} {seconds!r}."
        )
    value = float(seconds)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{who}: seconds must be a non-negative number, got {seconds!r}.")
    return value


class _Sleep:
    """Callable object behind ``suitkaise.timing.sleep``.

    A class (rather than a function with an attribute bolted on) so that
    ``sleep.asynced`` is visible to type checkers.
    """

    __name__ = "sleep"
    __qualname__ = "sleep"

    def __call__(self, seconds: float) -> float:
        """Block the calling thread for ``seconds``, then return ``time.time()``."""
        _time.sleep(_check_seconds(seconds, "sleep()"))
        return _time.time()

    def asynced(self) -> Callable[[float], Coroutine[Any, Any, float]]:
        """Return a coroutine function that sleeps with ``asyncio.sleep``.

        ``await sleep.asynced()(0.1)`` yields to the event loop for 0.1 s and
        returns ``time.time()`` after waking.
        """

        async def sleep_async(seconds: float) -> float:
            await asyncio.sleep(_check_seconds(seconds, "sleep.asynced()"))
            return _time.time()

        return sleep_async

    def __repr__(self) -> str:
        return "<function suitkaise.timing.sleep>"


sleep = _Sleep()
sleep.__doc__ = _Sleep.__call__.__doc__


def elapsed(time1: float, time2: float | None = None) -> float:
    """Return ``abs(time2 - time1)``; ``time2`` defaults to now (``time.time()``).

    The order of the two arguments does not matter: ``elapsed(5, 3) == 2.0``.
    """
    for name, value in (("time1", time1), ("time2", time2)):
        if value is None and name == "time2":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"elapsed(): {name} must be a real number (a timestamp), "
                f"got {type(value).__name__} {value!r}."
            )
    end = _time.time() if time2 is None else float(time2)
    return abs(end - float(time1))
