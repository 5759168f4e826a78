"""What a method call on a stored object changed, found without a declaration.

::

    share.o.m(a)  ─►  under the store lock, on the working copy of o (_ops.call):
        1. names, _ = attributes_of(type(o), m) m's bytecode: every self.<name> it (or a
                                                 method it calls on self) loads/stores/deletes
        2. before = snapshot(o, names)           the values, and the bytes of mutable ones
        3. m(a)
        4. changes(o, before, steps, fits)      ("s", attr, value) / ("d", attr) deltas
                                                 for what was rebound, deleted or mutated;
                                                 None: only the whole object says it

Why an attribute ``m`` never names cannot have changed: ``self`` is used only as
``self.<name>`` (step 1 refuses a method that passes ``self`` on, returns it, captures it
in a closure, or names a way to its frame: ``super``/``vars``/``locals``/``eval``/``sys``/
``inspect``/``f_locals``/...), so an unnamed attribute is reachable only through an alias:
another object that refers to the same value. (Not seen: code elsewhere that walks up the
stack to the method's frame and changes ``self`` through ``f_locals``, and a global that
holds part of the stored object - an alias of this process's copy, stale under the Share
anyway; docs/guides/share.md says both.) Every mutable value that is written is therefore checked to be referenced
by its one parent alone (``sys.getrefcount``, the whole graph below it); if it is shared,
the delta would split what the writer's copy shares, and the whole object is written
instead.

A named attribute costs what its value costs: an immutable value (int, str, a tuple of
those ...) is compared by identity; a mutable one (list, dict, object) is encoded before
and after the call and written when the bytes differ - so ``self.total += 1`` on an
object that also holds a 10^6-item list is O(1), while ``self.items.append(x)`` rewrites
``items``. Anything this module cannot vouch for returns None and the caller falls back to
comparing the whole object (the behaviour before it existed).
"""

from __future__ import annotations

import dis
import marshal
import sys
import types
from collections.abc import Callable
from typing import Any

from suitkaise import cucumber

from . import _codec, _delta

__all__ = ["attributes_of", "changes", "current", "function", "snapshot", "uses_of"]

_MISSING: Any = object()
MISSING = _MISSING  # an attribute absent from the instance
_ATOMS = _codec.ATOMS
_getrefcount = sys.getrefcount
_FLAGS_REFUSED = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async gen
# names whose use lets code reach the method's frame (and so ``self``) without naming it
_FRAME_READERS = frozenset({
    "super", "vars", "locals", "globals", "eval", "exec", "sys", "inspect", "gc",
    "currentframe", "_getframe", "stack", "f_locals", "f_back", "f_globals", "tb_frame", "gi_frame",
})
_LOAD_FAST = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"})
_CACHE_MAX = 4096
_MARSHAL_MAX = 1024  # containers up to this length are compared by marshal (see _bytes)
_CONSTS = frozenset(dis.hasconst)

Uses = tuple[frozenset[str], frozenset[str]]  # (attributes, methods called on self)
# the functions a scan read: (method name, the code it had); any of them changed since
# (a helper replaced on the class, a __code__ swapped as autoreload does): scan again
Deps = tuple[tuple[str, types.CodeType], ...]
# (class, function) -> (what a call can use, with the methods it calls; None: unknown, and
# the code it was read from)
_ATTRS: dict[tuple[type, types.FunctionType], tuple[Uses | None, Deps]] = {}
# code -> what it uses; None: unknown
_SCANS: dict[types.CodeType, Uses | None] = {}


def _on_class(cls: type, name: str) -> Any:
    """What ``name`` resolves to on ``cls`` (its MRO, no descriptor called), or ``_MISSING``."""
    for k in cls.__mro__:
        if name in k.__dict__:
            return k.__dict__[name]
    return _MISSING


def function(cls: type, name: str) -> types.FunctionType | None:
    """The plain function ``name`` resolves to on ``cls`` (None for anything else)."""
    f = _on_class(cls, name)
    return f if type(f) is types.FunctionType else None


def _scan(fn: types.FunctionType) -> Uses | None:
    """(attributes, methods) that ``fn`` uses on its first argument, from its bytecode;
    None when it uses that argument any other way (it could reach anything)."""
    code = fn.__code__
    if code in _SCANS:
        return _SCANS[code]
    got: Uses | None = None
    if (
        code.co_argcount >= 1
        and not code.co_flags & _FLAGS_REFUSED
        and code.co_varnames[0] not in code.co_cellvars
        and "__class__" not in code.co_freevars
        and _FRAME_READERS.isdisjoint(code.co_names)
    ):
        got = _scan_code(code, code.co_varnames[0])
    if len(_SCANS) >= _CACHE_MAX:
        _SCANS.clear()
    _SCANS[code] = got
    return got


