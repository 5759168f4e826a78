"""Proxies: containers and objects stored in a Share, addressed by their path.

::

    share.o            ──► Proxy(share, ("o",))              every use is one operation
    share.o.items      ──► Proxy(share, ("o", ("a", "items"))) on the shared state (_ops)
    share.o.add        ──► _Method: called = one locked call on the shared copy
    share.x  (in `share.x = share.x + v`) ──► Operand ─(+ v)─► Pending ─(store-back)─►
                                             _ops.aug_apply: one locked read-modify-write
"""

from __future__ import annotations

import operator
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

from . import _alias, _codec, _ops
from ._aug import _AT, AUG, BINARY_OPS, METHOD, REASSIGN, get_reassign, read_kind
from ._base import Path
from ._base import oga as _oga
from ._ops import NO_DEFAULT, check_blocked
from ._txn import path_str, resolve

_ATOMS = _codec.ATOMS
_ATOM_TYPES = frozenset(_ATOMS)
_AT_GET = _AT.get
_getframe = sys._getframe
_view = _ops.view
_write = _ops.write
_call = _ops.call
_peek = _ops.peek
_MISS = _ops.MISS
_aug_apply = _ops.aug_apply


def _unwrap(value: Any) -> Any:
    """A Proxy used as a value stands for a copy of what it points at (a pending update for
    its computed value)."""
    t = type(value)
    if t is Proxy:
        return _snapshot_of(value)
    if t is Pending:
        return value.value()
    if t is Operand:  # `share.x = share.x + share.x`: the right one is a plain read
        return Pending(value.share, value.path, _first, None, value.default).value()
    return value


unwrap = _unwrap


def _first(value: Any, _other: Any) -> Any:
    return value


def _unwrap_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_unwrap(a) for a in args)


def _unwrap_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: _unwrap(v) for k, v in kwargs.items()}


