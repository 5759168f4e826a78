"""``Share``: attributes that every process sees and updates as one state.

::

    owner process                         any process holding the Share
    Share()  ── creates ──►  /dev/shm/sk-share-*  ◄── attaches (by name) ── Share (client)
       │                     (see _store.py)                                  ▲
       └── pickled / cucumber-serialized: name + host identity (+ server address
           and key once share.serve() was called) travel ──────────────────────┘
    share.serve()  ── server thread (_net.py) ◄── TCP ── Share (remote mode, other host):
                      runs the same operations,          operations travel as data (rop)
                      sent as data, via a local handle

    share.x            read: cached value if nothing was committed since (no syscall),
                       else lock + decode.  Immutable values are returned as they are;
                       containers and objects come back as a Proxy bound to a path.
    share.x = v        encode v (outside the lock; bad input never changes anything),
                       then one atomic commit.
    share.x += v       detected from the caller's bytecode (_aug.py): one locked
                       read-modify-write (fetch-and-op); the store-back is a no-op.
    share.o.f(a)       lock; run f on the current copy; write it back (if it changed); unlock.
                       The real return value comes back.  If f raises, nothing is written.
    share.o.l.append(x), share.d['k'] += 1, share.o.n = 3
                       path-addressed: the same locked read-modify-write on the root object.
"""

from __future__ import annotations

import contextlib
import marshal
import operator
import os
import secrets
import socket
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from suitkaise import cucumber

from . import _codec, _net, _store
from ._aug import _KIND as _READ_KIND
from ._aug import AUG, METHOD, read_kind
from ._store import EPOCH_Q, FLAG_CLOSED, FLAG_STOPPED, S_FLAGS, Store, StoreGone
from ._txn import Txn, encode_for, path_str

__all__ = ["Share", "ShareError"]

_oga = object.__getattribute__

STOPPED_WARNING = (
    "Share is stopped. Changes are queued but will not take effect until share.start() is called."
)

Path = tuple[Any, ...]  # (root name, ("a", attr) | ("i", key), ...)
Op = Callable[[Txn], Any]


class ShareError(RuntimeError):
    """The Share cannot be used from this process any more (closed, or its owner is gone)."""


_RESERVED = frozenset(
    {"start", "stop", "exit", "clear", "reconnect_all", "is_running", "has_error", "serve"}
)

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

_tl = threading.local()
_HANDLES: weakref.WeakSet[Share] = weakref.WeakSet()


def _take_own() -> tuple[Any, ...] | None:
    """The pending read-your-own-write result of this thread (consumed by any operation)."""
    own = _tl.__dict__.pop("own", None)
    return own


_path_str = path_str


def _resolve(obj: Any, steps: Path) -> Any:
    for kind, key in steps:
        obj = getattr(obj, key) if kind == "a" else obj[key]
    return obj


def _unwrap(value: Any) -> Any:
    """A Proxy used as a value stands for a copy of what it points at."""
    if type(value) is Proxy:
        return value._sk_snapshot()
    return value


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


def _check_blocked(target: Any, name: str) -> None:
    blocked = getattr(type(target), "_share_blocked_methods", None)
    if isinstance(blocked, dict) and name in blocked:
        raise TypeError(blocked[name])


def _owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tracker(action: str, name: str) -> None:
    """Register/unregister the store file with multiprocessing's resource tracker."""
    if _store.SHM_DIR != "/dev/shm":
        return
    try:
        from multiprocessing import resource_tracker

        getattr(resource_tracker, action)("/" + name, "shared_memory")
    except Exception:  # the tracker is a safety net only
        pass


def _owner_cleanup(name: str, pid: int) -> None:
    """Owner exit / garbage collection: mark the store closed, unlink it, untrack it."""
    if os.getpid() != pid:
        return
    _stop_server(name)
    st = _store._REGISTRY.get(name)
    if st is not None and not st.closed:
        try:
            with st.tlock:
                if not st.closed and st.depth == 0 and st.try_lock_briefly():
                    st.depth = 1
                    try:
                        st.commit({}, flags=st.slot()[S_FLAGS] | FLAG_STOPPED | FLAG_CLOSED)
                    finally:
                        st.depth = 0
                        with contextlib.suppress(OSError):
                            st.unlock_process()
        except Exception:
            pass
    _unlink(name)
    if st is not None:
        _store.forget_store(st)
        st.close()


def _unlink(name: str) -> None:
    try:
        os.unlink(_store.path_of(name))
    except FileNotFoundError:
        return
    _tracker("unregister", name)


