"""Benchmark: a Pool worker's life (initializer + per-worker state) against mpire and multiprocessing.

Run: ``python benchmarks/pool_features.py [--rounds N]``. All pools use 2 workers
and the platform's default start method. Every scenario runs each contender once
per round, interleaved (A B C ... A B C ...), and prints the median per
contender and its ratio to the anchor (``mpire.WorkerPool(use_worker_state=True)``).

Scenarios:
  init-state: construct a pool whose initializer puts a "model" in each worker's
      state, map 10,000 tiny tasks that read it, shut down -- target <= 1.0x mpire
  init-state-warm: the same 10,000 tasks on a pool already started (the
      initializer ran once per worker, before the round) -- reported

mpire is optional: without it, its rows are skipped and ``multiprocessing.Pool``
(initializer= and a module-level dict) is the anchor. Everything started here is
shut down before the script exits.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

from suitkaise.processing import Pool, worker_state

WORKERS = 2
N = 10_000
_MODEL: dict[str, Any] = {}  # multiprocessing.Pool's worker state: a module global


def _load_model() -> dict[int, int]:
    return {i: i * 3 for i in range(100)}


# suitkaise: initializer + worker_state()
def sk_init() -> None:
    worker_state()["model"] = _load_model()


def sk_task(x: int) -> int:
    return worker_state()["model"][x % 100] + x


# mpire: worker_init(worker_state) + task(worker_state, x)
def mpire_init(state: dict[str, Any]) -> None:
    state["model"] = _load_model()


def mpire_task(state: dict[str, Any], x: int) -> int:
    return state["model"][x % 100] + x


# multiprocessing.Pool: initializer + a module global
def mp_init() -> None:
    _MODEL["model"] = _load_model()


def mp_task(x: int) -> int:
    return _MODEL["model"][x % 100] + x


EXPECTED = [(x % 100) * 3 + x for x in range(N)]


def _timeit(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_scenario(name: str, contenders: dict[str, Callable[[], object]], rounds: int,
                 anchor: str) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():  # warm-up (imports, caches)
        fn()
    for _ in range(rounds):
        for key, fn in contenders.items():
            times[key].append(_timeit(fn))
    print(f"\n== {name} (median of {rounds}) ==")
    base = statistics.median(times[anchor])
    for key, ts in times.items():
        med = statistics.median(ts)
        print(f"  {key:<22} {med * 1000:9.2f} ms  {med / base:6.2f}x {anchor}")
    return {key: statistics.median(ts) for key, ts in times.items()}


def _check(out: list[int]) -> None:
    assert out == EXPECTED


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    try:
        from mpire import WorkerPool  # type: ignore[import-untyped]
    except ImportError:
        WorkerPool = None
        print("mpire is not installed: its rows are skipped (pip install mpire)")
    xs = list(range(N))
    anchor = "mpire" if WorkerPool is not None else "mp.Pool"
    method = mp.get_start_method()  # mpire's default is its own ("fork"): give it ours
    print(f"start method: {method}, workers: {WORKERS}")

    def sk_cold() -> None:
        with Pool(WORKERS, initializer=sk_init) as pool:
            _check(pool.map(sk_task, xs))

    def mp_cold() -> None:
        with mp.Pool(WORKERS, initializer=mp_init) as pool:
            _check(pool.map(mp_task, xs))
            pool.close()
            pool.join()

    def mpire_cold() -> None:
        with WorkerPool(n_jobs=WORKERS, use_worker_state=True, start_method=method) as pool:
            _check(pool.map(mpire_task, xs, worker_init=mpire_init))

    cold: dict[str, Callable[[], object]] = {"suitkaise": sk_cold, "mp.Pool": mp_cold}
    if WorkerPool is not None:
        cold["mpire"] = mpire_cold
    m = run_scenario(f"init-state: pool with initializer + worker state, {N:,} tiny tasks, shutdown",
                     cold, args.rounds, anchor)
    _vs("initializer + worker state on 10,000 tiny tasks", m["suitkaise"], anchor, m[anchor], 1.0)

    sk = Pool(WORKERS, initializer=sk_init)
    mpp = mp.Pool(WORKERS, initializer=mp_init)
    mpw = (WorkerPool(n_jobs=WORKERS, use_worker_state=True, keep_alive=True, start_method=method)
           if WorkerPool is not None else None)
    try:
        warm: dict[str, Callable[[], object]] = {
            "suitkaise": lambda: _check(sk.map(sk_task, xs)),
            "mp.Pool": lambda: _check(mpp.map(mp_task, xs)),
        }
        if mpw is not None:
            warm["mpire"] = lambda: _check(mpw.map(mpire_task, xs, worker_init=mpire_init))
        m = run_scenario(f"init-state-warm: {N:,} tiny tasks reading worker state, pool started",
                         warm, args.rounds, anchor)
        _vs("worker state on 10,000 tiny tasks, pool started", m["suitkaise"], anchor, m[anchor], 1.0)
    finally:
        sk.close()
        mpp.terminate()
        mpp.join()
        if mpw is not None:
            mpw.terminate()


def _vs(case: str, ours: float, anchor: str, base: float, limit: float) -> None:
    from _results import headline

    label = "mpire.WorkerPool(use_worker_state=True)" if anchor == "mpire" else "mp.Pool(initializer=)"
    headline("pool_features", case, ours * 1e3, label, base * 1e3, f"<= {limit}x", ours / base <= limit)


if __name__ == "__main__":
    main()
