"""Benchmark: suitkaise ``Pool`` against multiprocessing, concurrent.futures, loky, mpire, joblib.

Run: ``python benchmarks/pool.py [--rounds N] [--quick]``. All pools use 2 workers
and the platform's default start method. Every scenario runs each contender once
per round, interleaved (A B C ... A B C ...), and prints the median per
contender and its ratio to the anchor (``multiprocessing.Pool``).

Scenarios (targets from the sk-processing brief):
  tiny-map / tiny-imap / tiny-unordered: 10,000 x f(x)=x*x (function defined
      here, so it travels by value for suitkaise) -- target <= 2x mp.Pool
  tiny-100k: 100,000 x f(x)=x*x, map and unordered_imap beside mp.Pool.map (its default
      chunksize) -- targets map <= 0.7x, unordered_imap <= 1.0x and <= our own map
  sleep-1ms: 500 tasks sleeping 1 ms -- target within 10% of the floor
      (500 x measured task duration / 2 workers)
  startup: construct the pool, get the first result, shut down -- <= 1.0x mp.Pool
      (alone with --only startup: joblib, loky and mpire are then not needed)
  numpy-20MB: 8 x 20 MB float64 arrays through map(a + 1) -- faster than mp.Pool
  cpu: the tiny-100k map beside mp.Pool.map, with the CPU each call used in the parent (all
      its threads) and in the workers (Linux: /proc/<pid>/task/*/schedstat): on 2 cores a call
      takes at least half its CPU time, whatever the overlap (not in the default set)

Everything started here is shut down before the script exits.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from suitkaise.processing import Pool

WORKERS = 2


def square(x: int) -> int:
    return x * x


def sleep_1ms(x: int) -> int:
    time.sleep(0.001)
    return x


def plus_one(a: Any) -> Any:
    return a + 1


def _timeit(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_scenario(name: str, contenders: dict[str, Callable[[], object]], rounds: int,
                 floor: float | None = None, anchor: str = "mp.Pool", interleave: bool = False) -> dict[str, float]:
    """Each contender once per round; ``interleave`` reverses the order every other round
    (for short cases, where going first or last in a round matters)."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():  # warm-up (imports, worker start, caches)
        fn()
    for r in range(rounds):
        order = list(contenders.items())
        if interleave and r % 2:
            order.reverse()
        for key, fn in order:
            times[key].append(_timeit(fn))
    print(f"\n== {name} (median of {rounds}) ==")
    base = statistics.median(times[anchor]) if anchor in times else None
    for key, ts in times.items():
        med = statistics.median(ts)
        ratio = f"{med / base:6.2f}x {anchor}" if base else ""
        extra = f"  {med / floor:5.2f}x floor" if floor else ""
        print(f"  {key:<22} {med * 1000:9.2f} ms  {ratio}{extra}")
    return {key: statistics.median(ts) for key, ts in times.items()}


def _vs(case: str, ours: float, anchor: str, base: float, limit: float) -> None:
    from _results import headline

    headline("pool", case, ours * 1e3, anchor, base * 1e3, f"<= {limit}x", ours / base <= limit)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="skip the slow anchors on tiny tasks")
    parser.add_argument("--only", default="tiny,sleep,numpy,startup",
                        help="comma-separated scenarios: tiny, sleep, numpy, startup, cpu")
    args = parser.parse_args()
    rounds = args.rounds
    only = set(args.only.split(","))

    others = {name: _optional(name) for name in ("joblib", "loky", "mpire")}
    missing = [name for name, mod in others.items() if mod is None]
    if missing and only - {"startup", "cpu"}:
        raise SystemExit(f"these scenarios compare against {', '.join(missing)}: install them, "
                         "or run only the startup scenario (--only startup)")
    print(f"start method: {mp.get_start_method()}, workers: {WORKERS}")
    if only & {"tiny", "sleep", "numpy"}:
        _throughput(only, rounds, args.quick)
    if "startup" in only:
        _startup(rounds, others["mpire"])
    if "cpu" in only:
        _cpu(rounds)


