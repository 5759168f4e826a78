"""Reconnectors for stdlib resources and ``reconnect_all``, in one process and across processes.

Cross-process tests: the parent serializes with cucumber and hands the bytes to
a child (under every start method); the child deserializes, calls
``reconnect_all`` and USES the live resource; the parent checks the effect.

    parent ──bytes──▶ child: deserialize → reconnect_all → query/send/run
    parent ◀─result── child (plain values over a multiprocessing pipe)
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import multiprocessing.connection
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from suitkaise import cucumber
from suitkaise.cucumber import reconnectors as R
from suitkaise.cucumber.reconnectors import ReconnectWarning

# -- running a function in a real child process ---------------------------------------


def _child_main(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send((True, fn(*args)))
    except BaseException:
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def run_in_child(fn: Callable[..., Any], *args: Any, timeout: float = 90.0) -> Any:
    """``fn(*args)`` in a child of the default start method; its return value or its traceback."""
    ctx = multiprocessing.get_context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args))
    proc.start()
    send.close()
    try:
        ready = multiprocessing.connection.wait([recv, proc.sentinel], timeout)
        if recv in ready or recv.poll():
            ok, value = recv.recv()
        else:
            proc.join(5)
            raise AssertionError(f"child ended without a result (exit code {proc.exitcode})")
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        recv.close()
    if not ok:
        raise AssertionError(f"child failed:\n{value}")
    return value


def roundtrip(obj: Any) -> Any:
    return cucumber.deserialize(cucumber.serialize(obj))


# -- SQLite ------------------------------------------------------------------------------


def _child_sqlite_file(payload: bytes) -> list[Any]:
    holder = cucumber.deserialize(payload)
    assert isinstance(holder["db"], R.SQLiteConnectionReconnector)
    cucumber.reconnect_all(holder)
    conn = holder["db"]
    assert type(conn) is sqlite3.Connection
    conn.execute("insert into t values (?)", ("from child",))
    conn.commit()
    rows = conn.execute("select v from t order by rowid").fetchall()
    conn.close()
    return rows


def test_sqlite_file_db_across_processes(tmp_path: Any, start_method: str) -> None:
    path = tmp_path / "data.db"
    conn = sqlite3.connect(path)
    conn.execute("create table t (v text)")
    conn.execute("insert into t values ('from parent')")
    conn.commit()
    payload = cucumber.serialize({"db": conn})

    rows = run_in_child(_child_sqlite_file, payload)
    assert rows == [("from parent",), ("from child",)]
    # The child wrote to the same file: the parent's own connection sees it.
    assert conn.execute("select count(*) from t").fetchone() == (2,)
    conn.close()


def test_sqlite_file_db_in_process_and_missing_file(tmp_path: Any) -> None:
    path = tmp_path / "data.db"
    conn = sqlite3.connect(path, isolation_level="IMMEDIATE")
    conn.execute("create table t (v)")
    conn.execute("insert into t values (1)")
    conn.commit()
    rec = roundtrip(conn)
    assert isinstance(rec, R.SQLiteConnectionReconnector)
    assert rec.database == str(path) and not rec.is_memory
    live = rec.reconnect()
    assert type(live) is sqlite3.Connection and live.isolation_level == "IMMEDIATE"
    assert live.execute("select v from t").fetchall() == [(1,)]
    live.close()
    conn.close()

    path.unlink()
    holder = {"db": rec}
    with pytest.warns(ReconnectWarning, match=r"root\['db'\].*FileNotFoundError.*data\.db"):
        out = cucumber.reconnect_all(holder)
    assert out is holder and holder["db"] is rec  # kept in place, not silently dropped
    assert not path.exists()  # never created an empty database in its place


def _child_sqlite_memory(payload: bytes) -> tuple[str, list[Any], list[Any]]:
    rec = cucumber.deserialize(payload)
    lazy_rows = rec.execute("select a, b from t order by a").fetchall()  # lazy reconnect
    live = cucumber.reconnect_all(rec)
    live.execute("insert into t values (3, 'three')")
    return type(live).__name__, lazy_rows, live.execute("select a, b from t order by a").fetchall()


def test_sqlite_memory_scenario_7(start_method: str) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("create table t (a integer primary key, b text)")
    conn.executemany("insert into t values (?, ?)", [(1, "one"), (2, "two")])
    conn.execute("create index t_b on t (b)")
    payload = cucumber.serialize(conn)
    conn.close()

    r = cucumber.deserialize(payload)
    assert type(r) is R.SQLiteConnectionReconnector and r.is_memory
    assert r.execute("select * from t order by a").fetchall() == [(1, "one"), (2, "two")]
    r.execute("insert into t values (5, 'five')")  # done through the reconnector ...
    live = cucumber.reconnect_all(r)
    assert type(live) is sqlite3.Connection
    assert type(r) is R.SQLiteConnectionReconnector  # a top-level reconnector is not mutated
    # ... is not lost: reconnect_all hands out the object lazy access created.
    assert live.execute("select a from t order by a").fetchall() == [(1,), (2,), (5,)]
    assert live.execute("select name from sqlite_master where type='index'").fetchall() == [("t_b",)]
    # reconnect() itself always makes a NEW connection from the saved dump.
    fresh = r.reconnect()
    assert fresh is not live and fresh.execute("select count(*) from t").fetchone() == (2,)
    fresh.close()
    live.close()

    name, lazy_rows, rows = run_in_child(_child_sqlite_memory, payload)
    assert name == "Connection"
    assert lazy_rows == [(1, "one"), (2, "two")]
    assert rows == [(1, "one"), (2, "two"), (3, "three")]


def test_reserializing_a_used_reconnector_carries_metadata_only(monkeypatch: Any) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("create table t (a)")
    r = roundtrip(conn)
    r.execute("insert into t values (1)")  # creates the lazy live connection
    assert "_lazy_target" in r.__dict__

    def boom(self: Any) -> Any:
        raise AssertionError("serializing must never reconnect")

    monkeypatch.setattr(R.SQLiteConnectionReconnector, "reconnect", boom)
    r2 = roundtrip(r)
    assert type(r2) is R.SQLiteConnectionReconnector
    assert "_lazy_target" not in r2.__dict__
    assert r2.dump == r.dump  # the snapshot taken at first serialization, not the lazy writes
    monkeypatch.undo()
    conn.close()


def dict_rows(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def test_sqlite_row_factory_closed_and_foreign_thread() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = dict_rows  # iterdump must still work, and the factory travels
    conn.execute("create table t (a)")
    conn.execute("insert into t values (1)")
    rec = roundtrip(conn)
    assert conn.row_factory is dict_rows  # restored on the original
    assert rec.execute("select a from t").fetchall() == [{"a": 1}]

    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            cucumber.serialize(conn)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(30)
    # Refused with the reason, never a reconnector that silently lost the database.
    assert isinstance(errors[0], cucumber.SerializationError) and "same thread" in str(errors[0])

    conn.close()
    closed = roundtrip({"db": conn})
    with pytest.warns(ReconnectWarning, match=r"root\['db'\].*closed before it was serialized"):
        cucumber.reconnect_all(closed)
    assert isinstance(closed["db"], R.SQLiteConnectionReconnector)


def test_sqlite_cursor_shares_its_connection() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("create table t (a)")
    cur = conn.cursor()
    cur.arraysize = 7
    cur.execute("insert into t values (1)")
    holder = {"conn": conn, "cur": cur}
    r = roundtrip(holder)
    assert isinstance(r["cur"], R.SQLiteCursorReconnector)
    assert r["cur"].connection is r["conn"]  # one connection reconnector, as in the original
    assert r["cur"].lastrowid == 1

    cucumber.reconnect_all(r)
    assert type(r["cur"]) is sqlite3.Cursor and type(r["conn"]) is sqlite3.Connection
    assert r["cur"].connection is r["conn"]
    assert r["cur"].arraysize == 7
    r["cur"].execute("insert into t values (2)")
    assert r["conn"].execute("select a from t order by a").fetchall() == [(1,), (2,)]
    r["conn"].close()
    conn.close()


def test_sqlite_cursor_lazy_iteration() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("create table t (a)")
    conn.executemany("insert into t values (?)", [(1,), (2,)])
    rec = roundtrip(conn.cursor())
    assert isinstance(rec, R.SQLiteCursorReconnector)
    rec.execute("select a from t order by a")
    assert list(rec) == [(1,), (2,)]
    conn.close()


def _three_rows(path: Any) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path))
    conn.execute("create table t (a)")
    conn.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    conn.commit()
    return conn


@pytest.mark.parametrize("fetched", [0, 1, 2])
def test_sqlite_cursor_with_unread_rows_refuses_to_fetch(tmp_path: Any, fetched: int) -> None:
    # A result set cannot travel; the reconnected cursor used to return [] / None
    # silently, as if the query had matched nothing.
    conn = _three_rows(tmp_path / "t.db")
    cur = conn.execute("select a from t order by a")
    for _ in range(fetched):
        cur.fetchone()
    live = cucumber.reconnect_all(roundtrip({"cur": cur}))["cur"]
    for fetch in (live.fetchall, live.fetchone, lambda: live.fetchmany(2), lambda: next(live)):
        with pytest.raises(sqlite3.ProgrammingError, match=r"rows not fetched yet.*execute the query again"):
            fetch()
    assert cur.fetchall() == [(a,) for a in range(fetched + 1, 4)]  # the sender's rows are untouched
    live.execute("select count(*) from t")  # a statement of its own: a normal cursor again
    assert live.fetchone() == (3,)
    live.connection.close()
    conn.close()


@pytest.mark.parametrize("state", ["fresh", "exhausted", "insert"])
def test_sqlite_cursor_without_unread_rows_is_a_plain_cursor(tmp_path: Any, state: str) -> None:
    conn = _three_rows(tmp_path / "t.db")
    cur = conn.cursor()
    if state == "exhausted":
        cur.execute("select a from t")
        assert len(cur.fetchall()) == 3
    elif state == "insert":
        cur.execute("insert into t values (4)")
        conn.commit()
    live = cucumber.reconnect_all(roundtrip(cur))
    assert type(live) is sqlite3.Cursor
    assert live.fetchall() == []  # nothing was pending: the same as the sender's cursor
    assert live.execute("select count(*) from t").fetchone() == (4 if state == "insert" else 3,)
    live.connection.close()
    conn.close()


# -- sockets -----------------------------------------------------------------------------


@pytest.fixture
def server() -> Any:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(30)
    yield srv
    srv.close()


def _child_socket(payload: bytes) -> str:
    holder = cucumber.deserialize(payload)
    cucumber.reconnect_all(holder)
    sock = holder.sock
    assert type(sock) is socket.socket
    sock.sendall(b"hello from child")
    sock.close()
    return "sent"


class _Holder:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def test_socket_client_reconnects_to_the_server(server: socket.socket, start_method: str) -> None:
    client = socket.create_connection(server.getsockname(), timeout=30)
    accepted, _ = server.accept()
    payload = cucumber.serialize(_Holder(sock=client))
    rec = cucumber.deserialize(payload).sock
    assert isinstance(rec, R.SocketReconnector)
    assert rec.remote_addr == server.getsockname() and not rec.listening

    # In process: a new connection to the same server.
    live = rec.reconnect()
    conn2, _ = server.accept()
    live.sendall(b"ping")
    assert conn2.recv(4) == b"ping"
    live.close()
    conn2.close()

    # Across processes: the child's socket reaches the parent's server.
    assert run_in_child(_child_socket, payload) == "sent"
    conn3, _ = server.accept()
    conn3.settimeout(30)
    data = b""
    while chunk := conn3.recv(100):
        data += chunk
    assert data == b"hello from child"
    conn3.close()
    accepted.close()
    client.close()


def test_listening_socket_rebinds_once_the_original_is_closed() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    addr = srv.getsockname()
    rec = roundtrip(srv)
    assert rec.listening and rec.local_addr == addr
    # Best effort, never silent: the address is still taken.
    with pytest.warns(ReconnectWarning, match=r"root\[0\].*could not bind to"):
        kept = cucumber.reconnect_all([rec])
    assert kept[0] is rec
    srv.close()
    live = rec.reconnect()
    try:
        with socket.create_connection(addr, timeout=30) as c:
            s, _ = live.accept()
            c.sendall(b"x")
            assert s.recv(1) == b"x"
            s.close()
    finally:
        live.close()


# -- threads -----------------------------------------------------------------------------

RESULTS: list[Any] = []


def record(value: Any, sink: list[Any] | None = None) -> None:
    (RESULTS if sink is None else sink).append(value)


class Worker:
    """The classic: a thread whose target is a bound method of the object holding it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.work, name="worker-1", daemon=True)

    def work(self) -> None:
        self.seen.append(threading.current_thread().name)


