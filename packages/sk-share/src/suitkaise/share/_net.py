"""TCP access to a Share, for processes that cannot map its /dev/shm file (other hosts).

::

    owner process (host A)                                   worker (host B, or a private /dev/shm)
    ┌──────────────────────────────────────────┐             ┌──────────────────────────────┐
    │ Share (owner) ──► /dev/shm/sk-share-*    │             │ Share handle (remote mode)   │
    │                        ▲   (same store,  │             │   share.x += 1               │
    │ Server                 │    same lock)   │    TCP      │     └─► Client.request(op)   │
    │  accept thread ──► handler thread/conn ──┼─────────────┼──── one connection per       │
    │                    runs the op through a │  handshake, │     process and Share        │
    │                    local handle (_share) │  then HMAC- │                              │
    └──────────────────────────────────────────┘  ed frames  └──────────────────────────────┘
      local processes on host A keep using the shared memory directly (no hop).

Security (nothing is deserialized before both steps pass):

1. Handshake, fixed-size raw bytes (as ``multiprocessing.connection`` does, but mutual):
   server → ``SKSHNET1`` + 32-byte nonce Ns;
   client → 32-byte nonce Nc + HMAC(key, "client"|Ns|Nc);
   server checks it with ``hmac.compare_digest`` (wrong key, random bytes, silence until
   the handshake timeout: refused, logged, closed) and answers HMAC(key, "server"|Nc|Ns),
   which the client checks. Both derive per-direction session keys from (key, Ns, Nc).
2. Frames: ``!IQ`` header (payload length, sequence number) + HMAC-SHA256 of header and
   payload under the session key + payload. A length above ``max_frame`` is refused before
   anything is allocated; a sequence number other than the next one (a replayed or
   reordered frame) is refused; a MAC mismatch (tampered, or a frame from another session)
   is refused. Only then is the payload decoded with ``suitkaise.cucumber``.

Every refusal is logged on ``logging.getLogger("suitkaise.share.net")`` and closes only that
connection: each connection has its own handler thread.

The key is a per-Share ``secrets.token_bytes(32)`` that travels inside the serialized Share:
a serialized (pickled / cucumber) Share is a secret. An authenticated peer is trusted as
much as the owner (it may store objects whose methods the owner runs), exactly as with
``multiprocessing`` managers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from suitkaise import cucumber

from . import _store

log = logging.getLogger("suitkaise.share.net")

PROTO = b"SKSHNET1"
NONCE = 32
DIGEST = 32
HDR = struct.Struct("!IQ")  # payload length, sequence number
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
FRAME_TIMEOUT = 30.0  # once a frame has started, the rest must arrive within this
CONNECT_TIMEOUT = 10.0

_LOOPBACK = ("127.", "::1", "localhost")


class NetError(ConnectionError):
    """The TCP path to a Share failed (unreachable, refused, connection lost)."""


class Refused(Exception):
    """A peer broke the protocol: the connection is closed (server side: and logged)."""


class _Closed(Exception):
    """The peer closed the connection cleanly between frames."""


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


# -- host identity --------------------------------------------------------------------------

_HOST: tuple[int, str] | None = None


def host_id() -> str:
    """Who can map our /dev/shm files: boot id + hostname + the shm directory's device/inode.

    Two processes with the same id see the same ``SHM_DIR``; a different machine, or a
    private mount namespace with its own ``/dev/shm``, gives a different id."""
    global _HOST
    pid = os.getpid()
    if _HOST is not None and _HOST[0] == pid:
        return _HOST[1]
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            boot = f.read().strip()
    except OSError:
        boot = b""
    try:
        st = os.stat(_store.SHM_DIR)
        fs = f"{st.st_dev}:{st.st_ino}".encode()
    except OSError:
        fs = b"?"
    ident = hashlib.sha256(b"|".join([boot, socket.gethostname().encode(), fs])).hexdigest()[:32]
    _HOST = (pid, ident)
    return ident


def forced_tcp() -> bool:
    """``SK_SHARE_TRANSPORT=tcp``: use TCP whenever the Share is served (tests, debugging)."""
    return os.environ.get("SK_SHARE_TRANSPORT", "").lower() == "tcp"


def is_loopback(host: str) -> bool:
    return host.startswith(_LOOPBACK)


# -- raw socket helpers -----------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int, what: str, *, boundary: bool = False) -> bytearray:
    """Read exactly ``n`` bytes. EOF before the first byte with ``boundary`` -> _Closed;
    EOF in the middle -> Refused (truncated)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:], n - got)
        except TimeoutError:
            raise Refused(f"timed out waiting for {what} ({got} of {n} bytes received)") from None
        if k == 0:
            if got == 0 and boundary:
                raise _Closed()
            raise Refused(f"connection closed in the middle of {what} ({got} of {n} bytes: truncated)")
        got += k
    return buf


