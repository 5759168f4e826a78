"""Benchmark: suitkaise ``Pool(backend=...)`` on Dask against ``client.map`` used directly.

Run: ``python benchmarks/cluster.py [--rounds N]``. One ``dask.distributed.LocalCluster``
with 2 worker processes (1 thread each) on loopback, shared by every contender.
Each scenario runs each contender once per round, interleaved (A B C ... A B C ...),
and prints the median per contender and its ratio to the anchor
(``client.map`` + ``client.gather``, one Dask task per item: what a Dask user writes).

Scenarios (the Pool benchmark's workloads):
  tiny: 10,000 x f(x)=x*x  -- target: our overhead <= 1.2x plain client.map
  sleep-1ms: 500 tasks sleeping 1 ms (floor = 500 x measured task / 2 workers)

Both functions are defined here (``__main__``), so both Dask and cucumber send them
by value. Plain ``client.map`` makes one Dask task per item; the Pool makes one task per
chunk of items (see ``_dask.py``), which is why it can be much faster on tiny tasks.
Everything started here is closed before exit.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from distributed import Client, LocalCluster

from suitkaise.processing import DaskBackend, Pool

WORKERS = 2


def square(x: int) -> int:
    return x * x


def sleep_1ms(x: int) -> int:
    time.sleep(0.001)
    return x


def _scheduler_tasks(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def _timeit(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_scenario(name: str, contenders: dict[str, Callable[[], object]], rounds: int, anchor: str,
                 settle: Callable[[], None], floor: float | None = None) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():  # warm-up: imports, function caches on the workers
        fn()
    for _ in range(rounds):
        for key, fn in contenders.items():
            settle()  # untimed: let the scheduler forget the previous contender's tasks
            times[key].append(_timeit(fn))
    print(f"\n== {name} (median of {rounds}) ==")
    base = statistics.median(times[anchor])
    for key, ts in times.items():
        med = statistics.median(ts)
        extra = f"  {med / floor:5.2f}x floor" if floor else ""
        print(f"  {key:<30} {med * 1000:10.2f} ms  {med / base:6.3f}x {anchor}{extra}")
    return {key: statistics.median(ts) for key, ts in times.items()}


def _vs(case: str, ours: float, base: float) -> None:
    from _results import headline

    headline("cluster", case, ours * 1e3, "client.map (one task per item)", base * 1e3, "<= 1.2x",
             ours / base <= 1.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="tiny,sleep", help="comma-separated scenarios: tiny, sleep")
    args = parser.parse_args()
    only = set(args.only.split(","))

    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    pool = Pool(backend=DaskBackend(client))
    anchor = "client.map"

    def plain(fn: Callable[[int], int], xs: list[int]) -> list[int]:
        return client.gather(client.map(fn, xs))  # type: ignore[no-any-return]

    def settle() -> None:
        # Releasing 10,000 finished keys keeps the scheduler busy for a while after
        # client.map returns; without this the next contender would pay for it.
        deadline = time.monotonic() + 60
        while client.run_on_scheduler(_scheduler_tasks) and time.monotonic() < deadline:
            time.sleep(0.01)

    try:
        print(f"LocalCluster: {WORKERS} worker processes x 1 thread, distributed {client.scheduler_info().get('id', '')}")
        if "tiny" in only:
            xs = list(range(10_000))
            expected = [x * x for x in xs]
            assert pool.map(square, xs) == expected and plain(square, xs) == expected
            m = run_scenario("tiny: 10,000 x x*x", {
                anchor: lambda: plain(square, xs),
                "suitkaise.map": lambda: pool.map(square, xs),
                "suitkaise.imap": lambda: list(pool.imap(square, xs)),
                "suitkaise.unordered_map": lambda: pool.unordered_map(square, xs),
            }, args.rounds, anchor, settle)
            _vs("10,000 tiny tasks, map on a 2-worker LocalCluster", m["suitkaise.map"], m[anchor])
            _vs("10,000 tiny tasks, imap on a 2-worker LocalCluster", m["suitkaise.imap"], m[anchor])

        if "sleep" in only:
            one = statistics.median(_timeit(lambda: sleep_1ms(0)) for _ in range(200))
            floor = 500 * one / WORKERS
            print(f"\n(one 1 ms sleep task measures {one * 1000:.3f} ms; floor = {floor * 1000:.1f} ms)")
            ys = list(range(500))
            m = run_scenario("sleep-1ms: 500 x sleep(0.001)", {
                anchor: lambda: plain(sleep_1ms, ys),
                "suitkaise.map": lambda: pool.map(sleep_1ms, ys),
                "suitkaise.imap": lambda: list(pool.imap(sleep_1ms, ys)),
                "suitkaise.unordered_imap": lambda: list(pool.unordered_imap(sleep_1ms, ys)),
            }, args.rounds, anchor, settle, floor=floor)
            _vs("500 x 1 ms sleep, map on a 2-worker LocalCluster", m["suitkaise.map"], m[anchor])
    finally:
        pool.close()
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
