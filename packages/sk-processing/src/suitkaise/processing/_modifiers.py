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
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar, overload

R = TypeVar("R")

__all__ = ["ModifiedCall", "modifiable"]


class ModifiedCall(Generic[R]):
    """A bound method with modifiers applied; call it with the method's arguments."""

    __slots__ = ("_asynced", "_background", "_fn", "_name", "_timeout", "_timeout_allowed")

    def __init__(
        self,
        fn: Callable[..., R],
        name: str,
        *,
        timeout: float | None = None,
        background: bool = False,
        asynced: bool = False,
        timeout_allowed: bool = True,
    ) -> None:
        self._fn = fn
        self._name = name
        self._timeout = timeout
        self._background = background
        self._asynced = asynced
        self._timeout_allowed = timeout_allowed

    def _replace(self, **changes: Any) -> ModifiedCall[R]:
        fields: dict[str, Any] = {
            "timeout": self._timeout,
            "background": self._background,
            "asynced": self._asynced,
            "timeout_allowed": self._timeout_allowed,
        }
        fields.update(changes)
        return ModifiedCall(self._fn, self._name, **fields)

    def timeout(self, seconds: float) -> ModifiedCall[R]:
        """Give up after ``seconds`` and raise ``ResultTimeoutError``."""
        if not self._timeout_allowed:
            raise TypeError(f"{self._name}() does not support .timeout()")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"{self._name}.timeout() needs a number of seconds >= 0, got {seconds!r}")
        return self._replace(timeout=float(seconds))

    def background(self) -> ModifiedCall[R]:
        """Run the call on a background thread; calling returns a ``concurrent.futures.Future``."""
        if self._asynced:
            raise TypeError(f"{self._name}: .background() and .asynced() cannot be combined")
        return self._replace(background=True)

    def asynced(self) -> ModifiedCall[R]:
        """Calling returns a coroutine; the blocking work runs off the event loop."""
        if self._background:
            raise TypeError(f"{self._name}: .background() and .asynced() cannot be combined")
        return self._replace(asynced=True)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        if self._timeout is not None:
            if "_sk_timeout" in kwargs:
                raise TypeError(f"{self._name}: timeout given twice")
            kwargs = dict(kwargs, _sk_timeout=self._timeout)
        return self._fn(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._background:
            future: Future[R] = Future()

            def work() -> None:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = self._call(args, kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)

            threading.Thread(target=work, name=f"sk-{self._name}-background", daemon=True).start()
            return future
        if self._asynced:
            return self._acall(args, kwargs)
        return self._call(args, kwargs)

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self._call, args, kwargs))

    def __repr__(self) -> str:
        mods = []
        if self._timeout is not None:
            mods.append(f".timeout({self._timeout})")
        if self._background:
            mods.append(".background()")
        if self._asynced:
            mods.append(".asynced()")
        return f"<{self._name}{''.join(mods)}>"


class _Modifiable(Generic[R]):
    """Descriptor: ``obj.meth`` is a ``ModifiedCall`` bound to ``obj``."""

    def __init__(self, fn: Callable[..., R], timeout_allowed: bool) -> None:
        self._fn = fn
        self._timeout_allowed = timeout_allowed
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type) -> _Modifiable[R]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> ModifiedCall[R]: ...
    def __get__(self, obj: object | None, owner: type) -> Any:
        if obj is None:
            return self
        bound = self._fn.__get__(obj, owner)
        return ModifiedCall(bound, self._fn.__name__, timeout_allowed=self._timeout_allowed)


def modifiable(fn: Callable[..., R] | None = None, *, timeout: bool = True) -> Any:
    """Decorate a method so it accepts ``.timeout()``, ``.background()`` and ``.asynced()``.

    With ``timeout=True`` the method must accept a keyword-only ``_sk_timeout``
    (seconds or ``None``) and raise ``ResultTimeoutError`` when it expires.
    """
    if fn is None:
        return lambda f: _Modifiable(f, timeout)
    return _Modifiable(fn, timeout)