class Share:
    """A namespace whose attributes are shared by every process that holds it.

    Create it in one process (the *owner*), assign attributes, and pass it to other
    processes (``multiprocessing.Process`` args, ``Skprocess`` attributes, ``Pool`` items):
    they receive a handle bound to the same state. See the package README for semantics.
    """

    def __init__(self, *, auto_start: bool = True) -> None:
        d = self.__dict__
        d["_sk_name"] = _store.new_name()
        d["_sk_owner"] = True
        d["_sk_owner_pid"] = os.getpid()
        d["_sk_store"] = None
        d["_sk_snapshot"] = {}
        d["_sk_seq"] = 0
        d["_sk_queue"] = []
        d["_sk_error"] = None
        d["_sk_finalizer"] = None
        d["_sk_host"] = _net.host_id()
        d["_sk_net"] = None  # (address, key, max_frame, tls pin or None) once served
        d["_sk_serve_args"] = None
        d["_sk_remote"] = None
        _HANDLES.add(self)
        if auto_start:
            self.start()

    @classmethod
    def _sk_client(
        cls, name: str, owner_pid: int, host: str | None = None, net: tuple[Any, ...] | None = None,
    ) -> Share:
        self = cls.__new__(cls)
        d = self.__dict__
        d["_sk_name"] = name
        d["_sk_owner"] = False
        d["_sk_owner_pid"] = owner_pid
        d["_sk_store"] = None
        d["_sk_snapshot"] = {}
        d["_sk_seq"] = 0
        d["_sk_queue"] = []
        d["_sk_error"] = None
        d["_sk_finalizer"] = None
        d["_sk_host"] = host
        d["_sk_net"] = net
        d["_sk_serve_args"] = None
        d["_sk_remote"] = None
        _HANDLES.add(self)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # the name, the owner's host identity and - once served - the server address and
        # its key travel; the receiver attaches lazily on first use. With a key inside,
        # the serialized Share is a secret: whoever holds it can use the Share.
        d = _oga(self, "__dict__")
        return (_rebuild_share, (d["_sk_name"], d["_sk_owner_pid"], d["_sk_host"], d["_sk_net"]))

    # -- network access ------------------------------------------------------------------

    def _sk_transport(self) -> str:
        """How this handle reaches the store: "shm", "tcp" or "none" (stopped / not attached)."""
        d = _oga(self, "__dict__")
        try:
            st = Share._sk_attached(self)
        except ShareError:
            return "none"
        if st is not None:
            return "shm"
        return "tcp" if d["_sk_remote"] is not None else "none"

    def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, advertise: str | None = None,
        max_frame: int = _net.DEFAULT_MAX_FRAME, max_connections: int = 64,
        tls: _net.TLSConfig | None = None,
    ) -> tuple[str, int]:
        """Serve this Share over TCP so processes that cannot map its shared memory (other
        hosts, containers, cluster workers) can use it; returns the address they connect to.

        Call it in the owner, before sending the Share. It listens on loopback unless you
        pass another ``host`` (``"0.0.0.0"`` for every interface; ``advertise`` is the name
        clients use then, default the host name). Clients authenticate with a random key
        that travels inside the serialized Share: treat a serialized Share as a secret.
        Calling it again returns the current address. ``stop()`` closes the server and all
        connections; ``start()`` serves again at the same address.
        ``tls``: encrypt with TLS (an ``ssl.SSLContext``, a PEM file with certificate and
        key, or ``(certfile, keyfile)``); clients check the certificate's pin, which travels
        in the serialized Share (see docs/guides/cluster.md).
        """
        d = self.__dict__
        if not d["_sk_owner"]:
            raise ShareError(
                "share.serve() must be called in the process that created the Share "
                f"(owner pid {d['_sk_owner_pid']}, this is pid {os.getpid()})."
            )
        srv = _SERVERS.get(d["_sk_name"])
        if srv is not None:
            return d["_sk_net"][0]
        if d["_sk_store"] is None:
            raise ShareError("The Share is stopped: call share.start() before share.serve().")
        if not isinstance(max_frame, int) or max_frame < 4096:
            raise ValueError(f"max_frame must be an int >= 4096 bytes, got {max_frame!r}")
        key = d["_sk_net"][1] if d["_sk_net"] is not None else _new_key()
        try:
            srv = _net.Server(
                d["_sk_name"], host, port, key, _Dispatcher(d["_sk_name"], d["_sk_owner_pid"]),
                max_frame=max_frame, max_connections=max_connections, tls=tls,
            )
        except OSError as e:
            raise ShareError(f"share.serve() could not listen on {host}:{port}: {e}") from e
        _SERVERS[d["_sk_name"]] = srv
        bound_host, bound_port = srv.address
        if advertise is None:
            advertise = socket.gethostname() if host in ("", "0.0.0.0", "::") else bound_host
        addr = (advertise, bound_port)
        d["_sk_net"] = (addr, key, max_frame, srv.tls_pin)
        d["_sk_serve_args"] = (host, bound_port, advertise, max_frame, max_connections, tls)
        return addr

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Create the shared store (owner) and apply the writes queued while stopped."""
        d = self.__dict__
        if not d["_sk_owner"]:
            if self.is_running:
                return
            raise ShareError(
                "Only the process that created this Share can start it "
                f"(owner pid {d['_sk_owner_pid']}, this is pid {os.getpid()})."
            )
        if d["_sk_store"] is not None:
            return
        st = Store.create(d["_sk_name"], seq=d["_sk_seq"] + 1)
        _tracker("register", d["_sk_name"])
        _store.register_store(st)
        snap: dict[str, tuple[int, bytes]] = d["_sk_snapshot"]
        if snap:
            with st.locked():
                st.commit(dict(snap))
        d["_sk_store"] = st
        d["_sk_snapshot"] = {}
        if d["_sk_finalizer"] is None:
            d["_sk_finalizer"] = weakref.finalize(self, _owner_cleanup, d["_sk_name"], os.getpid())
        self._sk_replay()
        args = d["_sk_serve_args"]
        if args is not None and d["_sk_name"] not in _SERVERS:
            host, port, advertise, max_frame, max_conns, tls = args
            self.serve(host, port, advertise=advertise, max_frame=max_frame, max_connections=max_conns,
                       tls=tls)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop sharing and free the shared memory. Returns False if the store stayed busy
        for ``timeout`` seconds (nothing is changed then). In a process that did not create
        the Share this only detaches the process (or, if the owner died, frees the orphan)."""
        d = self.__dict__
        if not d["_sk_owner"]:
            # the attachment is shared by every handle of this process: only drop ours
            d["_sk_store"] = None
            if d["_sk_remote"] is not None:
                d["_sk_remote"] = None
                return True
            if not _owner_alive(d["_sk_owner_pid"]):
                _unlink(d["_sk_name"])
                st = _store._REGISTRY.get(d["_sk_name"])
                if st is not None:
                    _store.forget_store(st)
                    st.close()
            return True
        st = d["_sk_store"]
        if st is None:
            return True
        _stop_server(d["_sk_name"], timeout)
        if not st.tlock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            import time

            deadline = time.monotonic() + max(timeout, 0.0)
            if st.depth:
                return False  # called from inside an operation of this very thread
            while not st.try_lock_briefly():
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.002)
            st.depth = 1
            try:
                snap = st.items()
                d["_sk_seq"] = st.commit({}, flags=FLAG_STOPPED)
            finally:
                st.depth = 0
                st.unlock_process()
            d["_sk_snapshot"] = snap
            d["_sk_store"] = None
            _unlink(d["_sk_name"])
            _store.forget_store(st)
            st.close()
        finally:
            st.tlock.release()
        return True

    def exit(self, timeout: float = 5.0) -> bool:
        """Alias of ``stop``."""
        return self.stop(timeout)

    def clear(self) -> None:
        """Remove every attribute."""

        def op(txn: Txn) -> None:
            txn.clear()

        self._sk_run(op, ("clear",))

    def reconnect_all(self, *, start_threads: bool = False, **auth: Any) -> dict[str, Any]:
        """Every stored object, with cucumber Reconnectors reconnected (``name -> object``)."""

        def op(txn: Txn) -> dict[str, Any]:
            return {n: _codec.copy_out(txn.get(n)) for n in txn.names()}

        objs = self._sk_run(op, ("objects",))
        return {
            n: cucumber.reconnect_all(o, start_threads=start_threads, **auth) for n, o in objs.items()
        }

    @property
    def is_running(self) -> bool:
        """Whether the shared store is live (False after stop(), or once closed)."""
        d = self.__dict__
        if d["_sk_owner"]:
            return d["_sk_store"] is not None
        try:
            st = self._sk_attached()
        except ShareError:
            return False
        rem = d["_sk_remote"]
        if st is None and rem is not None:
            try:
                return bool(rem.client.request(("running",)))
            except Exception:
                return False
        if st is None or st.closed:
            return False
        with contextlib.suppress(Exception):
            return not (st.flags() & (FLAG_STOPPED | FLAG_CLOSED))
        return False

    @property
    def has_error(self) -> bool:
        """Whether this handle found the Share unusable (closed, or owner gone with it)."""
        return self.__dict__["_sk_error"] is not None

    def __enter__(self) -> Share:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        try:
            names = sorted(self._sk_run(lambda txn: txn.names(), ("names",)))
            status = "running" if self.is_running else "stopped"
        except Exception as e:
            return f"Share(status=error, error={e!r})"
        return f"Share(status={status}, objects={names})"

    def __dir__(self) -> list[str]:
        base = list(super().__dir__())
        with contextlib.suppress(Exception):
            base += self._sk_run(lambda txn: txn.names(), ("names",))
        return base

    # -- running operations -------------------------------------------------------------------

    def _sk_fail(self, msg: str) -> ShareError:
        self.__dict__["_sk_error"] = msg
        return ShareError(msg)

    def _sk_attached(self) -> Store | None:
        """The live store for this process, None when stopped, ShareError when gone."""
        d = self.__dict__
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
            d["_sk_remote"] = _remote_for(d["_sk_name"], net)
            return None
        try:
            st = _store.get_store(d["_sk_name"])
        except StoreGone as e:
            if _owner_alive(d["_sk_owner_pid"]):
                d["_sk_store"] = None
                d["_sk_gone"] = str(e)
                return None
            raise self._sk_fail(
                f"Share {d['_sk_name']!r} is gone: its owner process {d['_sk_owner_pid']} "
                "exited and the shared memory was released."
            ) from None
        d["_sk_store"] = st
        return st

    def _sk_run(self, op: Op, rop: tuple[Any, ...] | None = None) -> Any:
        """Run ``op`` as one atomic transaction (or on a snapshot while stopped).

        ``rop`` describes the same operation as data, for a handle that reaches the
        store through its owner's server (``_Remote``)."""
        d = _oga(self, "__dict__")
        tld = _tl.__dict__
        if tld:
            tld.pop("own", None)
        for _ in range(100):
            st = d["_sk_store"]
            if st is None or st.closed:
                st = Share._sk_attached(self)
                if st is None:
                    rem = d["_sk_remote"]
                    if rem is not None:
                        return rem.run(self, rop)
                    return Share._sk_run_stopped(self, op, None)
            try:
                st.acquire()
            except StoreGone:
                continue
            try:
                flags = st.slot()[S_FLAGS]
                if flags & FLAG_CLOSED:
                    raise Share._sk_fail(
                        self,
                        f"Share {d['_sk_name']!r} was closed by its owner process "
                        f"{d['_sk_owner_pid']} (it stopped or exited).",
                    )
                if not flags & FLAG_STOPPED:
                    if d["_sk_queue"]:
                        Share._sk_replay(self)
                    txn = Txn(st)
                    try:
                        result = op(txn)
                    except BaseException:
                        txn.rollback()
                        raise
                    if txn.changes or txn.cleared:
                        txn.committed(st.commit(txn.changes, clear=txn.cleared))
                    return result
            finally:
                st.release()
            # the store says "stopped": is there a restarted one at the same name?
            gen = st.file_generation()
            if gen is not None and gen != st.generation:
                _store.forget_store(st)
                st.close()
                d["_sk_store"] = None
                continue
            return self._sk_run_stopped(op, st)
        raise self._sk_fail(f"Share {d['_sk_name']!r}: the store kept changing under this process")

    def _sk_run_stopped(self, op: Op, st: Store | None) -> Any:
        d = self.__dict__
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
                raise ShareError(
                    f"Share {d['_sk_name']!r} is stopped and this process holds no copy of "
                    "its data; call share.start() in the process that created it "
                    f"({d.get('_sk_gone')})."
                ) from None
        if txn.changes or txn.cleared:
            warnings.warn(STOPPED_WARNING, UserWarning, stacklevel=4)
            d["_sk_queue"].append(op)
        return result

    def _sk_replay(self) -> None:
        queue: list[Op] = self.__dict__["_sk_queue"]
        self.__dict__["_sk_queue"] = []
        for op in queue:
            try:
                self._sk_run(op)
            except Exception as e:
                warnings.warn(f"A write queued while the Share was stopped failed: {e!r}", UserWarning, stacklevel=2)

    def _sk_fast(self, name: str) -> list[Any] | None:
        """The cached entry for ``name`` if nothing was committed since it was checked."""
        _tl.__dict__.pop("own", None)
        st: Store | None = self.__dict__["_sk_store"]
        if st is None:
            return None
        with st.tlock:
            if st.closed:
                return None
            c = st.cache.get(name)
            if c is not None and c[2] == st.epoch():
                return c
        return None

    def _sk_view(self, path: Path, fn: Callable[[Any], Any]) -> Any:
        """Apply read-only ``fn`` to the object at ``path`` (fast path when nothing changed)."""
        _tl.__dict__.pop("own", None)
        st: Store | None = self.__dict__["_sk_store"]
        if st is not None:
            with st.tlock:
                if not st.closed:
                    c = st.cache.get(path[0])
                    if c is not None and c[2] == st.epoch():
                        return fn(_resolve(c[1], path[1:]))

        def op(txn: Txn) -> Any:
            try:
                root = txn.get(path[0])
            except KeyError:
                raise AttributeError(f"Share has no attribute {path[0]!r}") from None
            txn.mark_checked(path[0])
            return fn(_resolve(root, path[1:]))

        return self._sk_run(op, ("view", path, fn))

    # -- attribute protocol ---------------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        # Share's own members (and dunders / _sk_ internals) are ordinary attributes;
        # every other name is shared state. __getattribute__ rather than __getattr__:
        # the failed normal lookup that precedes __getattr__ costs ~0.5 us (it builds an
        # AttributeError), more than the whole cached read below.
        if name in _LOCAL or (name[:1] == "_" and (name[:2] == "__" or name[:4] == "_sk_")):
            return _oga(self, name)
        cls = type(self)
        if cls is not Share and name in cls._sk_local_names:  # type: ignore[attr-defined]
            return _oga(self, name)
        frame = sys._getframe(1)
        kind = _READ_KIND.get((frame.f_code, frame.f_lasti))
        if kind is None:
            kind = read_kind(frame, name)
        if kind:
            # AUG: the operator proxy of `share.x op= v`. CHAIN/METHOD: only an attribute
            # of the value is used next (`share.obj.add(1)`, `share.o.total`): a Proxy
            # gives the same result, and the whole statement needs one locked operation.
            return _new_proxy(self, (name,))
        d = _oga(self, "__dict__")
        tld = _tl.__dict__
        if tld:
            own = tld.pop("own", None)
            if own is not None and own[0] == (d["_sk_name"], name) and own[2] == id(frame) \
                    and own[3] is frame.f_code and frame.f_lasti > own[4]:
                return own[1]
        # fast path: the cached copy is current if no commit started since it was checked
        # (one 8-byte read of the shared epoch; immutable values are returned as they are)
        st = d["_sk_store"]
        if st is not None:
            c = st.cache.get(name)
            if c is not None:
                try:
                    current = c[2] == st.q[EPOCH_Q]
                except ValueError:  # detached concurrently: take the slow path
                    current = False
                if current:
                    return c[1] if c[3] else _new_proxy(self, (name,))
        return Share._sk_read(self, name)

    def _sk_read(self, name: str) -> Any:
        """Locked read of ``name`` (the cached copy was not known to be current)."""

        def op(txn: Txn) -> tuple[Any, bool]:
            try:
                obj = txn.get(name)
            except KeyError:
                raise AttributeError(f"Share has no attribute {name!r}") from None
            txn.mark_checked(name)
            imm = _codec.is_immutable(obj)
            return obj, imm

        obj, imm = Share._sk_run(self, op, ("read", name))
        return obj if imm else _new_proxy(self, (name,))

    def __setattr__(self, name: str, value: Any) -> None:
        if type(value) is Proxy and value._sk_path == (name,) and value._sk_share is self:
            return  # the store-back of `share.x op= v`: already applied atomically
        if not isinstance(name, str) or name.startswith(("__", "_sk_", "\x00")) or name in _RESERVED:
            raise AttributeError(
                f"Cannot set share.{name}: the name is reserved by Share "
                f"({'a Share method/property' if name in _RESERVED else 'internal names'}). "
                "Choose another attribute name."
            )
        _take_own()
        value = _unwrap(value)
        enc = encode_for(value, (name,))
        owned = _codec.is_immutable(value)

        def op(txn: Txn) -> None:
            txn.put(name, enc, value, owned)

        Share._sk_run(self, op, ("set", name, enc))

    def __delattr__(self, name: str) -> None:
        if name.startswith(("__", "_sk_")) or name in _RESERVED:
            raise AttributeError(f"Cannot delete share.{name}: the name is reserved by Share.")
        _take_own()

        def op(txn: Txn) -> None:
            if not txn.has(name):
                raise AttributeError(f"Share has no attribute {name!r}")
            txn.delete(name)

        self._sk_run(op, ("del", name))


    # -- write operations used by proxies ----------------------------------------------



    def _sk_write(self, path: Path, action: str, value: Any) -> None:
        where = _path_str(path)
        if action == "set":
            if not _codec.is_plain(value):
                _codec.check_storable(value, where)

        def op(txn: Txn) -> None:
            try:
                root = txn.get(path[0])
            except KeyError:
                raise AttributeError(f"Share has no attribute {path[0]!r}") from None
            parent = _resolve(root, path[1:-1])
            kind, key = path[-1]
            if action == "set":
                if kind == "a":
                    setattr(parent, key, value)
                else:
                    parent[key] = value
            elif kind == "a":
                delattr(parent, key)
            else:
                del parent[key]
            txn.touch(path[0], root, force=True, where=_path_str(path[:1]))

        self._sk_run(op, ("write", path, action, value))


    def _sk_call(self, path: Path, name: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        args = tuple(_unwrap(a) for a in args)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        where = _path_str(path[:1])

        def op(txn: Txn) -> Any:
            try:
                root = txn.get(path[0])
            except KeyError:
                raise AttributeError(f"Share has no attribute {path[0]!r}") from None
            target = _resolve(root, path[1:])
            if name is None:
                result = target(*args, **kwargs)
                kind = "unknown"
            else:
                _check_blocked(target, name)
                aliases = getattr(type(target), "_share_method_aliases", None)
                real = aliases.get(name, name) if isinstance(aliases, dict) else name
                kind = _method_kind(target, name)
                result = getattr(target, real)(*args, **kwargs)
            if kind != "reader":
                txn.touch(path[0], root, force=(kind == "writer"), where=where)
            else:
                txn.mark_checked(path[0])
            return _codec.copy_out(result)

        return self._sk_run(op, ("call", path, name, args, kwargs))


    def _sk_aug_apply(self, path: Path, iop: Callable[[Any, Any], Any], value: Any) -> Any:
        d = _oga(self, "__dict__")
        st = d["_sk_store"]
        if len(path) == 1 and st is not None and not st.closed and not d["_sk_queue"]:
            # fast path for `share.x op= v` on a plain immutable value (counters): no
            # transaction object, one entry rewrite. Anything unusual takes the general path.
            name = path[0]
            tld = _tl.__dict__
            if tld:
                tld.pop("own", None)
            try:
                st.acquire()
            except StoreGone:
                pass
            else:
                try:
                    found = st.lookup1(name)
                    if found is not None and not found[0][S_FLAGS] & (FLAG_STOPPED | FLAG_CLOSED):
                        s, i, e = found
                        if e[2] == _K_PLAIN:
                            c = st.cache.get(name)
                            if c is not None and c[0] == e[3]:
                                cur = c[1] if c[3] else _NOPE
                            else:
                                cur = _loads(st.raw(e))
                                if type(cur) not in _ATOMS:
                                    cur = _NOPE
                            if cur is not _NOPE:
                                new = iop(cur, value)
                                if type(new) in _ATOMS:
                                    seq = st.put1(s, i, _K_PLAIN, _dumps(new))
                                    if seq is not None:
                                        st.cache[name] = [seq, new, st.q[EPOCH_Q], True]
                                        return new
                finally:
                    st.release()

        def op(txn: Txn) -> Any:
            try:
                root = txn.get(path[0])
            except KeyError:
                raise AttributeError(f"Share has no attribute {path[0]!r}") from None
            if len(path) == 1:
                new = iop(root, value)
                txn.set(path[0], new, where=path)
                return new if type(new) in _ATOMS else _codec.copy_out(new)
            parent = _resolve(root, path[1:-1])
            kind, key = path[-1]
            cur = getattr(parent, key) if kind == "a" else parent[key]
            new = iop(cur, value)
            if kind == "a":
                setattr(parent, key, new)
            else:
                parent[key] = new
            txn.touch(path[0], root, force=True, where=_path_str(path[:1]))
            return _codec.copy_out(new)

        return Share._sk_run(self, op, ("aug", path, iop.__name__, value))


_LOCAL = frozenset(n for n in vars(Share) if not n.startswith("_"))
_ATOMS = _codec.ATOMS
_K_PLAIN = _codec.K_PLAIN
_NOPE = object()
_loads = marshal.loads
_dumps = marshal.dumps


def _share_init_subclass(cls: type[Share], **kw: Any) -> None:
    cls._sk_local_names = frozenset(n for n in dir(cls) if not n.startswith("_"))  # type: ignore[attr-defined]


Share.__init_subclass__ = classmethod(_share_init_subclass)  # type: ignore[assignment,method-assign]


def _rebuild_share(
    name: str, owner_pid: int, host: str | None = None, net: tuple[Any, ...] | None = None,
) -> Share:
    return Share._sk_client(name, owner_pid, host, net)


def _after_fork_in_child() -> None:
    # a forked child holds copies of the parent's handles: they become clients
    _tl.__dict__.clear()
    for srv in list(_SERVERS.values()):  # the server threads stayed in the parent
        srv.forget_after_fork()
    _SERVERS.clear()
    for rem in _REMOTES.values():
        rem.client.lock = threading.RLock()  # the next request drops the inherited socket
    for h in list(_HANDLES):
        d = h.__dict__
        if d.get("_sk_owner"):
            d["_sk_owner"] = False
            fin = d.get("_sk_finalizer")
            if fin is not None:
                fin.detach()
            d["_sk_finalizer"] = None
        if d.get("_sk_net") is not None and _net.forced_tcp():
            d["_sk_store"] = None  # SK_SHARE_TRANSPORT=tcp: use the server, not the inherited map


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- network access (see _net.py) -----------------------------------------------------------

_SERVERS: dict[str, _net.Server] = {}  # Share name -> its server, in the owner process
_REMOTES: dict[str, _Remote] = {}  # Share name -> this process's connection to its owner
_REMOTES_LOCK = threading.Lock()
_AUG_OPS = frozenset(
    f"i{n}" for n in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "pow",
                      "lshift", "rshift", "and", "xor", "or")
)