def _scan_code(code: types.CodeType, me: str) -> Uses | None:
    ins = list(dis.get_instructions(code))
    attrs: set[str] = set()
    methods: set[str] = set()
    for n, i in enumerate(ins):
        argval = i.argval
        if i.opcode in _CONSTS:
            continue
        if not (argval == me or (type(argval) is tuple and me in argval)):
            continue
        if i.opname not in _LOAD_FAST or n + 1 >= len(ins):
            return None  # self rebound, deleted, or loaded together with another local
        nxt = ins[n + 1]
        op = nxt.opname
        if op in ("STORE_ATTR", "DELETE_ATTR"):
            attrs.add(nxt.argval)
        elif op == "LOAD_ATTR":
            if sys.version_info >= (3, 12) and (nxt.arg or 0) & 1:  # the method form
                methods.add(nxt.argval)
            else:
                attrs.add(nxt.argval)
        elif op == "LOAD_METHOD":  # 3.11: self.m(...) passes self to m
            methods.add(nxt.argval)
        elif op == "COPY" and nxt.arg == 1 and n + 2 < len(ins) and ins[n + 2].opname == "LOAD_ATTR":
            # self.x op= v: COPY 1; LOAD_ATTR x; ...; BINARY_OP; SWAP 2; STORE_ATTR x
            attrs.add(ins[n + 2].argval)
        else:
            return None  # self passed on, returned, compared, stored...
    return frozenset(attrs), frozenset(methods)


def attributes_of(cls: type, name: str) -> Uses | None:
    """Every attribute of an instance of ``cls`` that calling method ``name`` can load,
    store or delete (through the methods it calls on ``self`` too), and the names of those
    methods (an instance attribute of one of these names would run instead: the caller
    checks); None when that cannot be told (``self`` escapes, not a plain function, a class
    whose attribute access runs code of its own)."""
    got = uses_of(cls, name)
    return None if got is None else got[0]


def uses_of(cls: type, name: str) -> tuple[Uses | None, Deps] | None:
    """``attributes_of`` with the functions it was read from (``current`` tells whether
    they are still the class's); None when ``name`` is not a plain function of ``cls``."""
    fn = function(cls, name)
    if fn is None:
        return None
    key = (cls, fn)
    hit = _ATTRS.get(key)
    if hit is not None and current(cls, hit[1]):
        return hit
    got: Uses | None = None
    deps: Deps = ((name, fn.__code__),)
    if (
        cls.__getattribute__ is object.__getattribute__
        and not hasattr(cls, "__getattr__")
        and cls.__setattr__ is object.__setattr__
        and cls.__delattr__ is object.__delattr__
        and _codec.simple_class(cls)
    ):
        found = _closure(cls, name, fn)
        if found is not None:
            got, deps = found
            if any(_not_shadowed(cls, a) for a in got[0]):
                got = None  # getattr/setattr of that name are not the instance's __dict__
    if len(_ATTRS) >= _CACHE_MAX:
        _ATTRS.clear()
    _ATTRS[key] = entry = (got, deps)
    return entry


def current(cls: type, deps: Deps) -> bool:
    """Whether every method a scan read is still, on ``cls``, a function with that code."""
    for name, code in deps:
        f = function(cls, name)
        if f is None or f.__code__ is not code:
            return False
    return True


def _not_shadowed(cls: type, name: str) -> bool:
    """Whether a class attribute ``name`` is more than a default that an instance's own
    value shadows: a descriptor (property, method, slot ...), or a mutable value that
    ``self.<name>`` could change in place for every instance. An immutable default (a
    dataclass field's ``= 0``) is read until the instance sets its own, which the snapshot
    sees as a new attribute."""
    value = _on_class(cls, name)
    return value is not _MISSING and (hasattr(type(value), "__get__") or not _codec.is_immutable(value))


def _closure(cls: type, name: str, fn: types.FunctionType) -> tuple[Uses, Deps] | None:
    """The attributes method ``name`` (``fn``) and the methods it calls on ``self``
    (transitively) use, the names of those methods, and the code each was read from."""
    attrs: set[str] = set()
    called: set[str] = set()
    deps = {name: fn.__code__}
    todo, seen = [fn], {fn}
    while todo:
        scanned = _scan(todo.pop())
        if scanned is None:
            return None
        attrs |= scanned[0]
        called |= scanned[1]
        for m in scanned[1]:
            f = function(cls, m)
            if f is None:
                return None  # a staticmethod, a callable attribute, ...: it could be anything
            deps.setdefault(m, f.__code__)
            if f not in seen:
                seen.add(f)
                todo.append(f)
    return (frozenset(attrs), frozenset(called)), tuple(deps.items())


