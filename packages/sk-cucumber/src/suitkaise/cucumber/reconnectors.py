"""Reconnectors: stand-ins for live resources that cannot cross a process boundary.

A database connection, a socket or a running thread cannot be copied into
another process. cucumber replaces each with a Reconnector that keeps what is
needed to make a *new* one (never passwords or tokens) and rebuilds it with
``Reconnector.reconnect`` or, for a whole object graph at once,
``suitkaise.cucumber.reconnect_all``.

Two families:

* **lazy** reconnectors (SQLite connection/cursor, socket, thread, pipe end,
  regex match) reconnect by themselves on first use of an attribute they do
  not have (``rec.execute(...)``), cache that live object and forward to it.
  ``reconnect_all`` hands out that same cached object, so what was done
  through the reconnector is visible through the live object it returns.
* **auth-taking** database clients (``DbReconnector`` subclasses) and
  ``SubprocessReconnector`` never act on attribute access: they need a
  password, or starting them has side effects. Call ``reconnect(...)``.

Serializing a reconnector never reconnects it and never carries the live
object a lazy access created: it travels as its metadata only.
"""

from __future__ import annotations

import importlib
import os
import re
import reprlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    # Imported where a reconnector uses them: an object of these types can only exist
    # once its module is imported, and importing all three cost `import suitkaise.cucumber`
    # about 12 ms.
    import socket
    import sqlite3
    import subprocess

__all__ = [
    "DbReconnector",
    "DuckDBReconnector",
    "MatchReconnector",
    "MongoReconnector",
    "MySQLReconnector",
    "PipeReconnector",
    "PostgresReconnector",
    "ReconnectWarning",
    "Reconnector",
    "RedisReconnector",
    "SQLAlchemyReconnector",
    "SQLiteConnectionReconnector",
    "SQLiteCursorReconnector",
    "SocketReconnector",
    "SubprocessReconnector",
    "SubprocessSnapshot",
    "ThreadReconnector",
    "rebuilt_count",
]

# One lock for every lazy reconnect: a cursor's lazy reconnect takes its
# connection's lazy reconnect inside it, hence re-entrant.
_LAZY_LOCK = threading.RLock()
_MISSING = object()
_rebuilt = 0  # reconnectors rebuilt from payloads in this process (see rebuilt_count)


def rebuilt_count() -> int:
    """How many Reconnectors this process has rebuilt from payloads so far.

    Compare it before and after ``deserialize`` to know, without walking the result,
    whether a payload brought any (a Pool worker does, before ``reconnect_all``).
    """
    return _rebuilt


class ReconnectWarning(UserWarning):
    """``~suitkaise.cucumber.reconnect_all`` left a Reconnector in place because it failed."""


