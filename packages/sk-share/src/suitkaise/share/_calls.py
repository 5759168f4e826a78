"""A method call on a stored user object, the lean way: one locked step, no transaction.

::

    share.o.m(a) ─► _ops.call ─► call(st, path, "m", args, kwargs)
      outside the lock: nothing but this function's entry
      under it (thread lock, then the robust mutex; ``Store.aug``'s protocol):
        1. the cached copy of o: current when no commit started since it was checked (one
           8-byte epoch load), else the other processes' deltas replayed on it (the head
           record found from this process's last commit when one other commit came after
           it: ``Store.next_head``, two processes calling in turn)
        2. the plan of (type(target), "m"), made once per class and method (``_plan``):
           the class's Share options and what ``m`` can touch (``_methods``)
        3. snapshot of those attributes, m(a), the attributes it changed (``_methods``)
        4. one delta record (``Store.commit_delta``: one record, one 8-byte table store)
      MISS (nothing was done): the general path (``_ops.call``) takes the call

Every guarantee is the general path's, by the same means: the commit is ``commit1``'s
(one aligned 8-byte store made last: a writer killed at any instant leaves the old or the
new state); a call that raises, or whose change cannot be encoded, commits nothing and drops
the cached copy it may have half-changed; a delta that does not fit the log, or a call
during which this thread committed something else (a nested Share operation), writes the
whole object. What the lean path does not take (builtin containers, objects whose methods
``_methods`` cannot read, a blocked or aliased name resolved to something else, a
``with share.lock()`` block, the fcntl lock, a stopped store) goes to the general path
before anything runs.

The plan is kept per (class, method name) for the life of the process: a class's
``_shared_meta``, ``_share_blocked_methods`` and ``_share_method_aliases`` are read the
first time one of its methods is called through a Share (each is a failed class lookup,
~130 ns, on every call otherwise). The method itself is checked on every call: a plan
built for another function (the method was replaced on the class, or an instance attribute
shadows it) is not used.
"""

from __future__ import annotations

import marshal
import types
from typing import Any

from . import _alias, _codec, _delta, _methods
from ._store import (
    EPOCH_Q,
    K_DELTA,
    MISS,
    R_KIND,
    R_LEN,
    R_PREV,
    R_VER,
    REC,
    RSIZE,
    S_FLAGS,
    SEL_OFF,
    SLOT_OFF,
    Store,
)
from ._txn import Txn, checked_delta, encode_for, path_str, resolve

__all__ = ["call", "method_result"]

_ATOMS = _codec.ATOMS
_ATOM_TYPES = frozenset(_ATOMS)
_MISSING = _methods.MISSING
_K_PLAIN = _codec.K_PLAIN
_NOT_LIVE = 3  # FLAG_STOPPED | FLAG_CLOSED
_MethodType = types.MethodType
_dumps = marshal.dumps
_loads = marshal.loads
_PLAIN_DELTA = K_DELTA | _codec.K_PLAIN  # the kind of a delta record of marshal bytes
_CACHE_MAX = 4096
_DICTS = _alias.DICTS
# The delta log of a method call's object may pass half its full value by this many bytes
# before the value is written whole again (``Store.commit_delta``; other updates: 1 KiB).
# Small objects are where it counts: a call on one writes an ~80-byte delta, so every ~13th
# call rewrote the whole value with 1 KiB, and each rewrite also makes every other process
# calling on it decode the value instead of replaying one delta. 4 KiB: every ~50th call
# (instructions per call, 2 processes in turn: -5%; one process: -5%); a process reading
# the object from scratch replays at most that much more.
_SLACK = 4096

READER, WRITER, SCAN = 1, 2, 3
# (class, name) -> (kind, method to run, function it must be, attribute names, called
# methods, declared writes (WRITER) or the code the scan read (SCAN: _methods.Deps)), or
# None: the general path
Plan = tuple[int, str, Any, frozenset[str], frozenset[str], tuple[Any, ...]]
_PLANS: dict[tuple[type, str], Plan | None] = {}
_NO_NAMES: frozenset[str] = frozenset()
_UNPLANNED: Any = object()