class Proxy:
    """A container or object stored in a Share, addressed by its path (``share.o.items``).

    Every operation runs on the one shared state: reads see the latest committed value,
    mutations (``append``, ``d[k] = v``, ``o.n = 1``, ``+=``) are atomic read-modify-writes,
    method calls return their real result. ``copy.copy``/pickling a Proxy gives a real copy.
    """

    __slots__ = ("_sk_path", "_sk_share")

    def __init__(self, share: Any, path: Path) -> None:
        object.__setattr__(self, "_sk_share", share)
        object.__setattr__(self, "_sk_path", path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_identity, (_snapshot_of(self),))

    def __getattribute__(self, attr: str) -> Any:
        # Every name but the dunders and the _sk_ internals is the stored object's: handled
        # here, not in __getattr__, whose failed normal lookup first builds an
        # AttributeError (~1 us: `share.obj.add(1)` does one).
        if attr[:2] == "__" or attr in _OWN:
            return _oga(self, attr)
        frame = _getframe(1)
        # the hot case: a method about to be called (`share.obj.add(1)`), its instruction
        # classified before: the entry read_kind left at its offset (_aug._AT), if it is this
        # code's (as Share.__getattribute__ looks it up; else read_kind, which restores it)
        k = _AT_GET(frame.f_lasti)
        if k is not None and k[0] is frame.f_code and k[1] == METHOD:
            return _Method(_share_of(self), _path_of(self), attr)  # called in one locked step
        share, path = _share_of(self), _path_of(self)
        kind = read_kind(frame, attr)
        if kind == METHOD:
            return _Method(share, path, attr)
        if kind == REASSIGN:
            return Operand(share, (*path, ("a", attr)))
        if kind:
            return new_proxy(share, (*path, ("a", attr)))

        def fn(target: Any) -> Any:
            check_blocked(target, attr)
            value = getattr(target, attr)
            if _codec.is_immutable(value):
                return value
            if isinstance(value, types.MethodType | types.BuiltinMethodType) and getattr(value, "__self__", None) is target:
                return _Method(share, path, attr)
            return Proxy(share, (*path, ("a", attr)))

        return _view(share, path, fn)

    def __setattr__(self, attr: str, value: Any) -> None:
        path = (*_path_of(self), ("a", attr))
        if _stores_back(self, value, path):
            return
        _write(_share_of(self), path, "set", _unwrap(value))

    def __delattr__(self, attr: str) -> None:
        _write(_share_of(self), (*_path_of(self), ("a", attr)), "del", None)

    def __getitem__(self, key: Any) -> Any:
        share, path = _share_of(self), _path_of(self)
        if not isinstance(key, slice):
            kind = read_kind(sys._getframe(1), key, subscr=True)
            if kind == AUG:
                return new_proxy(share, (*path, ("i", key)))
            if kind == REASSIGN:
                return Operand(share, (*path, ("i", key)))

        def fn(target: Any) -> Any:
            value = target[key]
            if _codec.is_immutable(value):
                return value
            if isinstance(key, slice):
                return _codec.copy_out(value)
            return Proxy(share, (*path, ("i", key)))

        return _view(share, path, fn)

    def __setitem__(self, key: Any, value: Any) -> None:
        path = (*_path_of(self), ("i", key))
        if _stores_back(self, value, path):
            return
        _write(_share_of(self), path, "set", _unwrap(value))

    def __delitem__(self, key: Any) -> None:
        _write(_share_of(self), (*_path_of(self), ("i", key)), "del", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _call(_share_of(self), _path_of(self), None, _unwrap_args(args), _unwrap_kwargs(kwargs))

    def __len__(self) -> int:
        return _read(self, len)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        # numpy (np.asarray(share.arr), np.mean(share.arr), ...): the value as an array in
        # one read. Without this, numpy takes a Proxy for a sequence and reads it element by
        # element, each a Share read (np.asarray of 10^6 floats: 4.7 s instead of ~5 ms).
        # Always a copy of its own, as every read of a mutable value is: the stored value is
        # shared, and writing through an alias of this process's copy would change nothing.
        if copy is False:
            raise ValueError(
                f"{path_str(_path_of(self))} is stored in a Share: numpy can have it only as a "
                "copy (np.asarray(..., copy=False) cannot share its memory)"
            )
        import numpy  # (loaded: only numpy calls this)

        return _read(self, lambda t: numpy.array(t, dtype=dtype, copy=True))

    def __enter__(self) -> Any:
        # `with share.lk:` on a stored lock, connection, file...: each process rebuilds its
        # own copy, so it could not exclude anyone. Say so instead of Python's "does not
        # support the context manager protocol".
        raise TypeError(
            f"{path_str(_path_of(self))} is stored in a Share, where every process works on its own "
            "copy: it cannot be used in a `with` statement (a stored lock would lock nothing "
            "across processes). For a critical section across processes use "
            "`with share.lock():`; for a resource, read a copy (`copy.copy(share.x)`)."
        )

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ always raises
        return None

    def __iter__(self) -> Iterator[Any]:
        return iter(_elements(self, False))

    def __reversed__(self) -> Iterator[Any]:
        return iter(_elements(self, True))

    def __contains__(self, item: Any) -> bool:
        item = _unwrap(item)
        return _read(self, lambda t: item in t)

    def __bool__(self) -> bool:
        return _read(self, bool)

    def __str__(self) -> str:
        return _read(self, str)

    def __repr__(self) -> str:
        try:
            inner = _read(self, repr)
        except Exception as e:  # repr must not raise
            inner = f"<unavailable: {e!r}>"
        return f"Proxy({path_str(_path_of(self))}: {inner})"

    def __format__(self, spec: str) -> str:
        return _read(self, lambda t: format(t, spec))

    def __hash__(self) -> int:
        return _read(self, hash)

    def __dir__(self) -> list[str]:
        return _read(self, dir)

    def __int__(self) -> int:
        return _read(self, int)

    def __float__(self) -> float:
        return _read(self, float)

    def __index__(self) -> int:
        return _read(self, operator.index)


def _identity(x: Any) -> Any:
    return x


_OWN = frozenset(n for n in vars(Proxy) if n.startswith("_sk_"))  # Proxy's own members
# the slots, read without going through Proxy.__getattribute__
_share_of = Proxy.__dict__["_sk_share"].__get__
_path_of = Proxy.__dict__["_sk_path"].__get__


def _live_values(t: Any, share: Any, path: Path) -> list[Any]:
    """``t.values()`` of a dict at ``path``: atoms as they are, a live Proxy per other value."""
    is_immutable = _codec.is_immutable
    return [
        v if is_immutable(v) else new_proxy(share, (*path, ("i", k if is_immutable(k) else _codec.copy_out(k))))
        for k, v in t.items()
    ]


def _live_items(t: Any, share: Any, path: Path) -> list[tuple[Any, Any]]:
    """``t.items()`` of a dict at ``path``: (a copy of the key, the value as ``_live_values``)."""
    is_immutable = _codec.is_immutable
    out = []
    for k, v in t.items():
        if not is_immutable(k):  # (a hashable object: the caller's and the path's own copy)
            k = _codec.copy_out(k)
        out.append((k, v if is_immutable(v) else new_proxy(share, (*path, ("i", k)))))
    return out


def _dict_read(share: Any, path: Path, name: str, args: tuple[Any, ...]) -> Any:
    """``get``/``values``/``items`` of the object at ``path``: of a dict, one read with its
    elements live; of anything else, its own method, run as any other (``_call``: a result
    that is ``_Ref`` is made a Proxy by the caller). One locked step at most: a current
    cached copy says which without the lock; else the call's locked step makes the dict
    read when it finds a dict (a handle without a local store: a read, then the call)."""

    def fn(t: Any) -> Any:
        if type(t) not in _DICTS:
            return _NOPE
        if name == "values":
            return _live_values(t, share, path)
        if name == "items":
            return _live_items(t, share, path)
        key = args[0]
        value = t.get(key, _NOPE)
        if value is _NOPE:
            return args[1] if len(args) == 2 else None
        return value if _codec.is_immutable(value) else new_proxy(share, (*path, ("i", key)))

    d = _oga(share, "__dict__")
    st = d["_sk_store"]
    if st is not None and d["_sk_remote"] is None and d["_sk_redis"] is None:
        got = _peek(st, path, fn)
        if got is _MISS or got is _NOPE:  # not known current, or not a dict
            return _call(share, path, name, args, {}, fn)
        return got
    got = _view(share, path, fn)
    return _call(share, path, name, args, {}) if got is _NOPE else got


def _read(proxy: Proxy, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to the value ``proxy`` points at (read-only; ``_ops.view``)."""
    return _view(_share_of(proxy), _path_of(proxy), fn)


def _snapshot_of(proxy: Proxy) -> Any:
    """A private copy of the value ``proxy`` points at. An element reached by iterating that
    is no longer in its sequence stands for its value when it left (as a plain Python
    reference to a removed row would): ``remove(row)``, ``row in lst``, ``row == x``."""
    try:
        return _read(proxy, _codec.copy_out)
    except _Detached:
        kind, at = _path_of(proxy)[-1]
        if kind != "e" or type(at) is not _At:
            raise
        return _codec.copy_out(at.elem)  # (out of every current copy: nothing changes it)


def _elements(proxy: Proxy, backwards: bool) -> list[Any]:
    """The elements of the value at ``proxy``'s path, in one read. Of a list, tuple or deque
    in this process's copy of the store: atoms as they are, a live Proxy per other element,
    addressed by the element itself (``_alias.At``: an insertion or removal before it moves
    it, not the step). Of anything else, or a copy of another process's (over TCP, Redis,
    a stopped Share): a snapshot, as before."""
    share, path = _share_of(proxy), _path_of(proxy)

    def fn(t: Any) -> list[Any]:
        if type(t) not in _SEQUENCES or not _in_cache(share, path, t):
            return _codec.copy_out(list(reversed(t)) if backwards else list(t))
        is_immutable, new, at = _codec.is_immutable, new_proxy, _At
        n = len(t)
        pairs = zip(range(n - 1, -1, -1), reversed(t), strict=True) if backwards else enumerate(t)
        return [v if is_immutable(v) else new(share, (*path, ("e", at(v, i)))) for i, v in pairs]

    return _view(share, path, fn)


def _in_cache(share: Any, path: Path, t: Any) -> bool:
    """Whether ``t`` (at ``path``) is in this process's cached copy of the store (the copy
    other processes' changes are replayed on in place, where an element keeps its identity)."""
    d = _oga(share, "__dict__")
    st = d["_sk_store"]
    if st is None or d["_sk_redis"] is not None:
        return False
    c = st.cache.get(path[0])
    if c is None:
        return False
    root = c[1]
    try:
        return resolve(root, _alias.pin(root, path)[1:]) is t
    except Exception:
        return False


_set_share = Proxy._sk_share.__set__  # type: ignore[attr-defined]
_set_path = Proxy._sk_path.__set__  # type: ignore[attr-defined]
_new = object.__new__


def new_proxy(share: Any, path: Path) -> Proxy:
    """``Proxy(share, path)`` without going through the blocked ``__setattr__``."""
    p = _new(Proxy)
    _set_share(p, share)
    _set_path(p, path)
    return p


def _binary(opname: str, reflected: bool) -> Callable[[Proxy, Any], Any]:
    fn = getattr(operator, opname)

    def method(self: Proxy, other: Any) -> Any:
        other = _unwrap(other)
        try:
            if reflected:
                return _read(self, lambda t: _codec.copy_out(fn(other, t)))
            return _read(self, lambda t: _codec.copy_out(fn(t, other)))
        except _Detached:  # an iterated element no longer in its sequence: its last value
            value = _snapshot_of(self)
            return _codec.copy_out(fn(other, value) if reflected else fn(value, other))

    return method


def _inplace(opname: str) -> Callable[[Proxy, Any], Proxy]:
    iop = getattr(operator, opname)

    def method(self: Proxy, other: Any) -> Proxy:
        # the store-back that follows (`share.x = <this proxy>`) is recognised as a no-op
        _aug_apply(_share_of(self), _path_of(self), iop, other if type(other) in _ATOMS else _unwrap(other))
        return self

    return method


for _op in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "pow", "lshift",
            "rshift", "and", "xor", "or"):
    _name = _op + "_" if _op in ("and", "or") else _op
    setattr(Proxy, f"__{_op}__", _binary(_name, False))
    setattr(Proxy, f"__r{_op}__", _binary(_name, True))
    setattr(Proxy, f"__i{_op}__", _inplace(f"i{_op}"))