class Reconnector:
    """Base class: metadata for recreating one live resource.

    ``reconnect(...)`` returns a NEW live resource on every call. Subclasses
    that set ``_lazy_reconnect_on_access = True`` reconnect on first use of a
    public attribute they do not have themselves (``rec.execute(...)`` on a
    SQLite reconnector), cache the live object in ``_lazy_target`` and forward
    to it; names starting with ``_`` never trigger a reconnect (tools probe
    those: IPython's ``_repr_html_``, pickle's dunders). ``auth_key`` is the key
    ``reconnect_all`` looks up in its ``**auth`` mapping
    (``"psycopg2.Connection"``); ``auth_aliases`` are accepted too.
    """

    _lazy_reconnect_on_access: ClassVar[bool] = False
    #: instance attributes that are live objects: never serialized.
    _transient_attrs: ClassVar[frozenset[str]] = frozenset({"_lazy_target", "_lazy_busy"})
    auth_key: ClassVar[str | None] = None
    auth_aliases: ClassVar[tuple[str, ...]] = ()

    def reconnect(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement reconnect()")

    def usable(self, live: Any) -> bool:
        """Whether ``live``, made by this reconnector's ``reconnect``, can still be used
        (not closed). ``reconnect_all(cache=)`` hands a cached object out again only then,
        so a task that closes its connection gets a new one next time."""
        return True

    def _live(self) -> Any:
        """The cached live object of a lazy reconnector, created by ``reconnect()`` on first use."""
        with _LAZY_LOCK:
            target = self.__dict__.get("_lazy_target", _MISSING)
            if target is _MISSING:
                if self.__dict__.get("_lazy_busy"):
                    raise RecursionError(
                        f"{type(self).__name__}.reconnect() used an attribute the reconnector lacks"
                    )
                self.__dict__["_lazy_busy"] = True
                try:
                    target = self.reconnect()
                finally:
                    del self.__dict__["_lazy_busy"]
                self.__dict__["_lazy_target"] = target
            return target

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the reconnector itself lacks.
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} object has no attribute '{name}'")
        if not type(self)._lazy_reconnect_on_access:
            raise AttributeError(
                f"{type(self).__name__} object has no attribute '{name}': it is not connected. "
                "Call .reconnect(...) or suitkaise.cucumber.reconnect_all(obj, **auth) first "
                "(in an Skprocess, decorate the class with @autoreconnect(**auth) to do it before "
                "__prerun__)."
            )
        target = self._live()
        if target is None:
            raise AttributeError(
                f"{type(self).__name__} could not recreate its resource, so it has no attribute '{name}'"
            )
        return getattr(target, name)

    def __getstate__(self) -> dict[str, Any]:
        # Travel as metadata only: never the live object a lazy access created.
        skip = type(self)._transient_attrs
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        global _rebuilt
        _rebuilt += 1
        self.__dict__.update(state)

    def __repr__(self) -> str:
        fields = ", ".join(  # reprlib: a dump or a row snapshot can be huge
            f"{k}={reprlib.repr(v)}" for k, v in self.__dict__.items() if not k.startswith("_")
        )
        return f"{type(self).__name__}({fields})"


# -- SQLite -----------------------------------------------------------------------


class SQLiteConnectionReconnector(Reconnector):
    """A ``sqlite3.Connection``: reopened by path, or rebuilt from its dump when in memory.

    ``database`` is the absolute path of the main database (``":memory:"`` for
    an in-memory one), ``attached`` the ``(name, path)`` of attached file
    databases. An in-memory database carries ``dump``: the SQL of its schema and
    rows (``Connection.iterdump()``), replayed into a new in-memory database.
    A file that no longer exists raises ``FileNotFoundError``: reconnecting never
    creates an empty database in its place. Not carried: ``detect_types``,
    ``timeout`` and ``check_same_thread`` (sqlite3 does not expose them),
    temporary tables, and the contents of attached in-memory databases.
    """

    _lazy_reconnect_on_access = True
    auth_key = "sqlite3.Connection"

    database: str | None
    isolation_level: str | None
    is_memory: bool
    dump: list[str] | None
    attached: list[tuple[str, str]]
    row_factory: Any
    text_factory: Any

    def reconnect(self) -> sqlite3.Connection:
        import sqlite3

        if self.database is None:
            raise sqlite3.ProgrammingError(
                "the sqlite3 connection was closed before it was serialized; its database is unknown"
            )
        if self.is_memory:
            conn = sqlite3.connect(":memory:")
            if self.dump:
                conn.executescript("\n".join(self.dump))
        else:
            conn = _open_existing_sqlite(self.database)
        for name, path in self.attached:
            if not os.path.exists(path):
                conn.close()
                raise FileNotFoundError(f"attached sqlite database {name!r} not found: {path}")
            conn.execute("ATTACH DATABASE ? AS " + _quote_ident(name), (path,))
        conn.isolation_level = self.isolation_level  # type: ignore[assignment]
        if self.row_factory is not None:
            conn.row_factory = self.row_factory
        if self.text_factory is not None:
            conn.text_factory = self.text_factory
        return conn

    def usable(self, live: Any) -> bool:
        return _sqlite_open(live)

    # `with rec:` is a transaction on the live connection, as with sqlite3.
    def __enter__(self) -> Any:
        return self._live().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._live().__exit__(*exc)


