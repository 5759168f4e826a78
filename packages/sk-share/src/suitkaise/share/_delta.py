"""Deltas: an update of a stored container or object described by what it changed.

::

    writer (under the store lock)                     /dev/shm store            reader
    share.d[k] = v ─► apply on its decoded copy        head record ─► delta ─►   cached copy at
                  ─► ("s", (("i", k),), v) ─encode─►   delta ─► ... ─► base      version n: apply
                     Store.commit_delta (one record,   (prev pointers)           the deltas after
                     one 8-byte table store)                                     n, oldest first

A delta payload is a list of operations on the value's path steps (``("a", name)`` for
an attribute, ``("i", key)`` for an item):

``("s", steps, value)``   set the item/attribute at ``steps`` to ``value`` (an attribute:
                          its ``__dict__`` entry; only used where that is what ``setattr``
                          does, ``attr_ok``)
``("d", steps)``          delete it
``("c", steps, name, args, kwargs)``  call the deterministic built-in method ``name`` of
                          the list/dict at ``steps`` (``append``, ``update``, ...)

Replaying a delta on the same version gives the same state as the writer's, because each
operation is deterministic (no user code runs on replay). A payload is marshal bytes when
it is plain data, else cucumber bytes (``_codec``'s kinds). The store keeps the log short:
when the delta bytes since the last full value pass half of it (plus 1 KiB; 4 KiB for a
method call's deltas), the writer stores the full value again (``Store.commit_delta``
returns None), so an update costs what it changed plus an amortised share of one rewrite,
and a reader from scratch decodes at most 1.5x the value plus those few KiB of deltas.
"""

from __future__ import annotations

import marshal
from typing import Any

from suitkaise import cucumber

from . import _codec

Op = tuple[Any, ...]

# Built-in methods whose effect depends only on the state and the arguments (no hashing
# order: set.pop is not here, a set's order differs between processes).
DETERMINISTIC: dict[type, frozenset[str]] = {
    list: frozenset({"append", "extend", "insert", "pop", "remove", "clear", "reverse"}),
    dict: frozenset({"update", "setdefault", "pop", "popitem", "clear"}),
    set: frozenset({"add", "discard", "remove", "update", "clear", "difference_update",
                    "intersection_update", "symmetric_difference_update"}),
}


def replayable(target: Any, name: str, kwargs: dict[str, Any]) -> bool:
    """Whether ``target.name(...)`` can travel as a ``("c", ...)`` operation."""
    names = DETERMINISTIC.get(type(target))
    return names is not None and name in names and not kwargs


def attr_ok(parent: Any, key: str) -> bool:
    """Whether ``parent.key = v`` / ``del parent.key`` is exactly a change of its
    ``__dict__`` (no ``__setattr__``/``__delattr__`` of its own, no descriptor of that name),
    so that replaying it on the ``__dict__`` runs no user code and gives the same state."""
    cls = type(parent)
    return (
        cls.__setattr__ is object.__setattr__
        and cls.__delattr__ is object.__delattr__
        and not hasattr(cls, key)
        and type(getattr(parent, "__dict__", None)) is dict
    )


def encode(ops: list[Op]) -> tuple[int, bytes]:
    """(codec kind, payload) of a list of operations."""
    if is_plain(ops):
        return _codec.K_PLAIN, marshal.dumps(ops)
    return _codec.K_CUCUMBER, cucumber.serialize(ops)


def is_plain(ops: list[Op]) -> bool:
    """``_codec.is_plain(ops)``, looking only at what can vary: the path keys and values
    (tags, step kinds and method names are strings)."""
    atoms, plain = _codec.ATOMS, _codec.is_plain
    for op in ops:
        for _, key in op[1]:
            if type(key) not in atoms and not plain(key):
                return False
        for v in op[2:]:
            if type(v) not in atoms and not plain(v):
                return False
    return True


def decode(kind: int, payload: bytes) -> list[Op]:
    if kind == _codec.K_PLAIN:
        return marshal.loads(payload)
    if kind == _codec.K_CUCUMBER:
        return cucumber.deserialize(payload)
    raise ValueError(f"corrupt Share delta (unknown kind {kind})")


def _resolve(obj: Any, steps: Any) -> Any:
    for kind, key in steps:
        obj = getattr(obj, key) if kind == "a" else obj[key]
    return obj


def apply(root: Any, ops: list[Op]) -> None:
    """Replay ``ops`` on ``root`` (in place)."""
    for op in ops:
        tag, steps = op[0], op[1]
        if tag == "c":
            getattr(_resolve(root, steps), op[2])(*op[3], **op[4])
            continue
        parent = root if len(steps) == 1 else _resolve(root, steps[:-1])  # (most are on the root)
        kind, key = steps[-1]
        if kind == "a":  # the attribute's entry in __dict__ (attr_ok, or a declared write)
            state = object.__getattribute__(parent, "__dict__")
            if tag == "s":
                state[key] = op[2]
            else:  # absent only for a declared write the method did not make
                state.pop(key, None)
        elif tag == "s":
            parent[key] = op[2]
        else:
            del parent[key]


def apply_all(root: Any, deltas: list[tuple[int, bytes]]) -> None:
    """Replay stored delta payloads (oldest first) on ``root``."""
    for kind, payload in deltas:
        apply(root, decode(kind, payload))


def materialize(data: bytes, load_class: Any) -> Any:
    """Decode a ``K_CHAIN`` value: (base kind, base bytes, deltas) of a snapshot."""
    kind, base, deltas = marshal.loads(data)
    root = _codec.decode(kind, base, load_class)
    apply_all(root, deltas)
    return root