for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(Proxy, f"__{_op}__", _binary(_op, False))
for _op in ("neg", "pos", "abs", "invert"):
    _f = getattr(operator, _op)
    setattr(Proxy, f"__{_op}__", (lambda f: lambda self: _read(self, lambda t: _codec.copy_out(f(t))))(_f))


_Ref = _alias.Ref
_At = _alias.At
_Detached = _alias.Detached
_SEQUENCES = _alias.SEQUENCES
_DICTS = _alias.DICTS
_NOPE: Any = object()
# dict methods read with their elements live (``_dict_read``)
_DICT_READS = {"values": (0, 0), "items": (0, 0), "get": (1, 2)}  # name -> (min, max) arguments


class _Method:
    """A method of a shared object; calling it runs it on the one shared copy."""

    __slots__ = ("_name", "_path", "_share")

    def __init__(self, share: Any, path: Path, name: str) -> None:
        self._share, self._path, self._name = share, path, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._name == "get" and 1 <= len(args) <= 2 and not kwargs and get_reassign(sys._getframe(1)):
            # `share.d[k] = share.d.get(k, 0) + 1`: one update, like `share.d[k] += 1`
            key = _unwrap(args[0])
            default = _unwrap(args[1]) if len(args) == 2 else None
            return Operand(self._share, (*self._path, ("i", key)), default)
        if not _ATOM_TYPES.issuperset(map(type, args)):  # (atoms, the common case: as they are)
            args = _unwrap_args(args)
        nargs = _DICT_READS.get(self._name)
        if nargs is not None and not kwargs and nargs[0] <= len(args) <= nargs[1]:
            result = _dict_read(self._share, self._path, self._name, args)
        else:
            result = _call(self._share, self._path, self._name, args, _unwrap_kwargs(kwargs) if kwargs else kwargs)
        if type(result) is _Ref:  # the object or one of its elements: live, not a copy
            path = result.path
            if _oga(self._share, "__dict__")["_sk_redis"] is not None:
                path = _alias.positional(path)  # (each operation decodes its own copy there)
            return new_proxy(self._share, path)
        return result

    def __repr__(self) -> str:
        return f"<shared method {path_str(self._path)}.{self._name}>"




