"""The lifecycle loop of one ``Skprocess`` instance, wherever it runs.

``Lifecycle(proc, ctrl).run()`` is the whole life of an instance, in the
child process or inline in a Pool worker::

    @autoreconnect -> loop: [stop? runs? join_in?] -> __prerun__ -> [stop?] -> __run__
                            -> [stop?] -> __postrun__ -> current_run += 1 -> (checkpoint)
                      a section raising (or timing out) costs a life and repeats the
                      same iteration with the state kept; no lives left -> __error__
                   -> __onfinish__ -> __result__          (failures here -> __error__)

Section timeouts: ``setitimer``/SIGALRM on the main thread (the deadline is
also published in ``ctrl`` so that the parent can replace a child stuck in
native code); off the main thread the section runs on a helper thread that is
abandoned at the deadline. ``run()`` never raises for user errors: it returns
``("value", v)`` or ``("raise", ProcessError)``.
"""

from __future__ import annotations

import difflib
import functools
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from suitkaise import cucumber
from suitkaise.processing._errors import (
    ErrorHandlerError,
    ProcessError,
    ProcessTimeoutError,
    _SectionError,
)
from suitkaise.processing._runtime import (
    DEADLINE,
    LIVES,
    RUN,
    SECTION,
    STOP,
    TIMEOUT,
    Outcome,
    SectionTimeout,
)
from suitkaise.processing._sections import BY_DUNDER, DUNDERS, LOOP
from suitkaise.processing._timers import ProcessTimers, TimedMethod

__all__ = ["Checkpointer", "Lifecycle", "check_sections", "section_fns"]

_LOOP_ERRORS = (_SectionError, ProcessTimeoutError)


class Checkpointer(Protocol):
    """Where the loop records each completed iteration (see ``_checkpoint``)."""

    def commit(self, proc: Any, samples: tuple[float, float, float]) -> None: ...

    def failed(self, samples: tuple[float, float, float]) -> None: ...


def resolve_section(cls: type, name: str) -> Callable[..., Any] | None:
    """The plain function implementing ``name`` on ``cls`` (``None``: nothing to call)."""
    for klass in cls.__mro__:
        attr = klass.__dict__.get(name)
        if attr is None:
            continue
        if isinstance(attr, TimedMethod):
            return None if attr.skip else attr.fn
        return attr
    return None


# names a class may well define that look like a section's (``__repr__`` ~ ``__prerun__``)
_NOT_A_TYPO = frozenset(dir(type)) | {
    "__qualname__", "__weakref__", "__del__", "__iter__", "__next__", "__len__", "__call__",
    "__enter__", "__exit__", "__getstate__", "__setstate__", "__getattr__", "__post_init__",
}


def check_sections(cls: type, runs: int | None, join_in: float | None) -> None:
    """``TypeError`` for a class whose lifecycle cannot be what its author meant: a method
    named like a section but misspelled (``__rnu__``, ``__pre_run__``: never called), or no
    loop section at all with no ``runs``/``join_in`` (it would spin doing nothing until
    ``stop()``)."""
    typo, has_loop = _sections_of(cls)
    if typo:
        raise TypeError(typo)
    if runs is None and join_in is None and not has_loop:
        raise TypeError(
            f"{cls.__qualname__} defines no __run__ (nor __prerun__/__postrun__) and "
            "process_config.runs is None: it would loop doing nothing until stop(). Define "
            "`def __run__(self):` with the work of one iteration (or set process_config.runs)."
        )


def _user_defined(cls: type, dunder: str) -> bool:
    """Whether a class below ``Skprocess`` in ``cls``'s MRO defines ``dunder``."""
    for klass in cls.__mro__:
        if dunder in klass.__dict__:
            return "_sk_is_skprocess" not in klass.__dict__
    return False


@functools.lru_cache(maxsize=256)  # start() and every Pool item of the class ask
def _sections_of(cls: type) -> tuple[str, bool]:
    """(the misspelled-section message or ``""``, whether a loop section is defined)."""
    defined = {d for d in DUNDERS if _user_defined(cls, d)}
    missing = [d for d in DUNDERS if d not in defined]
    for klass in cls.__mro__[:-1]:
        if "_sk_is_skprocess" in klass.__dict__:
            continue  # Skprocess's own names
        for attr in klass.__dict__:
            if attr in DUNDERS or attr in _NOT_A_TYPO:
                continue
            near = difflib.get_close_matches(attr, missing, n=1, cutoff=0.8)
            if near:
                return (
                    f"{cls.__qualname__} defines {attr}, which is not a lifecycle method and "
                    f"would never be called: did you mean {near[0]}?",
                    False,
                )
    return "", bool(defined & {s.dunder for s in LOOP})