def _sqlite_open(conn: Any) -> bool:
    import sqlite3

    try:
        conn.total_changes  # noqa: B018 - raises on a closed connection
    except sqlite3.ProgrammingError:
        return False
    return True


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _open_existing_sqlite(path: str) -> sqlite3.Connection:
    import sqlite3
    from urllib.parse import quote

    if not os.path.exists(path):
        raise FileNotFoundError(
            f"sqlite database file not found in this process: {path} "
            "(reconnecting never creates an empty database in its place)"
        )
    return sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True)


class SQLiteCursorReconnector(Reconnector):
    """A ``sqlite3.Cursor``: a new cursor on the reconnected connection.

    ``connection`` is the connection's reconnector. ``reconnect()`` makes a new
    cursor each call, on the connection reconnector's cached live connection,
    so a cursor and its connection reconnected by ``reconnect_all`` share
    one connection (for an in-memory database: one database). ``lastrowid``
    and ``rowcount`` are kept for information.

    A result set cannot travel: its rows are produced by the sender's database
    handle as they are fetched (fetching them up front would consume them
    from the sender's cursor). When the old cursor still had rows to fetch
    (``unread_rows``), every fetch on the new cursor (``fetchone``,
    ``fetchmany``, ``fetchall``, iteration) raises ``sqlite3.ProgrammingError``
    saying so, until it runs a statement of its own: never a silent empty
    result. A fresh or fully fetched cursor comes back as a plain new cursor.
    """

    _lazy_reconnect_on_access = True
    auth_key = "sqlite3.Cursor"

    connection: Any
    arraysize: int
    lastrowid: int | None
    rowcount: int
    row_factory: Any
    unread_rows: bool = False  # (absent from payloads of sk-cucumber 0.5 and earlier)

    def reconnect(self) -> sqlite3.Cursor:
        conn = self.connection
        live = conn._live() if isinstance(conn, Reconnector) else conn
        cur = live.cursor(_lost_result_cursor()) if self.unread_rows else live.cursor()
        cur.arraysize = self.arraysize
        if self.row_factory is not None:
            cur.row_factory = self.row_factory
        return cur

    def usable(self, live: Any) -> bool:
        return _sqlite_open(live.connection)  # a closed cursor cannot be told apart; its connection can

    def __iter__(self) -> Any:
        return iter(self._live())


_LostResultCursor: Any = None


def _lost_result_cursor() -> Any:
    """``sqlite3.Cursor`` whose fetches raise until it executes a statement of its own (made
    on first use: importing sqlite3 costs ``import suitkaise.cucumber`` milliseconds)."""
    global _LostResultCursor
    if _LostResultCursor is not None:
        return _LostResultCursor
    import sqlite3

    message = (
        "this cursor was sent to another process with rows not fetched yet, and a result set "
        "cannot travel between processes: execute the query again here (or fetch the rows "
        "before sending them, and send the rows)"
    )

    class LostResultCursor(sqlite3.Cursor):
        """A reconnected cursor whose original had unread rows (``SQLiteCursorReconnector``)."""

        lost = True

        def _check(self) -> None:
            if self.lost:
                raise sqlite3.ProgrammingError(message)

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            self.lost = False
            return super().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            self.lost = False
            return super().executemany(*args, **kwargs)

        def executescript(self, *args: Any, **kwargs: Any) -> Any:
            self.lost = False
            return super().executescript(*args, **kwargs)

        def fetchone(self) -> Any:
            self._check()
            return super().fetchone()

        def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
            self._check()
            return super().fetchmany(*args, **kwargs)

        def fetchall(self) -> Any:
            self._check()
            return super().fetchall()

        def __next__(self) -> Any:
            self._check()
            return super().__next__()

    LostResultCursor.__module__ = __name__
    _LostResultCursor = LostResultCursor
    return LostResultCursor


# -- socket -----------------------------------------------------------------------


