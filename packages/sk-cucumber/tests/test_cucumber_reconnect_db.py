"""Database-client reconnectors against real servers (PostgreSQL, Redis) and local engines.

Every client is checked for: no password in the payload, the right reconnector
type, ``reconnect_all`` with auth by type and attribute name in the same process,
and the same across a real process boundary where the child USES the connection.

    parent ──bytes (no secrets)──▶ child: reconnect_all(obj, **auth) → query / SET
    parent ◀──────result────────── child; the parent then checks the server side
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from test_cucumber_reconnect import run_in_child

from suitkaise import cucumber
from suitkaise.cucumber import reconnectors as R
from suitkaise.cucumber.reconnectors import ReconnectWarning


class Holder:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


# -- PostgreSQL (psycopg2, psycopg 3) -----------------------------------------------------


@pytest.fixture(scope="module")
def pg(postgres_server: Any) -> Any:
    """The server plus a second role with its own password and its own database."""
    psycopg2 = pytest.importorskip("psycopg2")
    suffix = secrets.token_hex(4)
    info = Holder(
        server=postgres_server,
        role=f"analyst_{suffix}",
        role_password=secrets.token_hex(12),
        db=f"analytics_{suffix}",
    )
    admin = psycopg2.connect(postgres_server.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {info.role} LOGIN PASSWORD %s", (info.role_password,))
        cur.execute(f"CREATE DATABASE {info.db} OWNER {info.role}")
        cur.execute("CREATE TABLE IF NOT EXISTS sk_reconnect_log (who text)")
    yield info
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {info.db} WITH (FORCE)")
        cur.execute(f"DROP ROLE IF EXISTS {info.role}")
    admin.close()


def _pg_connections(pg: Any) -> tuple[Any, Any]:
    import psycopg2

    s = pg.server
    main = psycopg2.connect(s.dsn)
    main.autocommit = True
    analytics = psycopg2.connect(
        host=s.host, port=s.port, user=pg.role, password=pg.role_password, dbname=pg.db
    )
    return main, analytics


def _whoami(conn: Any) -> tuple[str, str]:
    with conn.cursor() as cur:
        cur.execute("select current_user, current_database()")
        row = cur.fetchone()
    return row[0], row[1]


def test_postgres_scenario_8_in_process(pg: Any) -> None:
    main, analytics = _pg_connections(pg)
    payload = cucumber.serialize(Holder(main_db=main, analytics_db=analytics))
    for secret in (pg.server.password, pg.role_password):
        assert secret.encode() not in payload
    h = cucumber.deserialize(payload)
    assert type(h.main_db) is R.PostgresReconnector
    assert h.analytics_db.details["user"] == pg.role and h.analytics_db.details["dbname"] == pg.db
    assert h.main_db.details["module"] == "psycopg2"
    assert h.main_db.details["autocommit"] is True

    auth = {"psycopg2.Connection": {"*": pg.server.password, "analytics_db": pg.role_password}}
    with pytest.warns(ReconnectWarning, match=r"root\.analytics_db .*password authentication failed"):
        cucumber.reconnect_all(h, **{"psycopg2.Connection": {"*": pg.server.password}})
    assert type(h.analytics_db) is R.PostgresReconnector  # wrong password: kept, reported
    assert _whoami(h.main_db) == ("postgres", "postgres")
    assert h.main_db.autocommit is True
    cucumber.reconnect_all(h, **auth)
    assert _whoami(h.analytics_db) == (pg.role, pg.db)
    for c in (h.main_db, h.analytics_db, main, analytics):
        c.close()


def _child_postgres(payload: bytes, auth: dict[str, Any], tag: str) -> list[tuple[str, str]]:
    h = cucumber.deserialize(payload)
    cucumber.reconnect_all(h, **auth)
    out = [_whoami(h.main_db), _whoami(h.analytics_db)]
    with h.main_db.cursor() as cur:
        cur.execute("insert into sk_reconnect_log values (%s)", (tag,))
    h.main_db.close()
    h.analytics_db.close()
    return out


def test_postgres_across_processes(pg: Any, start_method: str) -> None:
    main, analytics = _pg_connections(pg)
    payload = cucumber.serialize(Holder(main_db=main, analytics_db=analytics))
    tag = f"child-{start_method}-{secrets.token_hex(4)}"
    auth = {"psycopg2.Connection": {"*": pg.server.password, "analytics_db": pg.role_password}}
    got = run_in_child(_child_postgres, payload, auth, tag)
    assert got == [("postgres", "postgres"), (pg.role, pg.db)]
    with main.cursor() as cur:  # the child's insert (autocommit restored) is on the server
        cur.execute("select count(*) from sk_reconnect_log where who = %s", (tag,))
        assert cur.fetchone() == (1,)
    main.close()
    analytics.close()


def test_psycopg3_connection(pg: Any) -> None:
    psycopg = pytest.importorskip("psycopg")
    s = pg.server
    conn = psycopg.connect(host=s.host, port=s.port, user=pg.role, password=pg.role_password, dbname=pg.db)
    payload = cucumber.serialize({"analytics_db": conn})
    assert pg.role_password.encode() not in payload
    d = cucumber.deserialize(payload)
    assert type(d["analytics_db"]) is R.PostgresReconnector
    assert d["analytics_db"].details["module"] == "psycopg"
    cucumber.reconnect_all(d, **{"psycopg.Connection": {"analytics_db": pg.role_password}})
    live = d["analytics_db"]
    assert type(live) is psycopg.Connection
    assert live.execute("select current_user, current_database()").fetchone() == (pg.role, pg.db)
    live.close()
    conn.close()


# -- SQLAlchemy ------------------------------------------------------------------------------


def test_sqlalchemy_engine_on_postgres_keeps_no_password(pg: Any) -> None:
    sa = pytest.importorskip("sqlalchemy")
    s = pg.server
    url = sa.engine.URL.create(
        "postgresql+psycopg2", username=pg.role, password=pg.role_password,
        host=s.host, port=s.port, database=pg.db,
    )
    engine = sa.create_engine(url)
    payload = cucumber.serialize(Holder(engine=engine))
    assert pg.role_password.encode() not in payload
    h = cucumber.deserialize(payload)
    assert type(h.engine) is R.SQLAlchemyReconnector and h.engine.details["user"] == pg.role
    cucumber.reconnect_all(h, **{"sqlalchemy.Engine": {"engine": pg.role_password}})
    assert isinstance(h.engine, sa.engine.Engine)
    with h.engine.connect() as c:
        assert c.execute(sa.text("select current_user")).scalar() == pg.role
    h.engine.dispose()
    engine.dispose()


def _child_sqlalchemy(payload: bytes) -> list[Any]:
    import sqlalchemy as sa

    h = cucumber.deserialize(payload)
    cucumber.reconnect_all(h)
    with h["engine"].begin() as c:
        c.execute(sa.text("insert into t values ('child')"))
        rows = c.execute(sa.text("select v from t order by rowid")).fetchall()
    h["engine"].dispose()
    return [tuple(r) for r in rows]


def test_sqlalchemy_engine_on_sqlite_file(tmp_path: Any, start_method: str) -> None:
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'sa.db'}")
    with engine.begin() as c:
        c.execute(sa.text("create table t (v text)"))
        c.execute(sa.text("insert into t values ('parent')"))
    payload = cucumber.serialize({"engine": engine})
    rec = cucumber.deserialize(payload)["engine"]
    assert type(rec) is R.SQLAlchemyReconnector
    live = cucumber.reconnect_all(rec)
    assert isinstance(live, sa.engine.Engine) and str(live.url) == str(engine.url)
    conn = rec.reconnect(connect=True)  # the original suitkaise's result type, on request
    assert conn.execute(sa.text("select count(*) from t")).scalar() == 1
    conn.close()
    live.dispose()

    assert run_in_child(_child_sqlalchemy, payload) == [("parent",), ("child",)]
    engine.dispose()


# -- Redis --------------------------------------------------------------------------------------


def _child_redis(payload: bytes, password: str, key: str) -> Any:
    h = cucumber.deserialize(payload)
    cucumber.reconnect_all(h, **{"redis.Redis": {"*": password}})
    h.cache.set(key, b"from child")
    value = h.cache.get(key)
    h.cache.close()
    return value


def test_redis_in_process_and_across_processes(redis_server: Any, start_method: str) -> None:
    redis = pytest.importorskip("redis")
    s = redis_server
    client = redis.Redis(host=s.host, port=s.port, password=s.password, db=3)
    key = f"sk-reconnect-{secrets.token_hex(4)}"
    client.set(key, b"from parent")
    payload = cucumber.serialize(Holder(cache=client))
    assert s.password.encode() not in payload
    h = cucumber.deserialize(payload)
    assert type(h.cache) is R.RedisReconnector
    assert (h.cache.details["host"], h.cache.details["port"], h.cache.details["db"]) == (s.host, s.port, 3)

    with pytest.warns(ReconnectWarning, match=r"root\.cache .*(Authentication|NOAUTH|auth)"):
        cucumber.reconnect_all(h)  # no password: the PING in reconnect() says so now
    assert type(h.cache) is R.RedisReconnector
    cucumber.reconnect_all(h, **{"redis.Redis": {"cache": s.password}})
    assert isinstance(h.cache, redis.Redis)
    assert h.cache.get(key) == b"from parent"  # db 3, the same server
    h.cache.close()

    assert run_in_child(_child_redis, payload, s.password, key) == b"from child"
    assert client.get(key) == b"from child"
    client.delete(key)
    client.close()


# -- DuckDB -------------------------------------------------------------------------------------


def _child_duckdb(payload: bytes) -> list[Any]:
    h = cucumber.deserialize(payload)
    cucumber.reconnect_all(h)
    db = h["db"]
    db.execute("insert into t values (2, 'child')")
    rows = db.execute("select * from t order by a").fetchall()
    db.close()
    return rows


def test_duckdb_file_db_across_processes(tmp_path: Any, start_method: str) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = str(tmp_path / "d.duckdb")
    conn = duckdb.connect(path)
    conn.execute("create table t (a integer, b varchar)")
    conn.execute("insert into t values (1, 'parent')")
    payload = cucumber.serialize({"db": conn})
    rec = cucumber.deserialize(payload)["db"]
    assert type(rec) is R.DuckDBReconnector and rec.details["database"] == path
    conn.close()  # DuckDB: one process at a time may open the file read-write

    assert run_in_child(_child_duckdb, payload) == [(1, "parent"), (2, "child")]
    live = cucumber.reconnect_all(rec)
    assert live.execute("select count(*) from t").fetchone() == (2,)
    live.close()


def test_duckdb_memory_db_carries_its_tables() -> None:
    duckdb = pytest.importorskip("duckdb")
    conn = duckdb.connect()
    conn.execute("create sequence s start 10")
    conn.execute("create table t (id integer default nextval('s'), tags varchar[], x double)")
    conn.execute("insert into t (tags, x) values (['a', 'b'], 1.5), ([], null)")
    conn.execute("create view v as select count(*) as n from t")
    pending = conn.execute("select id from t order by id")
    rec = cucumber.deserialize(cucumber.serialize(conn))
    assert pending.fetchall() == [(10,), (11,)]  # serializing did not discard the user's result
    assert rec.details["database"] == ":memory:"
    live = cucumber.reconnect_all(rec)
    assert live.execute("select id, tags, x from t order by id").fetchall() == [
        (10, ["a", "b"], 1.5), (11, [], None),
    ]
    assert live.execute("select n from v").fetchone() == (2,)
    live.close()
    conn.close()


# -- MongoDB, MySQL: no server here, so metadata and failure reporting only ---------------------


def test_mongo_client_metadata_without_a_server() -> None:
    pymongo = pytest.importorskip("pymongo")
    client = pymongo.MongoClient(
        "mongodb://alice:s3cr3t-pw@127.0.0.1:27018,127.0.0.2/appdb?authSource=admin&replicaSet=rs",
        connect=False,
    )
    payload = cucumber.serialize(Holder(mongo=client))
    assert b"s3cr3t-pw" not in payload
    rec = cucumber.deserialize(payload).mongo
    assert type(rec) is R.MongoReconnector
    assert rec.details["hosts"] == ["127.0.0.1:27018", "127.0.0.2:27017"]
    assert rec.details["username"] == "alice" and rec.details["default_database"] == "appdb"
    live = rec.reconnect("s3cr3t-pw", connect=False)  # MongoClient never waits for a server
    assert live.get_default_database().name == "appdb"
    assert live.options.replica_set_name == "rs"
    live.close()
    client.close()


def test_mysql_metadata_and_unreachable_server_is_reported() -> None:
    pymysql = pytest.importorskip("pymysql")
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = pymysql.connections.Connection(
        host="127.0.0.1", port=port, user="app", password="my-pw-123", database="shop",
        defer_connect=True,
    )
    payload = cucumber.serialize(Holder(db=conn))
    assert b"my-pw-123" not in payload
    h = cucumber.deserialize(payload)
    assert type(h.db) is R.MySQLReconnector
    assert (h.db.details["host"], h.db.details["port"], h.db.details["user"], h.db.details["database"]) == (
        "127.0.0.1", port, "app", "shop",
    )
    with pytest.warns(ReconnectWarning, match=r"root\.db .*OperationalError"):
        cucumber.reconnect_all(h, **{"pymysql.Connection": {"*": "my-pw-123"}})
    assert type(h.db) is R.MySQLReconnector
