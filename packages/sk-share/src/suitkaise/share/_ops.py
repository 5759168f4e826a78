"""The operations every Share handle runs on its store (attribute access, writes, calls).

::

    Share / Proxy syntax ──► run(share, op, rop) ──► Store.acquire ─► op(Txn) ─► commit
                                 │  stopped: run_stopped (snapshot; writes queued + warning)
                                 │  remote:  rop travels to the owner's server (_remote.py)
                                 └─ inside `with share.lock()`: op joins the block's Txn

An operation is a function ``op(txn) -> result``; ``rop`` describes the same operation as
data for a handle that reaches the store over TCP. ``share`` is a ``Share`` handle: these
functions read its per-handle state (``_sk_*`` entries of its ``__dict__``) only.
"""

from __future__ import annotations

import marshal
import operator
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from . import _alias, _calls, _codec, _delta, _methods, _net, _pending, _store
from ._aug import BINARY_OPS
from ._base import STOPPED_WARNING, Path, ShareError, user_stacklevel
from ._base import oga as _oga
from ._lifecycle import owner_alive
from ._remote import remote_for
from ._store import EPOCH_Q, FLAG_CLOSED, FLAG_STOPPED, MISS, S_FLAGS, Store, StoreGone
from ._txn import Txn, path_str, resolve

Op = Callable[[Txn], Any]

_ATOMS = _codec.ATOMS
_K_PLAIN = _codec.K_PLAIN
_NOPE = object()
_RETRY: Any = object()  # run_stopped: the Share is being started again; run the op there
_CHANGING_LIMIT = 30.0  # seconds an op waits for its owner to finish starting/stopping the store
_BLIND = frozenset({"set", "del", "write", "aug"})  # operations whose caller takes no result
# built-in methods that return None whatever the data (or raise): a call of one needs no
# copy of the data to answer its caller (_stopped_on_stale)
_NONE_RESULT: dict[type, frozenset[str]] = {
    list: frozenset({"append", "extend", "insert", "remove", "clear", "reverse", "sort"}),
    dict: frozenset({"update", "clear"}),
    set: frozenset({"add", "discard", "remove", "update", "clear", "difference_update",
                    "intersection_update", "symmetric_difference_update"}),
}
# stopped stores of this process whose Share has been started again since (a newer store
# was seen at the path) and that it has not mapped yet: their data is older than the
# owner's snapshot (run, _stopped_on_stale)
_STALE: weakref.WeakSet[Store] = weakref.WeakSet()
# built-in methods that raise before they change anything (a missing element or key, an
# index out of range, an unhashable key): their error leaves the cached copy as it was
_CHECKS_FIRST: dict[type, frozenset[str]] = {
    list: frozenset({"remove", "index", "pop", "insert", "count"}),
    dict: frozenset({"pop", "popitem", "get", "setdefault"}),
    set: frozenset({"remove", "pop"}),
}
_MISS = MISS
_pin = _alias.pin
_Detached = _alias.Detached
_loads = marshal.loads
_dumps = marshal.dumps

_LIST_READERS = frozenset({"copy", "count", "index"})
_DICT_READERS = frozenset({"copy", "get", "items", "keys", "values"})
_SET_READERS = frozenset(
    {"copy", "difference", "intersection", "issubset", "issuperset", "isdisjoint",
     "symmetric_difference", "union"}
)
_BUILTIN_READERS: dict[type, frozenset[str]] = {
    list: _LIST_READERS, dict: _DICT_READERS, set: _SET_READERS, frozenset: _SET_READERS,
    tuple: frozenset({"count", "index"}), str: frozenset(dir(str)), bytes: frozenset(dir(bytes)),
}


def _method_kind(target: Any, name: str) -> str:
    """'reader' (never writes), 'writer' (always writes) or 'unknown' (compare bytes)."""
    t = type(target)
    readers = _BUILTIN_READERS.get(t)
    if readers is not None:
        return "reader" if name in readers else "writer"
    meta = getattr(t, "_shared_meta", None)
    if isinstance(meta, dict):
        entry = (meta.get("methods") or {}).get(name)
        if isinstance(entry, dict):
            return "writer" if "writes" in entry else "reader"
    return "unknown"


def check_blocked(target: Any, name: str) -> None:
    """``_share_blocked_methods = {name: message}`` on the class: refuse ``name``."""
    blocked = getattr(type(target), "_share_blocked_methods", None)
    if isinstance(blocked, dict) and name in blocked:
        raise TypeError(blocked[name])


