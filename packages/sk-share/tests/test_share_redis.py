"""Share(backend="redis://...") against a real redis-server on loopback.

::

    test process (creator of the Share) ──┐  HGET / EVALSHA (INCR, SET, ACQUIRE, COMMIT)
    child processes (fork/spawn/forkserver)┼──────────────────► redis-server on 127.0.0.1
    dask LocalCluster workers ─────────────┘  (sk_testkit's session server, or one the test
                                               starts itself to restart it or serve TLS)

Tests that need sk-processing (Pool, Skprocess, Pool on Dask) are in
tests-integration/test_share_redis_pool.py.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sk_testkit import run_processes
from sk_testkit.servers import RedisServer, ServerUnavailable
from suitkaise import cucumber
from suitkaise.share import Share, ShareError

redis = pytest.importorskip("redis")

TIMEOUT = 90
N_PROCS, N_OPS = 4, 500


@pytest.fixture
def url(redis_server: Any) -> str:
    return f"{redis_server.url}/0"


@contextlib.contextmanager
def _private_redis(persistent: bool) -> Iterator[RedisServer]:
    """A redis-server for one test alone (it gets restarted), stopped afterwards."""
    server = RedisServer(persistent=persistent)
    try:
        server.start()
    except ServerUnavailable as e:
        server.stop()
        pytest.skip(f"redis unavailable: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server with persistence."""
    with _private_redis(persistent=True) as server:
        yield server


def _raw(redis_server: Any) -> Any:
    return redis.Redis(host=redis_server.host, port=redis_server.port, password=redis_server.password)


class Acc:
    def __init__(self) -> None:
        self.total = 0
        self.items: list[int] = []

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def fail(self) -> None:
        self.total += 1000
        raise ValueError("refused")

    def slow(self, marker: str) -> None:
        self.total += 1000
        Path(marker).write_text("in")
        time.sleep(60)


class Pair:
    def __init__(self) -> None:
        self.a = 0
        self.b = 0

    def step(self) -> None:
        self.a += 1
        self.b += 1


# -- values and the attribute API, in one process ------------------------------------------------


def test_reads_are_real_values_and_none_is_a_value(url: str) -> None:
    with Share(backend=url) as share:
        share.n, share.f, share.s, share.none, share.t = 7, 1.5, "hi", None, (1, "a")
        share.big = 2**80
        assert isinstance(share.n, int) and share.n == 7
        assert isinstance(share.f, float) and share.f == 1.5
        assert share.none is None and share.s == "hi" and share.t == (1, "a")
        assert share.big == 2**80
        assert json.dumps([share.n, share.f, share.s, share.none]) == '[7, 1.5, "hi", null]'
        assert pickle.loads(pickle.dumps(share.n)) == 7
        share.d = {"k": [1, 2]}
        assert share.d == {"k": [1, 2]} and share.d["k"][1] == 2
        with pytest.raises(AttributeError, match="no attribute 'missing'"):
            share.missing  # noqa: B018
        del share.n
        with pytest.raises(AttributeError):
            share.n  # noqa: B018
        assert sorted(dir(share)) and "f" in repr(share)
        assert share._sk_transport() == "redis"
        share.clear()
        assert "objects=[]" in repr(share)


def test_augmented_and_reassign_forms(url: str) -> None:
    with Share(backend=url) as share:
        share.c = 0
        share.c += 5
        share.c -= 2
        share.c = share.c + 10
        share.c = share.c - 1
        share.c *= 2
        assert share.c == 24
        share.f = 0.1
        share.f += 0.2
        assert share.f == 0.1 + 0.2  # Python float semantics, not Redis INCRBYFLOAT's
        share.s = "a"
        share.s += "b"
        share.lst = [1]
        share.lst += [2]
        share.lst = share.lst + [3]  # noqa: RUF005 - the read-modify-reassign form under test
        share.d = {"k": 0, "inner": {"n": 0}}
        share.d["k"] += 1
        share.d["k"] = share.d["k"] + 1
        share.d["inner"]["n"] += 3
        assert (share.s, share.lst, share.d) == ("ab", [1, 2, 3], {"k": 2, "inner": {"n": 3}})
        # past int64 the value leaves Redis's integers and comes back
        share.i = 2**63 - 1
        share.i += 1
        assert share.i == 2**63
        share.i -= 2
        assert share.i == 2**63 - 2
        assert share._sk_redis.hget("i") == b"9223372036854775806"  # a Redis integer again
        share.b = True
        share.b += 1  # bool is not int: the general path, Python semantics
        assert share.b == 2
        # computed keys and operator chains: one update each, as on the local Share
        share.d["k"] = share.d["k"] * 10 + 1
        k = 1
        share.m = {"1": 0}
        share.m[str(k)] = share.m[str(k)] + 5
        share.m["2"] = share.m.get("2", 0) + 1
        share.m["2"] = share.m.get("2", 0) + 1
        assert (share.d["k"], share.m) == (21, {"1": 5, "2": 2})


