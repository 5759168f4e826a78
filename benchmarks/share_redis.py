"""Benchmark: a Share on Redis against plain redis-py on the same server, in one interleaved run.

    python benchmarks/share_redis.py [--rounds 7] [--ops 3000]

Starts its own redis-server on loopback (a free port, a temporary directory, a password,
no persistence) and stops it at the end; without redis-server or redis-py it says so and
exits 0 without recording anything.

::

    this process ──┬── Share(backend="redis://...")   share.counter += 1  /  share.counter
                   └── redis.Redis(...)  (plain)      r.incr("counter")   /  r.get("counter")
                                     │
                                     ▼
                       redis-server on 127.0.0.1 (started here)
    4 worker processes (fork), released together by a Barrier, for the multi-process case

Fairness: the same server, the same password, the same loopback round trip; both clients
are connected and warmed up before timing; contenders alternate within every round and the
order rotates each round; medians of the rounds are reported. Cases:

1. ``share.counter += 1`` vs ``r.incr("counter")``, one process, us/op (target <= 1.5x);
2. ``share.counter`` (an int) vs ``r.get("counter")``, one process, us/op (target <= 1.5x);
3. 4 processes x 500 of the same ``+=`` / ``INCR``, us/op of the whole (information).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

N_PROCS, PROC_OPS = 4, 500
TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server not found (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.port = free_port()
        self.password = secrets.token_hex(8)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", self.password, "--dir", self.dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- single-process cases: each returns us/op ---------------------------------------------------


def share_incr(share: Any, r: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        share.counter += 1
    return (time.perf_counter() - t) / n * 1e6


def redis_incr(share: Any, r: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        r.incr("counter")
    return (time.perf_counter() - t) / n * 1e6


def share_read(share: Any, r: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        share.counter  # noqa: B018
    return (time.perf_counter() - t) / n * 1e6


def redis_get(share: Any, r: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        r.get("counter")
    return (time.perf_counter() - t) / n * 1e6


# -- multi-process case -------------------------------------------------------------------------


def w_share(share: Any, url: str, bar: Any, out: Any) -> None:
    share.counter  # noqa: B018 - warm-up: connect
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(PROC_OPS):
        share.counter += 1
    out.put((t0, time.perf_counter()))


def w_redis(share: Any, url: str, bar: Any, out: Any) -> None:
    import redis

    r = redis.Redis.from_url(url)
    r.get("counter")  # warm-up: connect
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(PROC_OPS):
        r.incr("pcounter")
    out.put((t0, time.perf_counter()))
    r.close()


def procs(ctx: Any, target: Any, share: Any, url: str) -> float:
    bar, out = ctx.Barrier(N_PROCS + 1), ctx.Queue()
    ps = [ctx.Process(target=target, args=(share, url, bar, out)) for _ in range(N_PROCS)]
    for p in ps:
        p.start()
    try:
        bar.wait(TIMEOUT)
        spans = [out.get(timeout=TIMEOUT) for _ in range(N_PROCS)]
    finally:
        for p in ps:
            p.join(TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join()
    return (max(s[1] for s in spans) - min(s[0] for s in spans)) / (N_PROCS * PROC_OPS) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ops", type=int, default=3000)
    a = ap.parse_args()
    try:
        import redis
    except ImportError:
        print("skipped: redis-py is not installed (pip install 'sk-share[redis]')")
        return 0
    try:
        server = Server()
    except (FileNotFoundError, OSError) as e:
        print(f"skipped: cannot start redis-server on loopback: {e}")
        return 0
    from suitkaise.share import Share

    ctx = mp.get_context("fork")
    single = {"incr": {"share": share_incr, "redis-py": redis_incr},
              "read": {"share": share_read, "redis-py": redis_get}}
    res: dict[str, dict[str, list[float]]] = {k: {n: [] for n in c} for k, c in single.items()}
    res["procs"] = {"share": [], "redis-py": []}
    try:
        r = redis.Redis.from_url(server.url)
        with Share(backend=server.url) as share:
            share.counter = 0
            r.set("counter", 0)
            r.set("pcounter", 0)
            for fn in (share_incr, redis_incr, share_read, redis_get):  # warm-up, untimed
                fn(share, r, 200)
            for rnd in range(a.rounds):
                for case, contenders in single.items():
                    names = list(contenders)
                    names = names[rnd % 2:] + names[:rnd % 2]
                    for name in names:
                        res[case][name].append(contenders[name](share, r, a.ops))
                for name in (["share", "redis-py"] if rnd % 2 == 0 else ["redis-py", "share"]):
                    before = share.counter
                    pbefore = int(r.get("pcounter"))
                    res["procs"][name].append(procs(ctx, w_share if name == "share" else w_redis, share, server.url))
                    if name == "share":
                        assert share.counter == before + N_PROCS * PROC_OPS, "lost updates"
                    else:
                        assert int(r.get("pcounter")) == pbefore + N_PROCS * PROC_OPS
                print(f"round {rnd + 1}/{a.rounds} done", flush=True)
        r.close()
    finally:
        server.stop()
    med = {c: {k: statistics.median(v) for k, v in d.items()} for c, d in res.items()}
    print(f"\nredis-server {server.port} on loopback, rounds: {a.rounds}, ops per sample: {a.ops} "
          "(medians of the rounds, us/op; min-max in brackets)")
    labels = {"incr": "share.counter += 1  vs  r.incr('counter')",
              "read": "share.counter (int)  vs  r.get('counter')",
              "procs": f"{N_PROCS} procs x {PROC_OPS} +=  vs  INCR (us/op of the whole)"}
    for case, d in med.items():
        print(f"{labels[case]}")
        for k, v in d.items():
            print(f"   {k:9s} {v:8.1f}   [{min(res[case][k]):.1f} - {max(res[case][k]):.1f}]")
        print(f"   ratio share / redis-py = {d['share'] / d['redis-py']:.2f}x")

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _results import headline

    i, rd, p = med["incr"], med["read"], med["procs"]
    headline("share_redis", "counter += 1 on Redis, one process, us/op", i["share"], "redis-py INCR",
             i["redis-py"], "<= 1.5x", i["share"] / i["redis-py"] <= 1.5, "us")
    headline("share_redis", "read of an int on Redis, one process, us/op", rd["share"], "redis-py GET",
             rd["redis-py"], "<= 1.5x", rd["share"] / rd["redis-py"] <= 1.5, "us")
    headline("share_redis", f"{N_PROCS} procs x {PROC_OPS} counter += 1 on Redis, us/op", p["share"],
             "redis-py INCR", p["redis-py"], "<= 1.5x", p["share"] / p["redis-py"] <= 1.5, "us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
