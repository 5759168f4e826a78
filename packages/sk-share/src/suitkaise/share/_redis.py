"""A Share whose state lives in Redis: ``Share(backend="redis://host:port/db")``.

::

    process A (any host)               Redis server                 process B (any host)
    ┌───────────────────────┐         ┌──────────────────────────┐  ┌──────────────────────┐
    │ Share handle          │  RESP   │ sk:share:{name}:data     │  │ Share handle         │
    │  share.x      ─ HGET ─┼────────►│   hash: attribute ->     │◄─┼─ HGET  share.x       │
    │  share.n += 1 ─ EVALSHA (INCR)  │   int as decimal text or │  │ EVALSHA  share.n += 1│
    │  share.o.f()  ─ ACQUIRE+HGET,   │   b"C" + cucumber bytes  │  │                      │
    │                 run f, COMMIT ─►│ sk:share:{name}:lock     │  │                      │
    │  lease renewer thread ─ RENEW ─►│   token, PX lease        │  │                      │
    └───────────────────────┘         └──────────────────────────┘  └──────────────────────┘
      the handle travels (pickle / cucumber) as its configuration: URL, password, name,
      lease; the receiver connects to the same server on first use (a per-process pool).

One call's journey: ``share.counter += 1`` is recognised from the caller's bytecode
(``_aug.py``) like on the local Share and reaches ``_ops.aug_apply`` -> ``_ops.run`` ->
``Backend.run(share, op, rop)``. An ``int`` += / -= an ``int`` is one ``EVALSHA`` of
``INCR`` below (the lock check and ``HINCRBY`` in one server-side step). Any other update
(``d[k] += 1``, ``x = x + [v]``, a method of a stored object, ``del``, ``clear``) runs the
same ``op(txn)`` function the local Share runs, on a ``RedisTxn``: ``ACQUIRE`` takes the
Share's lock key (a random token with a lease, ``SET NX PX``) and returns the root value in
the same round trip, ``op`` runs here, and ``COMMIT`` writes every staged value and deletes
the lock in one script, only if the token still holds the lock. ``with share.lock():`` is
the same lock held for the whole block; its writes are staged and committed together.

Why nothing tears and nothing sticks:

* every change reaches Redis in one script (atomic on the server); a process killed before
  ``COMMIT`` changed nothing, one killed after it changed everything;
* the lock is a key with a lease (``lock_lease`` seconds, default 5): a holder that dies
  (SIGKILL, a lost machine) stops renewing it and Redis expires it, so the others wait at
  most one lease. A live holder's thread renews it every lease/3 (``_Renewer``);
  ``COMMIT`` refuses a token that lost the lock (a holder paused past its lease), and
  nothing of that operation is applied;
* plain writes and the ``INCR`` fast path check the lock key in their script, so they
  wait while another process is inside ``share.lock()``. Reads never wait: they see the
  last committed state (a block's writes appear together when it ends).

Values: an ``int`` in the signed 64-bit range is stored as its decimal text (so ``HINCRBY``
applies += in Redis itself); every other value is ``b"C"`` + ``suitkaise.cucumber`` bytes.
Nothing else (no pickle, no marshal) touches the values.

``redis`` (redis-py) is imported only when a Redis-backed Share is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from suitkaise import cucumber

from . import _codec
from ._base import Path, ShareError
from ._base import oga as _oga
from ._txn import checked_encode

log = logging.getLogger("suitkaise.share.redis")

SCHEMES = ("redis://", "rediss://", "unix://")
DEFAULT_LEASE = 5.0
META = "\x00share"  # a field of the data hash present while the Share exists
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_FAST_AUG = {"iadd": 1, "add": 1, "isub": -1, "sub": -1}
_CUCUMBER = 67  # ord("C"): the first byte of every non-int value

# -- scripts (KEYS[1] = data hash, KEYS[2] = lock key) --------------------------------------
# return codes: 1 done, -1 locked by another token, -2 the Share is gone, -3 not an int
# (or the result would overflow): take the general path, -4 no such attribute

_INCR = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
  return -4
end
local r = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if type(r) == 'table' and r.err then return -3 end
return 1
"""

