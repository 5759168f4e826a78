"""The one table that says how cucumber moves what pickle and cloudpickle cannot.

Keys are the *qualified names* of types (``"_thread.lock"``,
``"sqlite3.Connection"``), so registering a handler never imports the module
that defines the type: an object of that type can only exist once its module
has been imported anyway. A type is matched against its MRO, most derived
class first, so a subclass of ``socket.socket`` is handled like a socket unless
the subclass defines cucumber's own protocol:

* ``obj.__serialize__()`` returns any serializable state, and
* ``cls.__deserialize__(state)`` (static or class method) rebuilds the object.

A handler is a *reducer*: ``reducer(obj)`` returns a standard pickle reduce
tuple ``(callable, args[, state, listitems, dictitems, state_setter])``. Its
callables must be importable module-level functions so the payload can be
loaded in another interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reducer = Callable[[Any], Any]

__all__ = ["Reducer", "describe", "lookup", "register"]

_BY_NAME: dict[str, Reducer] = {}
_CACHE: dict[type, Reducer | None] = {}
_CACHE_LIMIT = 4096  # dynamic classes come and go; never pin them all in memory


def register(*type_names: str) -> Callable[[Reducer], Reducer]:
    """Register ``reducer`` for every type named ``"module.QualName"``."""

    def decorate(reducer: Reducer) -> Reducer:
        for name in type_names:
            _BY_NAME[name] = reducer
        _CACHE.clear()
        return reducer

    return decorate


def _custom_reducer(obj: Any) -> Any:
    return (_custom_rebuild, (type(obj), obj.__serialize__()))


def _custom_rebuild(cls: type, state: Any) -> Any:
    return cls.__deserialize__(state)  # type: ignore[attr-defined]


def _resolve(t: type) -> Reducer | None:
    try:
        mro = t.__mro__
    except AttributeError:  # pragma: no cover - exotic extension types
        return None
    for klass in mro:
        d = klass.__dict__
        if "__serialize__" in d and hasattr(t, "__deserialize__"):
            return _custom_reducer
        reducer = _BY_NAME.get(f"{klass.__module__}.{klass.__qualname__}")
        if reducer is not None:
            return reducer
    return None


def lookup(t: type) -> Reducer | None:
    """The reducer for objects of type ``t``, or ``None`` to let cloudpickle decide."""
    try:
        return _CACHE[t]
    except KeyError:
        pass
    reducer = _resolve(t)
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[t] = reducer
    return reducer


def describe() -> dict[str, str]:
    """``{type name: handler name}`` for every registered type (for docs and tests)."""
    return {name: getattr(r, "__qualname__", repr(r)) for name, r in sorted(_BY_NAME.items())}
