"""A method's result that IS part of the object it ran on: handed back as a path (the
caller makes it a live Proxy), not as a private copy, so that changes made through it
reach the Share as they would reach the object in plain Python.

::

    share.d.setdefault("k", [])   ─► the list now at d["k"]   ─► Ref(("d", ("i", "k")))
    share.box.get_items()         ─► box.items (same object)  ─► Ref(("box", ("a", "items")))
    share.box.chain()  (return self)                          ─► Ref(("box",))

What counts, compared by identity after the call: the object itself; a top-level attribute
of a user object (its ``__dict__``); an element of such an attribute (a list, tuple or dict)
at one of the call's arguments (``get_row(i)`` returning ``self.rows[i]``, ``lookup(k)``
returning ``self.data[k]``); a dict's element at ``get``/``setdefault``'s key. Anything else
(an element found another way, deeper) is a copy, as before: finding it would mean
searching the object, O(its size) on every call that returns a value of its own.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any

from ._base import Path
from ._codec import instance_dict, is_immutable

DICTS: frozenset[type] = frozenset({dict, OrderedDict, defaultdict})
_BUILTIN: frozenset[type] = frozenset({list, tuple, set, frozenset, str, bytes, bytearray})
_NOPE = object()


class Ref:
    """The path of the element a method returned (made a Proxy by ``_proxy._Method``)."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:  # travels back to a remote handle
        return (Ref, (self.path,))

    def __repr__(self) -> str:
        return f"Ref({self.path!r})"


def ref_to(target: Any, path: Path, name: str, args: tuple[Any, ...], result: Any) -> Ref | None:
    """``Ref`` to ``result`` when it is ``target`` (at ``path``) or one of its elements
    after ``target.name(*args)`` ran; None when it is a value of its own (returned copied)."""
    t = type(target)
    if t in _BUILTIN:  # pop() & co: what they return is no longer (or never was) in it
        return None
    if t in DICTS:
        if name in ("get", "setdefault") and args and not is_immutable(result):
            try:
                if target.get(args[0], _NOPE) is result:
                    return Ref((*path, ("i", args[0])))
            except TypeError:  # unhashable key: dict.get raised already
                return None
        return None
    if is_immutable(result):
        return None
    if result is target:
        return Ref(path)
    state = instance_dict(target)
    if state is None:
        return None
    for attr, value in state.items():
        if value is result and type(attr) is str:
            return Ref((*path, ("a", attr)))
    keys = [a for a in args if type(a) in _KEYS]
    if not keys:
        return None
    for attr, value in state.items():
        step = _element_at(value, keys, result) if type(attr) is str else None
        if step is not None:
            return Ref((*path, ("a", attr), step))
    return None


_KEYS: frozenset[type] = frozenset({int, str, bytes, float, bool})


def _element_at(container: Any, keys: list[Any], result: Any) -> tuple[str, Any] | None:
    """The step to ``result`` in ``container`` (a list, tuple or dict) at one of ``keys``."""
    t = type(container)
    if t in DICTS:
        for k in keys:
            if container.get(k, _NOPE) is result:
                return ("i", k)
    elif t is list or t is tuple:
        n = len(container)
        for k in keys:
            if type(k) is int and -n <= k < n and container[k] is result:
                return ("i", k % n)  # (a negative index would follow later appends)
    return None