def test_method_calls_apply_atomically_and_failures_change_nothing(url: str) -> None:
    with Share(backend=url) as share:
        share.acc = Acc()
        assert share.acc.add(3) == 3
        assert share.acc.add(4) == 7
        share.acc.items.append(9)
        with pytest.raises(ValueError, match="refused"):
            share.acc.fail()
        assert share.acc.total == 7 and share.acc.items == [9]
        assert isinstance(share.acc.total, int)


class UsesShare:
    def __init__(self) -> None:
        self.n = 0

    def bump(self, share: Share) -> int:
        self.n += 1
        share.counter += 1  # a Share operation from inside a method the Share runs
        return self.n


def test_a_method_that_uses_the_share_does_not_deadlock(url: str) -> None:
    with Share(backend=url, lock_lease=0.5) as share:
        share.counter, share.obj = 0, UsesShare()
        assert share.obj.bump(share) == 1
        assert share.obj.bump(share) == 2
        assert (share.counter, share.obj.n) == (2, 2)


def test_lock_block_commits_together_or_not_at_all(url: str) -> None:
    with Share(backend=url) as share:
        share.stock, share.orders = 5, []
        with share.lock():
            if share.stock >= 2:
                share.stock -= 2
                share.orders = [*share.orders, "o1"]
            assert share.stock == 3  # the block sees its own writes
            with share.lock():  # nested: joins the outer block
                share.extra = 1
        assert (share.stock, share.orders, share.extra) == (3, ["o1"], 1)
        with pytest.raises(KeyError), share.lock():
            share.stock = 0
            share.orders.append("o2")
            raise KeyError("abandon")
        assert (share.stock, share.orders) == (3, ["o1"])  # nothing of the block applied


def _bump_during_lock(share: Share, started: Any) -> None:
    started.set()
    share.counter += 1  # must wait for the parent's block to end