def server_handshake(sock: socket.socket, key: bytes, timeout: float) -> tuple[bytes, bytes]:
    """Authenticate the client; returns (client->server key, server->client key)."""
    sock.settimeout(timeout)
    ns = secrets.token_bytes(NONCE)
    sock.sendall(PROTO + ns)
    resp = bytes(_recv_exact(sock, NONCE + DIGEST, "the handshake answer"))
    nc, mac = resp[:NONCE], resp[NONCE:]
    if not hmac.compare_digest(mac, _mac(key, b"client", PROTO, ns, nc)):
        raise Refused("authentication failed: the peer does not hold this Share's key")
    sock.sendall(_mac(key, b"server", PROTO, nc, ns))
    return _mac(key, b"c2s", ns, nc), _mac(key, b"s2c", ns, nc)


def client_handshake(sock: socket.socket, key: bytes, timeout: float) -> tuple[bytes, bytes]:
    """Authenticate to the server and check that it holds the key too."""
    sock.settimeout(timeout)
    try:
        hello = bytes(_recv_exact(sock, len(PROTO) + NONCE, "the server greeting"))
    except Refused as e:
        raise NetError(f"the peer is not a Share server or closed the connection ({e})") from None
    if hello[: len(PROTO)] != PROTO:
        raise NetError("the peer is not a Share server (wrong protocol greeting)")
    ns = hello[len(PROTO) :]
    nc = secrets.token_bytes(NONCE)
    sock.sendall(nc + _mac(key, b"client", PROTO, ns, nc))
    try:
        proof = bytes(_recv_exact(sock, DIGEST, "the server's proof"))
    except Refused:
        raise NetError(
            "the Share server refused our authentication (this handle's key does not match: "
            "was the Share restarted by another owner?)"
        ) from None
    if not hmac.compare_digest(proof, _mac(key, b"server", PROTO, nc, ns)):
        raise NetError("the Share server could not prove it holds the key: refusing to talk to it")
    return _mac(key, b"c2s", ns, nc), _mac(key, b"s2c", ns, nc)