_SET = """
local l = redis.call('GET', KEYS[2])
if l and l ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

_ACQUIRE = """
local l = redis.call('GET', KEYS[2])
if l and l ~= ARGV[1] then return {-1, l} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then return {1, redis.call('HGET', KEYS[1], ARGV[3])} end
return {1}
"""

_COMMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  return -2
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if ARGV[2] == '1' then
  for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.byte(k, 1) ~= 0 then redis.call('HDEL', KEYS[1], k) end
  end
end
for i = 3, #ARGV, 3 do
  if ARGV[i] == 's' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[1], ARGV[i + 1])
  end
end
redis.call('DEL', KEYS[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

_SCRIPTS = {"incr": _INCR, "set": _SET, "acquire": _ACQUIRE, "commit": _COMMIT,
            "release": _RELEASE, "renew": _RENEW}
_SHA = {k: hashlib.sha1(v.encode()).hexdigest() for k, v in _SCRIPTS.items()}

_redis: Any = None  # the redis module, imported on first use


def _import_redis() -> Any:
    global _redis
    if _redis is None:
        try:
            import redis
            import redis.backoff
            import redis.exceptions
            import redis.retry
        except ImportError as e:
            raise ModuleNotFoundError(
                "Share(backend='redis://...') needs the redis package (redis-py >= 5) in this "
                "process: pip install 'sk-share[redis]'."
            ) from e
        _redis = redis
    return _redis


# -- values ----------------------------------------------------------------------------------


def encode(value: Any, where: str | Path) -> bytes:
    """The bytes stored for ``value``: an int64 as decimal text, anything else b"C" + cucumber."""
    if type(value) is int and _I64_MIN <= value <= _I64_MAX:
        return b"%d" % value
    return checked_encode(value, where, _cucumber_bytes)


def _cucumber_bytes(value: Any, _plain: bool) -> bytes:
    return b"C" + cucumber.serialize(value)


def decode(raw: bytes) -> Any:
    if raw[0] == _CUCUMBER:
        return cucumber.deserialize(raw[1:])
    return int(raw)


# -- configuration -----------------------------------------------------------------------------


def check_url(backend: Any) -> str:
    if not isinstance(backend, str) or not backend.startswith(SCHEMES):
        raise ValueError(
            "Share(backend=...) takes a Redis URL: 'redis://host:port/db', 'rediss://host:port/db' "
            "(TLS) or 'unix:///path/redis.sock?db=0'; a password goes in the URL "
            f"('redis://:password@host:port/db') or in password=. Got {backend!r}."
        )
    return backend


def display_url(url: str) -> str:
    """The URL without its password (for messages and repr)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or 6379
    db = parts.path.lstrip("/") or "0"
    return f"{parts.scheme}://{host}:{port}/{db}"


def check_config(
    name: Any, password: Any, lock_lease: Any, redis_options: Any,
) -> tuple[str | None, str | None, float, dict[str, Any]]:
    if name is not None and (not isinstance(name, str) or not name or any(c in name for c in "{}\x00")):
        raise ValueError(f"Share(name=...) must be a non-empty str without '{{', '}}' or NUL, got {name!r}")
    if password is not None and not isinstance(password, str):
        raise TypeError(f"Share(password=...) must be a str, got {type(password).__name__}")
    if isinstance(lock_lease, bool) or not isinstance(lock_lease, int | float) or not 0.05 <= lock_lease <= 3600:
        raise ValueError(f"Share(lock_lease=...) must be a number of seconds in [0.05, 3600], got {lock_lease!r}")
    opts = dict(redis_options or {})
    if not all(isinstance(k, str) for k in opts):
        raise TypeError("Share(redis_options=...) must map redis.Redis keyword names to values")
    for k in ("retry", "decode_responses", "connection_pool"):
        if k in opts:
            raise ValueError(f"Share(redis_options=...) cannot set {k!r}: the Share manages it")
    return name, password, float(lock_lease), opts


