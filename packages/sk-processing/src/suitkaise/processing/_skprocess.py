"""``Skprocess``: subclass it, define lifecycle methods, call ``start()``/``run()``.

The class itself holds only user-facing behaviour; its control methods
delegate to the instance's runtime (``_runtime.Runtime``): ``_parent`` starts
the child and monitors it (see its diagram of processes and channels),
``_child`` and ``_inline`` run ``_lifecycle``'s loop in a child process or a
Pool worker.

The instance travels to the child through cucumber: ``__reduce_ex__`` returns
``(_rebuild_skprocess, (type(self),), state)``, so the child gets an instance of
the user's *real* class (resolved by reference when importable, carried by
value by cloudpickle otherwise) with the full MRO, static/class methods and
``isinstance`` intact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suitkaise.processing import _parent
from suitkaise.processing._config import ProcessConfig
from suitkaise.processing._modifiers import check_wait, modifiable
from suitkaise.processing._runtime import RUNTIME_ATTR
from suitkaise.processing._sections import DUNDERS
from suitkaise.processing._timers import ProcessTimers, TimedMethod

if TYPE_CHECKING:
    from suitkaise.timing import Sktimer

__all__ = ["Skprocess"]

# Attributes owned by the library; user code must not reuse these names.
_RUNTIME_ATTR = RUNTIME_ATTR


def _setup(obj: Skprocess) -> None:
    """Create the library-owned attributes once (idempotent, so ``super().__init__()`` is harmless)."""
    d = obj.__dict__
    if "process_config" in d:
        return
    d["process_config"] = ProcessConfig()
    d["timers"] = None
    d["error"] = None
    d["_current_run"] = 0
    d[_RUNTIME_ATTR] = None


def _wrap_init(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: Skprocess, *args: Any, **kwargs: Any) -> None:
        _setup(self)
        init(self, *args, **kwargs)

    __init__._sk_setup_wrapped = True  # type: ignore[attr-defined]
    return __init__


def _started(obj: Skprocess, what: str) -> Any:
    """The runtime of a started instance; ``RuntimeError`` naming ``what`` before ``start()``."""
    rt = obj.__dict__.get(_RUNTIME_ATTR)
    if rt is None:
        raise RuntimeError(f"Cannot {what}() - process not started; call start() first")
    return rt


def _rebuild_skprocess(cls: type[Skprocess]) -> Skprocess:
    """Unpickling side of ``Skprocess.__reduce_ex__``: no ``__init__``; pickle then restores the state."""
    obj = cls.__new__(cls)
    obj.__dict__[_RUNTIME_ATTR] = None
    return obj


class Skprocess:
    """Base class for class-based subprocesses.

    Define ``__run__`` (and optionally ``__prerun__``, ``__postrun__``,
    ``__onfinish__``, ``__result__``, ``__error__``), configure
    ``self.process_config`` in ``__init__``, then ``start()`` + ``result()`` or
    just ``run()``.
    """

    process_config: ProcessConfig
    timers: ProcessTimers | None
    error: BaseException | None
    _current_run: int
    _sk_is_skprocess = True  # _runtime.SKPROCESS_MARK: lets the engine recognise instances
    # set by @autoreconnect; False here so that the engine's look-up of it on every start
    # finds it (a miss raises and clears an AttributeError: ~25 us in a fork child)
    _auto_reconnect_enabled = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in DUNDERS:
            fn = cls.__dict__.get(name)
            if fn is not None and not isinstance(fn, TimedMethod) and callable(fn):
                setattr(cls, name, TimedMethod(fn, name.strip("_")))
        init = cls.__dict__.get("__init__")
        if init is not None and callable(init) and not getattr(init, "_sk_setup_wrapped", False):
            cls.__init__ = _wrap_init(init)  # type: ignore[method-assign]

    def __init__(self) -> None:
        _setup(self)

    # -- lifecycle defaults (no-ops) --------------------------------------------------

    def _base_prerun(self) -> None:
        """Called before each ``__run__``."""

    def _base_run(self) -> None:
        """The work of one iteration."""

    def _base_postrun(self) -> None:
        """Called after each ``__run__``."""

    def _base_onfinish(self) -> None:
        """Called once when the loop ends (runs reached, join_in, stop())."""

    def _base_result(self) -> Any:
        """Return what ``result()`` gives the parent."""
        return None

    def _base_error(self) -> Any:
        """Called when lives are exhausted; return an exception to raise it, any other value to return it."""
        return self.error

    __prerun__ = TimedMethod(_base_prerun, "prerun", skip=True)
    __run__ = TimedMethod(_base_run, "run")
    __postrun__ = TimedMethod(_base_postrun, "postrun", skip=True)
    __onfinish__ = TimedMethod(_base_onfinish, "onfinish")
    __result__ = TimedMethod(_base_result, "result")
    __error__ = TimedMethod(_base_error, "error")

    # -- serialization ---------------------------------------------------------------

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # State as the third item (not an argument): the instance exists before its
        # state is loaded, so attributes that refer back to it (self.cb = self.handle)
        # work, and a serialization error names the attribute (root.pipe).
        state = {k: v for k, v in self.__dict__.items() if k != _RUNTIME_ATTR}
        return (_rebuild_skprocess, (type(self),), state)

    # -- control ---------------------------------------------------------------------

    def start(self) -> None:
        """Serialize this instance and start it in a new subprocess; returns at once.

        Raises ``RuntimeError("process already started")`` while it is running,
        ``TypeError``/``ValueError`` for a bad ``process_config`` and
        ``SerializationError`` if an attribute cannot travel.
        """
        _parent.start(self)

    def stop(self) -> None:
        """Ask the process to finish gracefully (non-blocking); works in the child too.

        Before ``start()`` and after the end there is nothing to stop: a no-op (safe in
        cleanup code), which leaves a later ``start()`` unaffected.
        """
        rt = self.__dict__.get(_RUNTIME_ATTR)
        if rt is not None:
            rt.stop()

    def kill(self) -> None:
        """Terminate the subprocess now: no ``__onfinish__``, ``result()`` returns ``None``.

        Before ``start()`` (nothing to kill) and after the end: a no-op, safe in cleanup
        code; ``result()`` of a never-started process still raises ``RuntimeError``.
        """
        rt = self.__dict__.get(_RUNTIME_ATTR)
        if rt is not None:
            rt.kill()

    @modifiable
    def wait(self, timeout: float | None = None, *, _sk_timeout: float | None = None) -> bool:
        """Block until the process has finished (through restarts); ``False`` on ``timeout``.

        Raises ``RuntimeError`` before ``start()``: nothing ran, so ``True`` would lie.
        """
        rt = _started(self, "wait")
        return bool(rt.wait(check_wait(f"{type(self).__qualname__}.wait", timeout), _sk_timeout))

    @modifiable
    def result(self, *, _sk_timeout: float | None = None) -> Any:
        """The value of ``__result__`` (blocks until ready); raises the process's ``ProcessError``.

        Raises ``RuntimeError`` before ``start()`` (decision 5: ``None`` only after ``kill()``).
        """
        rt = _started(self, "result")
        return rt.result(_sk_timeout)

    @modifiable
    def run(self, *, _sk_timeout: float | None = None) -> Any:
        """``start()``, ``wait()`` and ``result()`` in one call."""
        _parent.start(self)
        return self.__dict__[_RUNTIME_ATTR].result(_sk_timeout, what="run")

    def tell(self, data: Any) -> None:
        """Send ``data`` to the other side (parent -> child or child -> parent); non-blocking."""
        rt = _started(self, "tell")
        rt.tell(data)

    @modifiable
    def listen(self, timeout: float | None = None, *, _sk_timeout: float | None = None) -> Any:
        """Receive the next message from the other side; ``None`` after ``timeout`` seconds."""
        rt = _started(self, "listen")
        return rt.listen(check_wait(f"{type(self).__qualname__}.listen", timeout), _sk_timeout)

    # -- properties ------------------------------------------------------------------

    @property
    def current_run(self) -> int:
        """Iteration number (0-based); live while running, the child's final value afterwards."""
        rt = self.__dict__.get(_RUNTIME_ATTR)
        if rt is not None:
            live = rt.live_current_run()
            if live is not None:
                return int(live)
        return int(self.__dict__.get("_current_run", 0))

    @property
    def is_alive(self) -> bool:
        """Whether the subprocess is running (including a restart after a crash)."""
        rt = self.__dict__.get(_RUNTIME_ATTR)
        return bool(rt is not None and rt.is_alive())

    @property
    def process_timer(self) -> Sktimer | None:
        """``timers.full_run`` (prerun + run + postrun per iteration) or ``None`` before start."""
        timers = self.__dict__.get("timers")
        return None if timers is None else timers.full_run

    def __repr__(self) -> str:
        rt = self.__dict__.get(_RUNTIME_ATTR)
        state = "not started" if rt is None else rt.describe()
        return f"<{type(self).__qualname__} Skprocess ({state})>"

