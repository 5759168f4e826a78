"""A Pool worker's life (issue 12): initializer/on_exit, worker_id()/worker_state(),
live resources reconnected once per worker, log records forwarded to the parent,
and nested=True (tasks that start processes, with no orphans)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sk_testkit import alive, kill_and_wait
from suitkaise.cucumber import Reconnector
from suitkaise.processing import Pool, ProcessError, worker_id, worker_state
from suitkaise.processing._errors import RemoteTraceback

pytestmark = pytest.mark.timeout(120)


# -- functions run in the workers (module level: importable under spawn) ---------------


def _append(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


def init_worker(path: str, tag: str) -> None:
    _append(path, f"{os.getpid()} {worker_id()}")
    worker_state()["tag"] = tag
    worker_state()["count"] = 0


def count_items(x: int) -> tuple[int | None, int, str, int]:
    state = worker_state()
    state["count"] += 1
    time.sleep(0.002)  # let both workers take items
    return worker_id(), os.getpid(), state["tag"], state["count"]


def crash_once(flag: str) -> tuple[int | None, int]:
    try:  # exactly one worker wins the flag, and dies
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return worker_id(), os.getpid()
    os.write(fd, f"{os.getpid()} {worker_id()}".encode())
    os.close(fd)
    os._exit(3)


def init_fails(path: str) -> None:
    _append(path, str(os.getpid()))
    raise ValueError("no model file here")


def on_exit_writes(path: str) -> Any:
    def on_exit() -> None:
        _append(path, f"{os.getpid()} {worker_id()} {worker_state().get('count')}")

    return on_exit


def on_exit_raises() -> None:
    raise ValueError("cannot flush the cache")


def pid_of(_: object) -> int:
    return os.getpid()


def conn_stats(conn: Any, x: int) -> tuple[int, str, int, int]:
    """What a task sees of its connection argument, and how many distinct ones this worker saw."""
    seen = worker_state().setdefault("conns", [])  # kept alive: ids stay distinct
    if all(c is not conn for c in seen):
        seen.append(conn)
    count = conn.execute("select count(*) from t").fetchone()[0]
    return os.getpid(), type(conn).__name__, count, len(seen)


class TokenReconnector(Reconnector):
    """A resource that needs auth to reconnect; counts its reconnects per process."""

    auth_key = "tests.Token"
    reconnects = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def reconnect(self, auth: Any = None) -> dict[str, Any]:
        type(self).reconnects += 1
        return {"name": self.name, "auth": auth, "pid": os.getpid()}


def token_stats(token: Any) -> tuple[int, Any, int]:
    return os.getpid(), token if isinstance(token, dict) else type(token).__name__, TokenReconnector.reconnects


def logs_things(x: int) -> int:
    log = logging.getLogger("sk.test.app")
    log.info("info %d", x)
    log.debug("debug %d", x)
    if x == 0:
        try:
            raise KeyError("boom")
        except KeyError:
            log.exception("failed on %d", x)
    return os.getpid()


def square(x: int) -> int:
    return x * x


def inner_pool(x: int) -> list[int]:
    with Pool(2) as inner:
        return inner.map(square, range(x, x + 3))


# -- initializer, worker id and state --------------------------------------------------


def test_initializer_once_per_worker_and_state_across_calls(start_method: str, tmp_path: Path) -> None:
    log = tmp_path / "init.log"
    with Pool(2, initializer=init_worker, initargs=(str(log), "model-v1")) as pool:
        first = pool.map(count_items, range(40))
        second = pool.map(count_items, range(40))
    inits = log.read_text().split("\n")[:-1]
    pids = {int(line.split()[0]) for line in inits}
    assert len(inits) == 2 and len(pids) == 2, inits  # once per worker
    assert {int(line.split()[1]) for line in inits} == {0, 1}  # worker_id() already set in the initializer
    assert {r[0] for r in first + second} <= {0, 1}
    assert {r[2] for r in first + second} == {"model-v1"}
    for pid in pids:
        counts_1 = [r[3] for r in first if r[1] == pid]
        counts_2 = [r[3] for r in second if r[1] == pid]
        # the same dict across items and calls: the counter goes on in the second call
        assert sorted(counts_1 + counts_2) == list(range(1, len(counts_1) + len(counts_2) + 1))
    by_pid = {r[1]: r[0] for r in first + second}
    assert len(set(by_pid.values())) == len(by_pid)  # one slot per process


def test_replacement_worker_runs_initializer_and_takes_the_slot(start_method: str, tmp_path: Path) -> None:
    log, flag = tmp_path / "init.log", tmp_path / "crashed"
    with Pool(2, initializer=init_worker, initargs=(str(log), "t")) as pool:
        pool.map(pid_of, range(8))
        with pytest.raises(ProcessError, match="exited with code 3"):
            pool.map(crash_once, [str(flag)] * 4)
        dead_pid, dead_slot = (int(v) for v in flag.read_text().split())
        after = pool.map(crash_once, [str(flag)] * 20)
    inits = [tuple(int(v) for v in line.split()) for line in log.read_text().split("\n")[:-1]]
    assert len(inits) == 3, inits  # the two first workers and the replacement
    assert (dead_pid, dead_slot) in inits
    in_slot = [pid for pid, slot in inits if slot == dead_slot]
    assert len(in_slot) == 2 and in_slot[0] == dead_pid  # the replacement took the slot it freed
    assert {slot for _, slot in inits} == {0, 1}
    assert {slot for slot, _ in after} <= {0, 1} and dead_pid not in {pid for _, pid in after}


def test_worker_id_and_state_outside_a_pool() -> None:
    assert worker_id() is None
    state = worker_state()
    assert isinstance(state, dict) and worker_state() is state
    state["tag"], state["count"] = "serial", 0
    try:
        assert count_items(1)[2:] == ("serial", 1)  # the task runs serially, e.g. in a test
    finally:
        state.clear()


def test_initializer_that_raises_fails_fast_without_restart_loop(start_method: str, tmp_path: Path) -> None:
    log = tmp_path / "init.log"
    pool = Pool(2, initializer=init_fails, initargs=(str(log),))
    try:
        for attempt in (1, 2):
            t0 = time.monotonic()
            with pytest.raises(ProcessError) as info:
                pool.map(square, range(100))
            assert time.monotonic() - t0 < 30
            message = str(info.value)
            assert "init_fails" in message and "ValueError: no model file here" in message
            cause = info.value.__cause__
            assert isinstance(cause, RemoteTraceback)
            assert "init_fails" in cause.tb and "no model file here" in cause.tb
            time.sleep(0.3)  # a restart loop would show as more initializer runs
            runs = len(log.read_text().split("\n")[:-1])
            assert runs <= 2 * attempt, f"the initializer ran {runs} times: workers restarted in a loop"
    finally:
        pool.terminate()


def test_bad_life_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="initializer"):
        Pool(1, initializer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initargs"):
        Pool(1, initializer=init_worker, initargs="ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initargs"):
        Pool(1, initargs=(1,))
    with pytest.raises(TypeError, match="on_exit"):
        Pool(1, on_exit="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="auth"):
        Pool(1, auth=["pw"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nested"):
        Pool(1, nested=1)  # type: ignore[arg-type]


# -- on_exit -----------------------------------------------------------------------------


def test_on_exit_runs_in_each_worker_on_close_and_on_collection(start_method: str, tmp_path: Path) -> None:
    log = tmp_path / "exit.log"
    with Pool(2, initializer=init_worker, initargs=(str(tmp_path / "init"), "t"),
              on_exit=on_exit_writes(str(log))) as pool:
        pids = set(pool.map(count_items, range(30)))
    lines = [line.split() for line in log.read_text().split("\n")[:-1]]
    assert {int(p) for p, _, _ in lines} == {r[1] for r in pids}
    assert {int(s) for _, s, _ in lines} == {0, 1}
    assert sum(int(c) for _, _, c in lines) == 30  # worker_state() still there in on_exit

    log2 = tmp_path / "exit2.log"
    pool = Pool(2, on_exit=on_exit_writes(str(log2)))
    used = set(pool.map(pid_of, range(10)))
    del pool
    gc.collect()
    lines = [line.split() for line in log2.read_text().split("\n")[:-1]]
    assert {int(p) for p, _, _ in lines} == used


def test_on_exit_that_raises_is_logged_in_the_parent(start_method: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    t0 = time.monotonic()
    with Pool(2, on_exit=on_exit_raises) as pool:
        pids = set(pool.map(pid_of, range(10)))
    assert time.monotonic() - t0 < 30
    records = [r for r in caplog.records if r.name == "suitkaise.processing" and "on_exit" in r.getMessage()]
    assert {r.process for r in records} == pids
    for r in records:
        assert "on_exit_raises" in r.getMessage() and "ValueError: cannot flush the cache" in r.getMessage()
        assert r.exc_text and "cannot flush the cache" in r.exc_text
        assert r.worker_id in (0, 1)  # type: ignore[attr-defined]


# -- live resources ----------------------------------------------------------------------


def test_sqlite_connection_reconnected_once_per_worker(start_method: str, tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    conn = sqlite3.connect(path)
    conn.executescript("create table t (x); insert into t values (1), (2), (3);")
    conn.commit()

    def closure(x: int) -> tuple[int, str, int, int]:  # holds the connection in a cell
        return conn_stats(conn, x)

    try:
        with Pool(2) as pool:
            star = pool.star().map(conn_stats, [(conn, i) for i in range(30)])
            again = pool.star().map(conn_stats, [(conn, i) for i in range(30)])
            closed_over = pool.map(closure, range(30))
    finally:
        conn.close()
    for pid, kind, count, distinct in star + again + closed_over:
        assert kind == "Connection" and count == 3  # a live sqlite3 connection, not a Reconnector
        assert distinct == 1, f"worker {pid} opened {distinct} connections"


def closes_conn(conn: Any, x: int) -> int:
    count = conn.execute("select count(*) from t").fetchone()[0]
    conn.close()  # the old habit: one connection per item, closed after use
    return count


def test_a_task_that_closes_its_connection_gets_a_new_one_next_time(start_method: str, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "data.db")
    conn.executescript("create table t (x); insert into t values (1);")
    conn.commit()
    try:
        with Pool(1) as pool:  # one worker: each call finds the connection the last one closed
            for i in range(3):
                assert pool.star().map(closes_conn, [(conn, i)]) == [1]
    finally:
        conn.close()


def test_auth_reaches_the_reconnect_once_per_worker(start_method: str) -> None:
    token = TokenReconnector("reports")
    with Pool(2, auth={"tests.Token": {"*": "s3cret"}}) as pool:
        results = pool.map(token_stats, [token] * 20) + pool.map(token_stats, [token] * 20)
    for _pid, live, reconnects in results:
        assert isinstance(live, dict), live
        assert live["auth"] == "s3cret" and live["name"] == "reports"
        assert reconnects == 1  # reused across items and calls


# -- logs -----------------------------------------------------------------------------------


def test_worker_log_records_reach_the_parent_handlers(start_method: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sk.test.app")
    with Pool(2) as pool:
        pids = set(pool.map(logs_things, range(20)))
    records = [r for r in caplog.records if r.name == "sk.test.app"]
    infos = sorted(r.getMessage() for r in records if r.levelno == logging.INFO)
    assert infos == sorted(f"info {i}" for i in range(20))
    assert not [r for r in records if r.levelno == logging.DEBUG]  # the parent's level holds
    assert {r.process for r in records} <= pids and {r.worker_id for r in records} <= {0, 1}  # type: ignore[attr-defined]
    (failed,) = [r for r in records if r.levelno == logging.ERROR]
    assert failed.getMessage() == "failed on 0" and "KeyError: 'boom'" in (failed.exc_text or "")


def logs_from_threads(x: int) -> int:
    import threading

    log = logging.getLogger("sk.test.threads")

    def burst(t: int) -> None:
        for i in range(100):
            log.warning("item %d thread %d record %d %s", x, t, i, "x" * 500)

    threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return x


def logs_then_dies(x: int) -> int:
    logging.getLogger("sk.test.app").warning("last words of %d", os.getpid())
    os._exit(7)


def test_records_from_worker_threads_never_interleave_with_results(
    start_method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sk.test.threads")
    with Pool(2) as pool:
        assert pool.map(logs_from_threads, range(6)) == list(range(6))
    records = [r for r in caplog.records if r.name == "sk.test.threads"]
    assert len(records) == 6 * 4 * 100  # none lost, none garbled
    assert {r.getMessage() for r in records} == {
        f"item {x} thread {t} record {i} {'x' * 500}" for x in range(6) for t in range(4) for i in range(100)
    }


def test_records_sent_before_a_crash_are_delivered(start_method: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sk.test.app")
    with Pool(1) as pool:
        with pytest.raises(ProcessError, match="exited with code 7"):
            pool.map(logs_then_dies, [1])
        pool.close()  # delivers what the manager received
    (record,) = [r for r in caplog.records if r.name == "sk.test.app"]
    assert record.getMessage() == f"last words of {record.process}"  # the worker's pid


# -- nested parallelism -----------------------------------------------------------------------


def test_nested_pool_inside_a_task(start_method: str) -> None:
    with Pool(2, nested=True) as pool:
        assert pool.map(inner_pool, [0, 10]) == [[0, 1, 4], [100, 121, 144]]


def test_without_nested_the_error_says_how(start_method: str) -> None:
    with Pool(1) as pool, pytest.raises(RuntimeError, match=r"nested=True"):
        pool.map(inner_pool, [0])


_NESTED_PARENT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from suitkaise.processing import Pool, Skprocess

    def mark(path):
        with open(os.path.join(path, str(os.getpid())), "w"):
            pass
        time.sleep(0.05)
        return os.getpid()

    class Sleeper(Skprocess):
        def __init__(self, path):
            self.path = path
            self.process_config.runs = 1
        def __run__(self):
            mark(self.path)
            time.sleep(600)

    def task(path):
        mark(path)
        inner = Pool(2)
        inner.map(mark, [path] * 8)              # both inner workers started
        Sleeper(path).start()                    # and an Skprocess
        time.sleep(600)

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        pool = Pool(2, nested=True)
        pool.map.background()(task, [sys.argv[2]] * 2)
        print("ready", flush=True)
        time.sleep(600)
    """
)


