"""How values are turned into bytes for the shared store, and back.

Four encodings, chosen per value (the first that applies):

``K_PLAIN``   exact built-in plain data (``int``, ``float``, ``bool``, ``str``, ``bytes``,
              ``complex``, ``None`` and ``list``/``tuple``/``dict``/``set``/``frozenset`` of
              those), encoded with ``marshal``. This is an *inspection-checked fast path*
              for data that has no identity or class to carry; it is ~10x faster than a full
              serializer and is what makes ``share.counter += 1`` cheap.
``K_OBJECT``  an instance of an ordinary user class whose ``__dict__`` is plain data and whose
              class does not customise pickling: stored as (class key, marshal(state)). The
              class itself travels once, through cucumber, in a class-table entry of the store.
``K_CUCUMBER`` everything else, through ``suitkaise.cucumber.serialize``.

``K_I64`` an exact ``int`` that fits in 64 bits (before ``K_PLAIN``): a fixed-size cell
              that ``share.x += 1`` updates in place (``Store.update_i64``).

(``K_CHAIN`` is not chosen for a value: it is a stored value plus the deltas written on
top of it, as a snapshot carries them; ``_delta.py``.)

Everything that is not exact plain data goes through cucumber: this module never pickles.
"""

from __future__ import annotations

import hashlib
import io
import marshal
import os
import stat
import sys
import types
from typing import Any

from suitkaise import cucumber

K_PLAIN = 1
K_OBJECT = 2
K_CUCUMBER = 3
K_CHAIN = 4  # a stored base and its deltas, self-contained (snapshots; see _delta.py)
K_I64 = 5  # an int in [-2**63, 2**63): 8 bytes, little-endian (updated in place by `+=`)
KINDS = frozenset({K_PLAIN, K_OBJECT, K_CUCUMBER, K_CHAIN, K_I64})
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1

CLASS_PREFIX = "\x00cls:"  # index names of class-table entries (never valid user names)

_ATOMS: frozenset[type] = frozenset({int, float, bool, str, bytes, complex, type(None)})
ATOMS = _ATOMS
_CONTAINERS: frozenset[type] = frozenset({list, tuple, dict, set, frozenset})
# Containers kept in marshal form. Not sets: since 3.11 marshal sorts a set's elements by
# their marshalled bytes (reproducible .pyc files), ~15x slower than pickle for a set of
# 2 000 ints; sets go through cucumber (pickle) instead.
_MARSHAL_CONTAINERS: frozenset[type] = frozenset({list, tuple, dict})
_IMMUTABLE_ATOMS: frozenset[type] = frozenset({int, float, bool, str, bytes, complex, type(None), range})

_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))

_MAX_DEPTH = 64

# per-process class tables: class -> (key, cucumber bytes) and key -> class
_CLASS_KEYS: dict[type, tuple[str, bytes]] = {}
_CLASSES: dict[str, type] = {}


def is_plain(value: Any) -> bool:
    """True if ``value`` is exact built-in plain data that marshal encodes faithfully."""
    t = type(value)
    if t in _ATOMS:
        return True
    if t not in _MARSHAL_CONTAINERS:
        return False
    return _plain_walk(value, 0, set())


def _plain_walk(value: Any, depth: int, seen: set[int]) -> bool:
    t = type(value)
    if t in _ATOMS:
        return True
    if t not in _MARSHAL_CONTAINERS or depth > _MAX_DEPTH:
        return False
    i = id(value)
    if i in seen:  # shared reference or cycle: marshal keeps both
        return True
    seen.add(i)
    # The common case, a flat container of atoms, in C loops (no Python call per element).
    if t is dict:
        if set(map(type, value)) <= _ATOMS and set(map(type, value.values())) <= _ATOMS:
            return True
    elif set(map(type, value)) <= _ATOMS:
        return True
    if t is dict:
        for k, v in value.items():
            if not (type(k) in _ATOMS or _plain_walk(k, depth + 1, seen)):
                return False
            if not (type(v) in _ATOMS or _plain_walk(v, depth + 1, seen)):
                return False
        return True
    for v in value:
        if not (type(v) in _ATOMS or _plain_walk(v, depth + 1, seen)):
            return False
    return True


