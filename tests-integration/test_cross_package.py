"""Scenarios that cross package boundaries, across real processes.

    parent ──Pool──► workers (Skprocess items run inline)
       │                │  share.counter += 1, share.items.append, share.log.info,
       │                │  share.timer.add_time       (sk-share + sk-timing + cucumber)
       │                │  point.send / point.recv    (sk-pipe fd through the Pool)
       │                │  sqlite / PostgreSQL Reconnectors -> live (cucumber, @autoreconnect)
       └──tell/listen──► Skprocess updating a Share   (sk-processing + sk-share)

Every scenario runs under each start method of the ``start_method`` fixture.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid

import pytest
from cross_support import (
    RUNS_PER_WORKER,
    Accumulator,
    PgItem,
    ShareWorker,
    SqliteItem,
    pg_task,
    send_on_point,
    sqlite_task,
    timer_sample,
)

from suitkaise.processing import Pipe, Pool, Share, autoreconnect
from suitkaise.timing import Sktimer

WORKERS = 2
ITEMS = 4


@pytest.fixture
def file_logger(tmp_path):
    """A logger with a FileHandler writing bare messages to tmp_path/workers.log."""
    path = tmp_path / "workers.log"
    logger = logging.getLogger(f"sk-integration-{uuid.uuid4().hex[:8]}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    yield logger, path
    logger.removeHandler(handler)
    handler.close()


def test_pool_of_skprocess_workers_shares_counter_list_logger_timer(start_method, file_logger):
    logger, path = file_logger
    with Share() as share:
        share.counter = 0
        share.items = []
        share.log = logger
        share.timer = Sktimer()
        with Pool(workers=WORKERS) as pool:
            wids = pool.star().map(ShareWorker, [(share, w) for w in range(ITEMS)])
        assert wids == list(range(ITEMS))

        expected_pairs = sorted((w, r) for w in range(ITEMS) for r in range(RUNS_PER_WORKER))
        assert share.counter == ITEMS * RUNS_PER_WORKER
        assert sorted(tuple(p) for p in share.items) == expected_pairs
        # Each worker's own appends are in its run order.
        for w in range(ITEMS):
            assert [r for (ww, r) in share.items if ww == w] == list(range(RUNS_PER_WORKER))

        samples = [timer_sample(w, r) for (w, r) in expected_pairs]
        assert share.timer.num_times == len(samples)
        assert share.timer.mean == pytest.approx(sum(samples) / len(samples))
        assert share.timer.max == pytest.approx(max(samples))

    for h in logger.handlers:
        h.flush()
    lines = path.read_text().splitlines()
    got = sorted(" ".join(line.split()[:4]) for line in lines)
    want = sorted(f"worker {w} run {r}" for (w, r) in expected_pairs)
    assert got == want  # every line from every worker, once
    assert {line.split()[-1] for line in lines} != {str(os.getpid())}  # written by the workers


def test_pipe_point_handed_through_pool(start_method):
    pairs = [Pipe.pair() for _ in range(3)]
    try:
        with Pool(workers=WORKERS) as pool:
            future = pool.star().map.background()(
                send_on_point, [(point, f"t{i}") for i, (_anchor, point) in enumerate(pairs)])
            for i, (anchor, _point) in enumerate(pairs):
                msg = anchor.recv()  # the worker sent on the point it received as an item
                assert msg["tag"] == f"t{i}"
                assert msg["pid"] != os.getpid()
                anchor.send(f"ack {i}")
            assert future.result(timeout=120) == [f"ack {i}" for i in range(3)]
    finally:
        for anchor, point in pairs:
            anchor.close()
            point.close()


def _sqlite_file(tmp_path):
    path = str(tmp_path / "rows.db")
    with sqlite3.connect(path) as conn:
        conn.execute("create table rows (value integer, source text)")
    conn.close()
    return path


def test_sqlite_file_autoreconnect_in_pool_workers(start_method, tmp_path):
    path = _sqlite_file(tmp_path)
    conn = sqlite3.connect(path)
    try:
        with Pool(workers=WORKERS) as pool:
            live = pool.star().map(SqliteItem, [(conn, v) for v in range(ITEMS)])
            results = pool.map(sqlite_task, [{"db": conn, "value": 100 + v} for v in range(ITEMS)])
    finally:
        conn.close()
    assert live == [True] * ITEMS
    assert results == [("Connection", True)] * ITEMS  # live on arrival (Pool workers reconnect)
    with sqlite3.connect(path) as check:
        rows = sorted(check.execute("select value, source from rows").fetchall())
    check.close()
    assert rows == [(v, "skprocess") for v in range(ITEMS)] + [(100 + v, "function") for v in range(ITEMS)]


def test_postgres_autoreconnect_in_pool_workers(start_method, postgres_server):
    psycopg2 = pytest.importorskip("psycopg2")
    password = postgres_server.password

    @autoreconnect(**{"psycopg2.Connection": {"*": password}})
    class AutoPg(PgItem):
        pass

    conn = psycopg2.connect(postgres_server.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("drop table if exists sk_rows; create table sk_rows (value int, source text)")
        conn.commit()
        with Pool(workers=WORKERS) as pool:
            modules = pool.star().map(AutoPg, [(conn, v) for v in range(ITEMS)])
            results = pool.map(pg_task, [
                {"db": conn, "value": 100 + v, "password": password} for v in range(ITEMS)])
        with conn.cursor() as cur:
            cur.execute("select value, source from sk_rows order by value")
            rows = cur.fetchall()
    finally:
        conn.close()
    assert modules == ["psycopg2.extensions"] * ITEMS
    assert results == [("PostgresReconnector", "psycopg2.extensions")] * ITEMS
    assert rows == [(v, "skprocess") for v in range(ITEMS)] + [(100 + v, "function") for v in range(ITEMS)]


def test_skprocess_tell_listen_while_updating_share(start_method):
    numbers = [5, 1, 7, 3, 10]
    with Share() as share:
        share.total = 0
        share.history = []
        process = Accumulator(share, len(numbers))
        process.start()
        running = 0
        for n in numbers:
            process.tell(n)
            ack = process.listen(timeout=60)
            running += n
            assert ack == {"number": n, "total": running}
            # the child's write was committed before it told us: we see it at once
            assert share.total == running
        assert process.result() == numbers
        assert share.history == numbers
        assert process.current_run == len(numbers)
