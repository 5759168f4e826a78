"""``TimeThis`` (context manager), ``timethis`` (decorator) and the global timer registry.

Both record through ``Sktimer.add_time`` and only for runs that finished without
an exception and took at least ``threshold`` seconds.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import sys
import threading
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from suitkaise.timing._timer import Sktimer, _Frame, _validate_max_times

__all__ = ["TimeThis", "clear_global_timers", "timethis"]

F = TypeVar("F", bound=Callable[..., Any])


def _check_threshold(threshold: object, who: str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"{who}: threshold must be a real number of seconds, "
            f"got {type(threshold).__name__} {threshold!r}."
        )
    return float(threshold)


def _check_timer(timer: object, who: str) -> Sktimer | None:
    if timer is not None and not isinstance(timer, Sktimer):
        raise TypeError(f"{who}: timer must be an Sktimer or None, got {type(timer).__name__}.")
    return timer


class TimeThis:
    """Time a ``with`` block into an ``Sktimer`` (a new one if none is given).

    ``with TimeThis(t) as timer:`` yields the Sktimer. The block is recorded only
    if it raised nothing and took at least ``threshold`` seconds; exceptions are
    never suppressed. Pauses inside the block are excluded from the measurement.
    If the block closes the frame itself (``timer.stop()``/``discard()``, or
    another thread's ``reset()``), leaving the block records nothing more and
    raises nothing.
    """

    def __init__(self, timer: Sktimer | None = None, threshold: float = 0.0) -> None:
        checked = _check_timer(timer, "TimeThis()")
        self.timer: Sktimer = checked if checked is not None else Sktimer()
        self.threshold: float = _check_threshold(threshold, "TimeThis()")
        # Open frames per thread, so one TimeThis may be entered by several threads
        # or re-entered (nested) in one thread.
        self._frames: dict[int, list[_Frame]] = {}
        self._frames_lock = threading.Lock()

    def __enter__(self) -> Sktimer:
        frame = self.timer._push_frame(warn=True)
        with self._frames_lock:
            self._frames.setdefault(threading.get_ident(), []).append(frame)
        return self.timer

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        now = perf_counter()
        ident = threading.get_ident()
        with self._frames_lock:
            stack = self._frames.get(ident)
            frame = stack.pop() if stack else None
            if stack is not None and not stack:
                del self._frames[ident]
        if frame is None:  # pragma: no cover - only if __exit__ is called without __enter__
            return None
        timer = self.timer
        with timer._guard():
            measured = timer._pop_frame(frame, now)
        if measured is None or exc_type is not None:
            return None
        if measured[0] >= self.threshold:
            timer.add_time(measured[0])
        return None

    def pause(self) -> None:
        """Pause the timer (delegates to ``Sktimer.pause``)."""
        self.timer.pause()

    def resume(self) -> None:
        """Resume the timer (delegates to ``Sktimer.resume``)."""
        self.timer.resume()

    def lap(self) -> float:
        """Record a lap on the timer (delegates to ``Sktimer.lap``)."""
        return self.timer.lap()

    def __repr__(self) -> str:
        return f"TimeThis(timer={self.timer!r}, threshold={self.threshold!r})"


# -- global registry ------------------------------------------------------------

_GLOBAL_TIMERS: dict[str, Sktimer] = {}
_GLOBAL_LOCK = threading.Lock()


def _global_timer_name(module: str, qualname: str) -> str:
    """``<mod>_<qualname>_timer``, or ``<mod>_<owner>_<name>_timer`` for dotted qualnames."""
    mod = module.rsplit(".", 1)[-1]
    if "." not in qualname:
        return f"{mod}_{qualname}_timer"
    owner, name = qualname.rsplit(".", 1)
    return f"{mod}_{owner}_{name}_timer"


def _global_timer(module: str, qualname: str, max_times: int | None) -> Sktimer:
    name = _global_timer_name(module, qualname)
    with _GLOBAL_LOCK:
        timer = _GLOBAL_TIMERS.get(name)
        if timer is None:
            timer = Sktimer(max_times=max_times)
            _GLOBAL_TIMERS[name] = timer
        elif max_times is not None:
            timer.set_max_times(max_times)
        return timer


def clear_global_timers() -> None:
    """Reset every auto-created ``timethis`` timer and empty the registry.

    Functions decorated earlier keep their (now empty) timers; functions decorated
    afterwards get new ones.
    """
    with _GLOBAL_LOCK:
        timers = list(_GLOBAL_TIMERS.values())
        _GLOBAL_TIMERS.clear()
    for timer in timers:
        timer.reset()


# -- timethis --------------------------------------------------------------------

def _wrap(func: F, timer: Sktimer, threshold: float) -> F:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            # Coroutines of one thread interleave on the event loop, so a per-thread
            # frame stack would be shared between concurrent calls: measure directly.
            t0 = perf_counter()
            result = await func(*args, **kwargs)
            elapsed = perf_counter() - t0
            if elapsed >= threshold:
                timer.add_time(elapsed)
            return result

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if timer._has_active_frame():
            # Recursion, or the same timer is already timing around this call:
            # measure directly so the outer frame stays untouched.
            t0 = perf_counter()
            result = func(*args, **kwargs)
            elapsed = perf_counter() - t0
        else:
            frame = timer._push_frame(warn=False)
            try:
                result = func(*args, **kwargs)
            except BaseException:
                now = perf_counter()
                with timer._guard():
                    timer._pop_frame(frame, now)
                raise
            now = perf_counter()
            with timer._guard():
                measured = timer._pop_frame(frame, now)
            if measured is None:  # the function closed our frame itself, or reset()
                return result
            elapsed = measured[0]
        if elapsed >= threshold:
            timer.add_time(elapsed)
        return result

    return cast(F, wrapper)


@overload
def timethis(timer: F, /) -> F: ...


@overload
def timethis(
    timer: Sktimer | None = None, threshold: float = 0.0, max_times: int | None = None
) -> Callable[[F], F]: ...


def timethis(
    timer: Sktimer | Callable[..., Any] | None = None,
    threshold: float = 0.0,
    max_times: int | None = None,
) -> Any:
    """Decorator that records each successful call's duration in an ``Sktimer``.

    Forms: ``@timethis``, ``@timethis()``, ``@timethis(my_timer)``,
    ``@timethis(threshold=0.1, max_times=100)``. Without a timer, one is taken from
    a global registry under the name ``<module>_<qualname>_timer`` and exposed as
    ``func.timer``. ``async def`` functions get an async wrapper that times the
    awaited body. Recursive calls each record one measurement.
    """
    module = sys._getframe(1).f_globals.get("__name__", "__main__")
    if callable(timer) and not isinstance(timer, Sktimer):
        # Bare ``@timethis``: the function arrives as the first argument.
        return _decorate(timer, None, 0.0, None, module)
    checked_timer = _check_timer(timer, "timethis()")
    checked_threshold = _check_threshold(threshold, "timethis()")
    checked_max = _validate_max_times(max_times)
    if checked_timer is not None and checked_max is not None:
        checked_timer.set_max_times(checked_max)

    def decorator(func: F) -> F:
        return _decorate(func, checked_timer, checked_threshold, checked_max, module)

    return decorator


def _decorate(
    func: F, timer: Sktimer | None, threshold: float, max_times: int | None, module: str
) -> F:
    if not callable(func):
        raise TypeError(f"timethis can only decorate callables, got {type(func).__name__}.")
    if timer is not None:
        # An explicit timer: no .timer attribute of our own (an inner timethis's
        # .timer is still visible through the __dict__ functools.wraps copies).
        return _wrap(func, timer, threshold)
    qualname = str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))
    global_timer = _global_timer(module, qualname, max_times)
    wrapped = _wrap(func, global_timer, threshold)
    wrapped.timer = global_timer  # type: ignore[attr-defined]
    return wrapped
