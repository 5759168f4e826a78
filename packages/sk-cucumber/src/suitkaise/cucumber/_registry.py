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

Three layers, for one type name the highest wins: handlers a program
registers with ``register_handler`` > handlers libraries register when their
``suitkaise.cucumber`` entry point is loaded (``._plugins``) > cucumber's
built-in handlers. On the MRO the most derived class wins first: a handler
for a subclass beats the protocol of its base, and a class's own protocol
beats a handler registered for its base.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

Reducer = Callable[[Any], Any]
T = TypeVar("T")
S = TypeVar("S")

__all__ = ["Reducer", "describe", "lookup", "register", "register_handler"]

BUILTIN, PLUGIN, USER = 0, 1, 2
_LAYERS: tuple[dict[str, Reducer], ...] = ({}, {}, {})
_BY_NAME: dict[str, Reducer] = {}  # the winner per name, what lookups read
_CACHE: dict[type, Reducer | None] = {}
_CACHE_LIMIT = 4096  # dynamic classes come and go; never pin them all in memory

_layer = threading.local()  # .value: the layer registrations of this thread go to (default USER)


@contextmanager
def plugin_layer() -> Iterator[None]:
    """Registrations made inside (by this thread) go to the PLUGIN layer: used to load entry points."""
    previous = getattr(_layer, "value", USER)
    _layer.value = PLUGIN
    try:
        yield
    finally:
        _layer.value = previous

# Called on a lookup miss: loads the entry points that cover the type (True if it loaded
# any); the lookup is repeated after it. Installed by ._plugins.
on_miss: Callable[[type], bool] | None = None


_generation = 0  # bumped by every registration: a lookup that raced one does not cache its answer


def _store(layer: int, name: str, reducer: Reducer) -> None:
    global _generation
    _LAYERS[layer][name] = reducer
    for candidate in reversed(_LAYERS):
        if name in candidate:
            _BY_NAME[name] = candidate[name]
            break
    _generation += 1
    _CACHE.clear()


def register(*type_names: str) -> Callable[[Reducer], Reducer]:
    """Register ``reducer`` (a built-in handler) for every type named ``"module.QualName"``."""

    def decorate(reducer: Reducer) -> Reducer:
        for name in type_names:
            _store(BUILTIN, name, reducer)
        return reducer

    return decorate


def type_name(cls: type) -> str:
    """``"module.QualName"``: the key a type is registered and looked up under."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _identity(value: T) -> T:
    return value


@overload
def register_handler(
    target: type[T], to_state: Callable[[T], S], from_state: Callable[[S], T] | None = None
) -> None: ...


@overload
def register_handler(
    target: str, to_state: Callable[[Any], Any], from_state: Callable[[Any], Any] | None = None
) -> None: ...


def register_handler(
    target: type | str,
    to_state: Callable[[Any], Any],
    from_state: Callable[[Any], Any] | None = None,
) -> None:
    """Teach cucumber how to move objects of ``target``, a class or its qualified name.

    ``target`` may be the class or the string ``"module.QualName"`` made of the
    type's own ``__module__`` and ``__qualname__`` (``"mylib.net.Client"``):
    the string form imports nothing, so a library can register handlers for
    types whose module may never be imported. Subclasses use the handler too,
    unless they have their own handler or ``__serialize__``/``__deserialize__``.

    ``to_state(obj)`` runs in the sending process and returns what travels:
    any value cucumber can serialize (it must not contain ``obj`` itself).
    ``from_state(state)`` runs in the receiving process and returns the
    rebuilt object; pickle imports it by name there, so make it a module-level
    function of an importable module (the receiver then needs no other
    import). Without ``from_state`` the value of ``to_state`` arrives as it is:
    the way to send a ``Reconnector`` for a live client.

    Precedence for one type name: what a program registers beats what an
    entry point (``[project.entry-points."suitkaise.cucumber"]``) registers,
    which beats cucumber's built-in handlers; within one of those, the last
    registration wins. Handlers are looked up only for types pickle cannot
    already move on its own terms, never for ``int``, ``str``, ``list``,
    ``dict`` and the other builtin containers and atoms.
    """
    if isinstance(target, type):
        name = type_name(target)
    elif isinstance(target, str) and "." in target and not target.startswith(".") and " " not in target:
        name = target
    else:
        raise TypeError(
            f"register_handler: target must be a class or its qualified name 'module.QualName' "
            f"(the type's own __module__ and __qualname__), got {target!r}"
        )
    if not callable(to_state):
        raise TypeError(f"register_handler({name!r}): to_state must be callable, got {to_state!r}")
    if from_state is not None and not callable(from_state):
        raise TypeError(f"register_handler({name!r}): from_state must be callable or None, got {from_state!r}")

    if from_state is None:
        def reducer(obj: Any) -> Any:
            value = to_state(obj)
            if type(value) is type(obj):
                raise TypeError(
                    f"the handler registered for {name} returned another {name} and no from_state: "
                    "return a different object (a Reconnector, plain data) or pass from_state"
                )
            return (_identity, (value,))
    else:
        rebuild = from_state

        def reducer(obj: Any) -> Any:
            return (rebuild, (to_state(obj),))

    reducer.__name__ = reducer.__qualname__ = getattr(to_state, "__qualname__", "handler")
    _store(getattr(_layer, "value", USER), name, reducer)


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
    generation = _generation
    reducer = _resolve(t)
    if reducer is None and on_miss is not None:
        on_miss(t)  # may load plugins (or wait for another thread loading them)
        reducer = _resolve(t)
    if generation != _generation:
        return reducer  # a registration ran meanwhile: answer, but do not cache
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[t] = reducer
    return reducer


def describe() -> dict[str, str]:
    """``{type name: handler name}`` for every registered type (for docs and tests)."""
    return {name: getattr(r, "__qualname__", repr(r)) for name, r in sorted(_BY_NAME.items())}