def _new_key() -> bytes:
    return secrets.token_bytes(32)


def _stop_server(name: str, timeout: float = 5.0) -> None:
    srv = _SERVERS.pop(name, None)
    if srv is not None:
        srv.stop(timeout)


def _remote_for(name: str, net: tuple[Any, ...]) -> _Remote:
    addr, key, max_frame, tls_pin = net
    with _REMOTES_LOCK:
        rem = _REMOTES.get(name)
        if rem is None or rem.client.key != key or rem.client.address != tuple(addr) or rem.client.tls_pin != tls_pin:
            rem = _REMOTES[name] = _Remote(name, tuple(addr), key, max_frame, tls_pin)
        return rem


class _Remote:
    """A handle's path to the store through the owner's server: operations travel as data
    (``rop`` tuples) and run in the owner; reads fetch the root value's bytes (only when its
    version changed) and apply read-only functions locally."""

    def __init__(
        self, name: str, address: tuple[str, int], key: bytes, max_frame: int, tls_pin: str | None,
    ) -> None:
        self.name = name
        self.client = _net.Client(address, key, max_frame, tls_pin)
        self.cache: dict[str, tuple[int, Any]] = {}

    def _load_class(self, key: str) -> bytes:
        data: bytes = self.client.request(("class", key))
        return data

    def get(self, name: str) -> Any:
        """The current value of root ``name`` (decoded; cached by version). KeyError if absent."""
        c = self.cache.get(name)
        r = self.client.request(("get", name, c[0] if c is not None else 0))
        if r is None:
            self.cache.pop(name, None)
            raise KeyError(name)
        if len(r) == 1 and c is not None:
            return c[1]
        ver, kind, data = r
        obj = _codec.decode(kind, data, self._load_class)
        self.cache[name] = (ver, obj)
        return obj

    def run(self, share: Share, rop: tuple[Any, ...] | None) -> Any:
        if rop is None:  # pragma: no cover - every operation passes its description
            raise ShareError("internal error: this Share operation has no network form")
        kind = rop[0]
        try:
            if kind == "read" or kind == "view":
                root_name = rop[1] if kind == "read" else rop[1][0]
                try:
                    root = self.get(root_name)
                except KeyError:
                    raise AttributeError(f"Share has no attribute {root_name!r}") from None
                if kind == "read":
                    return root, _codec.is_immutable(root)
                return rop[2](_resolve(root, rop[1][1:]))
            return self.client.request(rop)
        except _net.NetError as e:
            d = _oga(share, "__dict__")
            raise ShareError(f"Share {d['_sk_name']!r}: {e}") from None