def same_share(a: Any, b: Any) -> bool:
    return a is b or _oga(a, "__dict__")["_sk_name"] == _oga(b, "__dict__")["_sk_name"]


def _stores_back(proxy: Proxy, value: Any, path: Path) -> bool:
    """Handle the store-back of ``p.a op= v`` / ``p.a = p.a <op> v`` (True when done)."""
    t = type(value)
    if t is Proxy:
        return bool(_path_of(value) == path and same_share(_share_of(value), _share_of(proxy)))
    if t is Pending and value.path == path and same_share(value.share, _share_of(proxy)):
        _aug_apply(_share_of(proxy), path, value.op, value.other, value.default)
        return True
    return False


class Operand:
    """What ``share.x`` reads as in ``share.x = share.x <op> expr`` (recognised from the
    caller's bytecode, ``_aug.py``): its operator does not compute anything, it returns the
    update as a ``Pending`` that the store-back applies as one locked read-modify-write."""

    __slots__ = ("default", "path", "share")

    def __init__(self, share: Any, path: Path, default: Any = NO_DEFAULT) -> None:
        # default: read as `container.get(key, default)` (the `d.get(k, 0) + 1` form)
        self.share, self.path, self.default = share, path, default

    def __repr__(self) -> str:
        return f"<pending read of {path_str(self.path)}>"