class Channel:
    """Authenticated, sequenced, size-limited frames over one socket (after the handshake)."""

    __slots__ = ("max_frame", "recv_key", "recv_seq", "send_key", "send_seq", "sock")

    def __init__(self, sock: socket.socket, send_key: bytes, recv_key: bytes, max_frame: int) -> None:
        self.sock = sock
        self.send_key = send_key
        self.recv_key = recv_key
        self.max_frame = max_frame
        self.send_seq = 0
        self.recv_seq = 0

    def send(self, payload: bytes) -> None:
        n = len(payload)
        if n > self.max_frame:
            raise ValueError(
                f"a Share message of {n} bytes exceeds the frame limit of {self.max_frame} bytes "
                "(share.serve(max_frame=...) raises it)"
            )
        hdr = HDR.pack(n, self.send_seq)
        h = hmac.new(self.send_key, hdr, hashlib.sha256)
        h.update(payload)
        if n < 65536:
            self.sock.sendall(hdr + h.digest() + payload)
        else:
            self.sock.sendall(hdr + h.digest())
            self.sock.sendall(payload)
        self.send_seq += 1

    def recv(self) -> bytes:
        """The next frame's payload, authenticated. Blocks between frames; once a frame
        started, the rest must arrive within FRAME_TIMEOUT."""
        sock = self.sock
        sock.settimeout(None)
        first = _recv_exact(sock, 1, "a frame header", boundary=True)
        sock.settimeout(FRAME_TIMEOUT)
        hdr = bytes(first + _recv_exact(sock, HDR.size - 1, "a frame header"))
        n, seq = HDR.unpack(hdr)
        if n > self.max_frame:
            raise Refused(f"oversized frame: {n} bytes announced, the limit is {self.max_frame}")
        if seq != self.recv_seq:
            raise Refused(f"replayed or reordered frame: sequence number {seq}, expected {self.recv_seq}")
        body = _recv_exact(sock, DIGEST + n, "a frame body")
        view = memoryview(body)
        h = hmac.new(self.recv_key, hdr, hashlib.sha256)
        h.update(view[DIGEST:])
        if not hmac.compare_digest(view[:DIGEST], h.digest()):
            raise Refused("frame authentication failed (tampered, or replayed from another session)")
        self.recv_seq += 1
        return bytes(view[DIGEST:])


# -- server ---------------------------------------------------------------------------------

Dispatch = Callable[[Any], Any]


