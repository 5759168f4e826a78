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

An element of a list, tuple or deque (such a result, or one reached by iterating the
sequence, ``_proxy``) is addressed by an ``At`` step, not by its index: the element object of
this process's copy, found again by identity under the lock in the operation's own locked
step (``pin``). Other processes' changes reach that copy as deltas replayed in place, so an
insertion or removal before the element moves it, not the step; a row that is gone, or a copy
decoded afresh (another process rewrote the whole value), is a ``Detached`` error, never a
write to the row that took its place::

    for row in list(share.rows):          row ─► ("rows", ("e", At(<the row object>, 0)))
        if row["done"]:                   read: pin ─► rows[i] where rows[i] is the row
            share.rows.remove(row)        as an argument: its value (``_proxy._unwrap``)
        else:
            row["seen"] = True            write: pin ─► ("rows", ("i", i)), in the same step
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from itertools import compress, count, repeat
from operator import is_
from typing import Any

from ._base import Path, ShareError
from ._codec import instance_dict, is_immutable
from ._txn import path_str

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


SEQUENCES: frozenset[type] = frozenset({list, tuple, deque})


class Detached(ShareError):
    """An element reached by iterating (or returned by a method) is no longer where it was."""


class At:
    """The step to ``elem``, an element of a list/tuple/deque last seen at index ``pos``.

    Over TCP it travels as its index (``("e", pos)``): the owner's copy has other objects, and
    a handle reached that way addresses elements by position, as before."""

    __slots__ = ("elem", "pos")
    made = False  # (until one is made in this process, no path has one: ``pin`` returns at once)

    def __init__(self, elem: Any, pos: int) -> None:
        self.elem, self.pos = elem, pos
        At.made = True

    def __reduce__(self) -> tuple[Any, ...]:
        return (int, (self.pos,))

    def __repr__(self) -> str:  # (path_str: share.rows[3])
        return repr(self.pos)


def pin(root: Any, path: Path) -> Path:
    """``path`` with each ``("e", At)`` step made ``("i", <the element's index now>)``: the
    element found by identity in ``root`` (call under the store lock, in the step that uses
    the result). ``Detached`` when it is no longer there."""
    if not At.made:
        return path
    for step in path:  # (the common case: none; path[0], the name, is a str, not a step)
        if step[0] == "e" and type(step) is tuple:
            break
    else:
        return path
    out = list(path)
    for n in range(1, len(out)):
        kind, at = out[n]
        if kind != "e":
            continue
        seq = root
        for k, key in out[1:n]:
            seq = getattr(seq, key) if k == "a" else seq[key]
        out[n] = ("i", at if type(at) is int else _index_of(at, seq, out[:n]))
    return tuple(out)


def _index_of(at: At, seq: Any, where: list[Any]) -> int:
    elem, pos = at.elem, at.pos
    if type(seq) in SEQUENCES:
        if pos < len(seq) and seq[pos] is elem:
            return pos
        # moved: the first index holding this very object (compared by identity, in C)
        j = next(compress(count(), map(is_, seq, repeat(elem))), None)
        if j is not None:
            at.pos = j
            return j
    raise Detached(
        f"{path_str(tuple(where))}: the element reached at index {pos} (by iterating it, or as a "
        "method's result) is no longer in it - it was removed or replaced, or "
        f"{path_str(tuple(where[:1]))} was written anew as a whole (by another process, or "
        f"across a stop()). Index it again to change it ({path_str(tuple(where))}[i])."
    )


def positional(path: Path) -> Path:
    """``path`` with its ``At`` steps as plain indexes (for a handle whose operations run on
    another copy: over TCP, on Redis)."""
    if not any(s[0] == "e" for s in path[1:]):
        return path
    return (path[0], *(("i", s[1] if type(s[1]) is int else s[1].pos) if s[0] == "e" else s for s in path[1:]))


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
                return ("e", At(result, k % n))  # (found by identity again, as an iterated row)
    return None