class _Dispatcher:
    """Runs the operations of remote clients in the owner process, through a local handle of
    the store (the same lock and the same code paths as any local process)."""

    def __init__(self, name: str, owner_pid: int) -> None:
        self.name = name
        self.handle = Share._sk_client(name, owner_pid, _net.host_id(), None)

    def __call__(self, req: Any) -> Any:
        if type(req) is not tuple or not req or type(req[0]) is not str:
            raise ShareError(f"malformed Share request: {type(req).__name__}")
        h = self.handle
        kind = req[0]
        if kind == "get":
            name, have = req[1], req[2]

            def get(txn: Txn) -> Any:
                found = txn._lookup(name)
                if found is None or not txn.has(name):
                    return None
                k, ver = found
                if ver and ver == have:
                    return (ver,)
                return (ver, k, txn._data(name))

            return h._sk_run(get)
        if kind == "set":
            name, enc = req[1], req[2]
            if type(name) is not str or name.startswith(("__", "_sk_", "\x00")) or name in _RESERVED:
                raise AttributeError(f"Cannot set share.{name}: the name is reserved by Share.")
            kd, data, cls = enc
            if kd not in (_codec.K_PLAIN, _codec.K_OBJECT, _codec.K_CUCUMBER) or type(data) is not bytes or (
                cls is not None and not (type(cls[0]) is str and cls[0].startswith(_codec.CLASS_PREFIX)
                                         and type(cls[1]) is bytes)
            ):
                raise ShareError(f"malformed value for share.{name}")

            def put(txn: Txn) -> None:
                txn.put(name, (kd, data, cls), None, False)

            return h._sk_run(put)
        if kind == "del":
            return h.__delattr__(req[1])
        if kind == "write":
            return h._sk_write(req[1], req[2], req[3])
        if kind == "call":
            return h._sk_call(req[1], req[2], req[3], req[4])
        if kind == "aug":
            if req[2] not in _AUG_OPS:
                raise ShareError(f"unknown in-place operator {req[2]!r}")
            return h._sk_aug_apply(req[1], getattr(operator, req[2]), req[3])
        if kind == "class":
            key = req[1]
            if type(key) is not str or not key.startswith(_codec.CLASS_PREFIX):
                raise ShareError("malformed class request")
            return h._sk_run(lambda txn: txn._load_class(key))
        if kind == "names":
            return h._sk_run(lambda txn: txn.names())
        if kind == "objects":
            return h._sk_run(lambda txn: {n: _codec.copy_out(txn.get(n)) for n in txn.names()})
        if kind == "clear":
            return h.clear()
        if kind == "running":
            return h.is_running
        raise ShareError(f"unknown Share request {kind!r}")