def _child_thread(payload: bytes) -> list[str]:
    w = cucumber.deserialize(payload)
    assert isinstance(w.thread, R.ThreadReconnector)
    cucumber.reconnect_all(w, start_threads=True)
    assert type(w.thread) is threading.Thread
    w.thread.join(30)
    return w.seen


def test_thread_reconnects_and_starts_only_when_asked(start_method: str) -> None:
    w = Worker()
    payload = cucumber.serialize(w)
    r = cucumber.deserialize(payload)
    assert isinstance(r.thread, R.ThreadReconnector) and r.thread.target == r.work
    assert r.thread.name == "worker-1" and r.thread.daemon and not r.thread.was_alive

    t = r.thread.reconnect()
    assert not t.is_alive() and t.name == "worker-1" and t.daemon
    cucumber.reconnect_all(r)  # start_threads=False: not started
    assert type(r.thread) is threading.Thread and not r.thread.is_alive()
    r.thread.start()
    r.thread.join(30)
    assert r.seen == ["worker-1"]

    assert run_in_child(_child_thread, payload) == ["worker-1"]


def test_thread_args_and_subclass_state() -> None:
    sink: list[Any] = []
    t = threading.Thread(target=record, args=(42,), kwargs={"sink": sink})
    timer = threading.Timer(0.01, record, args=("timer",), kwargs={"sink": sink})
    got = roundtrip([t, timer, sink])
    assert isinstance(got[1], R.ThreadReconnector) and got[1].thread_class is threading.Timer
    cucumber.reconnect_all(got, start_threads=True)
    assert type(got[1]) is threading.Timer and got[1].interval == 0.01
    got[0].join(30)
    got[1].join(30)
    assert sorted(map(str, got[2])) == ["42", "timer"]  # the round-tripped sink, shared by both


