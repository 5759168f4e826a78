"""``@autoreconnect``: live resources of an Skprocess reconnect in the child.

cucumber turns database connections, sockets, threads ... into
``Reconnector`` placeholders when the instance travels. With this decorator
the engine calls ``suitkaise.cucumber.reconnect_all(self, start_threads=...,
**auth)`` right after the instance is rebuilt in the child (or in a Pool
worker) and before the first ``__prerun__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from suitkaise.processing._skprocess import Skprocess

__all__ = ["autoreconnect"]

T = TypeVar("T", bound=type)


def autoreconnect(*, start_threads: bool = False, **auth: Any) -> Callable[[T], T]:
    """Class decorator: reconnect every Reconnector attribute when the process starts.

    ``auth`` is keyed by reconnector type, then attribute name (``"*"`` = default),
    e.g. ``@autoreconnect(**{"psycopg2.Connection": {"*": "secret"}})``.
    """
    if not isinstance(start_threads, bool):
        raise TypeError(f"autoreconnect(start_threads=...) must be a bool, got {start_threads!r}")
    for key, value in auth.items():
        if not isinstance(value, dict):
            raise TypeError(
                f"autoreconnect(**auth): the value for {key!r} must be a dict of attribute name -> "
                f"auth (use '*' for all attributes), got {type(value).__name__}"
            )

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Skprocess)):
            raise TypeError(
                f"@autoreconnect decorates Skprocess subclasses, got {cls!r}; for other objects call "
                "suitkaise.cucumber.reconnect_all(obj, ...) yourself"
            )
        cls._auto_reconnect_enabled = True
        cls._auto_reconnect_kwargs = dict(auth)  # type: ignore[attr-defined]
        cls._auto_reconnect_start_threads = start_threads  # type: ignore[attr-defined]
        return cls

    return decorate