# -- proxies -------------------------------------------------------------------------------


class Proxy:
    """A container or object stored in a Share, addressed by its path (``share.o.items``).

    Every operation runs on the one shared state: reads see the latest committed value,
    mutations (``append``, ``d[k] = v``, ``o.n = 1``, ``+=``) are atomic read-modify-writes,
    method calls return their real result. ``copy.copy``/pickling a Proxy gives a real copy.
    """

    __slots__ = ("_sk_path", "_sk_share")

    def __init__(self, share: Share, path: Path) -> None:
        object.__setattr__(self, "_sk_share", share)
        object.__setattr__(self, "_sk_path", path)

    # reading
    def _sk_snapshot(self) -> Any:
        return self._sk_share._sk_view(self._sk_path, _codec.copy_out)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_identity, (self._sk_snapshot(),))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        share, path = self._sk_share, self._sk_path
        frame = sys._getframe(1)
        kind = _READ_KIND.get((frame.f_code, frame.f_lasti))
        if kind is None:
            kind = read_kind(frame, attr)
        if kind == METHOD:
            return _Method(share, path, attr)  # resolved and called in one locked step
        if kind:
            return _new_proxy(share, (*path, ("a", attr)))

        def fn(target: Any) -> Any:
            _check_blocked(target, attr)
            value = getattr(target, attr)
            if _codec.is_immutable(value):
                return value
            if isinstance(value, types.MethodType | types.BuiltinMethodType) and getattr(value, "__self__", None) is target:
                return _Method(share, path, attr)
            return Proxy(share, (*path, ("a", attr)))

        return share._sk_view(path, fn)

    def __setattr__(self, attr: str, value: Any) -> None:
        path = (*self._sk_path, ("a", attr))
        if type(value) is Proxy and value._sk_path == path and value._sk_share._sk_name == self._sk_share._sk_name:
            return
        self._sk_share._sk_write(path, "set", _unwrap(value))

    def __delattr__(self, attr: str) -> None:
        self._sk_share._sk_write((*self._sk_path, ("a", attr)), "del", None)

    def __getitem__(self, key: Any) -> Any:
        share, path = self._sk_share, self._sk_path
        if not isinstance(key, slice) and read_kind(sys._getframe(1), key, subscr=True) == AUG:
            return _new_proxy(share, (*path, ("i", key)))

        def fn(target: Any) -> Any:
            value = target[key]
            if _codec.is_immutable(value):
                return value
            if isinstance(key, slice):
                return _codec.copy_out(value)
            return Proxy(share, (*path, ("i", key)))

        return share._sk_view(path, fn)

    def __setitem__(self, key: Any, value: Any) -> None:
        path = (*self._sk_path, ("i", key))
        if type(value) is Proxy and value._sk_path == path and value._sk_share._sk_name == self._sk_share._sk_name:
            return
        self._sk_share._sk_write(path, "set", _unwrap(value))

    def __delitem__(self, key: Any) -> None:
        self._sk_share._sk_write((*self._sk_path, ("i", key)), "del", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._sk_share._sk_call(self._sk_path, None, args, kwargs)

    def _sk_read(self, fn: Callable[[Any], Any]) -> Any:
        return self._sk_share._sk_view(self._sk_path, fn)

    def __len__(self) -> int:
        return self._sk_read(len)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._sk_read(lambda t: _codec.copy_out(list(t))))

    def __reversed__(self) -> Iterator[Any]:
        return iter(self._sk_read(lambda t: _codec.copy_out(list(reversed(t)))))

    def __contains__(self, item: Any) -> bool:
        item = _unwrap(item)
        return self._sk_read(lambda t: item in t)

    def __bool__(self) -> bool:
        return self._sk_read(bool)

    def __str__(self) -> str:
        return self._sk_read(str)

    def __repr__(self) -> str:
        try:
            inner = self._sk_read(repr)
        except Exception as e:  # repr must not raise
            inner = f"<unavailable: {e!r}>"
        return f"Proxy({_path_str(self._sk_path)}: {inner})"

    def __format__(self, spec: str) -> str:
        return self._sk_read(lambda t: format(t, spec))

    def __hash__(self) -> int:
        return self._sk_read(hash)

    def __dir__(self) -> list[str]:
        return self._sk_read(dir)

    def __int__(self) -> int:
        return self._sk_read(int)

    def __float__(self) -> float:
        return self._sk_read(float)

    def __index__(self) -> int:
        return self._sk_read(operator.index)

    # augmented assignment: one atomic fetch-and-op at this path
    def _sk_aug(self, iop: Callable[[Any, Any], Any], value: Any) -> Proxy:
        share = self._sk_share
        path = self._sk_path
        d = _oga(share, "__dict__")
        queue = d["_sk_queue"]
        queued = len(queue)
        new = Share._sk_aug_apply(share, path, iop, _unwrap(value))
        if queued != len(queue) or queue is not d["_sk_queue"]:
            return self  # stopped: queued, there is no result to read back yet
        if len(path) == 1 and (type(new) in _ATOMS or _codec.is_immutable(new)):
            f = sys._getframe(2)
            _tl.own = ((d["_sk_name"], path[0]), new, id(f), f.f_code, f.f_lasti)
        return self