# -- multiprocessing pipe ends ---------------------------------------------------------------


def test_pipe_connection_gives_a_new_pipe(start_method: str) -> None:
    a, b = multiprocessing.Pipe()
    rec = roundtrip(a)
    assert isinstance(rec, R.PipeReconnector) and rec.duplex and rec.endpoint == "duplex"
    end = rec.reconnect()
    peer = rec.peer()
    end.send("to peer")
    assert peer.recv() == "to peer"
    peer.send("back")
    assert end.recv() == "back"
    x, y = rec.pair()
    x.send(1)
    assert y.recv() == 1
    for c in (end, peer, x, y, a, b):
        c.close()

    r, w = multiprocessing.Pipe(duplex=False)
    rr, rw = roundtrip((r, w))
    assert (rr.endpoint, rw.endpoint) == ("read", "write")
    new_w = rw.reconnect()
    assert new_w.writable and not new_w.readable
    new_w.send("one-way")
    assert rw.peer().recv() == "one-way"
    new_w.close()
    rw.peer().close()

    # Across processes: the child builds its own new pipe and it works.
    payload = cucumber.serialize(r)
    r.close()
    w.close()
    assert run_in_child(_child_pipe_pair, payload) == {"x": 1}


def _child_pipe_pair(payload: bytes) -> Any:
    rec = cucumber.deserialize(payload)
    mine = cucumber.reconnect_all(rec)  # the lazy target: peer() is its other end
    assert mine.readable and not mine.writable
    rec.peer().send({"x": 1})
    got = mine.recv()
    mine.close()
    rec.peer().close()
    return got