def is_immutable(value: Any) -> bool:
    """True if ``value`` can be handed to the user as-is (nobody can mutate it)."""
    t = type(value)
    if t in _IMMUTABLE_ATOMS:
        return True
    if t is tuple or t is frozenset:
        return all(is_immutable(v) for v in value)
    imm = _OTHER_IMMUTABLE.get(t)
    if imm is None:
        imm = _OTHER_IMMUTABLE[t] = _is_numpy_scalar_type(t)
    return imm


# type -> whether its values are immutable, for types outside _IMMUTABLE_ATOMS: numpy's
# scalars (np.float64(1.5), np.int32, np.bool_, np.str_...) are; learnt once per type
_OTHER_IMMUTABLE: dict[type, bool] = {}


def _is_numpy_scalar_type(t: type) -> bool:
    """A numpy scalar type whose values cannot change (not ``np.void``: a structured scalar
    may be a view whose fields can be assigned). numpy is never imported here: a value of
    its types exists only once the program imported it."""
    np = sys.modules.get("numpy")
    if np is None:
        return False
    try:
        return issubclass(t, np.generic) and not issubclass(t, (np.void, np.object_))
    except Exception:  # pragma: no cover - a numpy without these names
        return False


_SIMPLE_CLASS: dict[type, bool] = {}


def instance_dict(value: Any) -> dict[str, Any] | None:
    """``value``'s own ``__dict__`` when it is a plain dict (no ``__getattribute__`` of its
    class runs), else None."""
    try:
        d = object.__getattribute__(value, "__dict__")
    except AttributeError:
        return None
    return d if type(d) is dict else None


def _simple_object(value: Any) -> bool:
    """An instance whose state is exactly its plain ``__dict__`` (default pickling)."""
    cls = type(value)
    ok = _SIMPLE_CLASS.get(cls)
    if ok is None:
        ok = _SIMPLE_CLASS[cls] = _simple_class(cls)
    if not ok:
        return False
    d = instance_dict(value)
    if d is None:
        return False
    return all(type(k) is str for k in d) and _plain_walk(d, 0, set())


simple_object = _simple_object


def _simple_class(cls: type) -> bool:
    """The class-level half of ``_simple_object`` (computed once per class). A class
    that ``check_storable`` could refuse is never simple, so simple objects skip it."""
    mod = getattr(cls, "__module__", "") or ""
    if mod == "builtins" or issubclass(cls, type | types.ModuleType):
        return False
    if mod.startswith(("multiprocessing", "_multiprocessing")) or getattr(cls, "_share_disallowed", None):
        return False
    if issubclass(cls, io.IOBase):  # may wrap an OS pipe: check_storable must see it
        return False
    if (
        cls.__reduce_ex__ is not object.__reduce_ex__
        or cls.__reduce__ is not object.__reduce__
        or getattr(cls, "__getstate__", object.__getstate__) is not object.__getstate__
        or hasattr(cls, "__setstate__")
        or hasattr(cls, "__serialize__")
        or hasattr(cls, "__deserialize__")
        or hasattr(cls, "__getnewargs__")
        or hasattr(cls, "__getnewargs_ex__")
        or "__slots__" in cls.__dict__
        or any("__slots__" in c.__dict__ for c in cls.__mro__[1:-1])
    ):
        return False
    return True


def simple_class(cls: type) -> bool:
    """Whether instances of ``cls`` with a plain ``__dict__`` are simple objects (cached)."""
    ok = _SIMPLE_CLASS.get(cls)
    if ok is None:
        ok = _SIMPLE_CLASS[cls] = _simple_class(cls)
    return ok