class SocketReconnector(Reconnector):
    """A ``socket.socket``: a new socket with the same family/type/proto, best-effort reconnected.

    ``reconnect()`` connects to ``remote_addr`` when the original was connected;
    re-binds ``local_addr`` and listens again when the original was listening
    (this fails with ``OSError`` while the original still holds the address:
    close it first); a socket that was neither gives a fresh unconnected
    socket. Failures raise ``OSError`` naming the address instead of handing
    back a socket that silently goes nowhere; ``reconnect(connect=False)``
    returns the fresh socket without binding or connecting. TLS (``ssl``)
    wrapping is not restored.
    """

    _lazy_reconnect_on_access = True
    auth_key = "socket.socket"

    family: int
    type: int
    proto: int
    timeout: float | None
    blocking: bool
    local_addr: Any
    remote_addr: Any
    listening: bool
    was_closed: bool

    _CONNECT_TIMEOUT: ClassVar[float] = 10.0

    def reconnect(self, *, connect: bool = True) -> socket.socket:
        import socket

        sock = socket.socket(self.family, self.type, self.proto)
        try:
            if connect and not self.was_closed:
                if self.listening:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    _act(sock.bind, self.local_addr, "bind to")
                    sock.listen()
                elif self.remote_addr:
                    sock.settimeout(self.timeout if self.timeout is not None else self._CONNECT_TIMEOUT)
                    _act(sock.connect, self.remote_addr, "connect to")
            sock.settimeout(self.timeout)
            if self.timeout is None:
                sock.setblocking(self.blocking)
        except BaseException:
            sock.close()
            raise
        return sock

    def usable(self, live: Any) -> bool:
        return bool(live.fileno() != -1)

    def __enter__(self) -> Any:
        return self._live().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._live().__exit__(*exc)


def _act(fn: Any, addr: Any, what: str) -> None:
    try:
        fn(addr)
    except OSError as e:
        raise OSError(e.errno, f"SocketReconnector could not {what} {addr!r}: {e.strerror or e}") from e


# -- thread -----------------------------------------------------------------------


class ThreadReconnector(Reconnector):
    """A ``threading.Thread``: a new, not yet started thread with the same configuration.

    Keeps ``name``, ``daemon``, ``target``, ``args``, ``kwargs`` and the
    thread's own class; a ``Thread`` subclass also keeps its instance
    attributes (so ``threading.Timer`` keeps its interval and function).
    ``was_alive`` records whether the original was running (information only).
    ``reconnect(start=False)`` starts the new thread only when asked.
    """

    _lazy_reconnect_on_access = True
    auth_key = "threading.Thread"

    thread_class: type[threading.Thread]
    name: str
    daemon: bool
    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    extra: dict[str, Any]
    was_alive: bool

    def reconnect(self, start: bool = False) -> threading.Thread:
        cls = self.thread_class
        if cls is threading.Thread:
            t = threading.Thread(
                target=self.target, name=self.name, args=self.args, kwargs=self.kwargs, daemon=self.daemon
            )
        else:
            # A subclass's __init__ may take anything: build it like pickle does.
            t = cls.__new__(cls)
            threading.Thread.__init__(
                t, target=self.target, name=self.name, args=self.args, kwargs=self.kwargs, daemon=self.daemon
            )
            t.__dict__.update(self.extra)
        if start:
            t.start()
        return t


def thread_internal_attrs() -> frozenset[str]:
    """Attribute names ``Thread.__init__`` sets (they are state of the old thread, not config)."""
    global _THREAD_INTERNALS
    if _THREAD_INTERNALS is None:
        _THREAD_INTERNALS = frozenset(vars(threading.Thread()))
    return _THREAD_INTERNALS


_THREAD_INTERNALS: frozenset[str] | None = None


# -- multiprocessing pipe ends ----------------------------------------------------


class PipeReconnector(Reconnector):
    """A ``multiprocessing.connection.Connection``: one end of a NEW pipe.

    A pipe's other end lives in the process that created it; nothing can
    reconnect to it. ``reconnect()`` creates a new pipe of the same kind
    (``duplex``) and returns the end matching the original (``endpoint``:
    ``"read"``, ``"write"`` or ``"duplex"``); ``peer()`` returns the other end of
    the pipe the latest ``reconnect()`` (or lazy access) made; ``pair()`` returns
    ``(this_end, other_end)`` of a fresh pipe.
    """

    _lazy_reconnect_on_access = True
    _transient_attrs = Reconnector._transient_attrs | {"_peer"}
    auth_key = "multiprocessing.connection.Connection"

    readable: bool
    writable: bool
    duplex: bool
    endpoint: str
    was_closed: bool

    def pair(self) -> tuple[Any, Any]:
        import multiprocessing

        a, b = multiprocessing.Pipe(duplex=self.duplex)
        # Pipe(duplex=False) returns (read end, write end).
        return (b, a) if self.endpoint == "write" else (a, b)

    def reconnect(self) -> Any:
        mine, other = self.pair()
        self.__dict__["_peer"] = other
        return mine

    def peer(self) -> Any:
        with _LAZY_LOCK:
            if "_peer" not in self.__dict__:
                self._live()
            return self.__dict__["_peer"]


