"""The ``.timeout()``, ``.background()`` and ``.asynced()`` modifiers.

A method decorated with ``modifiable`` stays an ordinary method::

    process.result()                      # plain call
    process.result.timeout(10)()          # ResultTimeoutError after 10 s
    process.run.timeout(5).background()() # concurrent.futures.Future
    await pool.map.asynced().timeout(5)(fn, items)

Timeouts are not implemented with a watchdog thread: the modifier passes the
deadline to the method itself as the keyword-only argument ``_sk_timeout``, so
every method waits with its own native timeout and nothing is left running
when it expires. ``.background()`` runs the call on a daemon thread and returns
a ``concurrent.futures.Future``; ``.asynced()`` returns a coroutine that
runs the call in the event loop's default executor, so the loop never blocks.
Modifiers chain in any order, except ``background`` with ``asynced``.

Type checkers see the method's own signature through every modifier
(``ParamSpec``): ``ModifiedCall[P, R]`` returns ``R``, ``BackgroundCall[P, R]``
a ``Future[R]`` and ``AsyncCall[P, R]`` a coroutine of ``R``. The Pool's map
methods, which are generic in the function they map, have their own typed
method objects (``_pool``) built on ``run_in_background``/``run_in_executor``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import types
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Concatenate, Generic, NoReturn, ParamSpec, Self, TypeVar, cast, overload

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

__all__ = [
    "AsyncCall",
    "BackgroundCall",
    "ModifiedCall",
    "check_timeout",
    "check_wait",
    "modifiable",
    "refuse_combination",
    "run_in_background",
    "run_in_executor",
]


def check_timeout(name: str, seconds: Any) -> float:
    """``seconds`` as a float, or ``ValueError`` naming the method."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"{name}.timeout() needs a number of seconds >= 0, got {seconds!r}")
    return float(seconds)


def check_wait(name: str, timeout: Any) -> float | None:
    """A ``timeout=`` argument (``None``: no limit) as a float, or ``TypeError`` naming the call."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout != timeout:
        raise TypeError(f"{name}(timeout=...) must be a number of seconds or None, got {timeout!r}")
    return float(timeout)


def refuse_combination(name: str) -> NoReturn:
    raise TypeError(f"{name}: .background() and .asynced() cannot be combined")


def run_in_background(call: Callable[[], R], name: str, future_type: type[Future[Any]] = Future) -> Future[R]:
    """Start ``call()`` on a daemon thread; its result (or exception) lands in the Future."""
    future: Future[R] = future_type()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = call()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=work, name=f"sk-{name}-background", daemon=True).start()
    return future


async def run_in_executor(call: Callable[[], R]) -> R:
    """``call()`` in the running loop's default executor, so the loop never blocks."""
    return await asyncio.get_running_loop().run_in_executor(None, call)


class _Modified(Generic[P, R]):
    """A bound method and its timeout; the subclasses differ in what calling returns."""

    __slots__ = ("_fn", "_name", "_timeout")

    def __init__(self, fn: Callable[P, R], name: str, timeout: float | None = None) -> None:
        self._fn = fn
        self._name = name
        self._timeout = timeout

    def _checked(self, seconds: float) -> float:
        return check_timeout(self._name, seconds)

    def _invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        if self._timeout is not None:
            if "_sk_timeout" in kwargs:
                raise TypeError(f"{self._name}: timeout given twice")
            kwargs = dict(kwargs, _sk_timeout=self._timeout)
        return self._fn(*args, **kwargs)

    _suffix = ""

    def __repr__(self) -> str:
        timeout = "" if self._timeout is None else f".timeout({self._timeout})"
        return f"<{self._name}{timeout}{self._suffix}>"


class ModifiedCall(_Modified[P, R]):
    """A bound method, possibly with ``.timeout()``; call it with the method's arguments."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._invoke(args, kwargs)

    def timeout(self, seconds: float) -> ModifiedCall[P, R]:
        """Give up after ``seconds`` and raise ``ResultTimeoutError``."""
        return ModifiedCall(self._fn, self._name, self._checked(seconds))

    def background(self) -> BackgroundCall[P, R]:
        """Run the call on a background thread; calling returns a ``concurrent.futures.Future``."""
        return BackgroundCall(self._fn, self._name, self._timeout)

    def asynced(self) -> AsyncCall[P, R]:
        """Calling returns a coroutine; the blocking work runs off the event loop."""
        return AsyncCall(self._fn, self._name, self._timeout)


class BackgroundCall(_Modified[P, R]):
    """``.background()``: calling starts the call on a thread and returns a ``Future``."""

    __slots__ = ()
    _suffix = ".background()"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return run_in_background(functools.partial(self._invoke, args, kwargs), self._name)

    def timeout(self, seconds: float) -> BackgroundCall[P, R]:
        """Give up after ``seconds``: the Future raises ``ResultTimeoutError``."""
        return BackgroundCall(self._fn, self._name, self._checked(seconds))

    def background(self) -> Self:
        return self

    def asynced(self) -> NoReturn:
        refuse_combination(self._name)


class AsyncCall(_Modified[P, R]):
    """``.asynced()``: calling returns a coroutine (the work runs in the loop's executor)."""

    __slots__ = ()
    _suffix = ".asynced()"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return run_in_executor(functools.partial(self._invoke, args, kwargs))

    def timeout(self, seconds: float) -> AsyncCall[P, R]:
        """Give up after ``seconds``: awaiting raises ``ResultTimeoutError``."""
        return AsyncCall(self._fn, self._name, self._checked(seconds))

    def asynced(self) -> Self:
        return self

    def background(self) -> NoReturn:
        refuse_combination(self._name)


class _Modifiable(Generic[S, P, R]):
    """Descriptor: ``obj.meth`` is a ``ModifiedCall`` bound to ``obj``."""

    def __init__(self, fn: Callable[Concatenate[S, P], R]) -> None:
        self._fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: S, owner: type) -> ModifiedCall[P, R]: ...
    def __get__(self, obj: S | None, owner: type) -> Self | ModifiedCall[P, R]:
        if obj is None:
            return self
        return ModifiedCall(cast("Callable[P, R]", types.MethodType(self._fn, obj)), self._fn.__name__)


def modifiable(fn: Callable[Concatenate[S, P], R]) -> _Modifiable[S, P, R]:
    """Decorate a method so it accepts ``.timeout()``, ``.background()`` and ``.asynced()``.

    The method must accept a keyword-only ``_sk_timeout`` (seconds or ``None``)
    and raise ``ResultTimeoutError`` when it expires.
    """
    return _Modifiable(fn)