def class_key(cls: type) -> tuple[str, bytes]:
    """Stable key and cucumber bytes for ``cls`` (computed once per process)."""
    got = _CLASS_KEYS.get(cls)
    if got is None:
        data = cucumber.serialize(cls)
        key = f"{CLASS_PREFIX}{cls.__module__}.{cls.__qualname__}:{hashlib.sha1(data).hexdigest()[:16]}"
        got = (key, data)
        _CLASS_KEYS[cls] = got
        _CLASSES.setdefault(key, cls)
    return got


def encode(value: Any, plain: bool | None = None) -> tuple[int, bytes, tuple[str, bytes] | None]:
    """Encode ``value``; returns (kind, data, class entry the store must hold or None).

    ``plain``: ``is_plain(value)`` when the caller already knows it (one walk, not two).
    Raises ``cucumber.SerializationError`` when cucumber cannot carry the value.
    """
    if type(value) is int and I64_MIN <= value <= I64_MAX:
        return K_I64, value.to_bytes(8, "little", signed=True), None
    if is_plain(value) if plain is None else plain:
        return K_PLAIN, marshal.dumps(value), None
    if _simple_object(value):
        key, cdata = class_key(type(value))
        kb = key.encode()
        state = marshal.dumps(object.__getattribute__(value, "__dict__"))
        return K_OBJECT, len(kb).to_bytes(2, "little") + kb + state, (key, cdata)
    return K_CUCUMBER, cucumber.serialize(value), None


def decode(kind: int, data: bytes, load_class: Any) -> Any:
    """Rebuild a value. ``load_class(key)`` returns the cucumber bytes of a class entry."""
    if kind == K_PLAIN:
        return marshal.loads(data)
    if kind == K_I64:
        return int.from_bytes(data, "little", signed=True)
    if kind == K_OBJECT:
        n = int.from_bytes(data[:2], "little")
        key = data[2 : 2 + n].decode()
        cls: Any = _CLASSES.get(key)
        if cls is None:
            cls = cucumber.deserialize(load_class(key))
            _CLASSES[key] = cls
        obj = cls.__new__(cls)
        object.__getattribute__(obj, "__dict__").update(marshal.loads(data[2 + n :]))
        return obj
    if kind == K_CUCUMBER:
        return cucumber.deserialize(data)
    if kind == K_CHAIN:
        from ._delta import materialize  # _delta builds on this module

        return materialize(data, load_class)
    raise ValueError(f"corrupt Share entry (unknown kind {kind})")


# What stands for something of this process (a lock, a thread, a file, a socket, a
# connection, a logger): a copy is another one (cucumber rebuilds a new lock, reopens the
# file, reconnects). Names as cucumber registers its handlers, matched along the MRO. A
# stored socket or connection is a cucumber Reconnector in each process's copy, which
# becomes (lazily) that process's live one.
_RESOURCES = frozenset({
    "suitkaise.cucumber.reconnectors.Reconnector",
    "_thread.lock", "_thread.RLock", "threading._RLock", "threading.Semaphore",
    "threading.Condition", "threading.Event", "threading.Barrier", "threading.Thread",
    "_thread._local", "_threading_local.local", "queue.Queue", "_queue.SimpleQueue",
    "queue._PySimpleQueue", "_io.FileIO", "_io.BufferedReader", "_io.BufferedWriter",
    "_io.BufferedRandom", "_io.BufferedRWPair", "_io.TextIOWrapper", "tempfile._TemporaryFileWrapper",
    "tempfile.SpooledTemporaryFile", "mmap.mmap", "socket.socket", "selectors.BaseSelector",
    "logging.Logger", "logging.LoggerAdapter", "logging.Handler", "subprocess.Popen",
    "sqlite3.Connection", "sqlite3.Cursor", "multiprocessing.connection.Connection",
    "concurrent.futures._base.Executor", "concurrent.futures._base.Future",
    "asyncio.events.AbstractEventLoop", "psycopg2.extensions.connection", "psycopg.Connection",
    "pymysql.connections.Connection", "mysql.connector.connection.MySQLConnection",
    "mysql.connector.connection_cext.CMySQLConnection", "redis.client.Redis",
    "_duckdb.DuckDBPyConnection", "duckdb.DuckDBPyConnection", "sqlalchemy.engine.base.Engine",
    "pymongo.synchronous.mongo_client.MongoClient", "pymongo.mongo_client.MongoClient",
})
_resource_types: dict[type, bool] = {}