def fail(share: Any, msg: str) -> ShareError:
    """Record that this handle found the Share unusable (``has_error``) and build the error."""
    _oga(share, "__dict__")["_sk_error"] = msg
    return ShareError(msg)


def attached(share: Any) -> Store | None:
    """The live store for this process, None when stopped, ShareError when gone."""
    d = _oga(share, "__dict__")
    st: Store | None = d["_sk_store"]
    if d["_sk_owner"]:
        return st
    if st is not None and not st.closed:
        return st
    if d["_sk_remote"] is not None:
        return None
    net = d["_sk_net"]
    host = d["_sk_host"]
    if (host is not None and host != _net.host_id()) or (net is not None and _net.forced_tcp()):
        if net is None:
            raise ShareError(
                f"Share {d['_sk_name']!r} lives in the shared memory of another machine (or "
                "another /dev/shm) and its owner is not serving it over the network: call "
                "share.serve() in the process that created it before sending it here."
            )
        d["_sk_remote"] = remote_for(d["_sk_name"], net)
        return None
    try:
        st = _store.get_store(d["_sk_name"])
    except StoreGone as e:
        if owner_alive(d["_sk_owner_pid"]):
            d["_sk_store"] = None
            d["_sk_gone"] = str(e)
            return None
        raise fail(share,
            f"Share {d['_sk_name']!r} is gone: its owner process {d['_sk_owner_pid']} "
            "exited and the shared memory was released."
        ) from None
    d["_sk_store"] = st
    return st


def run(share: Any, op: Op, rop: tuple[Any, ...] | None = None) -> Any:
    """Run ``op`` as one atomic transaction (or on a snapshot while stopped).

    ``rop`` describes the same operation as data, for a handle that reaches the
    store through its owner's server (``_Remote``)."""
    d = _oga(share, "__dict__")
    rb = d["_sk_redis"]
    if rb is not None:  # the state lives in Redis (_redis.py)
        return rb.run(share, op, rop)
    # (bounded in time, not in rounds: an owner that stops and starts the Share every few
    # milliseconds can send a slow process round this loop many times before one op lands)
    deadline = time.monotonic() + _CHANGING_LIMIT
    while time.monotonic() < deadline:
        st = d["_sk_store"]
        if st is None or st.closed:
            st = attached(share)
            if st is None:
                rem = d["_sk_remote"]
                if rem is not None:
                    return rem.run(share, rop)
                result = run_stopped(share, op, rop, None)
                if result is _RETRY:
                    time.sleep(0.001)
                    continue
                return result
        try:
            st.acquire()
        except StoreGone:
            continue
        try:
            flags = st.slot()[S_FLAGS]
            if flags & FLAG_CLOSED:
                raise fail(
                    share,
                    f"Share {d['_sk_name']!r} was closed by its owner process "
                    f"{d['_sk_owner_pid']} (it stopped or exited).",
                )
            if not flags & FLAG_STOPPED:
                if d["_sk_queue"]:
                    replay(share)
                txn = st.txn
                if txn is not None:
                    # inside `with share.lock():` (this thread holds it): stage into
                    # the block's transaction, committed when the block ends
                    try:
                        return op(txn)
                    except _Detached:
                        raise  # (found before anything changed: the copies are intact)
                    except BaseException:
                        txn.restore()
                        raise
                txn = Txn(st)
                try:
                    result = op(txn)
                    txn.seal()
                except _Detached:
                    raise
                except BaseException:
                    txn.rollback()
                    raise
                seq = txn.commit()
                if seq is not None:
                    txn.committed(seq)
                return result
        finally:
            depth = st.depth - 1
            try:
                st.release()
            except BaseException:
                st.settle(depth)
                raise
        # the store says "stopped": is there a restarted one at the same name?
        gen = st.file_generation()
        if gen is not None and gen != st.generation:
            # the owner started the Share again: map the new store. The old mapping goes only
            # once the new one is mapped: an owner that stops the new store first must not
            # leave this process with no copy of the data (its `d[k] += 1` needs one), so
            # it stays, marked stale (_stopped_on_stale)
            try:
                new = Store.attach(d["_sk_name"])
            except StoreGone:
                _STALE.add(st)
                continue
            _store.register_store(new)
            st.close()
            d["_sk_store"] = new
            continue
        if gen is not None:  # still at its path: its owner is starting or stopping it
            _wait_while_changing(st)
            continue
        result = run_stopped(share, op, rop, st)
        if result is not _RETRY:
            return result
    raise fail(share, f"Share {d['_sk_name']!r}: the store kept changing under this process")


