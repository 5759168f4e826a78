"""A handle's path to a Share over TCP (the client side), and the per-process registries of
servers and connections. The wire protocol is ``_net.py``; the owner-side dispatcher that
runs remote operations is ``_dispatch.py``.

::

    Share handle (remote mode) ──rop──► Remote.run ──► _net.Client.request ──TCP──► owner
                                 reads: root bytes fetched only when their version changed
"""

from __future__ import annotations

import secrets
import threading
import weakref
from typing import Any

from . import _codec, _net
from ._base import ShareError, oga
from ._txn import resolve

SERVERS: dict[str, _net.Server] = {}  # Share name -> its server, in the owner process
REMOTES: dict[str, Remote] = {}  # Share name -> this process's connection to its owner
# every Remote of this process: a handle keeps the one it was given, also once REMOTES
# points at another (a handle of the same name with another address, key or TLS pin)
_ALL: weakref.WeakSet[Remote] = weakref.WeakSet()
_REMOTES_LOCK = threading.Lock()


def new_key() -> bytes:
    return secrets.token_bytes(32)


def stop_server(name: str, timeout: float = 5.0) -> None:
    srv = SERVERS.pop(name, None)
    if srv is not None:
        srv.stop(timeout)
        for rem in list(_ALL):  # this process's own connections to it (handles forced onto
            if rem.name == name:  # TCP): closed, kept (they reconnect if it serves again)
                rem.client.close()


def remote_for(name: str, net: tuple[Any, ...]) -> Remote:
    """This process's connection to the server of Share ``name`` (one per process)."""
    addr, key, max_frame, tls_pin = net
    with _REMOTES_LOCK:
        rem = REMOTES.get(name)
        if (rem is None or rem.client.key != key or rem.client.address != tuple(addr)
                or rem.client.tls_pin != tls_pin):
            rem = REMOTES[name] = Remote(name, tuple(addr), key, max_frame, tls_pin)
        return rem


def drop_remote(name: str) -> None:
    """Close and forget this process's connection to the server of Share ``name``."""
    with _REMOTES_LOCK:
        rem = REMOTES.pop(name, None)
    if rem is not None:
        rem.client.close()


def after_fork_in_child() -> None:
    """The server threads stayed in the parent; inherited connections are not ours."""
    global _REMOTES_LOCK
    _REMOTES_LOCK = threading.Lock()
    for srv in list(SERVERS.values()):
        srv.forget_after_fork()
    SERVERS.clear()
    for rem in REMOTES.values():
        rem.client.lock = threading.RLock()  # the next request drops the inherited socket


class Remote:
    """A handle's path to the store through the owner's server: operations travel as data
    (``rop`` tuples) and run in the owner; reads fetch the root value's bytes (only when its
    version changed) and apply read-only functions locally."""

    def __init__(
        self, name: str, address: tuple[str, int], key: bytes, max_frame: int, tls_pin: str | None,
    ) -> None:
        self.name = name
        self.client = _net.Client(address, key, max_frame, tls_pin)
        _ALL.add(self)
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

    def run(self, share: Any, rop: tuple[Any, ...] | None) -> Any:
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
                return rop[2](resolve(root, rop[1][1:]))
            return self.client.request(rop)
        except _net.NetError as e:
            d = oga(share, "__dict__")
            raise ShareError(f"Share {d['_sk_name']!r}: {e}") from None
