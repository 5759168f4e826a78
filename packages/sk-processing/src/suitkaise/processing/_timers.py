"""``ProcessTimers`` and the ``process.__run__.timer`` accessor.

One ``Sktimer`` per lifecycle section, created the first time the section
runs, plus ``full_run`` (prerun + run + postrun of each completed
iteration). A section that raises or times out creates its timer but records
nothing. The engine measures with ``perf_counter`` and records with
``Sktimer.add_time`` (cheaper than start/stop frames in the hot loop).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from suitkaise.processing._sections import KEYS
from suitkaise.timing import Sktimer

__all__ = ["ProcessTimers"]

_SECTION_NAMES = KEYS
_ATTRS = {*KEYS, "full_run"}


def _section_key(section: str) -> str:
    key = section.strip("_")
    if key not in _SECTION_NAMES:
        raise ValueError(f"unknown lifecycle section {section!r}; expected one of {_SECTION_NAMES}")
    return key


class ProcessTimers:
    """Timers of one ``Skprocess`` run: ``prerun``, ``run``, ``postrun``,
    ``onfinish``, ``result``, ``error`` (each ``Sktimer | None``) and ``full_run``."""

    prerun: Sktimer | None
    run: Sktimer | None
    postrun: Sktimer | None
    onfinish: Sktimer | None
    result: Sktimer | None
    error: Sktimer | None
    full_run: Sktimer

    def __init__(self) -> None:
        self.prerun = None
        self.run = None
        self.postrun = None
        self.onfinish = None
        self.result = None
        self.error = None
        self.full_run = Sktimer()

    def _ensure_timer(self, section: str) -> Sktimer:
        """Return the timer of ``section`` (``"run"`` or ``"__run__"``), creating it if needed."""
        key = _section_key(section)
        timer = getattr(self, key)
        if timer is None:
            timer = Sktimer()
            setattr(self, key, timer)
        return timer

    def _plain(self) -> dict[str, dict[str, Any]] | None:
        """The timers as builtin data (each ``Sktimer``'s pickle state), which cucumber
        serializes with the C pickler alone: the child's final message costs ~0.25 ms less.
        ``None`` when something here is not a plain ``ProcessTimers`` of ``Sktimer`` objects.

        A long run's message is mostly floats, one per iteration per list, which the child
        pickles and the parent unpickles one by one (~0.4 us per iteration of the loop), so:
        paused durations that are all zero (the run loop's: it never pauses) are left out
        (``Sktimer.__setstate__`` rebuilds them as zeros, one shared float), and a timer
        whose times equal another's (``full_run`` and ``run`` when ``__run__`` is the only
        loop section) shares that list: pickle sends it once, ``_from_plain`` copies it."""
        if type(self) is not ProcessTimers or vars(self).keys() != _ATTRS:
            return None
        out: dict[str, dict[str, Any]] = {}
        sent: list[list[float]] = []
        for key in _ATTRS:
            timer = getattr(self, key)
            if timer is None:
                continue
            if type(timer) is not Sktimer:
                return None
            state = timer.__getstate__()
            times = state["times"]
            paused = state.get("_paused_durations")
            if type(paused) is list and len(paused) == len(times) and not any(paused):
                del state["_paused_durations"]  # (a -0.0 among them comes back as 0.0)
            same = next((other for other in sent if len(other) == len(times) and other == times), None)
            if same is None:
                sent.append(times)
            else:
                state["times"] = same
            out[key] = state
        return out

    @classmethod
    def _from_plain(cls, data: dict[str, dict[str, Any]]) -> ProcessTimers:
        """Inverse of ``_plain`` (each timer gets a list of its own)."""
        timers = cls()
        taken: set[int] = set()
        for key, state in data.items():
            if key not in _ATTRS:
                raise ValueError(f"unknown timer {key!r}")
            times = state.get("times")
            if times is not None and id(times) in taken:
                state = {**state, "times": list(times)}
            taken.add(id(times))
            timer = Sktimer.__new__(Sktimer)
            timer.__setstate__(state)
            setattr(timers, key, timer)
        return timers

    def __repr__(self) -> str:
        parts = []
        for key in (*_SECTION_NAMES, "full_run"):
            timer = getattr(self, key)
            if timer is not None:
                parts.append(f"{key}={timer.num_times}")
        return f"ProcessTimers({', '.join(parts)})"


class TimedMethod:
    """Class-level wrapper of a lifecycle method: ``proc.__run__`` is callable
    and has ``.timer`` (the matching ``Sktimer`` of ``proc.timers`` or ``None``)."""

    __slots__ = ("__dict__", "fn", "key", "skip")

    def __init__(self, fn: Callable[..., Any], key: str, *, skip: bool = False) -> None:
        self.fn = fn
        self.key = key
        self.skip = skip  # Skprocess's own no-op default: the engine does not call (or time) it
        functools.update_wrapper(self, fn)

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return BoundTimedMethod(self.fn, obj, self.key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<timed lifecycle method {getattr(self.fn, '__qualname__', self.fn)!r}>"


class BoundTimedMethod:
    """``proc.__run__``: call it like the method; ``.timer`` gives its ``Sktimer``."""

    __slots__ = ("__func__", "__self__", "key")

    def __init__(self, fn: Callable[..., Any], obj: object, key: str) -> None:
        self.__func__ = fn
        self.__self__ = obj
        self.key = key

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    @property
    def timer(self) -> Sktimer | None:
        timers = getattr(self.__self__, "timers", None)
        if timers is None:
            return None
        timer: Sktimer | None = getattr(timers, self.key, None)
        return timer

    @property
    def __name__(self) -> str:
        return str(getattr(self.__func__, "__name__", self.key))

    def __repr__(self) -> str:
        return f"<bound lifecycle method {self.__name__} of {self.__self__!r}>"