class Pending:
    """``<current value at path> <op> other``, not yet applied. Stored back to the same path
    it is applied atomically; used as a value anywhere else it is computed from a fresh read."""

    __slots__ = ("default", "op", "other", "path", "share")

    def __init__(
        self, share: Any, path: Path, op: Callable[[Any, Any], Any], other: Any, default: Any = NO_DEFAULT
    ) -> None:
        self.share, self.path, self.op, self.other, self.default = share, path, op, other, default

    def value(self) -> Any:
        op, other, default = self.op, self.other, self.default
        if default is NO_DEFAULT:
            return _view(self.share, self.path, lambda t: _codec.copy_out(op(t, other)))
        key = self.path[-1][1]
        return _view(self.share, self.path[:-1], lambda c: _codec.copy_out(op(c.get(key, default), other)))

    def then(self, fn: Callable[[Any, Any], Any], other: Any) -> Pending:
        """``(self) <fn> other``: one pending update of the same path (`x * 2 + 1`)."""
        steps = self.other if self.op is _ops.chain else ((self.op.__name__, self.other),)
        return Pending(self.share, self.path, _ops.chain, (*steps, (fn.__name__, other)), self.default)

    def __repr__(self) -> str:
        return f"<pending update {path_str(self.path)} {self.op.__name__} {self.other!r}>"


def _operand_method(opname: str) -> Callable[[Operand, Any], Pending]:
    fn = getattr(operator, opname)

    def method(self: Operand, other: Any) -> Pending:
        return Pending(self.share, self.path, fn, _unwrap(other), self.default)

    method.__name__ = f"__{opname.rstrip('_')}__"
    return method


def _pending_method(opname: str) -> Callable[[Pending, Any], Pending]:
    fn = getattr(operator, opname)

    def method(self: Pending, other: Any) -> Pending:
        return self.then(fn, _unwrap(other))

    method.__name__ = f"__{opname.rstrip('_')}__"
    return method


for _opname in BINARY_OPS.values():
    setattr(Operand, f"__{_opname.rstrip('_')}__", _operand_method(_opname))
    setattr(Pending, f"__{_opname.rstrip('_')}__", _pending_method(_opname))
