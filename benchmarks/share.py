"""Benchmark: suitkaise.share.Share against multiprocessing anchors, in one interleaved run.

    python benchmarks/share.py [--rounds 7] [--start-method fork]

::

    parent ──start──► N worker processes (per contender, per round)
       │                 │ warm-up: one untimed access (attach / connect)
       │◄── Barrier(N+1) ┤ everybody released together
       │                 │ t0 = perf_counter(); timed loop; t1 = perf_counter()
       │◄── queue ───────┘ (t0, t1)   (perf_counter is CLOCK_MONOTONIC: one clock for all)

Fairness rules, the same for every contender:
* process start-up, imports and the first access (Share attaching its store, Manager
  proxies opening their connection) happen before the barrier and are not timed;
* the timed region is [min(t0), max(t1)] measured inside the workers;
* rounds are interleaved and the contender order rotates every round; medians are reported.

Scenarios:
1. counter: 4 processes x 250 ``counter += 1``
   - Share:              ``share.counter += 1``
   - Manager Namespace:  ``with lock: ns.counter += 1``  (Manager().Namespace() + Manager().Lock())
   - mp.Value + Lock:    ``with lock: v.value += 1``      (ctx.Value("q", lock=False) + ctx.Lock())
2. read: single-process read of a shared int (same process that wrote it), Share vs
   Manager Namespace (and mp.Value for reference).
3. object: 2 processes x 200 ``obj.add(1)``; timed from the barrier until the parent has
   read the right total (400)
   - Share:              ``share.obj.add(1)`` on a plain user-class instance
   - BaseManager proxy:  the same class registered on a BaseManager, ``proxy.add(1)``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from multiprocessing.managers import BaseManager
from typing import Any

from suitkaise.share import Share

N_PROCS, N_OPS = 4, 250
OBJ_PROCS, OBJ_OPS = 2, 200
READS = 20_000
TIMEOUT = 120


class Accumulator:
    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def get(self) -> int:
        return self.total


class AccManager(BaseManager):
    pass


AccManager.register("Accumulator", Accumulator)


# -- workers (module level: importable under spawn) -------------------------------------


def w_share_counter(share: Share, bar: Any, out: Any) -> None:
    share.counter  # noqa: B018 - warm-up: attach
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(N_OPS):
        share.counter += 1
    out.put((t0, time.perf_counter()))


def w_ns_counter(ns: Any, lock: Any, bar: Any, out: Any) -> None:
    ns.counter  # noqa: B018 - warm-up: connect both proxies
    with lock:
        pass
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(N_OPS):
        with lock:
            ns.counter += 1
    out.put((t0, time.perf_counter()))


def w_value_counter(v: Any, lock: Any, bar: Any, out: Any) -> None:
    v.value  # noqa: B018 - warm-up (symmetry)
    with lock:
        pass
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(N_OPS):
        with lock:
            v.value += 1
    out.put((t0, time.perf_counter()))


def w_share_obj(share: Share, bar: Any, out: Any) -> None:
    share.obj.total  # noqa: B018 - warm-up: attach
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(OBJ_OPS):
        share.obj.add(1)
    out.put((t0, time.perf_counter()))


def w_proxy_obj(proxy: Any, bar: Any, out: Any) -> None:
    proxy.get()  # warm-up: connect
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(OBJ_OPS):
        proxy.add(1)
    out.put((t0, time.perf_counter()))


def run_workers(ctx: Any, target: Any, args: tuple[Any, ...], n: int) -> tuple[float, float]:
    """Start n workers, release them together; (earliest start, latest end) of the loops."""
    bar, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, bar, out)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        bar.wait(TIMEOUT)
        spans = [out.get(timeout=TIMEOUT) for _ in range(n)]
    finally:
        for p in procs:
            p.join(TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join()
    return min(s[0] for s in spans), max(s[1] for s in spans)


# -- scenario 1 ---------------------------------------------------------------------------


def counter_share(ctx: Any, manager: Any) -> float:
    with Share() as share:
        share.counter = 0
        t0, t1 = run_workers(ctx, w_share_counter, (share,), N_PROCS)
        assert share.counter == N_PROCS * N_OPS, share.counter
    return N_PROCS * N_OPS / (t1 - t0)


def counter_manager(ctx: Any, manager: Any) -> float:
    ns, lock = manager.Namespace(), manager.Lock()
    ns.counter = 0
    t0, t1 = run_workers(ctx, w_ns_counter, (ns, lock), N_PROCS)
    assert ns.counter == N_PROCS * N_OPS
    return N_PROCS * N_OPS / (t1 - t0)


def counter_value(ctx: Any, manager: Any) -> float:
    v, lock = ctx.Value("q", 0, lock=False), ctx.Lock()
    t0, t1 = run_workers(ctx, w_value_counter, (v, lock), N_PROCS)
    assert v.value == N_PROCS * N_OPS
    return N_PROCS * N_OPS / (t1 - t0)


# -- scenario 2 ---------------------------------------------------------------------------


def read_share(ctx: Any, manager: Any) -> float:
    with Share() as share:
        share.x = 42
        share.x  # noqa: B018 - warm-up
        t = time.perf_counter()
        for _ in range(READS):
            share.x  # noqa: B018
        return (time.perf_counter() - t) / READS


def read_manager(ctx: Any, manager: Any) -> float:
    ns = manager.Namespace()
    ns.x = 42
    ns.x  # noqa: B018 - warm-up
    n = READS // 10
    t = time.perf_counter()
    for _ in range(n):
        ns.x  # noqa: B018
    return (time.perf_counter() - t) / n


def read_value(ctx: Any, manager: Any) -> float:
    v = ctx.Value("q", 42)  # with its lock: .value takes it
    v.value  # noqa: B018 - warm-up
    t = time.perf_counter()
    for _ in range(READS):
        v.value  # noqa: B018
    return (time.perf_counter() - t) / READS


# -- scenario 3 ---------------------------------------------------------------------------


def object_share(ctx: Any, manager: Any) -> float:
    with Share() as share:
        share.obj = Accumulator()
        t0, _ = run_workers(ctx, w_share_obj, (share,), OBJ_PROCS)
        assert share.obj.total == OBJ_PROCS * OBJ_OPS
        return time.perf_counter() - t0


def object_basemanager(ctx: Any, manager: Any) -> float:
    with AccManager(ctx=ctx) as m:
        proxy = m.Accumulator()  # type: ignore[attr-defined]
        t0, _ = run_workers(ctx, w_proxy_obj, (proxy,), OBJ_PROCS)
        assert proxy.get() == OBJ_PROCS * OBJ_OPS
        return time.perf_counter() - t0


SCENARIOS: dict[str, dict[str, Any]] = {
    "counter": {"share": counter_share, "manager_ns": counter_manager, "mp_value": counter_value},
    "read": {"share": read_share, "manager_ns": read_manager, "mp_value": read_value},
    "object": {"share": object_share, "basemanager": object_basemanager},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--start-method", default="fork")
    a = ap.parse_args()
    ctx = mp.get_context(a.start_method)
    res: dict[str, dict[str, list[float]]] = {s: {k: [] for k in c} for s, c in SCENARIOS.items()}
    with ctx.Manager() as manager:
        for r in range(a.rounds):
            for scen, contenders in SCENARIOS.items():
                names = list(contenders)
                names = names[r % len(names) :] + names[: r % len(names)]  # rotate the order
                for name in names:
                    res[scen][name].append(contenders[name](ctx, manager))
            print(f"round {r + 1}/{a.rounds} done", flush=True)
    med = {s: {k: statistics.median(v) for k, v in c.items()} for s, c in res.items()}
    c, rd, o = med["counter"], med["read"], med["object"]
    print(f"\nstart method: {a.start_method}, rounds: {a.rounds} (medians; min-max in brackets)")
    print(f"1. {N_PROCS} procs x {N_OPS} counter += 1 (ops/s)")
    for k, v in c.items():
        print(f"   {k:12s} {v:12,.0f}   [{min(res['counter'][k]):,.0f} - {max(res['counter'][k]):,.0f}]")
    print(f"   Share / Manager Namespace+Lock = {c['share'] / c['manager_ns']:.1f}x  (target >= 20x)")
    print(f"   mp.Value+Lock / Share          = {c['mp_value'] / c['share']:.1f}x  (target <= 10x)")
    print("2. single-process read of a shared int (us/read)")
    for k, v in rd.items():
        print(f"   {k:12s} {v * 1e6:12.2f}")
    print(f"   Manager Namespace / Share      = {rd['manager_ns'] / rd['share']:.1f}x  (target >= 20x)")
    print(f"3. {OBJ_PROCS} procs x {OBJ_OPS} obj.add(1) until the parent reads the total (ms)")
    for k, v in o.items():
        print(f"   {k:12s} {v * 1e3:12.1f}")
    print(f"   BaseManager / Share            = {o['basemanager'] / o['share']:.1f}x  (target >= 1x)")

    from _results import headline

    # ops/s: higher is better, so the rows record time per op (1/ops) to keep "lower is better"
    headline("share", f"{N_PROCS} procs x {N_OPS} counter += 1, us/op (vs Manager Namespace + Lock)",
             1e6 / c["share"], "Manager Namespace + Lock", 1e6 / c["manager_ns"], "<= 0.05x (20x the ops/s)",
             c["share"] / c["manager_ns"] >= 20, "us")
    headline("share", f"{N_PROCS} procs x {N_OPS} counter += 1, us/op (vs mp.Value + Lock)",
             1e6 / c["share"], "mp.Value + Lock", 1e6 / c["mp_value"], "<= 10x",
             c["mp_value"] / c["share"] <= 10, "us")
    headline("share", "single-process read of an int", rd["share"] * 1e6, "Manager Namespace read",
             rd["manager_ns"] * 1e6, "<= 0.05x (20x faster)", rd["manager_ns"] / rd["share"] >= 20, "us")
    headline("share", f"{OBJ_PROCS} procs x {OBJ_OPS} obj.add(1) until the parent sees the total",
             o["share"] * 1e3, "BaseManager proxy", o["basemanager"] * 1e3, "<= 1x",
             o["basemanager"] / o["share"] >= 1)


if __name__ == "__main__":
    main()
