"""``Share``: attributes that every process sees and updates as one state.

::

    owner process                         any process holding the Share
    Share()  ── creates ──►  /dev/shm/sk-share-*  ◄── attaches (by name) ── Share (client)
       │                     (see _store.py)                                  ▲
       └── pickled / cucumber-serialized: name + host identity (+ server address
           and key once share.serve() was called) travel ──────────────────────┘
    share.serve()  ── server thread (_net.py) ◄── TCP ── Share (remote mode, other host):
                      runs the same operations            operations travel as data (rop,
                      (_dispatch.py) via a local handle   _remote.py)

    share.x            read: cached value if nothing was committed since (no syscall),
                       else lock + decode (_ops.read). Immutable values are returned as
                       they are; containers and objects come back as a Proxy (_proxy.py).
    share.x = v        encode v (outside the lock; bad input never changes anything),
                       then one atomic commit.
    share.x += v       detected from the caller's bytecode (_aug.py): one locked
    share.x = share.x + v   read-modify-write (_ops.aug_apply); the store-back is a no-op.
    share.o.f(a)       lock; run f on the current copy; write what it changed (_methods.py:
                       the attributes f names; else the whole object); unlock.
                       The real return value comes back.  If f raises, nothing is written.
    with share.lock(): a critical section whose writes commit together (_critical.py).

    Share(backend="redis://...")   the state lives in Redis instead: every operation goes to
                       _redis.Backend.run (one Lua script for int +=, else the same op(txn)
                       under the Share's lock key); see _redis.py.

Modules: _base (errors, names) · _store/_lock (bytes, lock) · _txn (values of one
transaction) · _ops (the operations) · _delta/_methods (what an update changed) · _proxy ·
_critical · _lifecycle (cleanup, fork) · _remote/_dispatch/_net (TCP) · _redis (Redis) ·
_snapshot (``__serialize__`` format) · this file (the API).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import warnings
import weakref
from typing import Any

from suitkaise import cucumber

from . import _codec, _net, _ops, _pending, _redis, _snapshot, _store
from ._aug import _AT, _KIND, AUG_ADD, REASSIGN, STORE_ADD, direct_store, read_kind
from ._base import RESERVED, ShareError, user_stacklevel
from ._base import oga as _oga
from ._critical import Critical
from ._dispatch import Dispatcher
from ._lifecycle import (
    HANDLES,
    forget,
    owner_alive,
    owner_cleanup,
    track_pending,
    tracker,
    unlink,
    untrack_pending,
)
from ._proxy import Operand, Pending, Proxy, _path_of, _share_of, new_proxy, same_share, unwrap
from ._remote import REMOTES as _REMOTES
from ._remote import SERVERS, new_key, stop_server
from ._remote import SERVERS as _SERVERS
from ._store import FLAG_CLOSED, FLAG_STOPPED, MISS, Store
from ._txn import Txn, encode_for

__all__ = ["Proxy", "Share", "ShareError"]
# kept importable for tests and tools: the registries of servers and connections
__all__ += ["_REMOTES", "_SERVERS", "_rebuild_share"]

_read = _ops.read
_getframe = sys._getframe
_aug_apply = _ops.aug_apply
# bound once: a method call on an imported name compiles to LOAD_ATTR (3.11: no
# LOAD_METHOD for import-originated names), building a bound method on every read (~50 ns)
_read_kind_of = _KIND.get
_at_get = _AT.get
_UNKNOWN = (None, None)  # _read_kind_of's default: an instruction not classified yet


# id(handle) -> its instance dict: one subscript, where reading the dict through its
# descriptor (_dict_of) costs ~40 ns more on every read
_HOT: dict[int, dict[str, Any]] = {}
_NO_HOT: dict[str, Any] = {"_sk_store": None}
# weakref -> id: the callback drops the entry when the handle dies, before its id can be
# reused (the refs live here, not in the handle, so they fire for cyclic garbage too;
# weakref.finalize would cost ~1.4 us more per handle)
_HOT_REFS: dict[weakref.ref[Share], int] = {}


def _unregister(ref: weakref.ref[Share], hot: dict[int, Any] = _HOT, refs: dict[Any, int] = _HOT_REFS) -> None:
    # (bound as defaults: usable while the interpreter shuts down)
    hot.pop(refs.pop(ref), None)


def _init_handle(
    share: Share, name: str, owner: bool, owner_pid: int, host: str | None, net: tuple[Any, ...] | None,
) -> None:
    """The per-handle state (every handle, owner or client, has exactly these entries)."""
    share.__dict__.update(
        _sk_name=name,
        _sk_owner=owner,
        _sk_owner_pid=owner_pid,
        _sk_host=host,
        _sk_net=net,  # (address, key, max_frame, tls pin or None) once served
        _sk_store=None,  # this process's attachment, once used
        _sk_snapshot={},  # the owner's data while stopped
        _sk_seq=0,
        _sk_queue=[],  # writes made while stopped, applied by start()
        _sk_error=None,
        _sk_gone=None,
        _sk_finalizer=None,
        _sk_serve_args=None,
        _sk_remote=None,  # _remote.Remote when reached over TCP
        _sk_redis=None,  # _redis.Backend when the state lives in Redis
    )
    HANDLES.add(share)
    # the read's hot path finds this dict by id (subclasses: a dict without a store, so
    # they take the general path); the entry leaves before the id can be reused
    _HOT[id(share)] = _dict_of(share) if type(share) is Share else _NO_HOT
    _HOT_REFS[weakref.ref(share, _unregister)] = id(share)


class Share:
    """A namespace whose attributes are shared by every process that holds it.

    Create it in one process (the *owner*), assign attributes, and pass it to other
    processes (``multiprocessing.Process`` args, ``Skprocess`` attributes, ``Pool`` items):
    they receive a handle bound to the same state. See the package README for semantics.
    """

    def __init__(
        self, *, auto_start: bool = True, backend: str | None = None, password: str | None = None,
        name: str | None = None, lock_lease: float = _redis.DEFAULT_LEASE,
        redis_options: dict[str, Any] | None = None,
    ) -> None:
        """``Share()`` keeps the state in this machine's shared memory.

        ``Share(backend="redis://host:port/db")`` keeps it in Redis instead (``rediss://``
        for TLS; needs ``pip install 'sk-share[redis]'``), for processes on many machines:
        the same attribute API. ``password`` (or ``redis://:password@host...``) authenticates;
        ``name`` binds to a named, persistent Share (default: a new one, deleted when its
        creator stops or exits); ``lock_lease``: seconds after which the lock of a holder
        that died is released; ``redis_options``: more ``redis.Redis`` keywords (e.g.
        ``ssl_ca_certs``). A serialized Redis Share carries the URL and password: a secret.
        """
        if type(auto_start) is not bool:
            raise TypeError(f"Share(auto_start=...) takes True or False, not {auto_start!r}.")
        if backend is None:
            if (password, name, redis_options) != (None, None, None) or lock_lease != _redis.DEFAULT_LEASE:
                raise ValueError(
                    "password=, name=, lock_lease= and redis_options= configure a Share on Redis: "
                    "pass backend='redis://host:port/db' too (the local Share needs none of them)."
                )
            _init_handle(self, _store.new_name(), True, os.getpid(), _net.host_id(), None)
            if auto_start:
                self.start()
            return
        url = _redis.check_url(backend)
        name, password, lease, opts = _redis.check_config(name, password, lock_lease, redis_options)
        persistent = name is not None
        config = (url, password, name or _store.new_name(), lease, opts)
        _init_redis_handle(self, config, owner=True)
        if not persistent:
            # an unnamed Share is this process's: its keys are deleted when it stops or exits
            self.__dict__["_sk_finalizer"] = weakref.finalize(self, _redis.owner_cleanup, config, os.getpid())
        if auto_start:
            self.start()

    @classmethod
    def _sk_redis_handle(cls, config: _redis.Config, *, owner: bool) -> Share:
        self = cls.__new__(cls)
        _init_redis_handle(self, config, owner=owner)
        return self

    @classmethod
    def _sk_client(
        cls, name: str, owner_pid: int, host: str | None = None, net: tuple[Any, ...] | None = None,
    ) -> Share:
        self = cls.__new__(cls)
        _init_handle(self, name, False, owner_pid, host, net)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # the name, the owner's host identity and - once served - the server address and
        # its key travel; the receiver attaches lazily on first use. With a key inside,
        # the serialized Share is a secret: whoever holds it can use the Share.
        d = _oga(self, "__dict__")
        if d["_sk_redis"] is not None:  # the URL, password, name and lease travel
            return (_rebuild_redis_share, (d["_sk_redis"].config,))
        return (_rebuild_share, (d["_sk_name"], d["_sk_owner_pid"], d["_sk_host"], d["_sk_net"]))

    # -- cucumber's custom protocol ------------------------------------------------------

    def __serialize__(self) -> dict[str, Any]:
        """A snapshot of this Share that ``Share.__deserialize__`` rebuilds (cucumber uses
        the pair, so a Share sent through cucumber travels this way)::

            {"format": "suitkaise.share/1",
             "ref": (name, owner pid, host id, server address and key or None),
             "entries": {attribute: (encoding, bytes), ...}}   # the stored bytes, as is

        ``ref`` lets the receiver bind to this very Share; ``entries`` (every attribute,
        committed atomically at one instant; inside ``share.lock()`` including the block's
        writes) let it rebuild a new Share with the same data. The snapshot is as big as
        the stored data. Like the pickled form it carries the server key once
        ``serve()`` was called: treat it as a secret.
        """
        d = _oga(self, "__dict__")
        if d["_sk_redis"] is not None:
            # a Share on Redis is its configuration: the receiver connects to the same server
            return {"format": _REDIS_FORMAT, "config": d["_sk_redis"].config}
        entries = _ops.run(self, lambda txn: txn.entries(), ("entries",))
        return {
            "format": _snapshot.FORMAT,
            "ref": (d["_sk_name"], d["_sk_owner_pid"], d["_sk_host"], d["_sk_net"]),
            "entries": entries,
        }

    @classmethod
    def __deserialize__(cls, state: Any, *, fresh: bool = False) -> Share:
        """Rebuild a Share from ``__serialize__()``'s snapshot.

        While the original is alive (its owner process runs on this host, or it is served
        over TCP) the result is a handle bound to it, as after unpickling. Otherwise -
        or with ``fresh=True`` - it is a new, running Share owned by this process that
        holds the snapshot's data (a copy: later writes to either are not shared); when
        the original is gone a ``RuntimeWarning`` says so.
        """
        if isinstance(state, dict) and state.get("format") == _REDIS_FORMAT:
            if fresh:
                raise ValueError(
                    "Share.__deserialize__(fresh=True) copies a local Share's data; a Share on "
                    "Redis is always bound to its server (use Share(backend=...) for a new one)."
                )
            config = state.get("config")
            if not (isinstance(config, tuple) and len(config) == 5):
                raise ValueError(f"Share snapshot: malformed Redis configuration {config!r}")
            return cls._sk_redis_handle(config, owner=False)
        ref, entries = _snapshot.check_snapshot(state)
        if not fresh and ref is not None:
            name, owner_pid, host, net = ref
            if net is not None or host != _net.host_id() or owner_alive(owner_pid):
                return cls._sk_client(name, owner_pid, host, net)
            warnings.warn(
                f"Share {name!r} is gone (its owner process {owner_pid} exited): rebuilt a new "
                "Share, owned by this process, from the snapshot.",
                RuntimeWarning, stacklevel=user_stacklevel(),
            )
        share = cls(auto_start=False)
        _oga(share, "__dict__")["_sk_snapshot"] = dict(entries)
        share.start()
        return share

    # -- network access ------------------------------------------------------------------

    def _sk_transport(self) -> str:
        """How this handle reaches the store: "shm", "tcp" or "none" (stopped / not attached)."""
        d = _oga(self, "__dict__")
        if d["_sk_redis"] is not None:
            return "none" if d["_sk_redis"].stopped else "redis"
        try:
            st = _ops.attached(self)
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
        if d["_sk_redis"] is not None:
            raise ShareError(
                f"share.serve() is for the local Share: Share {d['_sk_name']!r} lives on the Redis "
                f"server {d['_sk_redis'].where}, which every process that can reach that server "
                "already uses directly (send the Share itself)."
            )
        if not d["_sk_owner"]:
            raise ShareError(
                "share.serve() must be called in the process that created the Share "
                f"(owner pid {d['_sk_owner_pid']}, this is pid {os.getpid()})."
            )
        srv = SERVERS.get(d["_sk_name"])
        if srv is not None:
            return d["_sk_net"][0]
        if d["_sk_store"] is None:
            raise ShareError("The Share is stopped: call share.start() before share.serve().")
        if not isinstance(max_frame, int) or max_frame < 4096:
            raise ValueError(f"max_frame must be an int >= 4096 bytes, got {max_frame!r}")
        key = d["_sk_net"][1] if d["_sk_net"] is not None else new_key()
        try:
            srv = _net.Server(
                d["_sk_name"], host, port, key,
                Dispatcher(Share._sk_client(d["_sk_name"], d["_sk_owner_pid"], _net.host_id(), None)),
                max_frame=max_frame, max_connections=max_connections, tls=tls,
            )
        except OSError as e:
            raise ShareError(f"share.serve() could not listen on {host}:{port}: {e}") from e
        SERVERS[d["_sk_name"]] = srv
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
        rb = d["_sk_redis"]
        if rb is not None:
            if d["_sk_owner"]:
                rb.create()  # connects: a wrong address or password fails here, clearly
            elif not self.is_running:
                raise ShareError(f"Share {d['_sk_name']!r} is not on {rb.where}: only the process "
                                 "that created it can start it.")
            return
        if not d["_sk_owner"]:
            if self.is_running:
                return
            raise ShareError(
                "Only the process that created this Share can start it "
                f"(owner pid {d['_sk_owner_pid']}, this is pid {os.getpid()})."
            )
        if d["_sk_store"] is not None:
            return
        # The new store is created stopped, so that other processes wait (``_ops.run``)
        # until the data, this handle's queued writes and the other processes' pending ones
        # are all in: a write of theirs can come only after those, never between them.
        st = Store.create(d["_sk_name"], seq=d["_sk_seq"] + 1, flags=FLAG_STOPPED)
        tracker("register", d["_sk_name"])
        _store.register_store(st)
        d["_sk_store"] = st
        if d["_sk_finalizer"] is None:
            d["_sk_finalizer"] = weakref.finalize(self, owner_cleanup, d["_sk_name"], os.getpid())
        with st.locked():
            st.commit(dict(d["_sk_snapshot"]), flags=0)
            d["_sk_snapshot"] = {}
            _ops.replay(self)
            run = Dispatcher(self)
            pending = _pending.take(d["_sk_name"])  # other processes' writes while stopped
            untrack_pending(d["_sk_name"])
            for payload in pending:
                try:
                    run(cucumber.deserialize(payload))
                except Exception as e:
                    warnings.warn(f"A write another process queued while the Share was stopped failed: {e!r}",
                                  UserWarning, stacklevel=2)
        args = d["_sk_serve_args"]
        if args is not None and d["_sk_name"] not in SERVERS:
            host, port, advertise, max_frame, max_conns, tls = args
            self.serve(host, port, advertise=advertise, max_frame=max_frame, max_connections=max_conns,
                       tls=tls)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop sharing and free the shared memory. Returns False if the store stayed busy
        for ``timeout`` seconds (nothing is changed then). In a process that did not create
        the Share this only detaches the process (or, if the owner died, frees the orphan)."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"Share.stop(timeout) must be a number of seconds, got {timeout!r}")
        d = self.__dict__
        rb = d["_sk_redis"]
        if rb is not None:
            if d["_sk_owner"] and d["_sk_finalizer"] is not None and not rb.stopped:
                rb.take_snapshot_and_delete()  # an unnamed Share: its data leaves the server
            elif d["_sk_owner"]:
                rb.stopped = True  # a named Share stays on the server for others
                rb.close()
            else:
                rb.close()  # this process's connections only; the next use reconnects
            return True
        if not d["_sk_owner"]:
            # the attachment is shared by every handle of this process: only drop ours
            d["_sk_store"] = None
            if d["_sk_remote"] is not None:
                d["_sk_remote"] = None
                return True
            if not owner_alive(d["_sk_owner_pid"]):
                unlink(d["_sk_name"])
                _pending.discard(d["_sk_name"])
                forget(d["_sk_name"])
            return True
        st = d["_sk_store"]
        if st is None:
            return True
        stop_server(d["_sk_name"], timeout)
        try:
            if not st.tlock.acquire(timeout=max(timeout, 0.0)):
                return False
        except BaseException:  # a signal's, raised as acquire returned: undo its count
            if st.tlock._is_owned():  # (see Store.acquire)
                st.tlock.release()
            raise
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
                try:
                    st.unlock_process()
                except BaseException:  # a signal's, as it began: it may not have unlocked
                    st.plock.drop_if_mine()
                    raise
            d["_sk_snapshot"] = snap
            d["_sk_store"] = None
            track_pending(d["_sk_name"])  # (before the store leaves: no -pending file yet)
            unlink(d["_sk_name"])
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

        _ops.run(self, op, ("clear",))

    def lock(self) -> Critical | _redis.Critical:
        """A critical section for compound updates no single statement expresses::

            with share.lock():
                if share.stock >= n:
                    share.stock -= n
                    share.orders = share.orders + [order]

        While the block runs no other thread or process reads or writes this Share (they
        wait), and this thread uses the Share normally inside it (reads see the block's own
        writes; nested ``share.lock()`` joins the outer block). The block's writes are
        committed together when it ends: if it raises, or the process dies inside it (even
        by SIGKILL), none of them is applied and the lock is released (robust mutex).
        Keep blocks short: every other user of the Share waits. Local (shared-memory)
        handles only; a running Share.
        """
        rb = _oga(self, "__dict__")["_sk_redis"]
        if rb is not None:
            return _redis.Critical(self, rb)
        return Critical(self)

    def reconnect_all(self, *, start_threads: bool = False, **auth: Any) -> dict[str, Any]:
        """Every stored object, with cucumber Reconnectors reconnected (``name -> object``)."""

        def op(txn: Txn) -> dict[str, Any]:
            return {n: _codec.copy_out(txn.get(n)) for n in txn.names()}

        objs = _ops.run(self, op, ("objects",))
        return {
            n: cucumber.reconnect_all(o, start_threads=start_threads, **auth) for n, o in objs.items()
        }

    @property
    def is_running(self) -> bool:
        """Whether the shared store is live (False after stop(), or once closed)."""
        d = self.__dict__
        rb = d["_sk_redis"]
        if rb is not None:
            try:
                return bool(rb.alive())
            except ShareError:
                return False
        if d["_sk_owner"]:
            return d["_sk_store"] is not None
        try:
            st = _ops.attached(self)
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
            names = sorted(_ops.run(self, lambda txn: txn.names(), ("names",)))
            status = "running" if self.is_running else "stopped"
        except Exception as e:
            return f"Share(status=error, error={e!r})"
        return f"Share(status={status}, objects={names})"

    def __dir__(self) -> list[str]:
        base = list(super().__dir__())
        with contextlib.suppress(Exception):
            base += _ops.run(self, lambda txn: txn.names(), ("names",))
        return base

    # -- attribute protocol ---------------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        # Share's own members (and dunders / _sk_ internals) are ordinary attributes;
        # every other name is shared state. __getattribute__ rather than __getattr__:
        # the failed normal lookup that precedes __getattr__ costs ~0.5 us (it builds an
        # AttributeError), more than the whole cached read below.
        #
        # The hot case first: a plain read (the caller's instruction was classified PLAIN
        # before) of a name whose cached immutable copy is current (no commit started
        # since it was checked: one 8-byte read of the shared epoch). Only stored names
        # are in the cache, so no name of Share's own can be shadowed (subclasses, which
        # may add members, take the general path: _HOT maps them to _NO_HOT).
        # The instruction's kind comes from _AT (by offset, checked against the caller's
        # code object), else from _KIND (by id(code) + offset). (Subscripts in try blocks,
        # not .get(): ~10 ns less each; the misses are rare.)
        try:
            d = _HOT[id(self)]
            st = d["_sk_store"]
            f = _getframe(1)
            i = f.f_lasti
            k = _AT[i]
            if k[0] is not f.f_code:
                k = _AT[i] = _KIND[id(f.f_code) + i]
        except KeyError:  # a handle being built; an instruction not classified yet
            st = None
        if st is not None:
            kind = k[1]
            if not kind:  # PLAIN
                try:
                    c = st.cache[name]
                    if c[3] and c[2] == st.eq[0]:
                        return c[1]
                except (KeyError, ValueError):  # not cached; detached concurrently
                    pass
            elif kind == AUG_ADD:
                # `share.x += <int constant>` (only a name that can be stored is ever
                # classified so): applied here, in place. The read returns the value
                # before it, the statement's `+` computes the new one, and its
                # store-back (recognised by __setattr__ from the same instructions) is
                # a no-op. Anything else (not a 64-bit int, nested in an operation or
                # a `with share.lock()` block, ...): the operator proxy, as for AUG.
                if not d["_sk_queue"]:
                    try:
                        new = st.add_i64(name, k[2])
                    except ValueError:  # detached concurrently (nothing was committed)
                        new = MISS
                    if new is not MISS:
                        return new - k[2]
                return new_proxy(self, (name,))
            elif kind < REASSIGN and name in st.cache:  # AUG, CHAIN, METHOD: see below
                return new_proxy(self, (name,))
        if name in _LOCAL or (name[:1] == "_" and (name[:2] == "__" or name[:4] == "_sk_")):
            return _oga(self, name)
        cls = type(self)
        if cls is not Share and name in cls._sk_local_names:  # type: ignore[attr-defined]
            return _oga(self, name)
        frame = sys._getframe(1)
        kind = read_kind(frame, name)
        if kind:
            # AUG: the operator proxy of `share.x op= v`. CHAIN/METHOD: only an attribute
            # of the value is used next (`share.obj.add(1)`, `share.o.total`): a Proxy
            # gives the same result, and the whole statement needs one locked operation.
            # REASSIGN: `share.x = share.x <op> expr`, applied atomically by the store-back.
            if kind == REASSIGN:
                return Operand(self, (name,))
            return new_proxy(self, (name,))
        d = _oga(self, "__dict__")
        # fast path: the cached copy is current if no commit started since it was checked
        # (one 8-byte read of the shared epoch; immutable values are returned as they are)
        st = d["_sk_store"]
        if st is not None:
            c = st.cache.get(name)
            if c is not None:
                try:
                    current = c[2] == st.eq[0]
                except ValueError:  # detached concurrently: take the slow path
                    current = False
                if current:
                    return c[1] if c[3] else new_proxy(self, (name,))
        obj, imm = _read(self, name)
        return obj if imm else new_proxy(self, (name,))

    def __setattr__(self, name: str, value: Any) -> None:
        t = type(value)
        if t is int and type(self) is Share:
            f = _getframe(1)
            i = f.f_lasti
            k = _at_get(i, _UNKNOWN)
            if k[0] is not f.f_code:
                k = _read_kind_of(id(f.f_code) + i, _UNKNOWN)
                if k is not _UNKNOWN:
                    _AT[i] = k
            if (k[1] == STORE_ADD) if k is not _UNKNOWN else direct_store(f, name):
                return  # the store-back of `share.x += <int constant>`: its read applied it
        if t is Proxy and _path_of(value) == (name,) and _share_of(value) is self:
            return  # the store-back of `share.x op= v`: already applied atomically
        if t is Pending and value.path == (name,) and same_share(value.share, self):
            # `share.x = share.x <op> expr`: one atomic read-modify-write
            _aug_apply(self, value.path, value.op, value.other, value.default)
            return
        if not isinstance(name, str) or name.startswith(("__", "_sk_", "\x00")) or name in RESERVED:
            raise AttributeError(
                f"Cannot set share.{name}: the name is reserved by Share "
                f"({'a Share method/property' if name in RESERVED else 'internal names'}). "
                "Choose another attribute name."
            )
        value = unwrap(value)
        rb = _oga(self, "__dict__")["_sk_redis"]
        if rb is not None:
            rb.set(name, value)
            return
        enc = encode_for(value, (name,))
        owned = _codec.is_immutable(value)

        def op(txn: Txn) -> None:
            txn.put(name, enc, value, owned)

        _ops.run(self, op, ("set", name, enc))

    def __delattr__(self, name: str) -> None:
        if name.startswith(("__", "_sk_")) or name in RESERVED:
            raise AttributeError(f"Cannot delete share.{name}: the name is reserved by Share.")

        def op(txn: Txn) -> None:
            if not txn.has(name):
                raise AttributeError(f"Share has no attribute {name!r}")
            txn.delete(name)

        _ops.run(self, op, ("del", name))


_LOCAL = frozenset(n for n in vars(Share) if not n.startswith("_"))  # Share's own API names
# the instance dict, read without a name lookup: ~25 ns less than _oga(share, "__dict__")
_dict_of = Share.__dict__["__dict__"].__get__


def _share_init_subclass(cls: type[Share], **kw: Any) -> None:
    cls._sk_local_names = frozenset(n for n in dir(cls) if not n.startswith("_"))  # type: ignore[attr-defined]


Share.__init_subclass__ = classmethod(_share_init_subclass)  # type: ignore[assignment,method-assign]


_REDIS_FORMAT = "suitkaise.share.redis/1"


def _init_redis_handle(share: Share, config: _redis.Config, *, owner: bool) -> None:
    _init_handle(share, config[2], owner, os.getpid(), None, None)
    share.__dict__["_sk_redis"] = _redis.backend_for(config)


def _rebuild_share(
    name: str, owner_pid: int, host: str | None = None, net: tuple[Any, ...] | None = None,
) -> Share:
    return Share._sk_client(name, owner_pid, host, net)


def _rebuild_redis_share(config: _redis.Config) -> Share:
    """A client handle of the Share stored in Redis that ``config`` describes (unpickling)."""
    return Share._sk_redis_handle(config, owner=False)