# -- subprocess.Popen -------------------------------------------------------------------------

CODE = "import sys; print('hi', sys.argv[1:])"


def _child_popen(payload: bytes) -> tuple[int, str]:
    rec = cucumber.deserialize(payload)
    assert cucumber.reconnect_all(rec) is rec  # never starts a process by itself
    p = rec.reconnect()
    out, _ = p.communicate(timeout=60)
    return p.returncode, out


def test_popen_is_a_non_lazy_reconnector(start_method: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", CODE, "a"], stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=60)
    assert out == "hi ['a']\n"
    payload = cucumber.serialize(p)
    rec = cucumber.deserialize(payload)
    assert type(rec) is R.SubprocessReconnector
    snap = rec.snapshot()
    assert (snap.pid, snap.returncode, snap.args) == (p.pid, 0, [sys.executable, "-c", CODE, "a"])
    with pytest.raises(AttributeError, match=r"never starts a process.*reconnect"):
        rec.communicate  # noqa: B018 - the attribute access itself is what is tested
    assert cucumber.reconnect_all({"p": rec})["p"] is rec

    again = rec.reconnect()
    assert again.pid != p.pid
    out2, _ = again.communicate(timeout=60)
    assert out2 == "hi ['a']\n"
    override = rec.reconnect(stdout=subprocess.DEVNULL)
    assert override.stdout is None and override.wait(60) == 0

    assert run_in_child(_child_popen, payload) == (0, "hi ['a']\n")


# -- re.Match ----------------------------------------------------------------------------------


def _child_match(payload: bytes) -> tuple[str, tuple[int, int], dict[str, Any]]:
    rec = cucumber.deserialize(payload)
    m = cucumber.reconnect_all(rec)
    assert isinstance(m, re.Match)
    return m.group(0), m.span(), m.groupdict()


def test_match_reconnector(start_method: str) -> None:
    m = re.search(r"(?P<word>b+)(c)?", "aabbbcc", re.I)
    assert m is not None
    payload = cucumber.serialize(m)
    rec = cucumber.deserialize(payload)
    assert type(rec) is R.MatchReconnector and rec.match_span == (2, 6)
    assert rec.group("word") == "bbb" and rec.span() == (2, 6)  # lazy
    live = cucumber.reconnect_all(rec)
    assert isinstance(live, re.Match) and live.groups() == ("bbb", "c")

    third = list(re.finditer(r"\d+", "1 22 333"))[2]
    r3 = roundtrip(third).reconnect()
    assert r3 is not None and r3.group() == "333" and r3.span() == (5, 8)

    assert run_in_child(_child_match, payload) == ("bbbc", (2, 6), {"word": "bbb"})


# -- serializing reconnectors themselves -----------------------------------------------------


def test_every_reconnector_reserializes_as_itself_without_reconnecting(monkeypatch: Any) -> None:
    conn = sqlite3.connect(":memory:")
    srv = socket.create_server(("127.0.0.1", 0))
    a, b = multiprocessing.Pipe()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(60)
    m = re.match("a", "a")
    sources = [conn, conn.cursor(), srv, threading.Thread(target=print), a, p, m]
    recs = roundtrip(sources)
    for cls in {type(r) for r in recs}:
        monkeypatch.setattr(cls, "reconnect", lambda self, *a, **k: pytest.fail("reconnect called"))
    again = roundtrip(recs)
    assert [type(r) for r in again] == [type(r) for r in recs]
    assert all(isinstance(r, R.Reconnector) for r in again)
    for x in (conn, srv, a, b):
        x.close()


# -- reconnect_all: the walk ------------------------------------------------------------------


class FakeDb(R.Reconnector):
    """A stand-in auth-taking reconnector (no server needed)."""

    auth_key = "fake.Connection"

    def __init__(self, label: str) -> None:
        self.label = label

    def reconnect(self, auth: Any = None) -> tuple[str, str, Any]:
        if auth == "bad":
            raise ConnectionRefusedError(f"wrong password for {self.label}")
        return ("live", self.label, auth)


class PasswordOnly(R.Reconnector):
    auth_key = "fake.Pw"

    def reconnect(self, *, password: str) -> str:
        return f"pw:{password}"


class Positional(R.Reconnector):
    auth_key = "fake.Pos"

    def reconnect(self, secret: str) -> str:
        return f"pos:{secret}"


class DriverRec(R.Reconnector):
    """Only says which client it stands for: the type key is derived (§9.3 fallback)."""

    def __init__(self) -> None:
        self.module = "mydriver.core"
        self.class_name = "my_conn"

    def reconnect(self, auth: Any = None) -> Any:
        return ("driver", auth)


class Slotted:
    __slots__ = ("__private", "db", "unset")

    def __init__(self, db: Any) -> None:
        self.db = db
        self.__private = db


@dataclasses.dataclass(frozen=True)
class Frozen:
    db: Any


class Pair(NamedTuple):
    left: Any
    right: Any


def test_scenario_8_per_attribute_auth_and_failures_warn() -> None:
    h = _Holder(main_db=FakeDb("main"), analytics_db=FakeDb("analytics"), broken=FakeDb("broken"))
    auth = {"fake.Connection": {"*": "D", "analytics_db": "S", "broken": "bad"}}
    with pytest.warns(ReconnectWarning) as caught:
        out = cucumber.reconnect_all(h, **auth)
    assert out is h
    assert h.main_db == ("live", "main", "D")
    assert h.analytics_db == ("live", "analytics", "S")
    assert isinstance(h.broken, FakeDb)  # kept in place ...
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "root.broken" in msgs[0]  # ... and reported, with its path
    assert "ConnectionRefusedError: wrong password for broken" in msgs[0]


def test_auth_signatures_keys_and_defaults() -> None:
    data = {
        "pw": PasswordOnly(),
        "pos": Positional(),
        "drv": DriverRec(),
        "noauth": FakeDb("x"),
        "plain": [FakeDb("in list")],  # list elements have no name: only "*" applies
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cucumber.reconnect_all(
            data,
            **{
                "fake.Pw": {"pw": "p1"},
                "fake.Pos": "p2",  # a non-dict value is the type's default
                "mydriver.MyConn": {"*": "p3"},
                "fake.Connection": {"*": "star", "plain": "not used for elements"},
            },
        )
    assert data["pw"] == "pw:p1"
    assert data["pos"] == "pos:p2"
    assert data["drv"] == ("driver", "p3")
    assert data["noauth"] == ("live", "x", "star")
    assert data["plain"] == [("live", "in list", "star")]


def test_a_reconnector_that_needs_credentials_and_got_none_says_how_to_give_them() -> None:
    # before: only "TypeError: reconnect() missing 1 required positional argument: 'secret'"
    h = _Holder(db=Positional(), pw=PasswordOnly())
    with pytest.warns(ReconnectWarning) as caught:
        cucumber.reconnect_all(h)
    msgs = sorted(str(w.message) for w in caught)
    assert len(msgs) == 2
    assert "root.db (Positional)" in msgs[0] and "reconnect_all(obj, **{'fake.Pos': {'*': secret}})" in msgs[0]
    assert "root.pw (PasswordOnly)" in msgs[1] and "{'fake.Pw': {'*': secret}}" in msgs[1]
    assert all("Pool(auth=...)" in m and "@autoreconnect" in m for m in msgs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cucumber.reconnect_all(_Holder(db=FakeDb("x")))  # auth optional: no warning at all


def test_auth_given_to_a_reconnector_that_takes_none_is_reported() -> None:
    h = _Holder(m=roundtrip(re.match("a", "a")))
    with pytest.warns(ReconnectWarning, match=r"root\.m .*takes no auth.*'re\.Match'"):
        cucumber.reconnect_all(h, **{"re.Match": {"*": "pw"}})
    assert isinstance(h.m, R.MatchReconnector)
    assert isinstance(cucumber.reconnect_all(h).m, re.Match)


def test_containers_are_updated_in_place_or_rebuilt() -> None:
    shared = FakeDb("shared")
    lst = [shared, 1, "s"]
    d = collections.OrderedDict(a=shared, b=2)
    dq = collections.deque([shared])
    tup = (shared, lst)
    fs = frozenset({shared})
    slotted = Slotted(shared)
    frozen = Frozen(shared)
    pair = Pair(shared, 3)
    root = {"lst": lst, "d": d, "dq": dq, "tup": tup, "fs": fs, "slotted": slotted,
            "frozen": frozen, "pair": pair, shared: "as a key"}
    out = cucumber.reconnect_all(root)
    live = ("live", "shared", None)
    assert out is root
    assert root["lst"] is lst and lst == [live, 1, "s"]
    assert root["d"] is d and list(d.items()) == [("a", live), ("b", 2)]
    assert root["dq"] is dq and dq[0] == live
    assert root["tup"] == (live, lst) and root["tup"][1] is lst
    assert root["fs"] == frozenset({live})
    assert slotted.db == live and slotted._Slotted__private == live  # type: ignore[attr-defined]
    assert frozen.db == live
    assert type(root["pair"]) is Pair and root["pair"] == Pair(live, 3)
    assert root[live] == "as a key"
    # One reconnector, one live object, wherever it appears.
    assert lst[0] is d["a"] is dq[0] is root["tup"][0] is slotted.db


def test_cycles_and_deep_graphs() -> None:
    a = _Holder(db=FakeDb("a"))
    b = _Holder(peer=a, db=FakeDb("b"))
    a.peer = b
    t: tuple[Any, ...] = ([FakeDb("t")],)
    t[0].append(t)
    cucumber.reconnect_all([a, t])
    assert a.db[1] == "a" and a.peer.db[1] == "b" and b.peer is a
    assert t[0][0][1] == "t"

    depth = 50_000  # far past the recursion limit: the walk is iterative
    leaf = [FakeDb("deep")]
    node: Any = leaf
    for _ in range(depth):
        node = [node]
    cucumber.reconnect_all(node)
    assert leaf[0] == ("live", "deep", None)
    chain = _Holder(db=FakeDb("c0"))
    cur = chain
    for i in range(depth):
        cur.next = _Holder(db=FakeDb(f"c{i + 1}"))
        cur = cur.next
    assert cucumber.reconnect_all((chain,))[0] is chain
    assert cur.db == ("live", f"c{depth}", None)


def test_unhashable_live_objects_keep_the_set_and_warn() -> None:
    class ListRec(R.Reconnector):
        def reconnect(self) -> list[int]:
            return [1]

    s = {ListRec()}
    with pytest.warns(ReconnectWarning, match="set member"):
        out = cucumber.reconnect_all({"s": s})
    assert out["s"] is s


def test_reconnect_returning_none_is_reported() -> None:
    rec = roundtrip(re.match("a", "a"))
    rec.pattern = "b"  # no longer reproduces
    with pytest.warns(ReconnectWarning, match=r"root\[0\].*returned None"):
        out = cucumber.reconnect_all([rec])
    assert out[0] is rec


def test_walk_never_triggers_user_getattr() -> None:
    class Proxy:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"probed {name}")

    p = Proxy()
    assert cucumber.reconnect_all([p])[0] is p


def test_non_lazy_reconnectors_say_how_to_connect() -> None:
    rec = FakeDb("x")
    with pytest.raises(AttributeError, match=r"^FakeDb object has no attribute 'cursor': .*reconnect.*@autoreconnect"):
        rec.cursor  # noqa: B018 - the attribute access itself is what is tested
    lazy = roundtrip(re.match("a", "a"))
    with pytest.raises(AttributeError, match=r"has no attribute '_private'"):
        lazy._private  # noqa: B018 - private names never trigger a lazy reconnect
    assert "_lazy_target" not in lazy.__dict__


# -- reconnect_all(cache=) and rebuilt_count() ------------------------------------------


def test_reconnect_all_cache_reuses_the_live_object_of_an_equal_reconnector(tmp_path: Any) -> None:
    path_a, path_b = tmp_path / "a.db", tmp_path / "b.db"
    for path in (path_a, path_b):
        sqlite3.connect(path).close()
    a, b = sqlite3.connect(path_a), sqlite3.connect(path_b)
    try:
        cache: dict[Any, Any] = {}
        first = cucumber.reconnect_all(cucumber.deserialize(cucumber.serialize([a, b])), cache=cache)
        second = cucumber.reconnect_all(cucumber.deserialize(cucumber.serialize({"db": a})), cache=cache)
        assert all(isinstance(c, sqlite3.Connection) for c in first)
        assert second["db"] is first[0]  # the same resource: the same live connection
        assert first[1] is not first[0]  # another file: another connection
        fresh = cucumber.reconnect_all(cucumber.deserialize(cucumber.serialize(a)))
        assert fresh is not first[0]  # without the cache: a new connection each time
        for c in (*first, fresh):
            c.close()
    finally:
        a.close()
        b.close()


def test_reconnect_all_cache_does_not_keep_failures(tmp_path: Any) -> None:
    path = tmp_path / "gone.db"
    conn = sqlite3.connect(path)
    payload = cucumber.serialize(conn)
    conn.close()
    path.unlink()
    cache: dict[Any, Any] = {}
    with pytest.warns(ReconnectWarning):
        left = cucumber.reconnect_all(cucumber.deserialize(payload), cache=cache)
    assert isinstance(left, R.SQLiteConnectionReconnector) and cache == {}
    sqlite3.connect(path).close()  # the file is back: the next reconnect works
    live = cucumber.reconnect_all(cucumber.deserialize(payload), cache=cache)
    assert isinstance(live, sqlite3.Connection) and len(cache) == 1
    live.close()
    with pytest.raises(TypeError, match="cache"):
        cucumber.reconnect_all([], cache=[])  # type: ignore[arg-type]


def test_reconnect_all_cache_replaces_a_closed_resource(tmp_path: Any) -> None:
    path = tmp_path / "a.db"
    conn = sqlite3.connect(path)
    payload = cucumber.serialize({"db": conn, "cur": conn.cursor()})
    conn.close()
    cache: dict[Any, Any] = {}
    first = cucumber.reconnect_all(cucumber.deserialize(payload), cache=cache)
    first["db"].close()  # the user closed it: a cache must not hand it out again
    second = cucumber.reconnect_all(cucumber.deserialize(payload), cache=cache)
    assert second["db"] is not first["db"] and second["db"].execute("select 1").fetchone() == (1,)
    assert second["cur"] is not first["cur"] and second["cur"].execute("select 2").fetchone() == (2,)
    third = cucumber.reconnect_all(cucumber.deserialize(payload), cache=cache)
    assert third["db"] is second["db"]  # still open: reused
    second["db"].close()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    sock_payload = cucumber.serialize(client)
    try:
        live = cucumber.reconnect_all(cucumber.deserialize(sock_payload), cache=cache)
        assert cucumber.reconnect_all(cucumber.deserialize(sock_payload), cache=cache) is live
        live.close()
        again = cucumber.reconnect_all(cucumber.deserialize(sock_payload), cache=cache)
        assert again is not live and again.fileno() != -1
        again.close()
    finally:
        client.close()
        server.close()


def test_rebuilt_count_tells_whether_a_payload_brought_reconnectors() -> None:
    conn = sqlite3.connect(":memory:")
    with_rec, without = cucumber.serialize([conn, 1]), cucumber.serialize([1, "x", {"a": 2}])
    conn.close()
    mark = R.rebuilt_count()
    cucumber.deserialize(without)
    assert R.rebuilt_count() == mark
    cucumber.deserialize(with_rec)
    assert R.rebuilt_count() == mark + 1
