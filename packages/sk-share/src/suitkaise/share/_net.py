"""TCP access to a Share, for processes that cannot map its /dev/shm file (other hosts).

::

    owner process (host A)                                   worker (host B, or a private /dev/shm)
    ┌──────────────────────────────────────────┐             ┌──────────────────────────────┐
    │ Share (owner) ──► /dev/shm/sk-share-*    │             │ Share handle (remote mode)   │
    │                        ▲   (same store,  │             │   share.x += 1               │
    │ Server                 │    same lock)   │    TCP      │     └─► Client.request(op)   │
    │  accept thread ──► handler thread/conn ──┼─────────────┼──── one connection per       │
    │                    runs the op through a │ [TLS,] HMAC │     process and Share        │
    │                    local handle (_share) │ handshake,  │                              │
    └──────────────────────────────────────────┘ MAC'd frames└──────────────────────────────┘
      local processes on host A keep using the shared memory directly (no hop).

Admission (connections that never authenticate cannot lock clients out):

- at most ``max_pending`` (32) handshakes in progress, each within ``HANDSHAKE_TIMEOUT``
  (5 s) in total, however slowly the peer trickles bytes; when the budget is full a new
  connection displaces the OLDEST pending one (a real client needs a round trip or two, and
  retries up to ``CONNECT_ATTEMPTS`` times if it lost its place);
- at most ``max_connections`` authenticated connections; beyond that the client is told it
  is busy (before the handshake: a plaintext ``SKSHBUSY`` notice; if the last slot went while
  it authenticated: a MAC'd status in the server's proof).

Security (nothing is deserialized before both steps pass):

0. With ``serve(tls=...)`` the server first sends ``SKSHTLS2`` and runs a TLS handshake; the
   client accepts only the certificate whose SHA-256 its handle carries (the pin travels
   next to the key), and everything below runs inside TLS.
1. Handshake, fixed-size raw bytes (as ``multiprocessing.connection`` does, but mutual):
   server → ``SKSHNET2`` + 32-byte nonce Ns;
   client → 32-byte nonce Nc + HMAC(key, "client"|Ns|Nc);
   server checks it with ``hmac.compare_digest`` (wrong key, random bytes, silence until
   the handshake deadline: refused, logged, closed) and answers status + HMAC(key,
   "server"|status|Nc|Ns), which the client checks. Both derive per-direction session keys
   from (key, Ns, Nc).
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
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

from suitkaise import cucumber

from . import _store

log = logging.getLogger("suitkaise.share.net")

PROTO = b"SKSHNET2"  # 2: the server's last handshake message carries a status (busy)
NONCE = 32
DIGEST = 32
HDR = struct.Struct("!IQ")  # payload length, sequence number
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 5.0  # server: the whole handshake (TLS included) within this; client: per attempt
DEFAULT_MAX_PENDING = 32  # handshakes in progress at once (a separate budget from max_connections)
CONNECT_ATTEMPTS = 3
ACCEPT_BACKOFF = 0.05  # after accept() failed (out of descriptors): wait, then try again
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


class _Timeout(Refused):
    """The peer sent nothing (or not enough) before the deadline."""


class _Truncated(Refused):
    """The peer closed the connection in the middle of a message."""


def _recv_exact(
    sock: socket.socket, n: int, what: str, *, boundary: bool = False, deadline: float | None = None,
) -> bytearray:
    """Read exactly ``n`` bytes. EOF before the first byte with ``boundary`` -> _Closed;
    EOF in the middle -> _Truncated; the socket timeout, or ``deadline`` (monotonic, for the
    whole message: a peer trickling one byte at a time cannot stretch it) -> _Timeout."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout(f"timed out waiting for {what} ({got} of {n} bytes received)")
            sock.settimeout(left)
        try:
            k = sock.recv_into(view[got:], n - got)
        except TimeoutError:
            raise _Timeout(f"timed out waiting for {what} ({got} of {n} bytes received)") from None
        if k == 0:
            if got == 0 and boundary:
                raise _Closed()
            raise _Truncated(f"connection closed in the middle of {what} ({got} of {n} bytes: truncated)")
        got += k
    return buf


