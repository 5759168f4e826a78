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
# An Sktimer's attributes: what _pack sends and _unpack restores, then its runtime ones (a
# timer with any other is sent in full; a test checks that this is a new Sktimer's set)
_SKTIMER_ATTRS = frozenset({"times", "_paused_durations", "_max_times", "original_start_time",
                            "_lock", "_sessions", "_owner_pid"})


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

    def _pack(self) -> tuple[tuple[Any, ...], ...] | None:
        """The timers as builtin data for the child's final message: one
        ``(key, times, paused, max_times, original_start_time)`` per timer that exists, which
        ``marshal`` (or cucumber's C-pickler fast path) encodes without any Python-level
        machinery; ``None`` when something here is not a plain ``ProcessTimers`` of plain
        ``Sktimer`` objects (the full form then carries them as they are).

        The lists are the timers' own, not copies: the caller encodes them at once, and one
        ``marshal.dumps`` is an atomic snapshot (it runs no Python code). A long run's message
        is mostly floats, one per iteration per list, so ``paused`` is ``None`` when every
        paused duration is zero (the run loop's: it never pauses; ``Sktimer.__setstate__``
        rebuilds them as zeros), and a timer whose times equal another's (``full_run`` and
        ``run`` when ``__run__`` is the only loop section) sends that same list object,
        which both encoders write once (``_unpack`` copies it)."""
        attrs = vars(self)
        if type(self) is not ProcessTimers or attrs.keys() != _ATTRS:
            return None
        out = []
        sent: list[list[float]] = []
        for key, timer in attrs.items():
            if timer is None:
                continue
            if type(timer) is not Sktimer or vars(timer).keys() != _SKTIMER_ATTRS:
                return None
            times, durations = timer.times, timer._paused_durations
            # (a -0.0 among them comes back as 0.0)
            paused = None if len(durations) == len(times) and not any(durations) else durations
            for other in sent:
                if len(other) == len(times) and other == times:
                    times = other
                    break
            else:
                sent.append(times)
            out.append((key, times, paused, timer._max_times, timer.original_start_time))
        return tuple(out)

    @classmethod
    def _unpack(cls, packed: tuple[tuple[Any, ...], ...]) -> ProcessTimers:
        """Inverse of ``_pack`` (each timer gets lists of its own)."""
        timers = cls()
        taken: set[int] = set()
        for key, times, paused, max_times, origin in packed:
            if key not in _ATTRS:
                raise ValueError(f"unknown timer {key!r}")
            if id(times) in taken:
                times = list(times)
            taken.add(id(times))
            state = {"times": times, "_max_times": max_times, "original_start_time": origin}
            if paused is not None:
                state["_paused_durations"] = paused
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
    and has ``.timer`` (the matching ``Sktimer`` of ``proc.timers``, or an empty one)."""

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
    def timer(self) -> Sktimer:
        """The section's ``Sktimer``; an empty one while it has none (not started, never run,
        or not defined), so ``proc.__prerun__.timer.total_time`` reads ``None``, not an error."""
        timers = getattr(self.__self__, "timers", None)
        timer: Sktimer | None = None if timers is None else getattr(timers, self.key, None)
        return Sktimer() if timer is None else timer

    @property
    def __name__(self) -> str:
        return str(getattr(self.__func__, "__name__", self.key))

    def __repr__(self) -> str:
        return f"<bound lifecycle method {self.__name__} of {self.__self__!r}>"
