"""Benchmark: task-level control of ``Pool`` against concurrent.futures, pebble, loky and mpire.

Run: ``python benchmarks/pool_tasks.py [--rounds N]``. All pools use 2 workers and
the platform's default start method; each scenario runs every contender once per
round, interleaved, and prints medians and ratios to the anchor.

Scenarios (targets from the Pool task-control issue):
  submit: 10,000 tiny ``submit()`` futures, then every result -- <= 1.0x
      ``ProcessPoolExecutor.submit`` (beside ``pebble.ProcessPool.schedule`` and
      ``loky``'s executor)
  item-timeout: 500 x 1 ms items with a per-item timeout (30 s, never reached) --
      <= 1.1x the floor (500 x measured item time / 2 workers), beside
      ``pebble.ProcessPool.map(timeout=)`` and ``mpire`` ``task_timeout=``
  retries: the same 500 items with ``retries=2`` (nothing crashes): what the
      bookkeeping costs, against our plain map

pebble, loky and mpire are optional: a contender that is not installed is skipped.
Everything started here is shut down before the script exits.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

from pool import _timeit, run_scenario  # the same interleaved rounds as benchmarks/pool.py

from suitkaise.processing import Pool

WORKERS = 2
N_SUBMIT = 10_000


def square(x: int) -> int:
    return x * x


def sleep_1ms(x: int) -> int:
    time.sleep(0.001)
    return x


def _vs(case: str, ours: float, anchor: str, base: float, limit: float) -> None:
    from _results import headline

    headline("pool_tasks", case, ours * 1e3, anchor, base * 1e3, f"<= {limit}x", ours / base <= limit)


def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        print(f"({name} is not installed: its rows are skipped)")
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rounds = args.rounds

    pebble = _optional("pebble")
    loky = _optional("loky")
    mpire = _optional("mpire")

    print(f"start method: {mp.get_start_method()}, workers: {WORKERS}")
    sk = Pool(WORKERS)
    cfp = cf.ProcessPoolExecutor(WORKERS)
    pb = pebble.ProcessPool(max_workers=WORKERS) if pebble else None
    lk = loky.get_reusable_executor(max_workers=WORKERS) if loky else None
    mpw = mpire.WorkerPool(n_jobs=WORKERS, keep_alive=True) if mpire else None
    try:
        xs = range(N_SUBMIT)

        def results(futures: list[Any]) -> None:
            assert [f.result() for f in futures] == [x * x for x in xs]

        submit: dict[str, Callable[[], object]] = {
            "suitkaise.submit": lambda: results([sk.submit(square, x) for x in xs]),
            "cf.submit": lambda: results([cfp.submit(square, x) for x in xs]),
        }
        if pb is not None:
            submit["pebble.schedule"] = lambda: results([pb.schedule(square, args=(x,)) for x in xs])
        if lk is not None:
            submit["loky.submit"] = lambda: results([lk.submit(square, x) for x in xs])
        m = run_scenario(f"submit: {N_SUBMIT:,} tiny futures", submit, rounds, anchor="cf.submit")
        _vs(f"{N_SUBMIT:,} tiny submit() futures", m["suitkaise.submit"], "cf.submit", m["cf.submit"], 1.0)

        one = statistics.median(_timeit(lambda: sleep_1ms(0)) for _ in range(200))
        floor = 500 * one / WORKERS
        print(f"\n(one 1 ms sleep item measures {one * 1000:.3f} ms; floor = {floor * 1000:.1f} ms)")
        ys = list(range(500))
        timed: dict[str, Callable[[], object]] = {
            "suitkaise.map(item_timeout)": lambda: sk.map(sleep_1ms, ys, item_timeout=30),
            "suitkaise.imap(item_timeout)": lambda: list(sk.imap(sleep_1ms, ys, item_timeout=30)),
            "suitkaise.map(no timeout)": lambda: sk.map(sleep_1ms, ys),
            "suitkaise.map(retries=2)": lambda: sk.map(sleep_1ms, ys, retries=2),
        }
        if pb is not None:
            timed["pebble.map(timeout)"] = lambda: list(pb.map(sleep_1ms, ys, timeout=30).result())
        if mpw is not None:
            timed["mpire.map(task_timeout)"] = lambda: mpw.map(sleep_1ms, ys, task_timeout=30)
        m = run_scenario("item-timeout: 500 x sleep(0.001), per-item timeout 30 s", timed, rounds,
                         floor=floor, anchor="suitkaise.map(no timeout)")
        _vs("500 x 1 ms items with a per-item timeout (vs the floor)", m["suitkaise.map(item_timeout)"],
            "floor", floor, 1.1)
        _vs("500 x 1 ms items with retries=2 (vs our plain map)", m["suitkaise.map(retries=2)"],
            "suitkaise.map", m["suitkaise.map(no timeout)"], 1.1)
    finally:
        sk.terminate()
        cfp.shutdown(wait=True)
        if pb is not None:
            pb.stop()
            pb.join()
        if lk is not None:
            lk.shutdown(wait=True)
        if mpw is not None:
            mpw.terminate()


if __name__ == "__main__":
    main()
