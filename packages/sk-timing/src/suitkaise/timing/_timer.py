"""``Sktimer``: a thread-safe, fork-safe, picklable timer with statistics, and ``TimerStats``.

Model
-----
Every thread that times something owns a *session*: a LIFO stack of frames
(``start`` pushes, ``stop``/``discard`` pop, ``lap``/``pause``/``resume`` act on
the top). Finished measurements from all threads go into the one ``times``
list, guarded by an ``RLock``::

    thread A: [frame, frame] --stop--+
    thread B: [frame]        --stop--+--> times / _paused_durations (under _lock)
                                     +--> statistics, TimerStats snapshots

Only recorded data (``times``, paused durations, ``max_times``,
``original_start_time``) is state: the lock and the sessions are rebuilt empty
when the timer is unpickled/copied, and lazily after ``fork()`` (a lock that
another thread held at fork time would otherwise deadlock the child).
"""

from __future__ import annotations

import math
import numbers
import os
import statistics
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

__all__ = ["Sktimer", "TimerStats"]

_NOT_RUNNING = "Sktimer is not running. Call start() first."
_MAX_TIMES_ERROR = "max_times must be a positive integer or None"

# -- fork detection ------------------------------------------------------------
# A cached pid, refreshed in the child by an at-fork hook: comparing it is much
# cheaper than calling os.getpid() on every timer operation. ``_REBUILD_LOCK``
# serialises the lazy rebuild between threads of the child; it is replaced in the
# child too, because a parent thread might have held it at fork time.
_CURRENT_PID = os.getpid()
_REBUILD_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _CURRENT_PID, _REBUILD_LOCK
    _CURRENT_PID = os.getpid()
    _REBUILD_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _validate_max_times(max_times: object) -> int | None:
    """Return ``max_times`` if it is ``None`` or a positive int, else raise ``ValueError``."""
    if max_times is None:
        return None
    if isinstance(max_times, bool) or not isinstance(max_times, int) or max_times <= 0:
        raise ValueError(_MAX_TIMES_ERROR)
    return max_times


def _percentile(data: Sequence[float], percent: float) -> float | None:
    """Linear-interpolation percentile (``k = p/100 * (n-1)``); ``None`` if ``data`` is empty."""
    if not data:
        return None
    if isinstance(percent, bool) or not isinstance(percent, numbers.Real):
        raise TypeError(
            f"percentile(): percent must be a real number, got {type(percent).__name__} {percent!r}."
        )
    if not 0 <= percent <= 100:  # also rejects NaN
        raise ValueError("Percentile must be between 0 and 100")
    ordered = sorted(data)
    k = percent / 100 * (len(ordered) - 1)
    lower = math.floor(k)
    if k == lower:
        return ordered[lower]
    frac = k - lower
    return ordered[lower] + (ordered[lower + 1] - ordered[lower]) * frac