def test_lock_excludes_other_processes(url: str, start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share(backend=url) as share:
        share.counter = 0
        started = ctx.Event()
        p = ctx.Process(target=_bump_during_lock, args=(share, started))
        with share.lock():
            p.start()
            assert started.wait(TIMEOUT)
            time.sleep(0.5)  # the child's += runs now, and has to wait
            share.counter = 100
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert share.counter == 101  # the child's += came after the block, not lost under it


def test_threads_of_one_process(url: str) -> None:
    with Share(backend=url) as share:
        share.counter, share.d = 0, {"k": 0}

        def work() -> None:
            for _ in range(100):
                share.counter += 1
                share.d["k"] += 1
                with share.lock():  # other threads of this process wait too
                    n = share.counter
                    share.counter = n + 1

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert share.counter == 800 and share.d == {"k": 400}


# -- across processes ------------------------------------------------------------------------------


def _all_forms(share: Share, n: int) -> None:
    for _ in range(n):
        share.counter += 1
        share.total = share.total + 2
        share.d["k"] += 1


def test_exact_totals_across_processes(url: str, start_method: str) -> None:
    with Share(backend=url) as share:
        share.counter, share.total, share.d = 0, 0, {"k": 0}
        run_processes(_all_forms, [(share, N_OPS)] * N_PROCS)
        assert share.counter == N_PROCS * N_OPS
        assert share.total == 2 * N_PROCS * N_OPS
        assert share.d == {"k": N_PROCS * N_OPS}


def _methods(share: Share, n: int) -> None:
    for i in range(n):
        share.acc.add(1)
        share.acc.items.append(i)
    share.made_in_child = os.getpid()


def test_method_calls_across_processes_and_child_attributes_outlive_it(url: str, start_method: str) -> None:
    with Share(backend=url) as share:
        share.acc = Acc()
        run_processes(_methods, [(share, 100)] * 3)
        assert share.acc.total == 300 and len(share.acc.items) == 300
        assert isinstance(share.made_in_child, int)


# -- a worker killed mid-update ----------------------------------------------------------------


def _hold_lock_then_hang(share: Share, inside: Any) -> None:
    with share.lock():
        share.counter = 999
        share.torn = True
        inside.set()
        time.sleep(60)


def _slow_method(share: Share, marker: str) -> None:
    share.acc.slow(marker)


def test_holder_killed_inside_lock_block_releases_within_lease(url: str, start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share(backend=url, lock_lease=1.0) as share:
        share.counter, share.d = 0, {"k": 0}
        inside = ctx.Event()
        p = ctx.Process(target=_hold_lock_then_hang, args=(share, inside))
        p.start()
        assert inside.wait(TIMEOUT)
        time.sleep(2.5)  # the holder keeps its lease alive while it lives
        assert p.is_alive()
        os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
        p.join(TIMEOUT)
        t0 = time.monotonic()
        share.counter += 1  # waits for the dead holder's lease to expire, then applies
        share.d["k"] += 1
        assert time.monotonic() - t0 < 5.0
        assert share.counter == 1 and share.d == {"k": 1}
        with pytest.raises(AttributeError):
            share.torn  # noqa: B018 - nothing of the killed block was applied


def test_holder_killed_inside_a_method_call(url: str, tmp_path: Path, start_method: str) -> None:
    ctx = multiprocessing.get_context()
    marker = str(tmp_path / "in-method")
    with Share(backend=url, lock_lease=1.0) as share:
        share.acc = Acc()
        p = ctx.Process(target=_slow_method, args=(share, marker))
        p.start()
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
        p.join(TIMEOUT)
        assert share.acc.add(1) == 1  # the killed call's += 1000 never landed
        with share.lock():
            share.acc.add(1)
        assert share.acc.total == 2


def _step_forever(share: Share, ready: Any) -> None:
    share.pair.step()
    ready.set()
    while True:
        share.pair.step()
        share.n += 1


def test_worker_killed_mid_updates_leaves_nothing_torn(url: str, start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share(backend=url, lock_lease=1.0) as share:
        share.pair, share.n = Pair(), 0
        ready = ctx.Event()
        procs = [ctx.Process(target=_step_forever, args=(share, ready)) for _ in range(2)]
        for p in procs:
            p.start()
        assert ready.wait(TIMEOUT)
        time.sleep(0.3)
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
            p.join(TIMEOUT)
        pair = pickle.loads(pickle.dumps(share.pair))  # a copy of the stored object
        assert pair.a == pair.b > 0  # each step applied whole, or not at all
        assert isinstance(share.n, int)
        share.pair.step()  # no stuck lock (at most one lease of waiting)
        assert (share.pair.a, share.pair.b) == (pair.a + 1, pair.b + 1)


# -- the server goes away and comes back ------------------------------------------------------------


def _bump_until(share: Share, stop: Any, out: Any) -> None:
    ok, errors, ok_after_error = 0, [], 0
    while not stop.is_set():
        try:
            share.counter += 1
        except ShareError as e:
            errors.append(str(e))
            time.sleep(0.02)
            continue
        ok += 1
        if errors:
            ok_after_error += 1
    out.put((ok, len(errors), errors[:1], ok_after_error))


def test_redis_restarted_mid_run_clear_error_then_recovery(own_redis: RedisServer, start_method: str) -> None:
    ctx = multiprocessing.get_context()
    where = f"127.0.0.1:{own_redis.port}"
    with Share(backend=f"{own_redis.url}/0", lock_lease=1.0) as share:
        share.counter = 0
        stop, out = ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_bump_until, args=(share, stop, out))
        p.start()
        try:
            deadline = time.monotonic() + TIMEOUT
            while share.counter < 50 and time.monotonic() < deadline:
                time.sleep(0.02)
            own_redis._terminate()
            with pytest.raises(ShareError, match=rf"redis://{where}/0 cannot be reached.*redis-server is running"):
                share.counter += 1
            with pytest.raises(ShareError, match=where):
                share.counter  # noqa: B018
            time.sleep(0.5)
            own_redis.start()  # same port, same data (append-only file)
            before = share.counter
            share.counter += 1  # recovered: the same handle works again
            assert share.counter >= before + 1
            time.sleep(0.5)
        finally:
            stop.set()
            got = out.get(timeout=TIMEOUT)
            p.join(TIMEOUT)
        ok, n_errors, first_error, ok_after = got
        assert p.exitcode == 0
        assert n_errors >= 1 and where in first_error[0] and "cannot be reached" in first_error[0]
        assert ok_after > 0  # the child recovered by itself too
        # every acknowledged += is there; an += whose reply was lost in the restart may be too
        assert ok + 1 <= share.counter <= ok + 1 + n_errors


def test_redis_restarted_without_its_data_says_so(url: str, redis_server: Any) -> None:
    with _private_redis(persistent=False) as server:
        share = Share(backend=f"{server.url}/0")
        share.counter = 1
        server.restart()
        with pytest.raises(ShareError, match=r"no longer on the Redis server .*restarted without persistence"):
            share.counter += 1
        share.stop()


# -- AUTH, TLS, configuration errors ------------------------------------------------------------------


def test_password_in_url_or_argument_and_wrong_password(redis_server: Any) -> None:
    s = redis_server
    with Share(backend=f"redis://{s.host}:{s.port}/1", password=s.password) as share:
        share.x = 1
        assert pickle.loads(pickle.dumps(share)).x == 1  # the password travels with it
    with pytest.raises(ShareError, match=rf"redis://{s.host}:{s.port}/0: the server refused .*credentials"):
        Share(backend=f"redis://:wrong@{s.host}:{s.port}/0")
    with pytest.raises(ShareError, match="credentials"):
        Share(backend=f"redis://{s.host}:{s.port}/0")  # no password at all


def test_configuration_errors_are_specific() -> None:
    with pytest.raises(ValueError, match="takes a Redis URL"):
        Share(backend="http://localhost:6379")
    with pytest.raises(ValueError, match="configure a Share on Redis"):
        Share(password="x")
    with pytest.raises(ValueError, match="lock_lease"):
        Share(backend="redis://127.0.0.1:1/0", lock_lease=0)
    with pytest.raises(ShareError, match=r"redis://127\.0\.0\.1:1/0 cannot be reached"):
        Share(backend="redis://127.0.0.1:1/0")


def test_import_does_not_import_redis() -> None:
    code = "import sys, suitkaise.share; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)


def _make_cert(where: Path) -> tuple[str, str]:
    cert, key = where / "redis-cert.pem", where / "redis-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


def _tls_child(share: Share, n: int) -> None:
    for _ in range(n):
        share.counter += 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_tls_rediss(tmp_path: Path, start_method: str) -> None:
    cert, key = _make_cert(tmp_path)
    server = RedisServer(tls=(cert, key))
    try:
        server.start()
    except ServerUnavailable as e:
        server.stop()
        pytest.skip(f"redis unavailable: {e}")
    try:
        with Share(backend=f"{server.url}/0", redis_options={"ssl_ca_certs": cert}) as share:
            share.counter = 0
            run_processes(_tls_child, [(share, 50)] * 2)
            assert share.counter == 100
            assert share._sk_redis.client().connection_pool.connection_class.__name__ == "SSLConnection"
        plain = f"redis://:{server.password}@127.0.0.1:{server.port}/0"
        with pytest.raises(ShareError, match=rf"127\.0\.0\.1:{server.port}/0 cannot be reached"):
            Share(backend=plain)  # a plaintext client on the TLS port
        with pytest.raises(ShareError, match="certificate verify failed"):
            Share(backend=f"{server.url}/0")  # TLS, but the self-signed certificate is not trusted
    finally:
        server.stop()


# -- travelling, lifecycle ---------------------------------------------------------------------------


def test_travels_through_pickle_and_cucumber(url: str) -> None:
    with Share(backend=url) as share:
        share.counter = 0
        for h in (pickle.loads(pickle.dumps(share)), cucumber.deserialize(cucumber.serialize(share))):
            h.counter += 1
            assert h._sk_transport() == "redis"
        assert share.counter == 2
        with pytest.raises(ValueError, match="always bound to its server"):
            Share.__deserialize__(share.__serialize__(), fresh=True)
        with pytest.raises(ShareError, match="serve\\(\\) is for the local Share"):
            share.serve()


def _create_and_exit(url: str, out: Any) -> None:
    share = Share(backend=url)
    share.x = 1
    out.put(share.__dict__["_sk_name"])


def test_creator_exit_and_stop_delete_the_keys(url: str, redis_server: Any) -> None:
    raw = _raw(redis_server)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_create_and_exit, args=(url, out))
    p.start()
    name = out.get(timeout=TIMEOUT)
    p.join(TIMEOUT)
    assert not raw.keys(f"sk:share:{{{name}}}:*")  # deleted when its creator exited
    share = Share(backend=url)
    share.counter = 3
    key = f"sk:share:{{{share.__dict__['_sk_name']}}}:data"
    assert raw.exists(key)
    share.stop()
    assert not raw.exists(key) and not share.is_running
    with pytest.raises(ShareError, match=r"is stopped: call share\.start"):
        share.counter  # noqa: B018
    share.start()
    assert share.counter == 3  # restored
    share.stop()


def test_named_share_persists_and_binds(url: str, redis_server: Any) -> None:
    raw = _raw(redis_server)
    name = f"test-named-{os.getpid()}"
    try:
        a = Share(backend=url, name=name)
        a.jobs = ["j1"]
        a.stop()
        b = Share(backend=url, name=name)  # another program could do the same
        assert b.jobs == ["j1"]
        b.stop()
    finally:
        raw.delete(f"sk:share:{{{name}}}:data", f"sk:share:{{{name}}}:lock")


# -- dask workers (the Share travels through cucumber and reconnects there) -------------------------


def _dask_bump(share: Share, n: int) -> tuple[str, int]:
    for _ in range(n):
        share.counter += 1
        share.d["k"] += 1
    return share._sk_transport(), os.getpid()


def test_dask_local_cluster_workers(url: str) -> None:
    distributed = pytest.importorskip("distributed")
    with Share(backend=url) as share:
        share.counter, share.d = 0, {"k": 0}
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:
            results = client.gather([client.submit(_dask_bump, share, 50, pure=False) for _ in range(8)])
        assert share.counter == 400 and share.d == {"k": 400}
        assert {r[0] for r in results} == {"redis"}
        assert all(r[1] != os.getpid() for r in results)


# -- the lease: renewed while its holder lives, fenced when it was lost ---------------------------


def test_a_block_longer_than_the_lease_keeps_the_lock(url: str, start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share(backend=url, lock_lease=0.5) as share:
        share.counter = 0
        started = ctx.Event()
        p = ctx.Process(target=_bump_during_lock, args=(share, started))
        with share.lock():
            p.start()
            assert started.wait(TIMEOUT)
            time.sleep(2.0)  # four leases: the renewer thread extends it
            share.counter = 100
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert share.counter == 101


def _block_paused(share: Share, inside: Any, out: Any) -> None:
    try:
        with share.lock():
            share.counter = 500
            inside.set()
            time.sleep(1.0)  # SIGSTOPped in here, past the lease
    except ShareError as e:
        out.put(str(e))
    else:
        out.put("committed")


def test_a_holder_paused_past_its_lease_commits_nothing(url: str, start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share(backend=url, lock_lease=0.5) as share:
        share.counter = 0
        inside, out = ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_block_paused, args=(share, inside, out))
        p.start()
        assert inside.wait(TIMEOUT)
        os.kill(p.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        try:
            share.counter += 1  # the lease expires; this process takes the lock
        finally:
            os.kill(p.pid, signal.SIGCONT)  # type: ignore[arg-type]
        msg = out.get(timeout=TIMEOUT)
        p.join(TIMEOUT)
        assert "lost the Share's lock before it could commit" in msg and "Nothing of this operation" in msg
        assert share.counter == 1


class _Table:
    def __init__(self) -> None:
        self.rows = [{"id": 0}, {"id": 1}]

    def row(self, i: int) -> dict[str, int]:
        return self.rows[i]


def test_iterating_on_redis_gives_snapshots_and_a_method_s_element_its_index(url: str) -> None:
    # (each operation decodes its own copy there: a row cannot be found again by identity)
    with Share(backend=url) as share:
        share.rows = [{"id": 0}, {"id": 1}]
        assert [type(r) for r in share.rows] == [dict, dict]
        share.t = _Table()
        share.t.row(1)["a"] = 1
        assert share.t.rows == [{"id": 0}, {"id": 1, "a": 1}]