def is_resource(value: Any) -> bool:
    """Whether ``value`` is a live resource of this process, which a copy would not be."""
    t = type(value)
    found = _resource_types.get(t)
    if found is None:
        if len(_resource_types) > 4096:  # (classes made on the fly)
            _resource_types.clear()
        names = (f"{k.__module__}.{k.__qualname__}" for k in t.__mro__)
        found = _resource_types[t] = any(name in _RESOURCES for name in names)
    return found


def copy_out(value: Any) -> Any:
    """A private copy of ``value`` for the caller (immutables are returned as they are)."""
    if is_immutable(value):
        return value
    if type(value) in _VIEWS:
        value = list(value)
    if is_plain(value):
        return marshal.loads(marshal.dumps(value))
    return cucumber.deserialize(cucumber.serialize(value))


# -- refusing what cannot live in a Share --------------------------------------------------

MP_MESSAGE = (
    "Share does not support multiprocessing.* objects. Use Share primitives or plain data instead."
)
PIPE_MESSAGE = (
    "Share does not support os.pipe() handles: {where} is a {kind} on fd {fd}, one end of an "
    "OS pipe, whose data lives in the kernel and cannot be shared through a Share. Pass the "
    "pipe to the other process directly (suitkaise.pipe, or multiprocessing), or read the "
    "data and store that. The Share was left unchanged."
)


def _pipe_fd(value: io.IOBase) -> int | None:
    """The descriptor of a file object that is one end of an OS pipe (else None)."""
    try:
        if value.closed:
            return None
        fd = value.fileno()
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, AttributeError, TypeError, io.UnsupportedOperation):
        return None


def check_storable(value: Any, where: str) -> None:
    """Refuse multiprocessing objects and classes that opt out (``_share_disallowed``)."""
    _check(value, where, 0, set())


def _check(value: Any, where: str, depth: int, seen: set[int]) -> None:
    t = type(value)
    if t in _ATOMS or depth > 16:
        return
    i = id(value)
    if i in seen:
        return
    seen.add(i)
    mod = getattr(t, "__module__", "") or ""
    if mod.startswith(("multiprocessing", "_multiprocessing")):
        raise ValueError(f"{MP_MESSAGE} (got {mod}.{t.__qualname__} at {where})")
    disallowed = getattr(t, "_share_disallowed", None)
    if isinstance(disallowed, str) and disallowed:
        raise TypeError(f"{disallowed} (at {where})")
    if isinstance(value, io.IOBase):
        fd = _pipe_fd(value)
        if fd is not None:
            raise ValueError(PIPE_MESSAGE.format(where=where, kind=f"{mod}.{t.__qualname__}", fd=fd))
        return
    if t is dict:  # atoms skipped inline: no call and no path string per element
        for k, v in value.items():
            if type(v) not in _ATOMS:
                _check(v, f"{where}[{k!r}]", depth + 1, seen)
    elif t in _CONTAINERS:
        for n, v in enumerate(value):
            if type(v) not in _ATOMS:
                _check(v, f"{where}[{n}]", depth + 1, seen)
    elif not isinstance(value, type | types.ModuleType | types.FunctionType):
        d = instance_dict(value)
        if d is not None:
            for k, v in list(d.items()):
                _check(v, f"{where}.{k}", depth + 1, seen)