Config = tuple[str, str | None, str, float, dict[str, Any]]  # url, password, name, lease, options

_BACKENDS: dict[tuple[Any, ...], Backend] = {}
_BACKENDS_LOCK = threading.Lock()
_FORK_HOOKED = False


def backend_for(config: Config) -> Backend:
    """This process's connection to the Share ``config`` names (one per process and Share)."""
    global _FORK_HOOKED
    url, password, name, lease, opts = config
    key = (url, password, name, lease, tuple(sorted((k, repr(v)) for k, v in opts.items())))
    with _BACKENDS_LOCK:
        b = _BACKENDS.get(key)
        if b is None:
            b = _BACKENDS[key] = Backend(url, password, name, lease, opts)
        if not _FORK_HOOKED:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _FORK_HOOKED = True
        return b


def _after_fork_in_child() -> None:
    global _BACKENDS_LOCK
    _BACKENDS_LOCK = threading.Lock()
    for b in _BACKENDS.values():
        b.after_fork()


def owner_cleanup(config: Config, pid: int) -> None:
    """The creator of an unnamed Share exited (or dropped it): delete its keys."""
    if os.getpid() != pid:
        return
    try:
        b = backend_for(config)
        if b.created and not b.stopped:
            b.delete_all()
        b.close()
        with _BACKENDS_LOCK:  # nobody creates this unnamed Share again: forget it
            for k, v in list(_BACKENDS.items()):
                if v is b:
                    del _BACKENDS[k]
    except Exception as e:  # the server may be gone at exit: nothing else to do
        log.debug("could not delete Share %r from Redis at exit: %r", config[2], e)


# -- the backend ---------------------------------------------------------------------------------