def section_fns(cls: type) -> dict[str, Callable[..., Any] | None]:
    """``resolve_section`` of every section of ``cls``, by dunder name."""
    return {name: resolve_section(cls, name) for name in DUNDERS}


class _Expired(Exception):
    """What the SIGALRM handler raises inside the section; ``_call_with_timeout`` turns it
    into ``ProcessTimeoutError``. Not that error itself: it is a ``TimeoutError``, hence an
    ``OSError``, and the section's own ``except OSError:`` (around a socket call, say)
    would swallow it and the timeout with it."""


class _Alarm:
    """SIGALRM-based section timeouts for the main thread (sub-second via setitimer)."""

    def __init__(self) -> None:
        self.armed: SectionTimeout | None = None
        self.previous: Any = signal.signal(signal.SIGALRM, self._handler)

    def uninstall(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous if self.previous is not None else signal.SIG_DFL)

    def _handler(self, signum: int, frame: Any) -> None:
        armed = self.armed
        if armed is not None:
            self.armed = None
            raise _Expired(armed)


def _call_on_thread(name: str, fn: Callable[..., Any], proc: Any, timeout: float) -> tuple[Any, float]:
    """Off the main thread (a Pool worker thread): run the section on a daemon thread and stop
    waiting at the deadline; the section itself cannot be interrupted."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(proc)
        except BaseException as e:
            box["error"] = e

    t0 = time.perf_counter()
    worker = threading.Thread(target=target, name=f"sk-section-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ProcessTimeoutError(name, timeout, proc._current_run)
    if "error" in box:
        raise box["error"]
    return box.get("value"), time.perf_counter() - t0


class Lifecycle:
    """Runs the loop, lives, onfinish, result and ``__error__`` for one instance.

    ``ctrl`` is the shared control array (child) or a plain list (inline);
    ``lives`` the lives left (the child's next life gets fewer than configured);
    ``checkpoint`` records each completed iteration for a resume after a hard crash;
    ``fns`` is ``section_fns(type(proc))`` when the caller has it already.
    """

    def __init__(
        self,
        proc: Any,
        ctrl: Any,
        *,
        lives: int | None = None,
        stop_event: Any = None,
        checkpoint: Checkpointer | None = None,
        fns: dict[str, Callable[..., Any] | None] | None = None,
    ) -> None:
        self.proc = proc
        self.ctrl = ctrl
        self.cfg = proc.process_config
        self.lives = self.cfg.lives if lives is None else lives
        self.total_lives = self.cfg.lives  # as configured (the start state), for error messages
        self.stop_event = stop_event
        self.checkpoint = checkpoint
        self.alarm: _Alarm | None = None
        self.use_alarm: bool | None = None  # SIGALRM timeouts here? Known at the first timeout
        self.fns = section_fns(type(proc)) if fns is None else fns
        if proc.timers is None:
            proc.timers = ProcessTimers()
        # samples of the iteration in progress (prerun, run, postrun); NaN = did not run
        self.samples = [_NAN, _NAN, _NAN]

    # -- sections --------------------------------------------------------------------

    def _call(self, name: str, fn: Callable[..., Any], timeout: float | None) -> tuple[Any, float]:
        """Call one section with its timeout; return (value, elapsed); wrap failures."""
        try:
            if timeout is None:
                t0 = time.perf_counter()
                value = fn(self.proc)
                return value, time.perf_counter() - t0
            return self._call_with_timeout(name, fn, timeout)
        except Exception as e:
            err = self._failed(name, e)
            if err is e:
                raise
            raise err from e

    def _call_with_timeout(self, name: str, fn: Callable[..., Any], timeout: float) -> tuple[Any, float]:
        proc = self.proc
        if self.use_alarm is None:  # (the thread that runs the lifecycle, main or not, is this one)
            self.use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        if not self.use_alarm:
            return _call_on_thread(name, fn, proc, timeout)
        ctrl = self.ctrl
        alarm = self.alarm
        if alarm is None:
            alarm = self.alarm = _Alarm()
        ctrl[TIMEOUT] = timeout
        ctrl[SECTION] = BY_DUNDER[name].code
        ctrl[DEADLINE] = time.monotonic() + timeout
        alarm.armed = SectionTimeout(name, timeout, proc._current_run)
        t0 = time.perf_counter()
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                value = fn(proc)
            finally:
                alarm.armed = None
                signal.setitimer(signal.ITIMER_REAL, 0)
                ctrl[DEADLINE] = 0.0
        except _Expired as e:  # (also when the alarm fired in the finally, before armed = None)
            ctrl[DEADLINE] = 0.0
            # (the traceback keeps the line the section was stuck on)
            raise ProcessTimeoutError(*e.args[0]).with_traceback(e.__traceback__) from None
        return value, time.perf_counter() - t0

    def _timed(self, name: str, timeout: float | None) -> Any:
        """Run a once-only section (onfinish/result/error) and record its timer."""
        fn = self.fns[name]
        if fn is None:
            return None
        value, elapsed = self._call(name, fn, timeout)
        self.proc.timers._ensure_timer(name).add_time(elapsed)
        return value

    # -- the loop --------------------------------------------------------------------

    def _failed(self, name: str, e: Exception) -> Exception:
        """What a section that raised ``e`` raises (as ``_call``): a timeout as it is, anything
        else wrapped in the section's error class. The section's timer exists afterwards."""
        proc = self.proc
        proc.timers._ensure_timer(name)
        if isinstance(e, ProcessTimeoutError):
            return e
        return BY_DUNDER[name].error(proc._current_run, e)

    def _loop(self, start_time: float) -> None:
        """Iterate until stop(), runs or join_in; section errors propagate (to ``run``).

        The hot path of a process: a section without a timeout is called inline, and its
        duration goes straight into its timer's lists (``Sktimer._appenders``) rather than
        through ``add_time`` (~0.5 us less per iteration; a timer with ``max_times`` set
        still goes through ``add_time``, which trims). The window is read each time (a
        ``set_max_times`` may come mid-run) from the attribute behind ``Sktimer.max_times``:
        the property costs ~40 ns, twice per iteration (~15% of a trivial one).
        """
        proc, ctrl, cfg, ev = self.proc, self.ctrl, self.cfg, self.stop_event
        runs = cfg.runs
        join_at = None if cfg.join_in is None else start_time + cfg.join_in
        s_pre, s_run, s_post = LOOP  # the table's order: prerun, run, postrun
        timeouts = cfg.timeouts
        t_pre, t_run, t_post = getattr(timeouts, s_pre.key), getattr(timeouts, s_run.key), getattr(timeouts, s_post.key)
        d_pre, d_run, d_post = s_pre.dunder, s_run.dunder, s_post.dunder
        pre, run, post = self.fns[d_pre], self.fns[d_run], self.fns[d_post]
        timers = proc.timers
        full_run = timers.full_run
        full_add, full_pause = full_run._appenders()
        call = self._call
        failed = self._failed
        publish = not isinstance(ctrl, list)
        checkpoint = self.checkpoint
        samples = self.samples
        ensure = timers._ensure_timer
        clock = time.perf_counter
        monotonic = time.monotonic
        # created on first success (timing spec), with their appenders
        pre_timer: Any = None
        run_timer: Any = None
        post_timer: Any = None
        pre_add = pre_pause = run_add = run_pause = post_add = post_pause = _no_append
        while True:
            if ctrl[STOP] or (ev is not None and ev.is_set()):
                return
            cr = proc._current_run
            if (runs is not None and cr >= runs) or (join_at is not None and monotonic() >= join_at):
                return
            if publish:
                ctrl[RUN] = cr
            total = 0.0
            if pre is not None:
                if t_pre is None:
                    t0 = clock()
                    try:
                        pre(proc)
                    except Exception as e:
                        err = failed(d_pre, e)
                        if err is e:
                            raise
                        raise err from e
                    el = clock() - t0
                else:
                    el = call(d_pre, pre, t_pre)[1]
                if pre_timer is None:
                    pre_timer = ensure(s_pre.key)
                    pre_add, pre_pause = pre_timer._appenders()
                if pre_timer._max_times is None:
                    pre_add(el)
                    pre_pause(0.0)
                else:
                    pre_timer.add_time(el)
                total += el
                samples[0] = el
                if ctrl[STOP] or (ev is not None and ev.is_set()):
                    return
            if run is not None:
                if t_run is None:
                    t0 = clock()
                    try:
                        run(proc)
                    except Exception as e:
                        err = failed(d_run, e)
                        if err is e:
                            raise
                        raise err from e
                    el = clock() - t0
                else:
                    el = call(d_run, run, t_run)[1]
                if run_timer is None:
                    run_timer = ensure(s_run.key)
                    run_add, run_pause = run_timer._appenders()
                if run_timer._max_times is None:
                    run_add(el)
                    run_pause(0.0)
                else:
                    run_timer.add_time(el)
                total += el
                samples[1] = el
            if ctrl[STOP] or (ev is not None and ev.is_set()):
                return
            if post is not None:
                if t_post is None:
                    t0 = clock()
                    try:
                        post(proc)
                    except Exception as e:
                        err = failed(d_post, e)
                        if err is e:
                            raise
                        raise err from e
                    el = clock() - t0
                else:
                    el = call(d_post, post, t_post)[1]
                if post_timer is None:
                    post_timer = ensure(s_post.key)
                    post_add, post_pause = post_timer._appenders()
                if post_timer._max_times is None:
                    post_add(el)
                    post_pause(0.0)
                else:
                    post_timer.add_time(el)
                total += el
                samples[2] = el
            proc._current_run = cr + 1
            if total > 0:
                if full_run._max_times is None:
                    full_add(total)
                    full_pause(0.0)
                else:
                    full_run.add_time(total)
            if checkpoint is not None:
                checkpoint.commit(proc, (samples[0], samples[1], samples[2]))
                samples[0] = samples[1] = samples[2] = _NAN

    def run(self) -> Outcome:
        """The whole lifecycle; never raises for user errors (they come back as ``("raise", e)``)."""
        try:
            failed = self._reconnect()
            if failed is not None:
                return self._deliver_error(failed)
            start_time = time.monotonic()
            while True:
                try:
                    self._loop(start_time)
                    break
                except _LOOP_ERRORS as e:
                    if not self._lose_life():
                        e._note_lives(self.total_lives)
                        return self._deliver_error(e)
                    # retry the SAME iteration, state kept
            return self._finish()
        finally:
            if self.alarm is not None:
                self.alarm.uninstall()
                self.alarm = None

    def _reconnect(self) -> ProcessError | None:
        """``@autoreconnect``: reconnect live resources before the first iteration."""
        proc = self.proc
        cls = type(proc)
        if not cls._auto_reconnect_enabled:  # (Skprocess has it: a miss would cost an exception)
            return None
        try:
            cucumber.reconnect_all(
                proc,
                start_threads=bool(getattr(cls, "_auto_reconnect_start_threads", False)),
                **dict(getattr(cls, "_auto_reconnect_kwargs", {})),
            )
        except Exception as e:
            return ProcessError(f"@autoreconnect of {cls.__qualname__} failed: {type(e).__name__}: {e}", 0, e)
        return None

    def _lose_life(self) -> bool:
        """A section of the loop failed: one life less; True if any are left."""
        self.lives -= 1
        self.cfg.lives = self.lives
        if not isinstance(self.ctrl, list):
            self.ctrl[LIVES] = self.lives
        samples = self.samples
        if self.checkpoint is not None:
            self.checkpoint.failed((samples[0], samples[1], samples[2]))
        samples[0] = samples[1] = samples[2] = _NAN
        return self.lives > 0

    def _finish(self) -> Outcome:
        timeouts = self.cfg.timeouts
        try:
            self._timed("__onfinish__", timeouts.onfinish)
            value = self._timed("__result__", timeouts.result)
        except _LOOP_ERRORS as e:
            return self._deliver_error(e)
        return Outcome("value", value)

    def _deliver_error(self, err: ProcessError) -> Outcome:
        proc = self.proc
        proc.error = err
        try:
            value = self._timed("__error__", self.cfg.timeouts.error)
        except ErrorHandlerError as handler_err:
            handler_err.handled_error = err
            return Outcome("raise", handler_err)
        except ProcessTimeoutError as timeout_err:
            return Outcome("raise", timeout_err)
        if isinstance(value, BaseException):
            return Outcome("raise", as_process_error(value, err))
        return Outcome("value", value)


_NAN = float("nan")


def _no_append(value: float) -> None:
    """Stands in for a timer's appender until the timer exists."""


def as_process_error(value: BaseException, err: ProcessError) -> ProcessError:
    """Decision 3: an exception returned by ``__error__`` is raised as the matching ProcessError."""
    if isinstance(value, ProcessError):
        return value
    if isinstance(err, _SectionError):
        wrapped: ProcessError = type(err)(err.current_run, value)
    elif isinstance(err, ProcessTimeoutError):
        wrapped = ProcessTimeoutError(err.section, err.timeout, err.current_run)
        wrapped.original_error = value
        wrapped.__cause__ = value
    else:
        wrapped = ProcessError(f"{type(value).__name__}: {value}", err.current_run, value)
    if err.lives:
        wrapped._note_lives(err.lives)
    return wrapped