class Server:
    """Serves one Share's store: an accept thread and one handler thread per connection.

    ``dispatch(request) -> result`` runs in the handler thread (it uses the store like any
    local user: same lock). Exceptions it raises are sent back to the client and re-raised
    there."""

    def __init__(
        self, name: str, host: str, port: int, key: bytes, dispatch: Dispatch, *,
        max_frame: int = DEFAULT_MAX_FRAME, max_connections: int = 64,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the Share server key must be at least 16 bytes")
        self.name = name
        self.key = key
        self.dispatch = dispatch
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family)
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.stats = {"connections": 0, "refused": 0, "requests": 0}
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._closing = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._owner_pid = os.getpid()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"sk-share-serve-{name}", daemon=True,
        )
        self._thread.start()
        if not is_loopback(host):
            log.info("Share %s serving on non-loopback address %s:%s", name, *self.address)

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._closing:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, peer = self.sock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        if self._closing:
                            return
                        raise
                    self._admit(conn, peer)
        finally:
            sel.close()

    def _admit(self, conn: socket.socket, peer: Any) -> None:
        with self._lock:
            if self._closing or len(self._conns) >= self.max_connections:
                self.stats["refused"] += 1
                log.warning(
                    "Share %s: refused connection from %s: too many connections (limit %d)",
                    self.name, _peer(peer), self.max_connections,
                )
                conn.close()
                return
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(
                target=self._serve_conn, args=(conn, peer),
                name=f"sk-share-conn-{self.name}", daemon=True,
            )
            self._conns[conn] = t
            self.stats["connections"] += 1
        t.start()

    def _refuse(self, peer: Any, why: str) -> None:
        with self._lock:
            self.stats["refused"] += 1
        log.warning("Share %s: refused %s: %s", self.name, _peer(peer), why)

    def _serve_conn(self, conn: socket.socket, peer: Any) -> None:
        try:
            try:
                c2s, s2c = server_handshake(conn, self.key, self.handshake_timeout)
            except Refused as e:
                self._refuse(peer, str(e))
                return
            except OSError as e:
                if not self._closing:
                    self._refuse(peer, f"connection failed during the handshake ({e})")
                return
            ch = Channel(conn, s2c, c2s, self.max_frame)
            while not self._closing:
                try:
                    payload = ch.recv()
                except _Closed:
                    return
                except Refused as e:
                    self._refuse(peer, str(e))
                    return
                except OSError:
                    return
                try:
                    request = cucumber.deserialize(payload)
                except Exception as e:  # authenticated but undecodable: a broken client
                    self._refuse(peer, f"undecodable request ({type(e).__name__}: {e})")
                    return
                with self._lock:
                    self.stats["requests"] += 1
                reply = self._run(request)
                try:
                    ch.send(reply)
                except (OSError, ValueError) as e:
                    if not self._closing:
                        log.warning("Share %s: could not answer %s: %s", self.name, _peer(peer), e)
                    return
        finally:
            with self._lock:
                self._conns.pop(conn, None)
            with contextlib.suppress(OSError):
                conn.close()

    def _run(self, request: Any) -> bytes:
        try:
            out: tuple[str, Any] = ("ok", self.dispatch(request))
        except BaseException as e:  # sent back and re-raised in the client
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            out = ("err", e)
        try:
            data = cucumber.serialize(out)
        except Exception as e:
            what = "result" if out[0] == "ok" else f"error {out[1]!r}"
            data = cucumber.serialize(("err", RuntimeError(
                f"the Share owner could not send back the {what}: it is not serializable ({e})"
            )))
        if len(data) > self.max_frame:
            data = cucumber.serialize(("err", RuntimeError(
                f"the answer ({len(data)} bytes) exceeds the Share's frame limit of {self.max_frame} bytes"
            )))
        return data

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listening socket and every connection; join the threads."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            conns = dict(self._conns)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        me = threading.current_thread()
        if self._thread is not me:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self.sock.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in conns.values():
            if t is not me:
                t.join(timeout)
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()


    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors (the threads stayed behind)."""
        self._closing = True
        for s in (self.sock, self._wake_r, self._wake_w, *list(self._conns)):
            with contextlib.suppress(OSError):
                s.close()


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"client {peer[0]}:{peer[1]}"
    return f"client {peer!r}"


# -- client ---------------------------------------------------------------------------------


class Client:
    """One process's connection to a Share server (shared by the handles of that process;
    requests are serialized by a lock). Reconnects on the next request after a failure."""

    def __init__(self, address: tuple[str, int], key: bytes, max_frame: int) -> None:
        self.address = address
        self.key = key
        self.max_frame = max_frame
        self.lock = threading.RLock()
        self.ch: Channel | None = None
        self.pid = os.getpid()

    def _connect(self) -> Channel:
        try:
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
        except OSError as e:
            raise NetError(
                f"cannot reach the Share's owner at {self.address[0]}:{self.address[1]} ({e}); "
                "the owner stopped the Share or exited"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            c2s, s2c = client_handshake(sock, self.key, HANDSHAKE_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        return Channel(sock, c2s, s2c, self.max_frame)

    def close(self) -> None:
        with self.lock:
            ch, self.ch = self.ch, None
            if ch is not None:
                with contextlib.suppress(OSError):
                    ch.sock.close()

    def request(self, req: Any) -> Any:
        data = cucumber.serialize(req)
        with self.lock:
            if self.pid != os.getpid():  # inherited through fork: never share the socket
                if self.ch is not None:
                    with contextlib.suppress(OSError):
                        self.ch.sock.close()
                self.ch = None
                self.pid = os.getpid()
            ch = self.ch
            if ch is None:
                ch = self.ch = self._connect()
            try:
                ch.send(data)
                resp = ch.recv()
            except ValueError:
                raise
            except (OSError, Refused, _Closed) as e:
                self.close()
                raise NetError(
                    f"lost the connection to the Share's owner at {self.address[0]}:{self.address[1]} "
                    f"({type(e).__name__}: {e or 'closed'}); the operation may or may not have been applied"
                ) from None
        status, value = cucumber.deserialize(resp)
        if status == "err":
            raise value
        return value