def _plan(cls: type, name: str) -> Plan | None:
    """What calling ``name`` on an instance of ``cls`` needs, or None when the general
    path must run it (the same decisions as ``_ops.call``, taken once)."""
    key = (cls, name)
    if key in _PLANS:
        return _PLANS[key]
    got: Plan | None = None
    blocked = getattr(cls, "_share_blocked_methods", None)
    if (
        _codec.simple_class(cls)
        and cls not in _delta.DETERMINISTIC
        and not (isinstance(blocked, dict) and name in blocked)
    ):
        aliases = getattr(cls, "_share_method_aliases", None)
        real = aliases.get(name, name) if isinstance(aliases, dict) else name
        meta = getattr(cls, "_shared_meta", None)
        entry = (meta.get("methods") or {}).get(name) if isinstance(meta, dict) else None
        if isinstance(entry, dict):
            writes = entry.get("writes")
            if "writes" not in entry:
                got = (READER, real, None, _NO_NAMES, _NO_NAMES, ())
            elif isinstance(writes, list | tuple) and all(type(a) is str for a in writes):
                got = (WRITER, real, None, _NO_NAMES, _NO_NAMES, tuple(writes))
        else:
            found = _methods.uses_of(cls, real)
            fn = _methods.function(cls, real)
            if found is not None and fn is not None:
                uses, deps = found
                if uses is not None:
                    got = (SCAN, real, fn, uses[0], uses[1], deps)
    if len(_PLANS) >= _CACHE_MAX:
        _PLANS.clear()
    _PLANS[key] = got
    return got


def call(
    st: Store, path: tuple[Any, ...], name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
    on_dict: Any = None,
) -> Any:
    """``<object at path>.name(*args, **kwargs)`` as one locked update of the stored
    object; its result (a private copy), or ``MISS`` when nothing was done and the general
    path must take the call. ``on_dict`` (``_ops.call``): the result when the object is a
    dict."""
    fl = st.fast_lock  # the robust mutex's C functions (None: the fcntl lock, or closed)
    if fl is None:
        return MISS
    tl = st.tlock
    try:
        tl.acquire()
    except BaseException:  # a signal's, raised as acquire returned: undo its count
        if tl._is_owned():  # type: ignore[attr-defined]  # (see Store.acquire)
            tl.release()
        raise
    try:
        if st.depth or st.txn is not None or st.closed:
            return MISS  # nested in an operation or a `with share.lock()` block
        try:
            rc = fl[0](fl[2])  # trylock
            if rc and st.plock.after_trylock(rc):  # type: ignore[union-attr]
                st.recovered += 1
        except BaseException:  # a signal's, raised as a lock call returned: it may hold the mutex
            st.plock.drop_if_mine()
            raise
        st.depth = 1
        try:
            return _locked(st, path, name, args, kwargs, on_dict)
        finally:
            st.depth = 0
            st._s = None
            rc = fl[1](fl[2])  # unlock
            if rc:
                st.plock.after_unlock(rc)  # type: ignore[union-attr]
    finally:
        tl.release()