def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def _throughput(only: set[str], rounds: int, quick: bool) -> None:
    import joblib  # type: ignore[import-untyped]
    import loky  # type: ignore[import-untyped]
    from mpire import WorkerPool

    sk = Pool(WORKERS)
    mpp = mp.Pool(WORKERS)
    cfp = cf.ProcessPoolExecutor(WORKERS)
    lk = loky.get_reusable_executor(max_workers=WORKERS)
    mpw = WorkerPool(n_jobs=WORKERS, keep_alive=True)
    jl = joblib.Parallel(n_jobs=WORKERS, backend="loky")
    jl.__enter__()  # reuse its workers; __exit__ removes its memmapping folder
    try:
        if "tiny" in only:
            xs = list(range(10_000))
            tiny_map: dict[str, Callable[[], object]] = {
                "suitkaise.map": lambda: sk.map(square, xs),
                "mp.Pool": lambda: mpp.map(square, xs),
                "mpire.map": lambda: mpw.map(square, xs),
                "joblib": lambda: jl(joblib.delayed(square)(x) for x in xs),
            }
            if not quick:
                tiny_map["cf.map(chunksize=1)"] = lambda: list(cfp.map(square, xs))
                tiny_map["loky.map(chunksize=1)"] = lambda: list(lk.map(square, xs))
            m = run_scenario("tiny-map: 10,000 x x*x", tiny_map, rounds)
            _vs("10,000 tiny tasks, map", m["suitkaise.map"], "mp.Pool.map", m["mp.Pool"], 2.0)
            m = run_scenario("tiny-imap: 10,000 x x*x (mp.Pool.imap default chunksize=1)", {
                "suitkaise.imap": lambda: list(sk.imap(square, xs)),
                "mp.Pool": lambda: list(mpp.imap(square, xs)),
                "mpire.imap": lambda: list(mpw.imap(square, xs)),
            }, rounds)
            _vs("10,000 tiny tasks, imap", m["suitkaise.imap"], "mp.Pool.imap", m["mp.Pool"], 2.0)
            m = run_scenario("tiny-unordered: 10,000 x x*x", {
                "suitkaise.unordered_map": lambda: sk.unordered_map(square, xs),
                "suitkaise.unordered_imap": lambda: list(sk.unordered_imap(square, xs)),
                "mp.Pool": lambda: list(mpp.imap_unordered(square, xs)),
                "mp.Pool.map_async": lambda: mpp.map_async(square, xs).get(),
            }, rounds)
            _vs("10,000 tiny tasks, unordered_map", m["suitkaise.unordered_map"],
                "mp.Pool.imap_unordered", m["mp.Pool"], 2.0)
            _vs("10,000 tiny tasks, unordered_imap", m["suitkaise.unordered_imap"],
                "mp.Pool.imap_unordered", m["mp.Pool"], 2.0)
            ys = list(range(100_000))
            m = run_scenario("tiny-100k: 100,000 x x*x (mp.Pool.map default chunksize)", {
                "suitkaise.map": lambda: sk.map(square, ys),
                "suitkaise.unordered_imap": lambda: list(sk.unordered_imap(square, ys)),
                "mp.Pool": lambda: mpp.map(square, ys),
            }, rounds, interleave=True)
            _vs("100,000 tiny tasks, map", m["suitkaise.map"], "mp.Pool.map", m["mp.Pool"], 0.7)
            _vs("100,000 tiny tasks, unordered_imap", m["suitkaise.unordered_imap"], "mp.Pool.map", m["mp.Pool"], 1.0)
            print(f"  unordered_imap / map: {m['suitkaise.unordered_imap'] / m['suitkaise.map']:.2f}x (target <= 1.0x)")

        if "sleep" in only:
            one = statistics.median(_timeit(lambda: sleep_1ms(0)) for _ in range(200))
            floor = 500 * one / WORKERS
            print(f"\n(one 1 ms sleep task measures {one * 1000:.3f} ms; floor = {floor * 1000:.1f} ms)")
            ys = list(range(500))
            m = run_scenario("sleep-1ms: 500 x sleep(0.001)", {
                "suitkaise.map": lambda: sk.map(sleep_1ms, ys),
                "suitkaise.imap": lambda: list(sk.imap(sleep_1ms, ys)),
                "mp.Pool": lambda: mpp.map(sleep_1ms, ys),
                "cf.map": lambda: list(cfp.map(sleep_1ms, ys)),
                "loky.map": lambda: list(lk.map(sleep_1ms, ys)),
                "mpire.map": lambda: mpw.map(sleep_1ms, ys),
                "joblib": lambda: jl(joblib.delayed(sleep_1ms)(y) for y in ys),
            }, rounds, floor=floor)
            _vs("500 x 1 ms sleep, map (vs the floor)", m["suitkaise.map"], "floor", floor, 1.1)

        if "numpy" in only:
            arrays = [np.full(20 * 1024 * 1024 // 8, float(i)) for i in range(8)]

            def check(out: list[Any]) -> None:
                assert len(out) == 8 and all(float(o[0]) == i + 1 for i, o in enumerate(out))

            m = run_scenario("numpy-20MB: 8 x 20 MB through map(a + 1)", {
                "suitkaise.map": lambda: check(sk.map(plus_one, arrays)),
                "mp.Pool": lambda: check(mpp.map(plus_one, arrays)),
                "cf.map": lambda: check(list(cfp.map(plus_one, arrays))),
                "loky.map": lambda: check(list(lk.map(plus_one, arrays))),
                "mpire.map": lambda: check(mpw.map(plus_one, [(a,) for a in arrays], concatenate_numpy_output=False)),
                "joblib": lambda: check(jl(joblib.delayed(plus_one)(a) for a in arrays)),
            }, rounds)
            _vs("8 x 20 MB numpy arrays, map", m["suitkaise.map"], "mp.Pool.map", m["mp.Pool"], 1.0)
    finally:
        sk.terminate()
        mpp.terminate()
        mpp.join()
        cfp.shutdown(wait=True)
        lk.shutdown(wait=True)
        mpw.terminate()
        jl.__exit__(None, None, None)


def _cpu_ns(pids: list[int]) -> int:
    """CPU time (ns) the threads of processes ``pids`` have run so far (Linux)."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    return total


def _cpu(rounds: int) -> None:
    """tiny-100k's map beside mp.Pool.map, with the CPU each call used, parent and workers."""
    if not os.path.exists("/proc/self/task"):
        print("\n(cpu: needs Linux /proc; skipped)")
        return
    sk = Pool(WORKERS)
    mpp = mp.Pool(WORKERS)
    try:
        ys = list(range(100_000))
        calls: dict[str, tuple[Callable[[], object], Callable[[], list[int]]]] = {
            "suitkaise.map": (lambda: sk.map(square, ys), lambda: [w.process.pid for w in sk._core.workers]),
            "mp.Pool": (lambda: mpp.map(square, ys), lambda: [p.pid for p in mpp._pool]),  # type: ignore[attr-defined]
        }
        for fn, _ in calls.values():  # warm-up: workers started, the function's chunks sized
            for _ in range(3):
                fn()
        samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in calls}
        me = [os.getpid()]
        for r in range(rounds * 3):
            order = list(calls.items())
            if r % 2:
                order.reverse()
            for key, (fn, workers) in order:
                pids = workers()
                p0, w0, t0 = _cpu_ns(me), _cpu_ns(pids), time.perf_counter()
                fn()
                t1 = time.perf_counter()
                samples[key].append((t1 - t0, (_cpu_ns(me) - p0) / 1e9, (_cpu_ns(pids) - w0) / 1e9))
        print(f"\n== cpu: 100,000 x x*x, map (median of {rounds * 3}; CPU per call) ==")
        base = statistics.median(s[0] for s in samples["mp.Pool"])
        for key, ss in samples.items():
            wall, parent, workers = (statistics.median(s[i] for s in ss) for i in range(3))
            print(f"  {key:<16} {wall * 1000:7.2f} ms  {wall / base:5.2f}x mp.Pool   CPU: parent {parent * 1000:6.2f} ms"
                  f"  workers {workers * 1000:6.2f} ms  total {(parent + workers) * 1000:6.2f} ms"
                  f"  (>= {(parent + workers) / WORKERS * 1000:5.2f} ms on {WORKERS} cores)")
    finally:
        sk.terminate()
        mpp.terminate()
        mpp.join()


def _startup(rounds: int, mpire: Any) -> None:
    """Construct the pool, get the first result, shut down (mpire only if installed)."""

    def sk_startup() -> None:
        with Pool(WORKERS) as p:
            assert p.map(square, [3]) == [9]

    def mp_startup() -> None:
        with mp.Pool(WORKERS) as p:
            assert p.map(square, [3]) == [9]
            p.close()
            p.join()

    def cf_startup() -> None:
        with cf.ProcessPoolExecutor(WORKERS) as ex:
            assert list(ex.map(square, [3])) == [9]

    def mpire_startup() -> None:
        with mpire.WorkerPool(n_jobs=WORKERS) as p:
            assert p.map(square, [3]) == [9]

    contenders: dict[str, Callable[[], object]] = {"suitkaise": sk_startup, "mp.Pool": mp_startup, "cf": cf_startup}
    if mpire is not None:
        contenders["mpire"] = mpire_startup
    m = run_scenario("startup: construct + first result + shutdown", contenders, rounds, interleave=True)
    _vs("pool construction + first result", m["suitkaise"], "mp.Pool", m["mp.Pool"], 1.0)


if __name__ == "__main__":
    main()