def _shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked on ``sock`` (the socket-level call: ``SSLSocket.shutdown`` would
    drop the TLS object under the thread's feet)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# -- handshake ------------------------------------------------------------------------------
#
# server -> BUSY + !I limit                      all authenticated slots taken: nothing else
#        -> TLS_HELLO, then the TLS handshake    (served with tls=...; then the rest inside TLS)
#        -> PROTO + Ns
# client -> Nc + HMAC(key, "client"|PROTO|Ns|Nc)
# server -> status + HMAC(key, "server"|status|PROTO|Nc|Ns)   status OK, or FULL (the last
#                                                            slot went while we authenticated)

BUSY = b"SKSHBUSY"
TLS_HELLO = b"SKSHTLS2"
LIMIT = struct.Struct("!I")
OK, FULL = b"\x00", b"\x01"


class Busy(Exception):
    """Every authenticated slot of the server is taken (server side: the client was told)."""


def _busy_message(where: str, limit: int | None) -> str:
    n = "" if limit is None else f"{limit} of "
    return (
        f"the Share server at {where} is busy: all {n}its connections are in use "
        "(share.serve(max_connections=...) raises the limit; each process holds one "
        "connection per Share)"
    )


def server_handshake(
    sock: socket.socket, key: bytes, deadline: float, admit: Callable[[], bool],
) -> tuple[bytes, bytes]:
    """Authenticate the client; returns (client->server key, server->client key).

    ``admit()`` is called once the client proved it holds the key: it takes an
    authenticated slot, or returns False (the client is told, with a MAC'd status, and
    ``Busy`` is raised)."""
    ns = secrets.token_bytes(NONCE)
    sock.sendall(PROTO + ns)
    resp = bytes(_recv_exact(sock, NONCE + DIGEST, "the handshake answer", deadline=deadline))
    nc, mac = resp[:NONCE], resp[NONCE:]
    if not hmac.compare_digest(mac, _mac(key, b"client", PROTO, ns, nc)):
        raise Refused("authentication failed: the peer does not hold this Share's key")
    status = OK if admit() else FULL
    sock.sendall(status + _mac(key, b"server", status, PROTO, nc, ns))
    if status == FULL:
        raise Busy()
    return _mac(key, b"c2s", ns, nc), _mac(key, b"s2c", ns, nc)


class _Dropped(NetError):
    """The server closed the connection before the handshake finished (it may have dropped
    a pending handshake to make room: worth another try)."""


def client_handshake(
    sock: socket.socket, key: bytes, timeout: float, *, tls_pin: str | None = None,
) -> tuple[socket.socket, bytes, bytes]:
    """Authenticate to the server and check that it holds the key too; with ``tls_pin``
    (the SHA-256 of the server's certificate) first wrap the socket in TLS.

    Returns the socket to use from now on (the TLS one, if any) and the session keys.
    Raises NetError saying what happened, or _Dropped when worth retrying."""
    deadline = time.monotonic() + timeout
    where = _where(sock)
    first = bytes(_client_recv(sock, len(PROTO), "the server greeting", deadline, where))
    if first == BUSY:
        limit = LIMIT.unpack(_client_recv(sock, LIMIT.size, "the busy notice", deadline, where))[0]
        raise NetError(_busy_message(where, limit))
    if first == TLS_HELLO:
        if tls_pin is None:
            raise NetError(
                f"the Share server at {where} requires TLS, but this handle has no TLS settings "
                "(it was serialized before share.serve(tls=...)): send the Share again"
            )
        sock = _tls_client(sock, tls_pin, deadline, where)
        first = bytes(_client_recv(sock, len(PROTO), "the server greeting", deadline, where))
    elif tls_pin is not None and first == PROTO:
        raise NetError(
            f"the Share server at {where} does not use TLS, but this handle was served with "
            "TLS: refusing to talk in plaintext (was the Share re-served without tls=?)"
        )
    if first != PROTO:
        if first[:6] == PROTO[:6]:  # SKSH..: another version of this protocol
            raise NetError(
                f"the Share server at {where} speaks another version of the protocol ({first!r}, "
                f"this side speaks {PROTO!r}): run the same suitkaise version on both ends"
            )
        raise NetError(f"the peer at {where} is not a Share server (it greeted with {first!r})")
    ns = bytes(_client_recv(sock, NONCE, "the server greeting", deadline, where))
    nc = secrets.token_bytes(NONCE)
    sock.sendall(nc + _mac(key, b"client", PROTO, ns, nc))
    try:
        answer = bytes(_recv_exact(sock, 1 + DIGEST, "the server's proof", deadline=deadline))
    except _Timeout:
        raise NetError(f"the Share server at {where} did not answer our authentication within "
                       f"{timeout:g} s") from None
    except (Refused, OSError):
        raise _Dropped(
            f"the Share server at {where} refused our authentication (this handle's key does "
            "not match: was the Share restarted by another owner?)"
        ) from None
    status, proof = answer[:1], answer[1:]
    if not hmac.compare_digest(proof, _mac(key, b"server", status, PROTO, nc, ns)):
        raise NetError(f"the Share server at {where} could not prove it holds the key: refusing to talk to it")
    if status != OK:
        raise NetError(_busy_message(where, None))
    return sock, _mac(key, b"c2s", ns, nc), _mac(key, b"s2c", ns, nc)


def _client_recv(sock: socket.socket, n: int, what: str, deadline: float, where: str) -> bytearray:
    try:
        return _recv_exact(sock, n, what, deadline=deadline)
    except _Timeout:
        raise NetError(
            f"no complete greeting from {where} in time: it is not a Share server, or it is "
            "overloaded"
        ) from None
    except (Refused, OSError) as e:
        raise _Dropped(
            f"the Share server at {where} closed the connection before its greeting ({e}): "
            "it is shutting down, or overloaded with pending connections"
        ) from None


def _where(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


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


# -- TLS ------------------------------------------------------------------------------------
#
# The server's certificate is pinned: its SHA-256 travels inside the serialized Share next to
# the key, and a client accepts exactly that certificate (no CA, no host name: a self-signed
# certificate is enough, and a CA-signed one cannot be swapped in by a man in the middle).
# The HMAC handshake then runs inside TLS, so both ends still prove they hold the key.

TLSConfig = Any  # ssl.SSLContext | certfile | (certfile, keyfile); ssl is imported lazily


def server_tls(tls: TLSConfig) -> tuple[ssl.SSLContext, str]:
    """The server context for ``share.serve(tls=...)`` and its certificate's pin (SHA-256 hex).

    ``tls`` is an ``ssl.SSLContext`` (server side), a PEM file holding the certificate and
    its key, or a ``(certfile, keyfile)`` pair."""
    import ssl

    if isinstance(tls, ssl.SSLContext):
        ctx = tls
        if ctx.protocol == ssl.PROTOCOL_TLS_CLIENT:
            raise ValueError(
                "share.serve(tls=...) needs a server-side SSLContext (ssl.PROTOCOL_TLS_SERVER, "
                "or ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)), got a client one"
            )
        if ctx.verify_mode == ssl.CERT_REQUIRED:
            raise ValueError(
                "share.serve(tls=...): the SSLContext requires client certificates, but Share "
                "clients authenticate with the Share's key and present none; use "
                "verify_mode=ssl.CERT_NONE"
            )
    else:
        if isinstance(tls, tuple) and len(tls) == 2:
            certfile, keyfile = tls
        elif isinstance(tls, str | os.PathLike):
            certfile, keyfile = tls, None
        else:
            raise TypeError(
                "share.serve(tls=...) takes an ssl.SSLContext, a PEM file with the certificate "
                f"and its key, or a (certfile, keyfile) pair; got {type(tls).__name__}"
            )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(
                f"share.serve(tls=...): cannot load the certificate {os.fspath(certfile)!r}"
                + (f" with the key {os.fspath(keyfile)!r}" if keyfile is not None else "")
                + f": {e}"
            ) from None
    return ctx, _probe_pin(ctx)


def _probe_pin(ctx: ssl.SSLContext) -> str:
    """Run one TLS handshake with ``ctx`` in memory and return the SHA-256 of the certificate
    it presents (an SSLContext does not expose its own certificate)."""
    import ssl

    bios = [ssl.MemoryBIO() for _ in range(4)]
    srv = ctx.wrap_bio(bios[0], bios[1], server_side=True)
    cli = _client_context().wrap_bio(bios[2], bios[3])
    done = {"srv": False, "cli": False}
    for _ in range(20):
        for who, obj, out, peer_in in (("cli", cli, bios[3], bios[0]), ("srv", srv, bios[1], bios[2])):
            if not done[who]:
                try:
                    obj.do_handshake()
                    done[who] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as e:
                    raise ValueError(f"share.serve(tls=...): the SSLContext cannot serve TLS: {e}") from None
            data = out.read()
            if data:
                peer_in.write(data)
        if done["srv"] and done["cli"]:
            break
    der = cli.getpeercert(binary_form=True)
    if not der:
        raise ValueError("share.serve(tls=...): the SSLContext presents no certificate")
    return hashlib.sha256(der).hexdigest()


_CLIENT_CTX: ssl.SSLContext | None = None


def _client_context() -> ssl.SSLContext:
    """TLS 1.2+ client context that accepts any certificate: the caller checks the pin."""
    global _CLIENT_CTX
    if _CLIENT_CTX is None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # verified by the pin, below
        _CLIENT_CTX = ctx
    return _CLIENT_CTX


def _tls_client(sock: socket.socket, pin: str, deadline: float, where: str) -> socket.socket:
    import ssl

    tsock = _client_context().wrap_socket(sock, do_handshake_on_connect=False)
    try:
        tsock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            tsock.do_handshake()
        except TimeoutError:
            raise NetError(f"the TLS handshake with the Share server at {where} timed out") from None
        except ssl.SSLError as e:
            raise NetError(f"the TLS handshake with the Share server at {where} failed: {e}") from None
        except OSError as e:
            raise _Dropped(f"the Share server at {where} closed the connection during TLS ({e})") from None
        der = tsock.getpeercert(binary_form=True) or b""
        if not hmac.compare_digest(hashlib.sha256(der).hexdigest(), pin):
            raise NetError(
                f"the Share server at {where} presented a TLS certificate other than the one "
                "this Share was served with: refusing to talk to it (a man in the middle, or "
                "the Share was re-served with another certificate: send the Share again)"
            )
    except BaseException:
        tsock.close()
        raise
    return tsock


# -- server ---------------------------------------------------------------------------------

Dispatch = Callable[[Any], Any]


class _Conn:
    """One accepted connection: its socket (replaced by the TLS one once wrapped)."""

    __slots__ = ("evicted", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.peer = peer
        self.evicted = False


class Server:
    """Serves one Share's store: an accept thread and one handler thread per connection.

    Two budgets, so that connections which never authenticate cannot lock clients out:
    at most ``max_pending`` handshakes in progress (when a new connection arrives and the
    budget is full, the OLDEST pending handshake is dropped: an idle or slow peer loses
    its place to a fresh one, and a real client needs only a round trip or two), each
    within ``handshake_timeout`` seconds in total; and at most ``max_connections``
    authenticated connections (beyond that a client is told the server is busy).

    ``dispatch(request) -> result`` runs in the handler thread (it uses the store like any
    local user: same lock). Exceptions it raises are sent back to the client and re-raised
    there."""

    def __init__(
        self, name: str, host: str, port: int, key: bytes, dispatch: Dispatch, *,
        max_frame: int = DEFAULT_MAX_FRAME, max_connections: int = 64,
        max_pending: int = DEFAULT_MAX_PENDING, handshake_timeout: float = HANDSHAKE_TIMEOUT,
        tls: TLSConfig | None = None,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the Share server key must be at least 16 bytes")
        for what, v in (("max_connections", max_connections), ("max_pending", max_pending)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{what} must be an int >= 1, got {v!r}")
        self.name = name
        self.key = key
        self.dispatch = dispatch
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.handshake_timeout = handshake_timeout
        self.tls: ssl.SSLContext | None = None
        self.tls_pin: str | None = None
        if tls is not None:
            self.tls, self.tls_pin = server_tls(tls)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=128)
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.stats = {"connections": 0, "refused": 0, "requests": 0, "busy": 0, "evicted": 0,
                      "accept_errors": 0}
        self._accept_logged = -1e9
        self._lock = threading.Lock()
        self._pending: dict[_Conn, None] = {}  # in arrival order: the first is the oldest
        self._conns: dict[_Conn, None] = {}  # authenticated
        self._threads: set[threading.Thread] = set()
        self._closing = False
        # made here, not in the thread: out of descriptors, serve() fails instead of the thread
        made: list[Any] = [self.sock]
        try:
            self._wake_r, self._wake_w = socket.socketpair()
            made += [self._wake_r, self._wake_w]
            self._sel = selectors.DefaultSelector()
            made.append(self._sel)
            self._sel.register(self.sock, selectors.EVENT_READ)
            self._sel.register(self._wake_r, selectors.EVENT_READ)
        except BaseException:
            for obj in made:
                obj.close()
            raise
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"sk-share-serve-{name}", daemon=True,
        )
        self._thread.start()
        if not is_loopback(host):
            log.info("Share %s serving on non-loopback address %s:%s", name, *self.address)

    def _accept_loop(self) -> None:
        sel = self._sel
        try:
            while not self._closing:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, peer = self.sock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        if self._closing:
                            return
                        # out of descriptors (EMFILE/ENFILE, a flood of connections) or
                        # memory: the connection waits in the backlog; never let this
                        # thread die, or the Share stops accepting for good
                        self._accept_failed(e)
                        self._wake_r_wait(ACCEPT_BACKOFF)
                        continue
                    self._admit(conn, peer)
        finally:
            sel.close()

    def _accept_failed(self, e: OSError) -> None:
        now = time.monotonic()
        with self._lock:
            self.stats["accept_errors"] += 1
            if now - self._accept_logged < 5.0:
                return  # once per 5 s: a flood must not become a flood of log lines
            self._accept_logged = now
        log.warning("Share %s: cannot accept connections for now (%s); retrying", self.name, e)

    def _wake_r_wait(self, seconds: float) -> None:
        """Sleep, but wake at once for stop() (poll() needs no new descriptor, unlike epoll;
        select() cannot take descriptors above 1023)."""
        p = select.poll()
        p.register(self._wake_r, select.POLLIN)
        p.poll(seconds * 1000)

    def _admit(self, conn: socket.socket, peer: Any) -> None:
        with self._lock:
            if self._closing:
                conn.close()
                return
            if len(self._conns) >= self.max_connections:
                self.stats["refused"] += 1
                self.stats["busy"] += 1
                with contextlib.suppress(OSError):  # a fresh socket's buffer takes 12 bytes
                    conn.send(BUSY + LIMIT.pack(self.max_connections))
                conn.close()
                log.warning(
                    "Share %s: refused connection from %s: busy, all %d connections in use",
                    self.name, _peer(peer), self.max_connections,
                )
                return
            if len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                del self._pending[oldest]
                oldest.evicted = True
                self.stats["evicted"] += 1
                _shutdown(oldest.sock)  # its thread logs it and exits
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(conn, peer)
            t = threading.Thread(
                target=self._serve_conn, args=(c,), name=f"sk-share-conn-{self.name}", daemon=True,
            )
            self._pending[c] = None
            self._threads.add(t)
            self.stats["connections"] += 1
        t.start()

    def _refuse(self, peer: Any, why: str) -> None:
        with self._lock:
            self.stats["refused"] += 1
        log.warning("Share %s: refused %s: %s", self.name, _peer(peer), why)

    def _take_slot(self, c: _Conn) -> bool:
        with self._lock:
            self._pending.pop(c, None)
            if c.evicted or self._closing or len(self._conns) >= self.max_connections:
                if not c.evicted:
                    self.stats["busy"] += 1
                return False
            self._conns[c] = None
            return True

    def _handshake(self, c: _Conn) -> Channel:
        deadline = time.monotonic() + self.handshake_timeout
        if self.tls is not None:
            c.sock.sendall(TLS_HELLO)
            with self._lock:  # an eviction must see the socket it has to shut down
                c.sock = self.tls.wrap_socket(c.sock, server_side=True, do_handshake_on_connect=False)
                if c.evicted:
                    _shutdown(c.sock)
            c.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                c.sock.do_handshake()
            except TimeoutError:
                raise _Timeout("timed out in the TLS handshake") from None
            except OSError as e:  # ssl.SSLError is an OSError
                raise Refused(f"TLS handshake failed (a plaintext client?): {e}") from None
        c2s, s2c = server_handshake(c.sock, self.key, deadline, lambda: self._take_slot(c))
        c.sock.settimeout(None)
        return Channel(c.sock, s2c, c2s, self.max_frame)

    def _serve_conn(self, c: _Conn) -> None:
        peer = c.peer
        try:
            try:
                ch = self._handshake(c)
            except Busy:
                if not c.evicted:
                    self._refuse(peer, f"busy: all {self.max_connections} connections in use")
                return
            except (Refused, OSError) as e:
                if c.evicted:
                    self._refuse(peer, (
                        f"dropped its unfinished handshake to make room for a newer connection "
                        f"({self.max_pending} handshakes were pending)"
                    ))
                elif not self._closing:
                    why = str(e) if isinstance(e, Refused) else f"connection failed during the handshake ({e})"
                    self._refuse(peer, why)
                return
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
                self._pending.pop(c, None)
                self._conns.pop(c, None)
                self._threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                c.sock.close()

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
            conns = [*self._pending, *self._conns]
            threads = set(self._threads)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        me = threading.current_thread()
        if self._thread is not me:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in conns:
            _shutdown(c.sock)
        for t in threads:
            if t is not me:
                t.join(timeout)
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors (the threads stayed behind)."""
        self._closing = True
        for s in (self.sock, self._wake_r, self._wake_w, *(c.sock for c in [*self._pending, *self._conns])):
            with contextlib.suppress(OSError):
                s.close()
        with contextlib.suppress(OSError):
            self._sel.close()


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"client {peer[0]}:{peer[1]}"
    return f"client {peer!r}"


# -- client ---------------------------------------------------------------------------------


class Client:
    """One process's connection to a Share server (shared by the handles of that process;
    requests are serialized by a lock). Reconnects on the next request after a failure.
    ``tls_pin``: the server's certificate SHA-256 when it was served with TLS."""

    def __init__(
        self, address: tuple[str, int], key: bytes, max_frame: int, tls_pin: str | None = None,
    ) -> None:
        self.address = address
        self.key = key
        self.max_frame = max_frame
        self.tls_pin = tls_pin
        self.lock = threading.RLock()
        self.ch: Channel | None = None
        self.pid = os.getpid()

    def _connect(self) -> Channel:
        # A server under a flood of connections that never authenticate drops its oldest
        # pending handshakes to make room: a real client that lost its place tries again.
        for attempt in range(CONNECT_ATTEMPTS):
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
                sock, c2s, s2c = client_handshake(sock, self.key, HANDSHAKE_TIMEOUT, tls_pin=self.tls_pin)
                sock.settimeout(None)
                return Channel(sock, c2s, s2c, self.max_frame)
            except _Dropped as e:
                sock.close()
                if attempt + 1 == CONNECT_ATTEMPTS:
                    raise NetError(f"{e} ({CONNECT_ATTEMPTS} attempts)") from None
                time.sleep(0.05 * 4**attempt)
            except BaseException:
                sock.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

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
                        self.ch.sock.close()  # the fd only: no TLS close_notify
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