def _locked(
    st: Store, path: tuple[Any, ...], name: str, args: tuple[Any, ...], kwargs: dict[str, Any], on_dict: Any,
) -> Any:
    q = st.q
    hdr = st.hdr
    if q[(SLOT_OFF[hdr[SEL_OFF]] >> 3) + S_FLAGS] & _NOT_LIVE:
        return MISS  # stopped or closed: the general path says which
    root_name = path[0]
    cache = st.cache
    c = cache.get(root_name)
    epoch = q[EPOCH_Q]
    if c is None or c[2] != epoch:  # a commit started since the copy was checked
        got = st.next_head(root_name) or st.head_record(root_name)
        if got is None:
            return MISS  # no such name: the general path says so
        if c is None or got[1][R_VER] != c[0]:  # its deltas, or the new value, decoded
            c = _catch_up(st, root_name, c, got)
            if c is None:
                return MISS
    if c[3]:
        return MISS  # an immutable value (a str's methods, ...)
    root = c[1]
    if len(path) > 1:
        path = _alias.pin(root, path)  # (before the try: a Detached row changed nothing)
    try:
        target = resolve(root, path[1:]) if len(path) > 1 else root
        cls = type(target)
        if on_dict is not None and cls in _DICTS:
            c[2] = epoch
            return on_dict(target)
        plan = _PLANS.get((cls, name), _UNPLANNED)
        if plan is _UNPLANNED:
            plan = _plan(cls, name)
        if plan is None:
            c[2] = epoch  # (caught up above: the general path uses it as it is)
            return MISS
        kind, real, fn, names, methods, extra = plan  # extra: writes (WRITER), deps (SCAN)
        before = olds = None
        if kind == SCAN:
            state = object.__getattribute__(target, "__dict__")
            if type(state) is not dict or real in state or not methods.isdisjoint(state):
                c[2] = epoch
                return MISS
            m = getattr(target, real)
            if type(m) is not _MethodType or m.__func__ is not fn or (
                (len(extra) > 1 or fn.__code__ is not extra[0][1]) and not _methods.current(cls, extra)
            ):
                # the method, a method it calls, or the code of one was replaced: plan it again
                _PLANS.pop((cls, name), None)
                c[2] = epoch
                return MISS
            olds = [state.get(a, _MISSING) for a in names]
            if not _ATOM_TYPES.issuperset(map(type, olds)):  # (_MISSING: not an atom)
                olds = None
                before = _methods.snapshot(target, names)
                if before is None:
                    c[2] = epoch
                    return MISS
        else:
            m = getattr(target, real)
        result = m(*args, **kwargs)
        if kind == READER:
            c[2] = epoch
            return result if type(result) in _ATOMS else method_result(target, path, name, args, result)
        steps = path[1:]
        if q[EPOCH_Q] != epoch:
            ops = None  # this thread committed during the call (a nested operation)
        elif olds is not None:  # every attribute the method names held an atom (or none)
            ops = _atom_changes(state, names, olds, steps)
        elif before is not None:
            ops = _methods.changes(target, before, steps, lambda n: st.delta_fits(root_name, n + 64, slack=_SLACK))
        else:
            state = object.__getattribute__(target, "__dict__")
            ops = [
                ("s", (*steps, ("a", a)), state[a]) if a in state else ("d", (*steps, ("a", a)))
                for a in extra
            ]
        if ops is None:  # (as the general path: compared with the stored bytes first)
            _write_whole(st, root_name, root, path, force=False)
        elif ops:
            if (olds is not None and len(path) == 1) or _delta.is_plain(ops):  # (atoms, names)
                kd, payload = _K_PLAIN, _dumps(ops)
            else:
                kd, payload = checked_delta(ops, root_name)
            seq = st.commit_delta(root_name, kd, payload, slack=_SLACK)
            if seq is None:  # the log is full: the whole value starts a new one
                _write_whole(st, root_name, root, path, force=True)
            else:
                c[0] = seq
                c[2] = q[EPOCH_Q]
        else:
            c[2] = epoch  # nothing changed: no commit
        return result if type(result) in _ATOMS else method_result(target, path, name, args, result)
    except BaseException:
        cache.pop(root_name, None)  # the call may have half-changed the cached copy
        raise


def method_result(target: Any, path: tuple[Any, ...], name: str, args: tuple[Any, ...], result: Any) -> Any:
    """What the caller gets for a result that is not an atom: a live resource of this
    process (a lock, file, socket, connection, logger) as it is, as a method of a local
    object returns it (a copy would be another lock, file or connection); a ``Ref`` when it
    is the object or one of its attributes (``_alias``); else a private copy."""
    if _codec.is_resource(result):
        return result
    ref = _alias.ref_to(target, path, name, args, result)
    return ref if ref is not None else _codec.copy_out(result)


