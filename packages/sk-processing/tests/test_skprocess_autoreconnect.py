"""@autoreconnect: Reconnectors are replaced by live connections in the child before __prerun__.

These tests need cucumber's Reconnectors for sqlite3/psycopg2/redis connections.
"""

from __future__ import annotations

import sqlite3

import pytest
from skprocess_support import SqliteUser

from suitkaise.processing import Skprocess, autoreconnect


def test_decorator_sets_flags_and_validates():
    @autoreconnect(start_threads=True, **{"psycopg2.Connection": {"*": "pw"}})
    class P(Skprocess):
        pass

    assert P._auto_reconnect_enabled is True
    assert P._auto_reconnect_start_threads is True
    assert P._auto_reconnect_kwargs == {"psycopg2.Connection": {"*": "pw"}}
    with pytest.raises(TypeError, match="Skprocess"):
        autoreconnect()(object)
    with pytest.raises(TypeError, match="must be a dict"):
        autoreconnect(**{"redis.Redis": "pw"})


AutoSqlite = autoreconnect()(type("AutoSqlite", (SqliteUser,), {"__module__": __name__}))


def _memory_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("create table t (x integer)")
    conn.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    conn.commit()
    return conn


def test_sqlite_connection_is_live_in_child(start_method):
    conn = _memory_db()
    try:
        is_real, rows = AutoSqlite(conn).run()
    finally:
        conn.close()
    assert is_real is True
    assert rows == [(1,), (2,), (3,)]


def test_postgres_connection_reconnects_with_auth(start_method, postgres_server):
    psycopg2 = pytest.importorskip("psycopg2")

    @autoreconnect(**{"psycopg2.Connection": {"*": postgres_server.password}})
    class PgUser(Skprocess):
        def __init__(self, conn):
            self.db = conn
            self.process_config.runs = 1

        def __run__(self):
            with self.db.cursor() as cur:
                cur.execute("select 40 + 2")
                self.value = cur.fetchone()[0]

        def __result__(self):
            return type(self.db).__module__.split(".")[0], self.value

    conn = psycopg2.connect(postgres_server.dsn)
    try:
        assert PgUser(conn).run() == ("psycopg2", 42)
    finally:
        conn.close()


def test_redis_client_reconnects_with_auth(start_method, redis_server):
    redis = pytest.importorskip("redis")

    @autoreconnect(**{"redis.Redis": {"*": redis_server.password}})
    class RedisUser(Skprocess):
        def __init__(self, client):
            self.cache = client
            self.process_config.runs = 1

        def __run__(self):
            self.cache.set("sk-key", "v1")
            self.value = self.cache.get("sk-key")

        def __result__(self):
            return type(self.cache).__name__, self.value

    client = redis.Redis(host=redis_server.host, port=redis_server.port, password=redis_server.password)
    try:
        assert RedisUser(client).run() == ("Redis", b"v1")
    finally:
        client.close()