def snapshot(target: Any, names: frozenset[str]) -> dict[str, Any] | None:
    """The named attributes' values before the call: (value, encoded bytes or None for an
    immutable value). None if one of them cannot be encoded."""
    state = object.__getattribute__(target, "__dict__")
    before: dict[str, Any] = {}
    for a in names:
        v = state.get(a, _MISSING)
        data = None
        if v is not _MISSING and not _codec.is_immutable(v):
            data = _bytes(v)
            if data is None:
                return None
        before[a] = (v, data)
    return before


def _bytes(value: Any) -> bytes | None:
    """Bytes that differ whenever ``value``'s state does. marshal for a small container of
    plain data only (exact types: marshal writes any buffer as its raw bytes, so an array's
    shape or dtype, or the attributes of a bytearray subclass, would not show); cucumber
    otherwise, and for a big container, where its one pass costs less than checking that
    the container is plain and then marshalling it (10^6 ints: 14 ms against 17 + 12)."""
    t = type(value)
    if (t is list or t is dict or t is tuple) and len(value) <= _MARSHAL_MAX and _codec.is_plain(value):
        return marshal.dumps(value)
    try:
        return cucumber.serialize(value)
    except Exception:  # the whole-object path reports what cannot be stored
        return None


def changes(
    target: Any, before: dict[str, Any], steps: tuple[Any, ...], fits: Callable[[int], bool],
) -> list[_delta.Op] | None:
    """The delta operations of what the call changed in the attributes ``snapshot``
    recorded (``steps``: the target's path below the stored root); None when only the
    whole object can say it, or when ``fits(size)`` says a delta of the changed values'
    size would not fit the log (the whole object is written then anyway)."""
    state = object.__getattribute__(target, "__dict__")
    ops: list[_delta.Op] = []
    written: list[str] = []
    size = 0
    for a, (old, data) in before.items():
        new = state.get(a, _MISSING)
        if new is _MISSING:
            if old is not _MISSING:
                ops.append(("d", (*steps, ("a", a))))
            continue
        if new is old and data is None:
            if _codec.is_immutable(new):
                continue  # the same immutable value
            return None  # could not be encoded before: no way to compare
        if type(new) in _ATOMS:  # rebound (the same atom is caught above)
            written.append(a)
            size += len(new) if type(new) is str or type(new) is bytes else 16
            continue
        after = _bytes(new)
        if after is None:
            return None
        if new is not old or after != data:
            written.append(a)
            size += len(after)
    old = new = None
    before.clear()  # drop the references to the old values before counting references
    if written and (not fits(size) or not _unshared([state[a] for a in written])):
        return None
    ops += [("s", (*steps, ("a", a)), state[a]) for a in written]
    return ops


def _baseline() -> int:
    """References to a value held by one container, counted at the line of ``_unshared``
    that checks them (the local variable and the call's argument included)."""
    holder: list[list[int]] = [[]]
    stack = [holder[0]]
    while stack:
        x = stack.pop()
        return _getrefcount(x)
    return 0  # pragma: no cover


def _unshared(stack: list[Any]) -> bool:
    """Whether every mutable object in the graphs of ``stack``'s values is referenced by
    its one parent only (nothing else can see it or change it). Unknown types: False."""
    while stack:
        x = stack.pop()
        t = type(x)
        if t in _ATOMS:
            continue
        if _getrefcount(x) > _BASE:
            if _codec.is_immutable(x):  # a constant tuple may be shared: it cannot change
                continue
            return False
        if t is list or t is tuple or t is set or t is frozenset:
            if not _ATOM_TYPES.issuperset(map(type, x)):
                stack.extend(x)
        elif t is dict:
            if not _ATOM_TYPES.issuperset(map(type, x.values())):
                stack.extend(x.values())
            if not _ATOM_TYPES.issuperset(map(type, x)):
                stack.extend(x)
        elif _codec.simple_class(t):
            d = getattr(x, "__dict__", None)
            if type(d) is not dict:
                return False
            stack.append(d)
            d = None
        else:
            return False
        x = None
    return True


_ATOM_TYPES = frozenset(_ATOMS)
_BASE = _baseline()