def _wait_while_changing(st: Store, limit: float = _CHANGING_LIMIT) -> None:
    """Poll (1 ms) until the owner has finished starting or stopping ``st`` (its flags say
    running, or its file left the path), for up to ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.001)
        if not st.flags() & FLAG_STOPPED or st.file_generation() != st.generation:
            return


def run_stopped(share: Any, op: Op, rop: tuple[Any, ...] | None, st: Store | None) -> Any:
    """``op`` on the data as it was when the owner stopped the Share; a write is queued for
    ``start()``: in this handle (the owner) or in the pending file (``_pending.py``)."""
    d = _oga(share, "__dict__")
    if st is not None and st in _STALE:
        return _stopped_on_stale(share, op, rop, st)
    if st is not None:
        with st.locked():
            txn = Txn(st, scratch=True)
            result = op(txn)
    elif d["_sk_owner"]:
        txn = Txn(None, snapshot=d["_sk_snapshot"])
        result = op(txn)
    else:
        txn = Txn(None, snapshot={})
        try:
            result = op(txn)
        except (KeyError, AttributeError):
            if rop is not None and rop[0] in _BLIND and owner_alive(d["_sk_owner_pid"]):
                # (no data here, but a write with no result needs none: the owner's
                # start() applies it to the data)
                if not _pending.append(d["_sk_name"], rop):
                    return _RETRY
                warnings.warn(STOPPED_WARNING, RuntimeWarning, stacklevel=user_stacklevel())
                return None
            raise ShareError(
                f"Share {d['_sk_name']!r} is stopped and this process holds no copy of "
                "its data; call share.start() in the process that created it "
                f"({d.get('_sk_gone')})."
            ) from None
    if txn.changes or txn.cleared:
        if d["_sk_owner"] or rop is None:
            d["_sk_queue"].append(op)
        elif not owner_alive(d["_sk_owner_pid"]):
            raise fail(
                share,
                f"Share {d['_sk_name']!r} is stopped and its owner process {d['_sk_owner_pid']} "
                "exited: this write cannot take effect.",
            )
        elif not _pending.append(d["_sk_name"], rop):  # the owner is starting it again
            return _RETRY
        warnings.warn(STOPPED_WARNING, RuntimeWarning, stacklevel=user_stacklevel())
    return result


def _stopped_on_stale(share: Any, op: Op, rop: tuple[Any, ...] | None, st: Store) -> Any:
    """``run_stopped`` in a process whose only copy of the data is ``st``, a store the
    owner has stopped, started and stopped again since: its data is older than the owner's
    snapshot, so none of it may reach the caller. What needs no data still works, as in a
    process with no copy at all: a write with no result (``d[k] += 1``, ``d[k] = v``,
    ``lst.append(v)``) is queued for ``start()``, which applies it to the current data;
    a read whose answer holds no data (the Proxy of a container) is answered."""
    d = _oga(share, "__dict__")
    name = d["_sk_name"]
    if not owner_alive(d["_sk_owner_pid"]):
        raise fail(share, f"Share {name!r} is gone: its owner process {d['_sk_owner_pid']} "
                          "exited and the shared memory was released.")
    kind = rop[0] if rop is not None else None
    if rop is not None and (kind in _BLIND or (kind == "call" and _none_result(st, rop))):
        if not _pending.append(name, rop):
            return _RETRY
        warnings.warn(STOPPED_WARNING, RuntimeWarning, stacklevel=user_stacklevel())
        return None
    if kind in ("read", "view"):
        from ._proxy import Proxy, _Method

        try:
            with st.locked():
                result = op(Txn(st, scratch=True))
        except Exception:
            result = None  # (what the old data says, an error included, is no answer)
        if kind == "read":
            free = result is not None and not result[1]  # (a container: the caller's Proxy)
        else:
            free = type(result) in (Proxy, _Method)
        if free:
            return result  # a Proxy is made of the path alone; its own uses come back here
    raise ShareError(
        f"Share {name!r} is stopped and this process holds no current copy of its data; "
        "call share.start() in the process that created it."
    )


def _none_result(st: Store, rop: tuple[Any, ...]) -> bool:
    """``rop`` calls a built-in method that returns None (``_NONE_RESULT``) on the object
    ``st`` holds at its path."""
    _, path, name = rop[:3]
    if name is None:
        return False
    try:
        with st.locked():
            target = resolve(Txn(st, scratch=True).get(path[0]), path[1:])
    except Exception:
        return False
    return name in _NONE_RESULT.get(type(target), ())


def replay(share: Any) -> None:
    """Apply the writes queued while the Share was stopped, in order."""
    queue: list[Op] = _oga(share, "__dict__")["_sk_queue"]
    _oga(share, "__dict__")["_sk_queue"] = []
    for op in queue:
        try:
            run(share, op)
        except Exception as e:
            warnings.warn(f"A write queued while the Share was stopped failed: {e!r}", UserWarning, stacklevel=2)


def peek(st: Store, path: Path, fn: Callable[[Any], Any]) -> Any:
    """Read-only ``fn`` applied to the object at ``path`` in this process's cached copy
    when no commit started since it was checked (no process lock); MISS otherwise."""
    with st.tlock:
        if not st.closed:
            c = st.cache.get(path[0])
            if c is not None and c[2] == st.eq[0]:
                root = c[1]
                return fn(resolve(root, _pin(root, path)[1:]))
    return MISS


def view(share: Any, path: Path, fn: Callable[[Any], Any]) -> Any:
    """Apply read-only ``fn`` to the object at ``path`` (fast path when nothing changed)."""
    st: Store | None = _oga(share, "__dict__")["_sk_store"]
    if st is not None:
        with st.tlock:  # (peek, inlined: every proxy read passes here)
            if not st.closed:
                c = st.cache.get(path[0])
                if c is not None and c[2] == st.eq[0]:
                    root = c[1]
                    return fn(resolve(root, _pin(root, path)[1:]))

    def op(txn: Txn) -> Any:
        try:
            root = txn.get(path[0])
        except KeyError:
            raise AttributeError(f"Share has no attribute {path[0]!r}") from None
        txn.mark_checked(path[0])
        return fn(resolve(root, _pin(root, path)[1:]))

    return run(share, op, ("view", path, fn))


def read(share: Any, name: str) -> tuple[Any, bool]:
    """Locked read of ``name``: (value, immutable?) (the cached copy was not known to be
    current; a mutable value is wrapped in a Proxy by the caller)."""

    def op(txn: Txn) -> tuple[Any, bool]:
        try:
            obj = txn.get(name)
        except KeyError:
            raise AttributeError(f"Share has no attribute {name!r}") from None
        txn.mark_checked(name)
        imm = _codec.is_immutable(obj)
        return obj, imm

    return run(share, op, ("read", name))


def write(share: Any, path: Path, action: str, value: Any) -> None:
    """``action`` ("set" or "del") at a nested ``path``: one locked read-modify-write of
    the root object."""
    where = path_str(path)
    if action == "set":
        if not _codec.is_plain(value):
            _codec.check_storable(value, where)

    def op(txn: Txn) -> None:
        try:
            root = txn.get(path[0])
        except KeyError:
            raise AttributeError(f"Share has no attribute {path[0]!r}") from None
        p = _pin(root, path)
        parent = resolve(root, p[1:-1])
        kind, key = p[-1]
        plain = kind != "a" or _delta.attr_ok(parent, key)
        if action == "set":
            if kind == "a":
                setattr(parent, key, value)
            else:
                parent[key] = value
            ops: list[_delta.Op] = [("s", p[1:], value)]
        else:
            if kind == "a":
                delattr(parent, key)
            else:
                del parent[key]
            ops = [("d", p[1:])]
        if plain:
            txn.delta(path[0], root, ops, where=path_str(path[:1]))
        else:  # a property or __setattr__ of its own: only the full value says what it did
            txn.touch(path[0], root, force=True, where=path_str(path[:1]))

    run(share, op, ("write", path, action, value))


def call(
    share: Any, path: Path, name: str | None, args: tuple[Any, ...], kwargs: dict[str, Any],
    on_dict: Callable[[Any], Any] | None = None,
) -> Any:
    """Call method ``name`` of the object at ``path`` (or the object itself when ``name``
    is None) on the current copy, under the lock; write it back if it changed. Returns a
    private copy of the real result, an ``_alias.Ref`` when the result is the object or
    one of its elements (the caller hands out a live Proxy), or a live resource of this
    process as it is (``_calls.method_result``). ``args`` are plain values (proxies
    unwrapped). ``on_dict``: when the object is a dict, ``on_dict(it)`` is the result
    instead (read-only; ``get``/``values``/``items`` with live elements), in the same
    locked step.

    A method of a user object takes the lean path first (``_calls.py``: no transaction,
    the class's options resolved once); whatever it does not take runs here."""
    if name is not None:
        d = _oga(share, "__dict__")
        st = d["_sk_store"]
        if st is not None and not d["_sk_queue"] and d["_sk_redis"] is None:
            got = _calls.call(st, path, name, args, kwargs, on_dict)
            if got is not _MISS:
                return got
    where = path_str(path[:1])

    def op(txn: Txn) -> Any:
        try:
            root = txn.get(path[0])
        except KeyError:
            raise AttributeError(f"Share has no attribute {path[0]!r}") from None
        p = _pin(root, path)
        target = resolve(root, p[1:])
        if on_dict is not None and type(target) in _alias.DICTS:
            txn.mark_checked(path[0])
            return on_dict(target)
        if name is None:
            result = target(*args, **kwargs)
            kind = "unknown"
        else:
            check_blocked(target, name)
            aliases = getattr(type(target), "_share_method_aliases", None)
            real = aliases.get(name, name) if isinstance(aliases, dict) else name
            kind = _method_kind(target, name)
            before = _before_call(target, real) if kind == "unknown" else None
            try:
                result = getattr(target, real)(*args, **kwargs)
            except Exception:
                if real in _CHECKS_FIRST.get(type(target), ()):
                    txn.untouched(path[0])  # (`share.rows.remove(gone)`: the rows stay live)
                raise
            if before is not None:
                ops = _methods.changes(target, before, p[1:], lambda n: txn.fits_delta(path[0], n))
            elif kind != "reader":
                ops = _delta_of_call(target, p[1:], name, real, args, kwargs)
            else:
                ops = None
            if ops is not None:
                if ops:
                    txn.delta(path[0], root, ops, where=where)
                else:
                    txn.mark_checked(path[0])
                return _calls.method_result(target, p, name, args, result)
        if kind != "reader":
            txn.touch(path[0], root, force=(kind == "writer"), where=where)
        else:
            txn.mark_checked(path[0])
        if name is not None:
            return _calls.method_result(target, p, name, args, result)
        return _codec.copy_out(result)

    return run(share, op, ("call", path, name, args, kwargs))


def _before_call(target: Any, real: str) -> dict[str, Any] | None:
    """For an undeclared method of a simple object: what ``_methods.changes`` compares
    after the call (None: the whole object is compared, as for any other callable)."""
    cls = type(target)
    if cls in _BUILTIN_READERS or _delta.DETERMINISTIC.get(cls) is not None:
        return None
    uses = _methods.attributes_of(cls, real)
    if uses is None:
        return None
    names, methods = uses
    state = getattr(target, "__dict__", None)
    if type(state) is not dict or real in state or not methods.isdisjoint(state):
        return None  # an instance attribute of a method's name runs instead of the method
    return _methods.snapshot(target, names)


def _delta_of_call(
    target: Any, steps: Path, name: str, real: str, args: tuple[Any, ...], kwargs: dict[str, Any],
) -> list[_delta.Op] | None:
    """The delta of a method call that just ran on ``target`` (at ``steps`` below the root),
    or None when only the full value can say what changed. ``name`` is the method as
    called, ``real`` the one that ran (``_share_method_aliases``).

    * a deterministic built-in method of a list/dict/set (``append``, ``update``, ...):
      replayed as is (not with an iterator argument: it is consumed by now);
    * a method of a simple user object (plain ``__dict__``) whose class declares, in
      ``_shared_meta = {"methods": {name: {"writes": [attribute, ...]}}}``, the attributes
      it changes: those attributes' new values. The declaration is a contract: a method
      that changes an attribute it does not declare loses that change for the others.
    """
    if _delta.replayable(target, real, kwargs):
        if any(isinstance(a, Iterator) for a in args):
            return None
        return [("c", steps, real, args, {})]
    meta = getattr(type(target), "_shared_meta", None)
    if not isinstance(meta, dict) or not _codec.simple_class(type(target)):
        return None
    entry = (meta.get("methods") or {}).get(name)
    writes = entry.get("writes") if isinstance(entry, dict) else None
    if not isinstance(writes, list | tuple) or not all(type(a) is str for a in writes):
        return None
    state = object.__getattribute__(target, "__dict__")
    return [
        ("s", (*steps, ("a", a)), state[a]) if a in state else ("d", (*steps, ("a", a)))
        for a in writes
    ]


_BINARY: dict[str, Callable[[Any, Any], Any]] = {name: getattr(operator, name) for name in BINARY_OPS.values()}


def chain(value: Any, steps: tuple[tuple[str, Any], ...]) -> Any:
    """``share.x = share.x * 2 + 1``: binary operators applied in turn, as one update
    (``steps``: ``(operator name, operand)`` pairs; a name travels to a served Share)."""
    for name, other in steps:
        value = _BINARY[name](value, other)
    return value


def _aug_plain(st: Store, name: str, iop: Callable[[Any, Any], Any], value: Any) -> bool:
    """``share.x op= v`` on another plain immutable value (float, str, a big int): one
    record and one table store (``Store.commit1``); False for the general path."""
    e = st.entry(name)
    if e is None or e[2] != _K_PLAIN or st.slot()[S_FLAGS] & (FLAG_STOPPED | FLAG_CLOSED):
        return False
    c = st.cache.get(name)
    if c is not None and c[0] == e[3]:
        if not c[3]:
            return False
        cur = c[1]
    else:
        cur = _loads(st.raw(e))
        if type(cur) not in _ATOMS:
            return False
    new = iop(cur, value)
    if type(new) not in _ATOMS:
        return False
    seq = st.commit1(name, _K_PLAIN, _dumps(new))
    if seq is None:
        return False
    st.cache[name] = [seq, new, st.q[EPOCH_Q], True]
    return True


NO_DEFAULT: Any = type("NoDefault", (), {"__repr__": lambda self: "<no default>"})()


def aug_apply(share: Any, path: Path, iop: Callable[[Any, Any], Any], value: Any, default: Any = NO_DEFAULT) -> None:
    """``<value at path> = iop(<value at path>, value)`` as one locked update (``op=`` and
    read-modify-reassign). With ``default`` the value at ``path`` (``c[key]``) is read as
    ``c.get(key, default)`` (``share.d[k] = share.d.get(k, 0) + 1``)."""
    d = _oga(share, "__dict__")
    st = d["_sk_store"]
    if (len(path) == 1 and default is NO_DEFAULT and st is not None and not d["_sk_queue"]
            and st.aug(path[0], iop, value, _aug_plain)):
        # `share.x op= v` without a transaction object: an int that fits in 64 bits is
        # updated in place (Store.update_i64); another plain immutable value gets one
        # record and one 8-byte table store (_aug_plain: Store.commit1)
        return
    _aug_general(share, path, iop, value, default)


def _aug_general(share: Any, path: Path, iop: Callable[[Any, Any], Any], value: Any, default: Any) -> None:
    """``aug_apply`` as a transaction (any value, any path). A function of its own: the
    closure's cells would cost the fast path ~0.1 us."""

    def op(txn: Txn) -> None:
        try:
            root = txn.get(path[0])
        except KeyError:
            raise AttributeError(f"Share has no attribute {path[0]!r}") from None
        if len(path) == 1:
            new = iop(root, value)
            txn.set(path[0], new, where=path)
            return None
        p = _pin(root, path)
        parent = resolve(root, p[1:-1])
        kind, key = p[-1]
        if kind == "a":
            cur = getattr(parent, key)
        else:
            cur = parent[key] if default is NO_DEFAULT else parent.get(key, default)
        new = iop(cur, value)
        if kind == "a":
            plain = _delta.attr_ok(parent, key)
            setattr(parent, key, new)
        else:
            plain = True
            parent[key] = new
        if plain:
            txn.delta(path[0], root, [("s", p[1:], new)], where=path_str(path[:1]))
        else:  # a property or __setattr__ of its own: only the full value says what it did
            txn.touch(path[0], root, force=True, where=path_str(path[:1]))
        return None

    if default is NO_DEFAULT:
        run(share, op, ("aug", path, iop.__name__, value))
    else:
        run(share, op, ("aug", path, iop.__name__, value, default))
