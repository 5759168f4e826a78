"""Handlers that turn live connections into Reconnectors (see ``..reconnectors``).

Each reducer reads only non-secret metadata from the live object and returns
``(_new_reconnector, (ReconnectorClass,), state)``. The state goes in the
reduce tuple's *state* slot, not its arguments, so that pickle memoizes the
reconnector before its state is pickled: a thread whose target is a bound
method of the object that holds the thread (a cycle) round-trips, and a
connection shared by several cursors becomes one shared reconnector.

Registered by qualified type name (the real ``type(obj).__module__`` and
``__qualname__``, checked against the installed libraries), so nothing here
imports a database driver.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from suitkaise.cucumber._handoff import MP, handoff
from suitkaise.cucumber._registry import register
from suitkaise.cucumber.reconnectors import (
    DbReconnector,
    DuckDBReconnector,
    MatchReconnector,
    MongoReconnector,
    MySQLReconnector,
    PipeReconnector,
    PostgresReconnector,
    Reconnector,
    RedisReconnector,
    SocketReconnector,
    SQLAlchemyReconnector,
    SQLiteConnectionReconnector,
    SQLiteCursorReconnector,
    SubprocessReconnector,
    ThreadReconnector,
    is_secret_name,
    thread_internal_attrs,
)

if TYPE_CHECKING:
    import socket
    import subprocess

__all__: list[str] = []


def _new_reconnector(cls: type[Reconnector]) -> Reconnector:
    return cls.__new__(cls)


def _reduce(cls: type[Reconnector], state: dict[str, Any]) -> Any:
    return (_new_reconnector, (cls,), state)


def _type_name(obj: Any) -> tuple[str, str]:
    t = type(obj)
    return t.__module__, t.__qualname__


_PRIMITIVES = (str, int, float, bool, type(None))


def _plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """Non-secret parameters with plain values (what can be passed back to a driver)."""
    return {
        k: v for k, v in params.items() if isinstance(v, _PRIMITIVES) and not is_secret_name(k)
    }


# -- sqlite3 -----------------------------------------------------------------------


@register("sqlite3.Connection")
def reduce_sqlite_connection(conn: Any) -> Any:
    import sqlite3

    database: str | None
    attached: list[tuple[str, str]] = []
    dump: list[str] | None = None
    row_factory = getattr(conn, "row_factory", None)
    text_factory = getattr(conn, "text_factory", str)
    isolation_level: str | None = ""
    try:
        isolation_level = conn.isolation_level
        # Plain tuples and str while we read: iterdump and our own queries index rows.
        conn.row_factory, conn.text_factory = None, str
        rows = conn.execute("PRAGMA database_list").fetchall()
        main = next((r for r in rows if r[1] == "main"), None)
        path = main[2] if main is not None else ""
        is_memory = not path
        database = ":memory:" if is_memory else path
        attached = [(r[1], r[2]) for r in rows if r[1] not in ("main", "temp") and r[2]]
        if is_memory:
            dump = list(conn.iterdump())
    except sqlite3.ProgrammingError as e:
        if "closed" not in str(e):
            raise  # e.g. used from another thread: say so rather than lose the database
        database, is_memory = None, False
    finally:
        with contextlib.suppress(sqlite3.ProgrammingError):
            conn.row_factory, conn.text_factory = row_factory, text_factory
    state = {
        "database": database,
        "isolation_level": isolation_level,
        "is_memory": is_memory,
        "dump": dump,
        "attached": attached,
        "row_factory": row_factory,
        "text_factory": _non_default(text_factory, str),
    }
    return _reduce(SQLiteConnectionReconnector, state)


def _non_default(value: Any, default: Any) -> Any:
    return None if value is default else value


@register("sqlite3.Cursor")
def reduce_sqlite_cursor(cur: Any) -> Any:
    state = {
        "connection": cur.connection,  # reduced by reduce_sqlite_connection, memoized by pickle
        "arraysize": cur.arraysize,
        "lastrowid": cur.lastrowid,
        "rowcount": cur.rowcount,
        "row_factory": cur.row_factory,
        "unread_rows": _has_unread_rows(cur),
    }
    return _reduce(SQLiteCursorReconnector, state)


def _has_unread_rows(cur: Any) -> bool:
    """Whether ``cur`` holds a result set with rows not fetched yet, without fetching any.

    sqlite3 keeps the statement of a query on the cursor until its last row has been
    fetched (it steps one row ahead, so the statement is dropped as the last row is
    returned), and the cursor's ``tp_traverse`` visits it: a ``Statement`` among the
    cursor's referents is exactly "rows left".
    """
    import gc

    return any(type(ref).__name__ == "Statement" for ref in gc.get_referents(cur))


# -- socket --------------------------------------------------------------------------


@register("socket.socket")
def reduce_socket(sock: socket.socket) -> Any:
    import socket  # imported (already, by the owner of ``sock``) only when needed

    if type(sock) is socket.socket:  # the type multiprocessing passes by descriptor
        rv = handoff(sock, MP)  # a process being started gets the same connection
        if rv is not None:
            return rv
    closed = sock.fileno() == -1
    local = remote = None
    listening = False
    timeout: float | None = None
    blocking = True
    if not closed:
        with contextlib.suppress(OSError):
            local = sock.getsockname()
        with contextlib.suppress(OSError):
            remote = sock.getpeername()
        with contextlib.suppress(OSError, AttributeError):
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        timeout = sock.gettimeout()
        blocking = sock.getblocking()
    state = {
        "family": int(sock.family),
        "type": int(sock.type),
        "proto": sock.proto,
        "timeout": timeout,
        "blocking": blocking,
        "local_addr": local,
        "remote_addr": remote or None,
        "listening": listening,
        "was_closed": closed,
    }
    return _reduce(SocketReconnector, state)


# -- threading.Thread ----------------------------------------------------------------


@register("threading.Thread")
def reduce_thread(t: threading.Thread) -> Any:
    cls: type[threading.Thread] = type(t)
    if cls.__module__ == "threading" and cls is not threading.Timer:
        cls = threading.Thread  # _MainThread, _DummyThread: a plain Thread is the honest copy
    internals = thread_internal_attrs()
    extra = {} if cls is threading.Thread else {
        k: v for k, v in vars(t).items() if k not in internals
    }
    state = {
        "thread_class": cls,
        "name": t.name,
        "daemon": t.daemon,
        # Thread.run() deletes these once the target returned.
        "target": getattr(t, "_target", None),
        "args": tuple(getattr(t, "_args", ())),
        "kwargs": dict(getattr(t, "_kwargs", {})),
        "extra": extra,
        "was_alive": t.is_alive(),
    }
    return _reduce(ThreadReconnector, state)


# -- multiprocessing.connection.Connection --------------------------------------------


@register("multiprocessing.connection.Connection")
def reduce_pipe_connection(conn: Any) -> Any:
    rv = handoff(conn, MP)  # a process being started gets the same pipe
    if rv is not None:
        return rv
    readable, writable = bool(conn.readable), bool(conn.writable)
    endpoint = "duplex" if readable and writable else ("read" if readable else "write")
    state = {
        "readable": readable,
        "writable": writable,
        "duplex": readable and writable,
        "endpoint": endpoint,
        "was_closed": bool(conn.closed),
    }
    return _reduce(PipeReconnector, state)


# -- subprocess.Popen -----------------------------------------------------------------


@register("subprocess.Popen")
def reduce_popen(p: subprocess.Popen[Any]) -> Any:
    poll_result = p.poll()  # reaps a finished child, as Popen itself would on next use
    state = {
        "args": p.args,
        "pid": p.pid,
        "returncode": p.returncode,
        "poll_result": poll_result,
        "pipes": {
            "stdin": p.stdin is not None,
            "stdout": p.stdout is not None,
            "stderr": p.stderr is not None,
        },
        "text_mode": bool(getattr(p, "text_mode", False)),
        "encoding": getattr(p, "encoding", None),
        "errors": getattr(p, "errors", None),
    }
    return _reduce(SubprocessReconnector, state)


# -- re.Match ---------------------------------------------------------------------------


@register("re.Match")
def reduce_match(m: Any) -> Any:
    state = {
        "pattern": m.re.pattern,
        "flags": m.re.flags,
        "string": m.string,
        "pos": m.pos,
        "endpos": m.endpos,
        "match_string": m.group(0),
        "match_span": m.span(),
        "match_groups": m.groups(),
        "match_groupdict": m.groupdict(),
    }
    return _reduce(MatchReconnector, state)


# -- database clients --------------------------------------------------------------------


def _db(cls: type[DbReconnector], obj: Any, **details: Any) -> Any:
    module, class_name = _type_name(obj)
    return _reduce(cls, {"details": {"module": module, "class_name": class_name, **details}})


@register("psycopg2.extensions.connection")
def reduce_psycopg2(conn: Any) -> Any:
    from psycopg2.extensions import parse_dsn

    params = _plain_params(parse_dsn(conn.dsn))  # conn.dsn hides the password; drop it anyway
    autocommit = False
    with contextlib.suppress(Exception):
        autocommit = bool(conn.autocommit)
    module, class_name = _type_name(conn)
    return _reduce(PostgresReconnector, {"details": {
        "module": "psycopg2", "class_name": f"{module}.{class_name}",
        "host": params.get("host"), "port": params.get("port"),
        "user": params.get("user"), "dbname": params.get("dbname"),
        "params": params, "autocommit": autocommit,
    }})


@register("psycopg.Connection")
def reduce_psycopg3(conn: Any) -> Any:
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = dict(conn.info.get_parameters())
    except Exception:  # closed connection: fall back to the connection string
        params = conninfo_to_dict(conn.info.dsn)
    params = _plain_params(params)
    autocommit = False
    with contextlib.suppress(Exception):
        autocommit = bool(conn.autocommit)
    module, class_name = _type_name(conn)
    return _reduce(PostgresReconnector, {"details": {
        "module": "psycopg", "class_name": f"{module}.{class_name}",
        "host": params.get("host"), "port": params.get("port"),
        "user": params.get("user"), "dbname": params.get("dbname"),
        "params": params, "autocommit": autocommit,
    }})


@register("pymysql.connections.Connection")
def reduce_pymysql(conn: Any) -> Any:
    db = conn.db.decode() if isinstance(conn.db, bytes) else conn.db
    user = conn.user.decode() if isinstance(conn.user, bytes) else conn.user
    params = {
        "host": conn.host, "port": conn.port, "user": user, "database": db,
        "charset": conn.charset, "unix_socket": conn.unix_socket,
    }
    return _db(MySQLReconnector, conn, module="pymysql", params=params, **{
        k: params[k] for k in ("host", "port", "user", "database")
    })


@register(
    "mysql.connector.connection.MySQLConnection",
    "mysql.connector.connection_cext.CMySQLConnection",
)
def reduce_mysql_connector(conn: Any) -> Any:
    params = {
        "host": conn.server_host, "port": conn.server_port, "user": conn.user,
        "database": conn.database if conn.is_connected() else getattr(conn, "_database", None),
        "unix_socket": getattr(conn, "unix_socket", None),
    }
    return _db(MySQLReconnector, conn, module="mysql.connector", params=params, **{
        k: params[k] for k in ("host", "port", "user", "database")
    })


@register("redis.client.Redis")
def reduce_redis(client: Any) -> Any:
    pool = client.connection_pool
    params = {
        k: v for k, v in _plain_params(pool.connection_kwargs).items()
        if not k.startswith("orig_")  # bookkeeping of redis-py's pool, not connect keywords
    }
    conn_cls = pool.connection_class
    return _db(
        RedisReconnector, client,
        connection_module=conn_cls.__module__, connection_class=conn_cls.__qualname__,
        host=params.get("host"), port=params.get("port"), path=params.get("path"),
        db=params.get("db", 0), username=params.get("username"), params=params,
    )


@register(
    "_duckdb.DuckDBPyConnection",
    "duckdb.DuckDBPyConnection",
    "duckdb.duckdb.DuckDBPyConnection",
)
def reduce_duckdb(conn: Any) -> Any:
    # A cursor of its own: executing on `conn` would discard the user's pending result.
    cur = conn.cursor()
    try:
        row = cur.execute(
            "SELECT path, readonly FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
        path, read_only = (row[0], bool(row[1])) if row else (None, False)
        details: dict[str, Any] = {"database": path or ":memory:", "read_only": read_only}
        if not path:
            details["schema"] = _duckdb_schema(cur)
            details["rows"] = _duckdb_rows(cur)
    finally:
        cur.close()
    return _db(DuckDBReconnector, conn, **details)


def _duckdb_schema(conn: Any) -> list[str]:
    out: list[str] = []
    for source in ("duckdb_sequences()", "duckdb_tables()", "duckdb_views()"):
        extra = " AND NOT internal" if source == "duckdb_views()" else ""
        out += [
            r[0] for r in conn.execute(
                f"SELECT sql FROM {source} WHERE database_name = current_database() "
                f"AND NOT temporary{extra} AND sql IS NOT NULL"
            ).fetchall()
        ]
    return out


def _duckdb_rows(conn: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for schema, table in conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary ORDER BY table_oid"
    ).fetchall():
        name = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
        out[name] = conn.execute(f"SELECT * FROM {name}").fetchall()
    return out


@register("sqlalchemy.engine.base.Engine")
def reduce_sqlalchemy_engine(engine: Any) -> Any:
    # URL.set(password=None) means "leave unchanged": replace the field itself.
    url = engine.url._replace(password=None)
    url = url.difference_update_query([k for k in url.query if is_secret_name(k)])
    return _db(
        SQLAlchemyReconnector, engine,
        url=url.render_as_string(hide_password=False),
        drivername=url.drivername, host=url.host, port=url.port,
        user=url.username, database=url.database,
    )


@register(
    "pymongo.synchronous.mongo_client.MongoClient",
    "pymongo.mongo_client.MongoClient",
)
def reduce_mongo_client(client: Any) -> Any:
    hosts = [
        f"[{h}]:{p}" if ":" in str(h) else f"{h}:{p}"
        for h, p in client.topology_description.server_descriptions()
    ]
    params: dict[str, Any] = {}
    opts = client.options
    if opts.replica_set_name:
        params["replicaSet"] = opts.replica_set_name
    if opts.direct_connection is not None:
        params["directConnection"] = opts.direct_connection
    raw = getattr(opts, "_options", {}) or {}  # private, best effort: tls and friends
    for key in ("tls", "authsource", "authmechanism", "appname"):
        if isinstance(raw.get(key), _PRIMITIVES) and key in raw:
            params[key] = raw[key]
    creds = getattr(getattr(opts, "pool_options", None), "_credentials", None)
    username = getattr(creds, "username", None)
    if username:
        params["username"] = username
        params.setdefault("authsource", getattr(creds, "source", None))
    return _db(
        MongoReconnector, client,
        hosts=sorted(hosts), default_database=getattr(client, "_default_database_name", None),
        username=username, params={k: v for k, v in params.items() if v is not None},
    )
