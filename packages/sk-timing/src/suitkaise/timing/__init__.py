"""suitkaise.timing: wall-clock helpers, the thread-safe ``Sktimer`` and its decorators.

    from suitkaise.timing import Sktimer, TimeThis, timethis

    timer = Sktimer()
    with TimeThis(timer):
        work()
    print(timer.mean, timer.percentile(95))

``Sktimer`` measures with ``time.perf_counter()``, per thread (nested frames are
LIFO), and pickles/copies with its recorded data only. ``TimerStats`` is the
frozen snapshot returned by ``Sktimer.get_stats()``.
"""

from __future__ import annotations

from suitkaise.timing._clock import elapsed, sleep, time
from suitkaise.timing._decorators import TimeThis, clear_global_timers, timethis
from suitkaise.timing._timer import Sktimer, TimerStats

__version__ = "0.5.0"

__all__ = [
    "time",
    "sleep",
    "elapsed",
    "Sktimer",
    "TimerStats",
    "TimeThis",
    "timethis",
    "clear_global_timers",
]
