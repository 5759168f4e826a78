"""One transaction on the store: what an operation reads, changes, and how it commits.

An operation is a function ``op(txn) -> result`` run while the store lock is held.
It reads decoded values with ``txn.get`` (the per-process decoded cache is used when the
stored version matches), and stages changes with ``set``/``touch``/``delete``. The caller
commits the staged changes in one atomic store commit, or - if ``op`` raised - drops
them and invalidates every cached object the operation may have mutated.

A *scratch* transaction (stopped Share) decodes fresh copies and never touches the cache.

A nested update stages a *delta* (``delta``: the operations, ``_delta.py``) instead of the
whole root value; ``seal`` encodes it (inside the operation's rollback scope) and decides
whether it is committed as one delta record or, when it is not the only change or the log
is full, as the full value. ``get`` of a name whose head is a delta replays the deltas after
the cached version on the cached copy (``_catch_up``).
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from suitkaise import cucumber

from . import _codec, _delta
from ._store import K_DELTA, Store

T = TypeVar("T")

_dumps = marshal.dumps


class EncodeError(TypeError):
    """A value cannot be stored (raised before anything is changed)."""


def path_str(path: tuple[Any, ...]) -> str:
    """``("o", ("a", "items"), ("i", 3))`` -> ``share.o.items[3]`` (for messages)."""
    out = f"share.{path[0]}"
    for kind, key in path[1:]:
        out += f".{key}" if kind == "a" else f"[{key!r}]"
    return out


def resolve(obj: Any, steps: tuple[Any, ...]) -> Any:
    """The object reached from ``obj`` by path ``steps`` (``("a", name)`` / ``("i", key)``)."""
    for kind, key in steps:
        obj = getattr(obj, key) if kind == "a" else obj[key]
    return obj


def encode_for(value: Any, where: str | tuple[Any, ...]) -> tuple[int, bytes, tuple[str, bytes] | None]:
    """Validate and encode ``value`` for the place ``where`` (``share.counter``, or a path
    tuple, formatted only if there is an error to report)."""
    t = type(value)
    if t in _codec.ATOMS:  # the hot case (+=, counters): nothing to check
        if t is int and _codec.I64_MIN <= value <= _codec.I64_MAX:
            return _codec.K_I64, value.to_bytes(8, "little", signed=True), None
        return _codec.K_PLAIN, _dumps(value), None
    return checked_encode(value, where, _codec.encode)


def checked_encode(value: Any, where: str | tuple[Any, ...], encode: Callable[[Any, bool], T]) -> T:
    """Refuse what cannot live in a Share, then ``encode(value, is_plain(value))``; every
    failure is an ``EncodeError`` naming ``where`` (the Share is left unchanged). Shared by
    the local store and the Redis backend."""
    if type(where) is tuple:
        where = path_str(where)
    plain = _codec.is_plain(value)
    if not plain and not _codec.simple_object(value):  # a simple object is never refused
        _codec.check_storable(value, where)  # type: ignore[arg-type]
    try:
        return encode(value, plain)
    except cucumber.SerializationError as e:
        raise EncodeError(
            f"Share cannot store {where}: a {type(value).__module__}.{type(value).__qualname__} "
            f"could not be serialized by suitkaise.cucumber ({e}). Store plain data or an "
            "object cucumber can carry; the Share was left unchanged."
        ) from e
    except (TypeError, ValueError, RecursionError) as e:
        raise EncodeError(
            f"Share cannot store {where}: {type(e).__name__}: {e}. The Share was left unchanged."
        ) from e


def checked_delta(ops: list[tuple[Any, ...]], name: str) -> tuple[int, bytes]:
    """Encode a delta payload of stored ``name`` (``_delta.py``). A value that cannot be
    stored is named by the user's path (``share.lst.append(<arg 0>)``, ``share.d['k']``),
    not by its place inside the payload."""
    for where, value in _delta_values(ops, name):
        if not _codec.is_plain(value) and not _codec.simple_object(value):
            _codec.check_storable(value, where)
    try:
        return _delta.encode(ops)
    except Exception:
        for where, value in _delta_values(ops, name):  # which value: encode each on its own
            checked_encode(value, where, lambda v, _p: cucumber.serialize(v))
        raise


def _delta_values(ops: list[tuple[Any, ...]], name: str) -> Iterator[tuple[str, Any]]:
    for op in ops:
        where = path_str((name, *op[1]))
        if op[0] == "s":
            yield where, op[2]
        elif op[0] == "c":
            for i, arg in enumerate(op[3]):
                yield f"{where}.{op[2]}(<arg {i}>)", arg


class Txn:
    """The staged changes of one operation - or, for ``with share.lock():`` (``block``), of
    every operation of the block, committed together when it ends."""

    __slots__ = ("block", "changes", "classes", "cleared", "delta1", "deltas", "owned", "scratch", "snapshot",
                 "st", "work")

    def __init__(
        self,
        st: Store | None,
        *,
        scratch: bool = False,
        snapshot: dict[str, tuple[int, bytes]] | None = None,
        block: bool = False,
    ) -> None:
        self.st = st
        self.scratch = scratch or st is None
        self.snapshot = snapshot
        self.block = block
        self.changes: dict[str, tuple[int, bytes] | None] = {}
        self.work: dict[str, Any] = {}
        self.owned: dict[str, bool] = {}
        self.classes: dict[str, bytes] = {}
        self.cleared = False
        self.deltas: dict[str, list[_delta.Op]] = {}  # name -> operations (see delta())
        self.delta1: tuple[str, int, bytes] | None = None  # the one delta commit to make

    # -- reading ------------------------------------------------------------------------------

    def _lookup(self, name: str) -> tuple[int, int] | None:
        """(kind, version) of the stored entry, or None (``K_CHAIN`` for a delta chain:
        the kind of what ``_data`` returns)."""
        if self.st is not None:
            e = self.st.entry(name)
            if e is None:
                return None
            return (_codec.K_CHAIN if e[2] & K_DELTA else e[2]), e[3]
        assert self.snapshot is not None
        s = self.snapshot.get(name)
        return None if s is None else (s[0], 0)

    def _data(self, name: str) -> bytes:
        """The stored bytes of ``name``, self-contained (a delta chain as ``K_CHAIN``)."""
        if self.st is not None:
            v = self.st.value(name)
            if v is None:
                raise KeyError(name)
            return v[1]
        assert self.snapshot is not None
        return self.snapshot[name][1]

    def _load_class(self, key: str) -> bytes:
        if key in self.classes:
            return self.classes[key]
        try:
            return self._data(key)
        except KeyError:
            raise RuntimeError(f"Share store is missing the class entry {key!r}") from None

    def has(self, name: str) -> bool:
        if name in self.changes:
            return self.changes[name] is not None
        if self.cleared:
            return False
        return self._lookup(name) is not None

    def names(self) -> list[str]:
        if self.st is not None:
            base = [] if self.cleared else list(self.st.names())
        else:
            assert self.snapshot is not None
            base = [] if self.cleared else list(self.snapshot)
        out = [n for n in base if not n.startswith("\x00") and self.changes.get(n, 1) is not None]
        out += [n for n, c in self.changes.items() if c is not None and n not in base and not n.startswith("\x00")]
        return out

    def entries(self) -> dict[str, tuple[int, bytes]]:
        """Every entry (user attributes and class-table entries) as name -> (kind, data),
        staged changes included: the bytes a new store can be filled with."""
        if self.st is not None:
            base = self.st.items()
        else:
            assert self.snapshot is not None
            base = dict(self.snapshot)
        if self.cleared:
            base = {k: v for k, v in base.items() if k.startswith("\x00")}
        for name, ch in self.changes.items():
            if ch is None:
                base.pop(name, None)
            else:
                base[name] = ch
        return base

    def get(self, name: str) -> Any:
        """The current value of ``name`` (a working object: may be the cached instance)."""
        work = self.work
        if name in work and self.owned.get(name, True):
            return work[name]
        changes = self.changes
        if name in changes:
            # staged earlier in this transaction (a lock block): decode a private copy,
            # never hand out the caller's own object that ``put`` staged
            ch = changes[name]
            if ch is None:
                raise KeyError(name)
            obj = _codec.decode(ch[0], ch[1], self._load_class)
            work[name] = obj
            self.owned[name] = True
            return obj
        st = self.st
        if st is not None and not self.scratch and not self.cleared and name not in self.changes:
            # the common case, in one lookup: a live store, nothing staged for this name
            e = st.entry(name)
            if e is None:
                raise KeyError(name)
            c = st.cache.get(name)
            if c is not None and c[0] == e[3]:
                obj = c[1]
            elif e[2] & K_DELTA:
                obj = self._catch_up(name, c)
                st.cache[name] = [e[3], obj, -1, False]
            else:
                obj = _codec.decode(e[2], st.raw(e), self._load_class)
                st.cache[name] = [e[3], obj, -1, _codec.is_immutable(obj)]
            work[name] = obj
            return obj
        if not self.has(name):
            raise KeyError(name)
        found = self._lookup(name)
        assert found is not None
        obj = _codec.decode(found[0], self._data(name), self._load_class)
        work[name] = obj
        return obj

    def _catch_up(self, name: str, c: list[Any] | None) -> Any:
        """The value of ``name`` whose head is a delta: the cached copy with the deltas
        written since its version applied, or the base decoded and every delta applied."""
        st = self.st
        assert st is not None
        got = st.chain(name, c[0] if c is not None and not c[3] else -1)
        assert got is not None
        base, deltas = got
        if base is None:
            assert c is not None
            try:
                _delta.apply_all(c[1], deltas)
                return c[1]
            except Exception:
                st.cache.pop(name, None)  # half-applied: never reuse it; decode afresh
                got = st.chain(name, -1)
                assert got is not None
                base, deltas = got
        assert base is not None
        obj = _codec.decode(base[0], base[1], self._load_class)
        _delta.apply_all(obj, deltas)
        return obj

    def mark_checked(self, name: str) -> None:
        """Record that the cached copy of ``name`` is current at the committed sequence."""
        st = self.st
        if st is not None and not self.scratch and not self.block:
            c = st.cache.get(name)
            if c is not None:
                c[2] = st.epoch()

    # -- staging ------------------------------------------------------------------------------

    def put(self, name: str, enc: tuple[int, bytes, tuple[str, bytes] | None], obj: Any, owned: bool) -> None:
        kind, data, cls = enc
        if cls is not None and not self.has(cls[0]):
            self.changes[cls[0]] = (_codec.K_CUCUMBER, cls[1])
            self.classes[cls[0]] = cls[1]
        self.changes[name] = (kind, data)
        self.work[name] = obj
        self.owned[name] = owned

    def set(self, name: str, obj: Any, *, where: str | tuple[Any, ...]) -> None:
        """Stage ``obj`` (a working object this transaction owns) as the new value."""
        self.put(name, encode_for(obj, where), obj, True)

    def touch(self, name: str, obj: Any, *, force: bool, where: str | tuple[Any, ...]) -> None:
        """Write back a working object that may have been mutated in place."""
        enc = encode_for(obj, where)
        if not force and name not in self.changes:
            st = self.st
            if st is not None:
                e = st.entry(name)
                if e is not None and e[2] == enc[0] and e[1] == len(enc[1]) and st.raw(e) == enc[1]:
                    return  # unchanged: no commit, no version bump
            else:
                found = self._lookup(name)
                if found is not None and found[0] == enc[0] and self._data(name) == enc[1]:
                    return
        self.put(name, enc, obj, True)

    def delta(self, name: str, root: Any, ops: list[_delta.Op], *, where: str | tuple[Any, ...]) -> None:
        """Record that ``ops`` (``_delta``) were applied to ``root``, the working object of
        ``name``: committed as a delta record when it is the operation's only change, else
        (lock blocks, several names, a full value staged) as the full value."""
        if self.block or self.scratch or name in self.changes or self.cleared:
            self.touch(name, root, force=True, where=where)
            return
        self.deltas.setdefault(name, []).extend(ops)
        self.work[name] = root
        self.owned[name] = True

    def fits_delta(self, name: str, size: int) -> bool:
        """Whether a delta of about ``size`` bytes of values would be committed as a delta
        record of ``name`` (not the full value: the log is full)."""
        st = self.st
        return st is None or self.scratch or st.delta_fits(name, size + 64)  # + the ops around them

    def seal(self) -> None:
        """Encode the staged deltas (before anything is committed: a value that cannot be
        stored raises here, and the caller rolls back): one delta record when it is the only
        change and the log has room, else full values."""
        deltas = self.deltas
        if not deltas:
            return
        st = self.st
        if len(deltas) == 1 and not self.changes and st is not None:
            ((name, ops),) = deltas.items()
            if _delta.is_plain(ops):  # plain data is always storable
                kind, payload = _codec.K_PLAIN, _dumps(ops)
            else:
                kind, payload = checked_delta(ops, name)
            if st.delta_fits(name, len(payload)):
                self.delta1 = (name, kind, payload)
                return
        for name in list(deltas):
            self.touch(name, self.work[name], force=True, where=(name,))
        self.deltas = {}

    def commit(self) -> int | None:
        """Commit what ``seal`` left staged (call under the lock); the new sequence number,
        or None when there was nothing to commit."""
        st = self.st
        assert st is not None
        if self.delta1 is not None:
            name, kind, payload = self.delta1
            seq = st.commit_delta(name, kind, payload)
            assert seq is not None  # delta_fits said so, under the same lock
            self.changes[name] = (kind, payload)  # for committed(): the cache keeps the object
            return seq
        if self.changes or self.cleared:
            return st.commit(self.changes, clear=self.cleared)
        return None

    def delete(self, name: str) -> None:
        self.changes[name] = None
        self.work.pop(name, None)

    def clear(self) -> None:
        self.cleared = True
        self.changes = {k: v for k, v in self.changes.items() if k.startswith("\x00")}
        self.work.clear()

    # -- ending -----------------------------------------------------------------------------

    def untouched(self, name: str) -> None:
        """The operation is raising before it changed ``name``'s object (a built-in method
        that checks before it mutates): ``rollback`` keeps the cached copy, and with it the
        identity of the elements reached in it (iterated rows, ``_alias``)."""
        if not self.block:
            self.work.pop(name, None)

    def rollback(self) -> None:
        """The operation raised: forget cached objects it may have mutated."""
        st = self.st
        if st is None or self.scratch:
            return
        for name, obj in self.work.items():
            if not _codec.is_immutable(obj):
                st.cache.pop(name, None)

    def restore(self) -> None:
        """One operation of a lock block raised: undo what it may have done to working
        objects (staged bytes are the truth; unstaged objects are decoded again)."""
        st = self.st
        for name, obj in list(self.work.items()):
            if _codec.is_immutable(obj):
                continue
            if st is not None and not self.scratch:
                st.cache.pop(name, None)
            ch = self.changes.get(name)
            if ch is not None:
                self.work[name] = _codec.decode(ch[0], ch[1], self._load_class)
                self.owned[name] = True
            else:
                del self.work[name]

    def committed(self, seq: int) -> None:
        st = self.st
        if st is None or self.scratch:
            return
        epoch = st.epoch()
        if self.cleared:
            st.cache.clear()
        for name, ch in self.changes.items():
            if ch is None:
                st.cache.pop(name, None)
            elif self.owned.get(name):
                obj = self.work[name]
                st.cache[name] = [seq, obj, epoch, _codec.is_immutable(obj)]
            else:
                st.cache.pop(name, None)