# -- subprocess -------------------------------------------------------------------


@dataclass(frozen=True)
class SubprocessSnapshot:
    """What is known about a ``subprocess.Popen`` that was serialized (nothing is started)."""

    args: Any
    pid: int
    returncode: int | None
    poll_result: int | None


class SubprocessReconnector(Reconnector):
    """A ``subprocess.Popen``: its launch arguments and last known status.

    Deliberately NOT lazy: starting a process on attribute access (``rec.pid``
    of a reconnector that lacks ``pid``, a debugger listing attributes) would
    run the command again behind the user's back. For the same reason
    ``reconnect_all`` leaves it in place. ``reconnect(**overrides)`` starts a
    NEW process with the saved ``args``, the same pipes (``stdin``/``stdout``/
    ``stderr`` that were ``PIPE``) and text settings; ``overrides`` are passed
    to ``Popen`` (``cwd=``, ``env=``, ``stdout=`` ...). ``snapshot()`` returns a
    ``SubprocessSnapshot`` without starting anything. The original's
    pipes are never read (that would steal its output), and ``cwd``/``env``
    are not known to ``Popen`` after launch, so pass them as overrides.
    """

    auth_key = "subprocess.Popen"

    args: Any
    pid: int
    returncode: int | None
    poll_result: int | None
    pipes: dict[str, bool]
    text_mode: bool
    encoding: str | None
    errors: str | None

    def reconnect(self, **overrides: Any) -> subprocess.Popen[Any]:
        import subprocess

        kwargs: dict[str, Any] = {
            name: subprocess.PIPE if piped else None for name, piped in self.pipes.items()
        }
        if self.text_mode:
            kwargs["text"] = True
        if self.encoding is not None:
            kwargs["encoding"] = self.encoding
        if self.errors is not None:
            kwargs["errors"] = self.errors
        kwargs.update(overrides)
        return subprocess.Popen(self.args, **kwargs)

    def snapshot(self) -> SubprocessSnapshot:
        return SubprocessSnapshot(self.args, self.pid, self.returncode, self.poll_result)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} object has no attribute '{name}'")
        raise AttributeError(
            f"{type(self).__name__} object has no attribute '{name}': it never starts a process "
            "by itself. Call .reconnect(**overrides) to start the command again, or "
            ".snapshot() for what is known about the original process."
        )


# -- re.Match ---------------------------------------------------------------------


class MatchReconnector(Reconnector):
    """A ``re.Match``: the pattern is run again on the saved string.

    ``reconnect()`` returns a ``re.Match`` with the same span and groups, or
    ``None`` if the pattern no longer reproduces it. The ``pos`` of the new
    match may differ when the original came from ``finditer``/``search`` past
    the first match (the search restarts at the match's start).
    """

    _lazy_reconnect_on_access = True
    auth_key = "re.Match"

    pattern: str | bytes
    flags: int
    string: str | bytes
    pos: int
    endpos: int
    match_string: str | bytes
    match_span: tuple[int, int]
    match_groups: tuple[Any, ...]
    match_groupdict: dict[str, Any]

    def reconnect(self) -> re.Match[Any] | None:
        compiled: re.Pattern[Any] = re.compile(self.pattern, self.flags)
        s, start = self.string, self.match_span[0]
        for attempt in (
            lambda: compiled.search(s, self.pos, self.endpos),
            lambda: compiled.match(s, self.pos, self.endpos),
            lambda: compiled.fullmatch(s, self.pos, self.endpos),
            lambda: compiled.match(s, start, self.endpos),
            lambda: compiled.search(s, start, self.endpos),
        ):
            m = attempt()
            if (
                m is not None
                and m.span() == self.match_span
                and m.groups() == self.match_groups
                and m.groupdict() == self.match_groupdict
            ):
                return m
        return None