class Backend:
    """One process's connection to a Share stored in Redis, and the operations on it."""

    def __init__(self, url: str, password: str | None, name: str, lease: float, opts: dict[str, Any]) -> None:
        self.url, self.password, self.name, self.lease, self.opts = url, password, name, lease, opts
        self.where = display_url(url)
        self.lease_ms = str(max(1, int(lease * 1000)))
        self.keys = (f"sk:share:{{{name}}}:data", f"sk:share:{{{name}}}:lock")
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.stopped = False
        self.created = False  # this process created (or restored) it on the server
        self.snapshot: dict[bytes, bytes] | None = None
        self._tl = threading.local()
        self.renewer = _Renewer(self)

    @property
    def config(self) -> Config:
        return (self.url, self.password, self.name, self.lease, self.opts)

    def after_fork(self) -> None:
        self._client_lock = threading.Lock()
        self._tl = threading.local()  # blocks of the parent's threads are not ours
        self.renewer = _Renewer(self)
        # redis-py's pool notices the new pid and opens new connections by itself

    # -- connection and errors --

    def client(self) -> Any:
        c = self._client
        if c is not None:
            return c
        with self._client_lock:
            if self._client is None:
                redis = _import_redis()
                kwargs: dict[str, Any] = {
                    "socket_connect_timeout": 10.0, "socket_timeout": 60.0, "health_check_interval": 0,
                    # never resend a command on its own: += is not idempotent (a retried
                    # INCR after a lost reply would count twice)
                    "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
                }
                kwargs.update(self.opts)
                if self.password is not None:
                    kwargs["password"] = self.password
                try:
                    self._client = redis.Redis.from_url(self.url, **kwargs)
                except (ValueError, TypeError) as e:
                    raise ShareError(f"Share {self.name!r}: bad Redis configuration for {self.where}: {e}") from e
            return self._client

    def close(self) -> None:
        conn = getattr(self._tl, "conn", None)
        if conn is not None:
            self._tl.conn = None
            with contextlib.suppress(Exception):
                conn.disconnect()
        c, self._client = self._client, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.close()
            with contextlib.suppress(Exception):
                c.connection_pool.disconnect()

    def error(self, e: BaseException) -> ShareError:
        """A ShareError naming the server, what failed and what to do."""
        redis = _redis
        head = f"Share {self.name!r} on the Redis server {self.where}"
        if isinstance(e, redis.exceptions.AuthenticationError) or (
            isinstance(e, redis.exceptions.ResponseError) and str(e).startswith(("NOAUTH", "WRONGPASS", "NOPERM"))
        ):
            return ShareError(
                f"{head}: the server refused this client's credentials ({e}). Pass the password "
                "in the URL ('redis://:password@host:port/db') or as Share(backend=..., "
                "password=...); with ACL users, 'redis://user:password@host:port/db'."
            )
        if isinstance(e, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | OSError):
            with contextlib.suppress(Exception):
                self.client().connection_pool.disconnect()  # drop every stale connection
            self._tl.conn = None
            return ShareError(
                f"{head} cannot be reached: {e}. Check that redis-server is running and "
                "reachable from this machine (address, port, TLS: rediss://); the Share works "
                "again as soon as it is. If the connection broke after this operation was "
                "sent, it may have been applied."
            )
        return ShareError(f"{head}: the server answered with an error: {type(e).__name__}: {e}")

    def gone(self) -> ShareError:
        if self.stopped:
            return ShareError(f"Share {self.name!r} on {self.where} is stopped: call share.start() in "
                              "the process that created it.")
        return ShareError(
            f"Share {self.name!r} is no longer on the Redis server {self.where}: its keys are gone "
            "(its creator stopped or exited, the keys were deleted or evicted, or the server "
            "restarted without persistence)."
        )

    def _send(self, args: tuple[Any, ...]) -> Any:
        """One command on this thread's own connection, and its reply.

        Each thread keeps one redis-py ``Connection`` (built from the client's pool settings:
        AUTH, TLS, db, timeouts) instead of taking one from the pool per command: the pool's
        bookkeeping costs more than the loopback round trip itself (~15 us of ~30 us)."""
        tl = self._tl
        c = getattr(tl, "conn", None)
        if c is None:
            pool = self.client().connection_pool
            c = tl.conn = pool.connection_class(**pool.connection_kwargs)
            tl.psock = None
        sock = c._sock
        if sock is not None:
            # Between commands nothing may arrive: if the socket is readable, the server
            # closed it (a restart, an idle timeout). Reconnect before sending, so that a
            # server that is back is never reported as unreachable (one poll, ~0.5 us).
            if sock is not tl.psock:
                tl.poller = select.poll()
                tl.poller.register(sock, select.POLLIN)
                tl.psock = sock
            if tl.poller.poll(0):
                c.disconnect()
        try:
            c.send_command(*args, check_health=False)
            return c.read_response()
        except BaseException as e:
            if _redis is None or not isinstance(e, _redis.exceptions.ResponseError):
                with contextlib.suppress(Exception):
                    c.disconnect()  # the reply stream is out of step: never reuse it
            raise

    def cmd(self, *args: Any) -> Any:
        try:
            return self._send(args)
        except ShareError:
            raise
        except Exception as e:
            if _redis is not None and isinstance(e, _redis.exceptions.RedisError | OSError):
                raise self.error(e) from e
            raise

    def script(self, which: str, *args: Any) -> Any:
        """EVALSHA the script (loading it once into a server that does not have it)."""
        if self.stopped:
            raise self.gone()
        try:
            return self._send(("EVALSHA", _SHA[which], 2, *self.keys, *args))
        except Exception as e:
            redis = _redis
            if redis is None or not isinstance(e, redis.exceptions.RedisError | OSError):
                raise
            if not isinstance(e, redis.exceptions.NoScriptError):
                raise self.error(e) from e
        # NOSCRIPT: the command was not run (a new or restarted server): load it, run again
        self.cmd("SCRIPT", "LOAD", _SCRIPTS[which])
        return self.cmd("EVALSHA", _SHA[which], 2, *self.keys, *args)

    # -- lifecycle --

    def create(self) -> None:
        """Make sure the Share exists on the server (the meta field), restoring a snapshot."""
        self.stopped = False
        info = f"created by pid {os.getpid()} on {socket.gethostname()}".encode()
        snap, self.snapshot = self.snapshot, None
        pipe = self.client().pipeline(transaction=True)
        pipe.hsetnx(self.keys[0], META, info)
        if snap:
            pipe.hset(self.keys[0], mapping=snap)
        try:
            pipe.execute()
        except Exception as e:
            if _redis is not None and isinstance(e, _redis.exceptions.RedisError | OSError):
                self.snapshot = snap
                raise self.error(e) from e
            raise
        self.created = True

    def alive(self) -> bool:
        return not self.stopped and bool(self.cmd("EXISTS", self.keys[0]))

    def check_alive(self) -> None:
        if not self.alive():
            raise self.gone()

    def take_snapshot_and_delete(self) -> None:
        pipe = self.client().pipeline(transaction=True)
        pipe.hgetall(self.keys[0])
        pipe.delete(*self.keys)
        try:
            data, _ = pipe.execute()
        except Exception as e:
            if _redis is not None and isinstance(e, _redis.exceptions.RedisError | OSError):
                raise self.error(e) from e
            raise
        self.snapshot = {k: v for k, v in data.items() if not k.startswith(b"\x00")}
        self.stopped = True

    def delete_all(self) -> None:
        self.cmd("DEL", *self.keys)

    # -- reads --

    def hget(self, name: str) -> bytes | None:
        if self.stopped:
            raise self.gone()
        raw: bytes | None = self.cmd("HGET", self.keys[0], name)
        return raw

    def read(self, name: str) -> tuple[Any, bool]:
        raw = self.hget(name)
        if raw is None:
            self.check_alive()
            raise AttributeError(f"Share has no attribute {name!r}")
        obj = decode(raw)
        return obj, _codec.is_immutable(obj)

    def names(self) -> list[str]:
        if self.stopped:
            raise self.gone()
        keys = self.cmd("HKEYS", self.keys[0])
        if not keys:
            self.check_alive()
        return [k.decode() for k in keys if not k.startswith(b"\x00")]

    # -- writes --

    def block(self) -> RedisTxn | None:
        return getattr(self._tl, "block", None)

    def set(self, name: str, value: Any) -> None:
        blk = self.block()
        if blk is not None:
            blk.set(name, value, where=(name,))
            return
        data = encode(value, (name,))
        self._wait_loop(lambda: self.script("set", "", name, data))

    def _wait_loop(self, attempt: Callable[[], Any]) -> Any:
        """Run ``attempt`` until it is not refused because another token holds the lock."""
        delay = 0.0002
        while True:
            r = attempt()
            code = r[0] if isinstance(r, list) else r
            if code == -1:
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
                continue
            if code == -2:
                raise self.gone()
            return r

    def incr(self, name: str, delta: int) -> bool:
        """``share.name += delta`` on the server; False if the value is not an int64 (or the
        result would overflow): the caller takes the general path."""
        r = self._wait_loop(lambda: self.script("incr", name, delta))
        if r == -4:
            raise AttributeError(f"Share has no attribute {name!r}")
        return bool(r == 1)

    def new_token(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{secrets.token_hex(8)}"

    def acquire(self, token: str, root: str = "") -> bytes | None:
        """Take the Share's lock for ``token`` (waiting while another holds it); returns the
        current bytes of ``root`` read in the same step."""
        r = self._wait_loop(lambda: self.script("acquire", token, self.lease_ms, root))
        return r[1] if len(r) > 1 else None

    def release(self, token: str) -> None:
        self.script("release", token)

    def renew(self, token: str) -> bool:
        return bool(self.script("renew", token, self.lease_ms) == 1)

    def commit(self, txn: RedisTxn) -> None:
        args: list[Any] = [txn.token, "1" if txn.cleared else "0"]
        for name, data in txn.changes.items():
            if data is None:
                args += ("d", name, "")
            else:
                args += ("s", name, data)
        r = self.script("commit", *args)
        if r == -2:
            raise self.gone()
        if r != 1:
            raise ShareError(
                f"Share {self.name!r} on {self.where}: this process lost the Share's lock before "
                f"it could commit (held longer than the {self.lease:g} s lease without renewing it: "
                "was the process paused or cut off from the server?). Nothing of this operation "
                "was applied; Share(..., lock_lease=...) sets a longer lease."
            )

    def locked(self, op: Callable[[Any], Any], root: str) -> Any:
        """Run ``op(txn)`` holding the lock: the general read-modify-write path."""
        token = self.new_token()
        raw = self.acquire(token, root)
        txn = RedisTxn(self, token)
        if root:
            txn.orig[root] = raw
        self.renewer.add(token)
        tl = self._tl
        try:
            # a Share operation made by ``op`` itself (a stored object's method that uses
            # the Share) joins this transaction: taking the lock again would wait forever
            tl.block = txn
            try:
                result = op(txn)
            except BaseException:
                tl.block = None
                with contextlib.suppress(ShareError):
                    self.release(token)
                raise
            tl.block = None
            self.commit(txn)
            return result
        finally:
            tl.block = None
            self.renewer.discard(token)

    # -- the operation entry point (``_ops.run``) --

    def run(self, share: Any, op: Callable[[Any], Any], rop: tuple[Any, ...] | None) -> Any:
        kind = rop[0] if rop else ""
        blk = getattr(self._tl, "block", None)
        if blk is not None:  # inside `with share.lock():` in this thread: join the block
            try:
                return op(blk)
            except BaseException:
                blk.restore()
                raise
        if kind == "read":
            return self.read(rop[1])  # type: ignore[index]
        if kind in ("view", "names", "objects"):
            return op(RedisTxn(self, None))
        if kind == "aug":
            path, opname, value = rop[1], rop[2], rop[3]  # type: ignore[index]
            sign = _FAST_AUG.get(opname)
            if sign is not None and len(path) == 1 and type(value) is int:
                delta = sign * value
                if _I64_MIN <= delta <= _I64_MAX and self.incr(path[0], delta):
                    return None
        if kind == "entries":
            raise ShareError("internal error: a Share on Redis has no local entries")
        root = rop[1][0] if kind in ("aug", "write", "call") else ""  # type: ignore[index]
        return self.locked(op, root)


class RedisTxn:
    """The values one operation reads and the changes it stages (the ``_txn.Txn`` interface
    the operations of ``_ops.py`` use). ``token`` is the lock it holds (None: read-only)."""

    __slots__ = ("b", "block", "changes", "cleared", "orig", "token", "work")

    def __init__(self, b: Backend, token: str | None, *, block: bool = False) -> None:
        self.b = b
        self.token = token
        self.block = block
        self.changes: dict[str, bytes | None] = {}
        self.work: dict[str, Any] = {}
        self.orig: dict[str, bytes | None] = {}
        self.cleared = False

    def _raw(self, name: str) -> bytes | None:
        if name in self.orig:
            return self.orig[name]
        raw = self.orig[name] = self.b.hget(name)
        return raw

    def get(self, name: str) -> Any:
        work = self.work
        if name in work:
            return work[name]
        if name in self.changes:
            ch = self.changes[name]
            if ch is None:
                raise KeyError(name)
            obj = decode(ch)
        elif self.cleared:
            raise KeyError(name)
        else:
            raw = self._raw(name)
            if raw is None:
                self.b.check_alive()
                raise KeyError(name)
            obj = decode(raw)
        work[name] = obj
        return obj

    def has(self, name: str) -> bool:
        if name in self.changes:
            return self.changes[name] is not None
        if self.cleared:
            return False
        return name in self.work or self._raw(name) is not None

    def names(self) -> list[str]:
        base = [] if self.cleared else self.b.names()
        out = [n for n in base if self.changes.get(n, b"") is not None]
        out += [n for n, c in self.changes.items() if c is not None and n not in base]
        return out

    def mark_checked(self, name: str) -> None:
        pass  # no cache: every read goes to the server

    def set(self, name: str, obj: Any, *, where: str | Path) -> None:
        self.changes[name] = encode(obj, where)
        self.work[name] = obj

    def touch(self, name: str, obj: Any, *, force: bool, where: str | Path) -> None:
        data = encode(obj, where)
        if not force and name not in self.changes and self.orig.get(name) == data:
            return  # unchanged (a method that did not write)
        self.changes[name] = data
        self.work[name] = obj

    def fits_delta(self, name: str, size: int) -> bool:
        return True  # deltas are written as whole values (``delta``)

    def delta(self, name: str, obj: Any, ops: list[Any], *, where: str | Path) -> None:
        """A nested update (``_delta``): Redis keeps the simple path, the whole value."""
        self.touch(name, obj, force=True, where=where)

    def delete(self, name: str) -> None:
        self.changes[name] = None
        self.work.pop(name, None)

    def clear(self) -> None:
        self.cleared = True
        self.changes = {}
        self.work.clear()

    def restore(self) -> None:
        """One operation of a lock block raised: forget what it may have done to working
        objects (staged bytes are the truth)."""
        for name, obj in list(self.work.items()):
            if _codec.is_immutable(obj):
                continue
            ch = self.changes.get(name)
            if ch is not None:
                self.work[name] = decode(ch)
            else:
                del self.work[name]


class Critical:
    """``with share.lock():`` on a Share in Redis: the Share's lock key for the whole block
    (renewed while it runs); the block's writes are staged and committed in one script."""

    __slots__ = ("b", "outer", "share")

    def __init__(self, share: Any, b: Backend) -> None:
        self.share, self.b, self.outer = share, b, False

    def __enter__(self) -> Any:
        b = self.b
        if b.block() is not None:
            self.outer = False  # nested: joins the outer block
            return self.share
        token = b.new_token()
        b.acquire(token)
        b.renewer.add(token)
        b._tl.block = RedisTxn(b, token, block=True)
        self.outer = True
        return self.share

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.outer:
            return
        b = self.b
        txn = b._tl.block
        b._tl.block = None
        assert txn is not None and txn.token is not None
        try:
            if exc_type is not None:
                with contextlib.suppress(ShareError):
                    b.release(txn.token)
            else:
                b.commit(txn)
        finally:
            b.renewer.discard(txn.token)


class _Renewer:
    """Extends the lease of the locks this process holds, every lease/3 (a daemon thread,
    started when a lock is first taken, ending after a minute without locks)."""

    IDLE = 60.0

    def __init__(self, b: Backend) -> None:
        self.b = b
        self.tokens: set[str] = set()
        self.cv = threading.Condition(threading.Lock())
        self.thread: threading.Thread | None = None

    def add(self, token: str) -> None:
        with self.cv:
            self.tokens.add(token)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._loop, name=f"sk-share-redis-lease[{self.b.name}]", daemon=True,
                )
                self.thread.start()

    def discard(self, token: str) -> None:
        with self.cv:
            self.tokens.discard(token)

    def _loop(self) -> None:
        interval = self.b.lease / 3
        idle = 0.0
        while True:
            with self.cv:
                self.cv.wait(interval)
                tokens = list(self.tokens)
                if not tokens:
                    idle += interval
                    if idle >= self.IDLE:
                        self.thread = None
                        return
                    continue
            idle = 0.0
            for t in tokens:
                try:
                    self.b.renew(t)
                except Exception as e:  # the commit will report a lost lock
                    log.warning("could not renew the lease of Share %r's lock: %r", self.b.name, e)




def handle_config(share: Any) -> Config:
    b: Backend = _oga(share, "__dict__")["_sk_redis"]
    return b.config
