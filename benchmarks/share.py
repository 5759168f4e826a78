"""Benchmark: suitkaise.share.Share against multiprocessing anchors, in one interleaved run.

    python benchmarks/share.py [--rounds 5] [--start-method fork]

Scenarios (each timed from a start Event to the end, process start-up excluded):

1. counter: 4 processes x 250 ``counter += 1``
   - Share:              ``share.counter += 1``
   - Manager Namespace:  ``with lock: ns.counter += 1``  (Manager().Namespace() + Manager().Lock())
   - mp.Value + Lock:    ``with lock: v.value += 1``
2. read: single-process read of a shared int, Share vs Manager Namespace.
3. object: 2 processes x 200 ``obj.add(1)`` until the parent reads the total 400
   - Share:              ``share.obj.add(1)``
   - BaseManager proxy:  a registered class, ``proxy.add(1)``

Prints the median of each measure over the rounds and the ratios the targets refer to.
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


def w_share_counter(share: Share, go: Any, done: Any) -> None:
    go.wait()
    for _ in range(N_OPS):
        share.counter += 1
    done.put(1)


def w_ns_counter(ns: Any, lock: Any, go: Any, done: Any) -> None:
    go.wait()
    for _ in range(N_OPS):
        with lock:
            ns.counter += 1
    done.put(1)


def w_value_counter(v: Any, lock: Any, go: Any, done: Any) -> None:
    go.wait()
    for _ in range(N_OPS):
        with lock:
            v.value += 1
    done.put(1)


def w_share_obj(share: Share, go: Any, done: Any) -> None:
    go.wait()
    for _ in range(OBJ_OPS):
        share.obj.add(1)
    done.put(1)


def w_proxy_obj(proxy: Any, go: Any, done: Any) -> None:
    go.wait()
    for _ in range(OBJ_OPS):
        proxy.add(1)
    done.put(1)


def timed(ctx: Any, target: Any, args: tuple[Any, ...], n: int) -> float:
    """Start n workers, release them together, return seconds until all are done."""
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, go, done)) for _ in range(n)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let them reach go.wait() (start-up is not what we measure)
    t = time.perf_counter()
    go.set()
    for _ in range(n):
        done.get(timeout=120)
    elapsed = time.perf_counter() - t
    for p in procs:
        p.join(30)
    return elapsed


def bench_counter(ctx: Any, manager: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    with Share() as share:
        share.counter = 0
        el = timed(ctx, w_share_counter, (share,), N_PROCS)
        assert share.counter == N_PROCS * N_OPS, share.counter
        out["share"] = N_PROCS * N_OPS / el
    ns, lock = manager.Namespace(), manager.Lock()
    ns.counter = 0
    el = timed(ctx, w_ns_counter, (ns, lock), N_PROCS)
    assert ns.counter == N_PROCS * N_OPS
    out["manager_ns"] = N_PROCS * N_OPS / el
    v, vlock = ctx.Value("q", 0, lock=False), ctx.Lock()
    el = timed(ctx, w_value_counter, (v, vlock), N_PROCS)
    assert v.value == N_PROCS * N_OPS
    out["mp_value"] = N_PROCS * N_OPS / el
    return out


def bench_read(manager: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    with Share() as share:
        share.x = 42
        t = time.perf_counter()
        for _ in range(READS):
            share.x  # noqa: B018
        out["share"] = (time.perf_counter() - t) / READS
    ns = manager.Namespace()
    ns.x = 42
    n = READS // 10
    t = time.perf_counter()
    for _ in range(n):
        ns.x  # noqa: B018
    out["manager_ns"] = (time.perf_counter() - t) / n
    return out


def bench_object(ctx: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    with Share() as share:
        share.obj = Accumulator()
        go, done = ctx.Event(), ctx.Queue()
        t = _obj_run(ctx, w_share_obj, share, go, done)
        assert share.obj.total == OBJ_PROCS * OBJ_OPS
        out["share"] = time.perf_counter() - t
    with AccManager(ctx=ctx) as m:
        proxy = m.Accumulator()  # type: ignore[attr-defined]
        go, done = ctx.Event(), ctx.Queue()
        t = _obj_run(ctx, w_proxy_obj, proxy, go, done)
        assert proxy.get() == OBJ_PROCS * OBJ_OPS
        out["basemanager"] = time.perf_counter() - t
    return out


def _obj_run(ctx: Any, target: Any, handle: Any, go: Any, done: Any) -> float:
    procs = [ctx.Process(target=target, args=(handle, go, done)) for _ in range(OBJ_PROCS)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    t = time.perf_counter()
    go.set()
    for _ in range(OBJ_PROCS):
        done.get(timeout=120)
    for p in procs:
        p.join(30)
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--start-method", default="fork")
    a = ap.parse_args()
    ctx = mp.get_context(a.start_method)
    counter: dict[str, list[float]] = {}
    read: dict[str, list[float]] = {}
    obj: dict[str, list[float]] = {}
    with ctx.Manager() as manager:
        for r in range(a.rounds):
            for k, v in bench_counter(ctx, manager).items():
                counter.setdefault(k, []).append(v)
            for k, v in bench_read(manager).items():
                read.setdefault(k, []).append(v)
            for k, v in bench_object(ctx).items():
                obj.setdefault(k, []).append(v)
            print(f"round {r + 1}/{a.rounds} done", flush=True)
    med = {k: statistics.median(v) for k, v in counter.items()}
    rmed = {k: statistics.median(v) for k, v in read.items()}
    omed = {k: statistics.median(v) for k, v in obj.items()}
    print(f"\nstart method: {a.start_method}, rounds: {a.rounds} (medians)")
    print(f"1. {N_PROCS} procs x {N_OPS} counter += 1 (ops/s)")
    for k, v in med.items():
        print(f"   {k:12s} {v:12,.0f}")
    print(f"   Share / Manager Namespace+Lock = {med['share'] / med['manager_ns']:.1f}x  (target >= 20x)")
    print(f"   mp.Value+Lock / Share          = {med['mp_value'] / med['share']:.1f}x  (target <= 10x)")
    print("2. single-process read of a shared int (us/read)")
    for k, v in rmed.items():
        print(f"   {k:12s} {v * 1e6:12.2f}")
    print(f"   Manager Namespace / Share      = {rmed['manager_ns'] / rmed['share']:.1f}x  (target >= 20x)")
    print(f"3. {OBJ_PROCS} procs x {OBJ_OPS} obj.add(1) until the parent reads the total (ms)")
    for k, v in omed.items():
        print(f"   {k:12s} {v * 1e3:12.1f}")
    print(f"   BaseManager / Share            = {omed['basemanager'] / omed['share']:.1f}x  (target >= 1x)")


if __name__ == "__main__":
    main()