def _get_time(data: Sequence[float], index: int) -> float | None:
    """``data[index]`` with Python-style negative indices; ``None`` when out of range."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"get_time(): index must be an int, got {type(index).__name__} {index!r}.")
    i = int(index)
    if -len(data) <= i < len(data):
        return data[i]
    return None


# -- TimerStats ----------------------------------------------------------------

@dataclass(frozen=True, slots=True, repr=False)
class TimerStats:
    """A frozen snapshot of an ``Sktimer``'s statistics (see ``Sktimer.get_stats()``).

    Built once from copies: it does not change when the timer records more.
    ``times`` is a private copy of the measurements, oldest first.
    """

    times: list[float]
    original_start_time: float | None
    num_times: int
    most_recent: float | None
    most_recent_index: int | None
    total_time: float | None
    total_time_paused: float | None
    mean: float | None
    median: float | None
    min: float | None
    max: float | None
    fastest_time: float | None
    slowest_time: float | None
    fastest_index: int | None
    slowest_index: int | None
    stdev: float | None
    variance: float | None

    @classmethod
    def _from_data(
        cls, times: list[float], paused: list[float], original_start_time: float | None
    ) -> TimerStats:
        n = len(times)
        lo = min(times) if times else None
        hi = max(times) if times else None
        return cls(
            times=times,
            original_start_time=original_start_time,
            num_times=n,
            most_recent=times[-1] if times else None,
            most_recent_index=n - 1 if times else None,
            total_time=math.fsum(times) if times else None,
            total_time_paused=math.fsum(paused) if times else None,
            mean=statistics.mean(times) if times else None,
            median=statistics.median(times) if times else None,
            min=lo,
            max=hi,
            fastest_time=lo,
            slowest_time=hi,
            fastest_index=times.index(lo) if lo is not None else None,
            slowest_index=times.index(hi) if hi is not None else None,
            stdev=statistics.stdev(times) if n >= 2 else None,
            variance=statistics.variance(times) if n >= 2 else None,
        )

    def percentile(self, percent: float) -> float | None:
        """Linear-interpolation percentile of the snapshot; ``None`` if it is empty."""
        return _percentile(self.times, percent)

    def get_time(self, index: int) -> float | None:
        """Measurement at ``index`` (negative indices count from the end), else ``None``."""
        return _get_time(self.times, index)

    def __repr__(self) -> str:
        return (
            f"TimerStats(num_times={self.num_times}, mean={_fmt(self.mean)}, "
            f"median={_fmt(self.median)}, min={_fmt(self.min)}, max={_fmt(self.max)}, "
            f"stdev={_fmt(self.stdev)})"
        )


def _fmt(value: float | None) -> str:
    return "None" if value is None else f"{value:.6g}"


# -- sessions ------------------------------------------------------------------

class _Frame:
    """One open measurement: where it started and how long it has been paused."""

    __slots__ = ("pause_started_at", "paused", "start", "total_paused")

    def __init__(self, start: float) -> None:
        self.start = start
        self.paused = False
        self.pause_started_at = 0.0
        self.total_paused = 0.0

    def measure(self, now: float) -> tuple[float, float]:
        """Return ``(elapsed excluding pauses, paused total)`` as of ``now``."""
        paused = self.total_paused + (now - self.pause_started_at if self.paused else 0.0)
        return (now - self.start) - paused, paused

    def copy(self) -> _Frame:
        clone = _Frame(self.start)
        clone.paused = self.paused
        clone.pause_started_at = self.pause_started_at
        clone.total_paused = self.total_paused
        return clone


class _Session:
    """The frame stack of one thread. ``thread`` detects ident reuse by a new thread."""

    __slots__ = ("frames", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.frames: list[_Frame] = []


_BLOCKED_TEMPLATE = (
    "Sktimer.{name}() cannot be used through Share: it depends on the calling thread's "
    "timing session and on time.perf_counter(), which a Share evaluates on its stored copy, "
    "outside your thread's session. Measure locally (with TimeThis or "
    "suitkaise.timing.elapsed) and aggregate with share.timer.add_time(elapsed)."
)

# Attributes that are never state: rebuilt by _init_runtime().
_RUNTIME_ATTRS = ("_lock", "_sessions", "_owner_pid")


def _checked_duration(elapsed_time: object) -> float:
    """``elapsed_time`` as seconds, or the error that says why it is not a duration."""
    if isinstance(elapsed_time, bool) or not isinstance(elapsed_time, numbers.Real):
        raise TypeError(
            "Sktimer.add_time(): elapsed_time must be a real number of seconds, "
            f"got {type(elapsed_time).__name__} {elapsed_time!r}."
        )
    value = float(elapsed_time)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            "Sktimer.add_time(): elapsed_time must be a finite, non-negative number of "
            f"seconds, got {elapsed_time!r}."
        )
    return value


class Sktimer:
    """Thread-safe timer that records measurements and computes statistics over them.

    ``start()``/``stop()`` time a region in the calling thread (nesting is LIFO);
    ``pause()``/``resume()`` exclude time; ``lap()`` records and restarts;
    ``add_time()`` records an externally measured duration. ``max_times`` keeps
    only the most recent measurements. Statistics (``mean``, ``median``,
    ``stdev``, ``percentile()``...) are live; ``get_stats()`` returns a frozen
    ``TimerStats`` snapshot.
    """

    # How suitkaise.share routes calls on a proxied Sktimer (see timing spec §2.7).
    _shared_meta: dict[str, dict[str, dict[str, list[str]]]] = {
        "methods": {
            "add_time": {"writes": ["times", "_paused_durations"]},
            "set_max_times": {"writes": ["times", "_paused_durations", "_max_times"]},
            "reset": {
                "writes": ["times", "_sessions", "_paused_durations", "original_start_time"]
            },
            "get_statistics": {"reads": ["times"]},
            "get_stats": {"reads": ["times"]},
            "get_time": {"reads": ["times"]},
            "percentile": {"reads": ["times"]},
        },
        "properties": {
            **{
                name: {"reads": ["times"]}
                for name in (
                    "num_times", "most_recent", "result", "most_recent_index", "total_time",
                    "mean", "median", "min", "max", "fastest_time", "slowest_time",
                    "fastest_index", "slowest_index", "stdev", "variance",
                )
            },
            "total_time_paused": {"reads": ["_paused_durations"]},
            "max_times": {"reads": ["_max_times"]},
        },
    }

    # Methods that make no sense on a copy stored in a Share.
    _share_blocked_methods: dict[str, str] = {
        name: _BLOCKED_TEMPLATE.format(name=name)
        for name in ("start", "stop", "pause", "resume", "lap", "discard")
    }

    times: list[float]
    original_start_time: float | None
    _paused_durations: list[float]
    _max_times: int | None
    _lock: threading.RLock
    _sessions: dict[int, _Session]
    _owner_pid: int

    def __init__(self, max_times: int | None = None) -> None:
        self._max_times = _validate_max_times(max_times)
        self.times = []
        self._paused_durations = []
        self.original_start_time = None
        self._init_runtime(keep_current_session=None)

    # -- runtime state: lock, sessions, pid --------------------------------------

    def _init_runtime(self, keep_current_session: _Session | None) -> None:
        self._lock = threading.RLock()
        self._sessions = {}
        if keep_current_session is not None:
            self._sessions[threading.get_ident()] = keep_current_session
        self._owner_pid = _CURRENT_PID

    def _guard(self) -> threading.RLock:
        """Return the lock, rebuilding lock and sessions first if we are in a forked child.

        The thread that forked lives on in the child with the same ident, so its
        own open frames are kept; every other thread's session is dropped (those
        threads do not exist in the child) and the possibly-held lock is replaced.
        """
        if self._owner_pid != _CURRENT_PID:
            with _REBUILD_LOCK:
                if self._owner_pid != _CURRENT_PID:
                    # Read without the (possibly held forever) old lock: in the child
                    # only this thread runs at this point, and dict reads are atomic.
                    old = self._sessions.get(threading.get_ident())
                    keep = None
                    if old is not None and old.frames:
                        keep = _Session(threading.current_thread())
                        keep.frames = [f.copy() for f in old.frames]
                    self._init_runtime(keep_current_session=keep)
        return self._lock

    def _session(self, create: bool) -> _Session | None:
        """The calling thread's session (lock must be held). Purges sessions of dead threads."""
        ident = threading.get_ident()
        current = threading.current_thread()
        session = self._sessions.get(ident)
        if session is not None and session.thread is not current:
            # The ident was reused by a new thread: the old one died mid-measurement.
            del self._sessions[ident]
            session = None
        if session is None and create:
            for other_ident, other in list(self._sessions.items()):
                if not other.thread.is_alive():
                    del self._sessions[other_ident]
            session = _Session(current)
            self._sessions[ident] = session
        return session

    def _top_frame(self) -> _Frame:
        session = self._session(create=False)
        if session is None or not session.frames:
            raise self._not_running()
        return session.frames[-1]

    def _not_running(self) -> RuntimeError:
        """The error for a call that needs a measurement this thread has not started; names
        the threads that do have one (sessions are per thread). Lock must be held."""
        others = [s.thread.name for s in self._sessions.values() if s.frames and s.thread.is_alive()]
        if not others:
            return RuntimeError(_NOT_RUNNING)
        return RuntimeError(
            f"Sktimer is not running in this thread ({threading.current_thread().name!r}); it is "
            f"running in {', '.join(repr(n) for n in others)}. Each thread times its own "
            "measurements: call stop() from the thread that called start()."
        )

    def _push_frame(self, *, warn: bool) -> _Frame:
        """Open a frame in the calling thread (the core of ``start()``)."""
        with self._guard():
            session = self._session(create=True)
            assert session is not None
            if warn and session.frames:
                warnings.warn(
                    "Sktimer.start() called while timing is already in progress. "
                    "This creates a nested timing frame.",
                    UserWarning,
                    stacklevel=3,
                )
            now = perf_counter()
            frame = _Frame(now)
            session.frames.append(frame)
            if self.original_start_time is None:
                self.original_start_time = now
            return frame

    def _pop_frame(self, frame: _Frame | None, now: float) -> tuple[float, float] | None:
        """Close ``frame`` (or the top frame if ``None``) and return its measurement.

        Returns ``None`` when the given frame is no longer open (closed by the user's
        ``stop()``/``discard()`` or dropped by ``reset()``). Lock must be held.
        """
        session = self._session(create=False)
        if session is None or not session.frames:
            if frame is None:
                raise self._not_running()
            return None
        if frame is None:
            frame = session.frames.pop()
        else:
            for i in range(len(session.frames) - 1, -1, -1):
                if session.frames[i] is frame:
                    del session.frames[i]
                    break
            else:
                return None
        if not session.frames:
            del self._sessions[threading.get_ident()]
        return frame.measure(now)

    def _has_active_frame(self) -> bool:
        """Whether the calling thread has an open frame on this timer."""
        with self._guard():
            session = self._session(create=False)
            return bool(session is not None and session.frames)

    def _record(self, elapsed: float, paused: float) -> None:
        """Append one measurement and trim to the window. Lock must be held."""
        self.times.append(elapsed)
        self._paused_durations.append(paused)
        self._trim()

    def _trim(self) -> None:
        limit = self._max_times
        if limit is not None and len(self.times) > limit:
            del self.times[: len(self.times) - limit]
        if limit is not None and len(self._paused_durations) > limit:
            del self._paused_durations[: len(self._paused_durations) - limit]

    # -- control ---------------------------------------------------------------------

    def start(self) -> float:
        """Open a timing frame in this thread and return its ``perf_counter()`` start.

        Starting again before stopping warns and nests (the inner frame stops first).
        """
        return self._push_frame(warn=True).start

    def stop(self) -> float:
        """Close this thread's innermost frame, record and return its elapsed time."""
        now = perf_counter()
        with self._guard():
            measured = self._pop_frame(None, now)
            assert measured is not None
            self._record(*measured)
            return measured[0]

    def discard(self) -> float:
        """Close this thread's innermost frame without recording; return its elapsed time."""
        now = perf_counter()
        with self._guard():
            measured = self._pop_frame(None, now)
            assert measured is not None
            return measured[0]

    def lap(self) -> float:
        """Record the innermost frame's elapsed time and restart it (pauses cleared)."""
        now = perf_counter()
        with self._guard():
            frame = self._top_frame()
            elapsed, paused = frame.measure(now)
            self._record(elapsed, paused)
            frame.start = now
            frame.paused = False
            frame.pause_started_at = 0.0
            frame.total_paused = 0.0
            return elapsed

    def pause(self) -> None:
        """Pause this thread's innermost frame; paused time is excluded from it."""
        now = perf_counter()
        with self._guard():
            frame = self._top_frame()
            if frame.paused:
                warnings.warn(
                    "Sktimer is already paused. Call resume() first.", UserWarning, stacklevel=2
                )
                return
            frame.paused = True
            frame.pause_started_at = now

    def resume(self) -> None:
        """Resume this thread's innermost frame after ``pause()``."""
        now = perf_counter()
        with self._guard():
            frame = self._top_frame()
            if not frame.paused:
                warnings.warn(
                    "Sktimer is not paused. Call pause() first.", UserWarning, stacklevel=2
                )
                return
            frame.total_paused += now - frame.pause_started_at
            frame.paused = False

    def add_time(self, elapsed_time: float) -> None:
        """Record a duration measured elsewhere (paused duration ``0.0``).

        Raises ``TypeError`` for anything but a real number and ``ValueError`` for a
        negative, NaN or infinite duration (they would poison every statistic).
        """
        # The common case first, cheaply (Skprocess records two durations per iteration):
        # a float in [0, inf) -- NaN fails the comparison.
        if type(elapsed_time) is float and 0.0 <= elapsed_time < math.inf:
            value = elapsed_time
        else:
            value = _checked_duration(elapsed_time)
        lock = self._lock if self._owner_pid == _CURRENT_PID else self._guard()
        with lock:
            self.times.append(value)
            self._paused_durations.append(0.0)
            if self._max_times is not None:
                self._trim()

    def _appenders(self) -> tuple[Callable[[float], None], Callable[[float], None]]:
        """What ``add_time`` appends to, for a hot loop that measures valid durations itself
        (Skprocess's run loop: ~30 ns instead of ~300 ns per duration): call the first with
        the duration and the second with ``0.0`` (its paused time).

        Only while ``max_times`` is ``None``: the caller checks it before each use and calls
        ``add_time`` (which trims) otherwise. Without the lock: each append is atomic, and
        a reader sees every duration recorded before its read.
        """
        with self._guard():
            return self.times.append, self._paused_durations.append

    def set_max_times(self, max_times: int | None) -> None:
        """Change the window (``None`` keeps everything); drops the oldest at once."""
        value = _validate_max_times(max_times)
        with self._guard():
            self._max_times = value
            self._trim()

    def reset(self) -> None:
        """Forget all measurements and every thread's open frames; ``max_times`` is kept."""
        with self._guard():
            self.times.clear()
            self._paused_durations.clear()
            self._sessions.clear()
            self.original_start_time = None

    # -- statistics ------------------------------------------------------------------

    def _snapshot(self) -> list[float]:
        with self._guard():
            return list(self.times)

    @property
    def max_times(self) -> int | None:
        """The window size (``None`` = keep every measurement)."""
        return self._max_times

    @property
    def num_times(self) -> int:
        """Number of recorded measurements."""
        with self._guard():
            return len(self.times)

    @property
    def most_recent(self) -> float | None:
        """The latest measurement, or ``None``."""
        with self._guard():
            return self.times[-1] if self.times else None

    @property
    def result(self) -> float | None:
        """Alias of ``most_recent``."""
        return self.most_recent

    @property
    def most_recent_index(self) -> int | None:
        """Index of the latest measurement, or ``None``."""
        with self._guard():
            return len(self.times) - 1 if self.times else None

    @property
    def total_time(self) -> float | None:
        """Sum of the measurements, or ``None``."""
        data = self._snapshot()
        return math.fsum(data) if data else None

    @property
    def total_time_paused(self) -> float | None:
        """Sum of the paused durations recorded with the measurements, or ``None``."""
        with self._guard():
            paused = list(self._paused_durations)
            empty = not self.times
        return None if empty else math.fsum(paused)

    @property
    def mean(self) -> float | None:
        """Arithmetic mean (``statistics.mean``), or ``None``."""
        data = self._snapshot()
        return statistics.mean(data) if data else None

    @property
    def median(self) -> float | None:
        """Median (``statistics.median``), or ``None``."""
        data = self._snapshot()
        return statistics.median(data) if data else None

    @property
    def min(self) -> float | None:
        """Fastest measurement, or ``None``."""
        data = self._snapshot()
        return min(data) if data else None

    @property
    def max(self) -> float | None:
        """Slowest measurement, or ``None``."""
        data = self._snapshot()
        return max(data) if data else None

    @property
    def fastest_time(self) -> float | None:
        """Alias of ``min``."""
        return self.min

    @property
    def slowest_time(self) -> float | None:
        """Alias of ``max``."""
        return self.max

    @property
    def fastest_index(self) -> int | None:
        """Index of the first occurrence of the minimum, or ``None``."""
        data = self._snapshot()
        return data.index(min(data)) if data else None

    @property
    def slowest_index(self) -> int | None:
        """Index of the first occurrence of the maximum, or ``None``."""
        data = self._snapshot()
        return data.index(max(data)) if data else None

    @property
    def stdev(self) -> float | None:
        """Sample standard deviation; ``None`` with fewer than two measurements."""
        data = self._snapshot()
        return statistics.stdev(data) if len(data) >= 2 else None

    @property
    def variance(self) -> float | None:
        """Sample variance; ``None`` with fewer than two measurements."""
        data = self._snapshot()
        return statistics.variance(data) if len(data) >= 2 else None

    def get_time(self, index: int) -> float | None:
        """Measurement at ``index`` (negative indices count from the end), else ``None``."""
        return _get_time(self._snapshot(), index)

    def percentile(self, percent: float) -> float | None:
        """Linear-interpolation percentile; ``None`` when empty.

        ``percent`` outside ``[0, 100]`` raises ``ValueError`` (only when there is data).
        """
        return _percentile(self._snapshot(), percent)

    def get_statistics(self) -> TimerStats | None:
        """A frozen ``TimerStats`` snapshot, or ``None`` when nothing is recorded."""
        with self._guard():
            if not self.times:
                return None
            times = list(self.times)
            paused = list(self._paused_durations)
            origin = self.original_start_time
        return TimerStats._from_data(times, paused, origin)

    def get_stats(self) -> TimerStats | None:
        """Alias of ``get_statistics()``."""
        return self.get_statistics()

    # -- copying, pickling, repr -----------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Recorded data only: never the lock, the sessions or the owner pid."""
        with self._guard():
            state = {k: v for k, v in self.__dict__.items() if k not in _RUNTIME_ATTRS}
            state["times"] = list(self.times)
            state["_paused_durations"] = list(self._paused_durations)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for key in _RUNTIME_ATTRS:
            state.pop(key, None)
        state.setdefault("times", [])
        state.setdefault("_max_times", None)
        state.setdefault("original_start_time", None)
        state.setdefault("_paused_durations", [0.0] * len(state["times"]))
        self.__dict__.update(state)
        self._init_runtime(keep_current_session=None)

    def __repr__(self) -> str:
        data = self._snapshot()
        mean = statistics.mean(data) if data else None
        return (
            f"{type(self).__name__}(num_times={len(data)}, mean={_fmt(mean)}, "
            f"max_times={self._max_times})"
        )