# -- database clients -------------------------------------------------------------

_SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential")


def is_secret_name(name: str) -> bool:
    """Whether a connection parameter name looks like it holds a secret (never stored)."""
    low = name.lower()
    return any(w in low for w in _SECRET_WORDS)


def _auth_kwargs(auth: Any, cls_name: str) -> dict[str, Any]:
    """``None`` → nothing, a string → ``password=``, a mapping → extra connect keywords."""
    if auth is None:
        return {}
    if isinstance(auth, (str, bytes)):
        return {"password": auth}
    if isinstance(auth, Mapping):
        return dict(auth)
    raise TypeError(
        f"{cls_name}.reconnect(auth=...) takes a password string or a mapping of connect "
        f"keywords, not {type(auth).__name__}"
    )


class DbReconnector(Reconnector):
    """Base for database clients: ``details`` holds the non-secret connection parameters.

    ``details`` always has ``module`` and ``class_name`` plus what the client
    needs (host, port, user, database, url without password ...). Passwords,
    tokens and keys are never stored: pass them to ``reconnect(auth)`` (a
    password string, or a mapping of extra connect keywords such as
    ``{"username": ..., "password": ...}``), or through ``reconnect_all``'s
    ``**auth``. Not lazy: without its password a client cannot connect.
    """

    details: dict[str, Any]

    def __init__(self, details: dict[str, Any]) -> None:
        self.details = dict(details)

    def reconnect(self, auth: Any = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement reconnect()")

    def usable(self, live: Any) -> bool:
        # psycopg2: closed is an int (0: open); psycopg 3, SQLAlchemy connections: a bool;
        # PyMySQL: open. Clients that reconnect by themselves (Redis, MongoDB) have neither.
        closed = getattr(live, "closed", None)
        if isinstance(closed, (bool, int)):
            return not closed
        opened = getattr(live, "open", None)
        return opened if isinstance(opened, bool) else True

    @property
    def module(self) -> str:
        return str(self.details.get("module", ""))

    @property
    def class_name(self) -> str:
        return str(self.details.get("class_name", ""))


class PostgresReconnector(DbReconnector):
    """A psycopg2 or psycopg (3) connection: host, port, user, dbname and other libpq parameters.

    ``reconnect(auth)`` connects with the same driver and restores
    ``autocommit``. A password file or ``PGPASSWORD`` works without ``auth``.
    """

    auth_key = "psycopg2.Connection"
    auth_aliases = ("psycopg.Connection",)

    def reconnect(self, auth: Any = None) -> Any:
        d = self.details
        kwargs = dict(d["params"])
        kwargs.update(_auth_kwargs(auth, type(self).__name__))
        driver = importlib.import_module(d["module"])
        if d["module"] == "psycopg":
            return driver.connect(autocommit=bool(d.get("autocommit")), **kwargs)
        conn = driver.connect(**kwargs)
        if d.get("autocommit"):
            conn.autocommit = True
        return conn


class MySQLReconnector(DbReconnector):
    """A PyMySQL or mysql-connector connection: host, port, user, database, charset.

    Only the metadata side is tested here (no MySQL server in the test
    environment): reconnecting needs a reachable server.
    """

    auth_key = "pymysql.Connection"
    auth_aliases = ("mysql.connector.MySQLConnection",)

    def reconnect(self, auth: Any = None) -> Any:
        d = self.details
        kwargs = {k: v for k, v in d["params"].items() if v is not None}
        kwargs.update(_auth_kwargs(auth, type(self).__name__))
        if d["module"] == "pymysql":
            return importlib.import_module("pymysql").connect(**kwargs)
        return importlib.import_module("mysql.connector").connect(**kwargs)


class RedisReconnector(DbReconnector):
    """A ``redis.Redis`` client: its connection class and non-secret connection keywords.

    ``reconnect(auth)`` builds a client on a new pool (``username`` is kept,
    the password comes from ``auth``) and PINGs it, so a wrong password or a
    server that is down surfaces here rather than on first use.
    """

    auth_key = "redis.Redis"
    auth_aliases = ("redis.client.Redis", "redis.StrictRedis")

    def reconnect(self, auth: Any = None, *, verify: bool = True) -> Any:
        redis = importlib.import_module("redis")
        conn_mod = importlib.import_module(self.details["connection_module"])
        conn_cls = getattr(conn_mod, self.details["connection_class"])
        kwargs = dict(self.details["params"])
        kwargs.update(_auth_kwargs(auth, type(self).__name__))
        pool = redis.ConnectionPool(connection_class=conn_cls, **kwargs)
        client = redis.Redis.from_pool(pool) if hasattr(redis.Redis, "from_pool") else redis.Redis(connection_pool=pool)
        if verify:
            try:
                client.ping()
            except BaseException:
                client.close()
                pool.disconnect()
                raise
        return client


class DuckDBReconnector(DbReconnector):
    """A DuckDB connection: the database file (``read_only`` kept), or an in-memory copy.

    An in-memory database carries the ``CREATE`` statements of its tables,
    views and sequences and the rows of its tables (``main`` schema), replayed
    into a new in-memory database. DuckDB lets one process at a time open a
    file read-write: the original must be closed before another process can
    reconnect to the same file. ``reconnect()`` takes no auth.
    """

    auth_key = "duckdb.Connection"
    auth_aliases = ("duckdb.DuckDBPyConnection",)

    def reconnect(self) -> Any:  # type: ignore[override]
        duckdb = importlib.import_module("duckdb")
        d = self.details
        if d["database"] == ":memory:":
            conn = duckdb.connect(":memory:")
            try:
                for sql in d.get("schema", ()):
                    conn.execute(sql)
                for table, rows in d.get("rows", {}).items():
                    if rows:
                        marks = ", ".join("?" for _ in rows[0])
                        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            except BaseException:
                conn.close()
                raise
            return conn
        if not os.path.exists(d["database"]):
            raise FileNotFoundError(
                f"duckdb database file not found in this process: {d['database']} "
                "(reconnecting never creates an empty database in its place)"
            )
        return duckdb.connect(d["database"], read_only=bool(d.get("read_only")))


class SQLAlchemyReconnector(DbReconnector):
    """A SQLAlchemy ``Engine``: its URL without the password.

    ``reconnect(auth)`` returns a new ``Engine`` (the type that was serialized),
    after checking out one connection to prove it works; ``connect=True``
    returns ``engine.connect()`` instead, as the original suitkaise did.
    """

    auth_key = "sqlalchemy.Engine"
    auth_aliases = ("sqlalchemy.engine.Engine", "sqlalchemy.engine.base.Engine")

    def reconnect(self, auth: Any = None, *, connect: bool = False, verify: bool = True) -> Any:
        sa = importlib.import_module("sqlalchemy")
        url = sa.engine.make_url(self.details["url"])
        extra = _auth_kwargs(auth, type(self).__name__)
        if extra:
            url = url.set(**extra)
        engine = sa.create_engine(url)
        if connect:
            return engine.connect()
        if verify:
            try:
                with engine.connect():
                    pass
            except BaseException:
                engine.dispose()
                raise
        return engine


class MongoReconnector(DbReconnector):
    """A ``pymongo.MongoClient``: seed hosts, default database, user name and auth source.

    ``reconnect(auth, **options)`` returns a new ``MongoClient`` (``options`` go
    to its constructor, e.g. ``connect=False``). Like ``MongoClient`` itself it
    does not wait for a server. Tested without a server (metadata and the
    client that is built); the user name and auth source are read from
    pymongo's private pool options, best effort.
    """

    auth_key = "pymongo.MongoClient"

    def reconnect(self, auth: Any = None, **options: Any) -> Any:
        pymongo = importlib.import_module("pymongo")
        d = self.details
        uri = "mongodb://" + ",".join(d["hosts"]) + "/" + (d.get("default_database") or "")
        kwargs = dict(d["params"])
        kwargs.update(_auth_kwargs(auth, type(self).__name__))
        kwargs.update(options)
        return pymongo.MongoClient(uri, **kwargs)