def _atom_changes(
    state: dict[str, Any], names: frozenset[str], olds: list[Any], steps: tuple[Any, ...],
) -> list[Any] | None:
    """``_methods.changes`` when every attribute in ``names`` held an atom (or was absent)
    before the call (``olds``, in the order of ``names``): compared by identity, an atom is
    written as it is (no encoding, nothing it could share). None: a mutable value appeared,
    which only the whole object says."""
    ops: list[Any] = []
    for a, old in zip(names, olds, strict=True):
        new = state.get(a, _MISSING)
        if new is old:
            continue
        if new is _MISSING:
            ops.append(("d", (*steps, ("a", a))))
        elif type(new) in _ATOMS:
            ops.append(("s", (*steps, ("a", a)), new))
        else:
            return None
    return ops


def _catch_up(st: Store, name: str, c: list[Any] | None, head: tuple[int, tuple[int, ...]]) -> list[Any] | None:
    """The cached entry ``c`` of ``name`` brought to the stored version (``head``: its head
    record and header): the deltas written since its version replayed on it (what two
    processes calling in turn need every time: ``Store.chain`` and ``Txn._catch_up``
    without a transaction), else as ``Txn.get`` does it (the value decoded)."""
    if c is not None and not c[3]:
        try:
            if _replay(st.mm, c, head):
                return c
        except Exception:
            st.cache.pop(name, None)  # half-applied: never reused; decoded below
    txn = Txn(st)
    try:
        obj = txn.get(name)
    except KeyError:
        return None
    got = st.cache.get(name)
    return got if got is not None and got[1] is obj else None


def _replay(mm: Any, c: list[Any], head: tuple[int, tuple[int, ...]]) -> bool:
    """Apply to the copy in ``c`` the deltas between its version and ``head``; False when
    its version is not in the head's chain (a full value was written since)."""
    rec, h = head
    have = c[0]
    if h[R_KIND] == _PLAIN_DELTA and REC.unpack_from(mm, h[R_PREV])[R_VER] == have:
        # one delta of marshal bytes (the other process's last call, when two call in turn)
        _delta.apply(c[1], _loads(mm[rec + RSIZE : rec + RSIZE + h[R_LEN]]))
    else:
        deltas: list[tuple[int, bytes]] = []
        while True:
            if not h[R_KIND] & K_DELTA:
                return False
            deltas.append((h[R_KIND] & ~K_DELTA, mm[rec + RSIZE : rec + RSIZE + h[R_LEN]]))
            rec = h[R_PREV]
            h = REC.unpack_from(mm, rec)
            if h[R_VER] == have:
                break
        deltas.reverse()
        _delta.apply_all(c[1], deltas)
    c[0] = head[1][R_VER]
    c[2] = -1
    return True


def _write_whole(st: Store, name: str, root: Any, path: tuple[Any, ...], *, force: bool) -> None:
    """Commit the whole value of ``name`` (the log is full, or only the object says what
    the call did; ``force`` False: not when its bytes are the stored ones).

    The log-full case (every ~13th call on a small object) is one ``commit1``, the commit
    ``Txn.commit`` makes for one name, without building a transaction (~11 us instead of
    ~15): the name is stored, and so is its class when it travels by value (else the
    transaction stores the class too). The rest, rarer, is the transaction's."""
    where = path_str(path[:1])
    if force:
        kind, data, cls = encode_for(root, where)
        if cls is None or cls[0] in st.names():
            seq = st.commit1(name, kind, data)
            if seq is not None:
                st.cache[name] = [seq, root, st.q[EPOCH_Q], _codec.is_immutable(root)]  # (Txn.committed)
                return
    txn = Txn(st)
    txn.work[name] = root
    txn.owned[name] = True
    txn.touch(name, root, force=force, where=where)
    seq = txn.commit()
    if seq is not None:
        txn.committed(seq)