def _identity(x: Any) -> Any:
    return x


_set_share = Proxy._sk_share.__set__  # type: ignore[attr-defined]
_set_path = Proxy._sk_path.__set__  # type: ignore[attr-defined]
_new = object.__new__


def _new_proxy(share: Share, path: Path) -> Proxy:
    """``Proxy(share, path)`` without going through the blocked ``__setattr__``."""
    p = _new(Proxy)
    _set_share(p, share)
    _set_path(p, path)
    return p


def _binary(opname: str, reflected: bool) -> Callable[[Proxy, Any], Any]:
    fn = getattr(operator, opname)

    def method(self: Proxy, other: Any) -> Any:
        other = _unwrap(other)
        if reflected:
            return self._sk_read(lambda t: _codec.copy_out(fn(other, t)))
        return self._sk_read(lambda t: _codec.copy_out(fn(t, other)))

    return method


def _inplace(opname: str) -> Callable[[Proxy, Any], Proxy]:
    iop = getattr(operator, opname)

    def method(self: Proxy, other: Any) -> Proxy:
        return self._sk_aug(iop, other)

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
    setattr(Proxy, f"__{_op}__", (lambda f: lambda self: self._sk_read(lambda t: _codec.copy_out(f(t))))(_f))


class _Method:
    """A method of a shared object; calling it runs it on the one shared copy."""

    __slots__ = ("_name", "_path", "_share")

    def __init__(self, share: Share, path: Path, name: str) -> None:
        self._share, self._path, self._name = share, path, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._share._sk_call(self._path, self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<shared method {_path_str(self._path)}.{self._name}>"