def test_nested_grandchildren_die_within_a_second_of_the_top_parent(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_NESTED_PARENT)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    parent = subprocess.Popen(
        [sys.executable, str(script), start_method, str(marks)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    pids: set[int] = set()
    survivors: list[int] = []
    waited = 0.0
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == b"ready"
        # 2 workers + per task 2 inner workers and 1 Skprocess
        deadline = time.monotonic() + 60
        while len(os.listdir(marks)) < 8:
            assert time.monotonic() < deadline, f"only {len(os.listdir(marks))} processes started"
            time.sleep(0.05)
        time.sleep(0.3)
        pids = {int(n) for n in os.listdir(marks)}
        assert len(pids) == 8 and all(alive(pid) for pid in pids)
        survivors, waited = kill_and_wait(parent, pids)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(30)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.stdout.close()  # type: ignore[union-attr]
        parent.stderr.close()  # type: ignore[union-attr]
    assert not survivors, f"processes {survivors} outlived their SIGKILLed top parent"
    assert waited < 1.0, f"the grandchildren took {waited:.2f}s to follow the top parent"


# -- on a Dask backend ---------------------------------------------------------------------


def dask_stats(x: int) -> tuple[int | None, int, int]:
    state = worker_state()
    state["n"] = state.get("n", 0) + 1
    return worker_id(), os.getpid(), state["n"]


def test_worker_id_and_state_on_a_dask_backend() -> None:
    distributed = pytest.importorskip("distributed", reason="the Dask backend needs sk-processing[dask]")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster:
        with pytest.raises(ValueError, match="local workers"):
            Pool(backend=cluster, initializer=init_worker)
        pool = Pool(backend=cluster)
        try:
            first = pool.map(dask_stats, range(20))
            second = pool.map(dask_stats, range(20))
        finally:
            pool.close()
    assert {wid for wid, _, _ in first + second} <= {0, 1}
    by_pid: dict[int, list[int]] = {}
    for wid, pid, n in first + second:
        by_pid.setdefault(pid, []).append(n)
        assert wid is not None
    for counts in by_pid.values():  # one dict per Dask worker process, across calls
        assert sorted(counts) == list(range(1, len(counts) + 1))
    ids = {}
    for wid, pid, _ in first + second:
        assert ids.setdefault(pid, wid) == wid  # one id per Dask worker process


def init_with_conn(conn: Any) -> None:
    worker_state()["db"] = conn  # a live connection, reconnected for the initializer


def state_db_rows(_: int) -> tuple[str, int]:
    db = worker_state()["db"]
    return type(db).__name__, db.execute("select count(*) from t").fetchone()[0]


def test_initargs_with_a_connection_arrive_live(start_method: str, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "data.db")
    conn.executescript("create table t (x); insert into t values (1), (2);")
    conn.commit()
    try:
        with Pool(2, initializer=init_with_conn, initargs=(conn,)) as pool:
            assert set(pool.map(state_db_rows, range(10))) == {("Connection", 2)}
    finally:
        conn.close()
