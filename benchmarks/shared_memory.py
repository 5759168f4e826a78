"""Benchmark: ``suitkaise.pipe.wire``'s shared memory against its copy through the socket.

::

    parent                                   children (forked twice: once per side)
    ------                                   ---------------------------------------
    SHM_MIN = 2**62 (copy, as before) ─┐     Pipe point: recv -> echo (or small ack)
    SHM_MIN = 8 MiB (shared memory) ───┴──►  Pool(2) workers: a + 1

Each side has its own children, forked with its value of ``wire.SHM_MIN`` (the
sender decides, so the children's replies follow it); the parent sets its own
before each sample. Every round runs both sides, alternating who goes first,
and the script prints medians and the ratio shared / copy (lower is better).
This is the measurement behind ``SHM_MIN`` in ``docs/guides/pipe.md``.

Run: python benchmarks/shared_memory.py [--rounds N] [--sizes 1,2,4,8,16,32]
(``--sizes`` in MiB: a Pipe one-way row and a Pool.map row per size, with the
threshold at 64 KiB on the shared side so that every size uses it).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from suitkaise.pipe import Pipe, wire
from suitkaise.processing import Pool

MIB = 1024 * 1024
COPY = 1 << 62


def plus_one(a: Any) -> Any:
    return a + 1


def child(point: Any) -> None:
    while (msg := point.recv()) is not None:
        point.send("ack" if type(msg) is tuple else msg)


class Side:
    """One value of ``SHM_MIN``, with its own Pipe child and Pool."""

    def __init__(self, name: str, shm_min: int) -> None:
        self.name, self.shm_min = name, shm_min
        wire.SHM_MIN = shm_min  # before forking: the children keep it
        self.anchor, point = Pipe.pair()
        self.proc = mp.get_context("fork").Process(target=child, args=(point,), daemon=True)
        self.proc.start()
        point.close()
        self.pool = Pool(2)

    def close(self) -> None:
        self.anchor.send(None)
        self.proc.join(10)
        self.anchor.close()
        self.pool.terminate()


def one_way(arr: Any) -> Callable[[Side], None]:
    def run(side: Side) -> None:
        side.anchor.send((arr,))
        assert side.anchor.recv() == "ack"
    return run


def round_trip(arr: Any) -> Callable[[Side], None]:
    def run(side: Side) -> None:
        side.anchor.send(arr)
        assert side.anchor.recv().shape == arr.shape
    return run


def pool_map(arrays: list[Any]) -> Callable[[Side], None]:
    def run(side: Side) -> None:
        out = side.pool.map(plus_one, arrays)
        assert float(out[-1][0]) == float(arrays[-1][0]) + 1
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--sizes", default="", help="MiB, comma-separated: the threshold sweep")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases: dict[str, Callable[[Side], None]] = {}
    if args.sizes:
        shared = wire.OOB_MIN
        for mib in (int(s) for s in args.sizes.split(",")):
            arr = rng.integers(0, 256, mib * MIB, dtype=np.uint8)
            cases[f"Pipe {mib} MiB one way"] = one_way(arr)
            cases[f"Pool.map 160 MB as {mib} MiB arrays"] = pool_map(
                [np.full(mib * MIB // 8, float(i)) for i in range(max(8, 160 // mib))])
    else:
        shared = wire.SHM_MIN
        big, mid = rng.random(50 * MIB // 8), rng.random(16 * MIB // 8)
        cases = {
            "Pool.map 8 x 20 MB (a + 1)": pool_map([np.full(20 * MIB // 8, float(i)) for i in range(8)]),
            "Pipe 50 MB one way": one_way(big),
            "Pipe 50 MB round trip": round_trip(big),
            "Pipe 16 MB one way": one_way(mid),
            "Pipe 16 MB round trip": round_trip(mid),
        }
    sides = [Side("copy", COPY), Side("shared", shared)]
    try:
        times: dict[str, dict[str, list[float]]] = {c: {s.name: [] for s in sides} for c in cases}
        for r in range(args.rounds):
            for case, run in cases.items():
                for side in sides if r % 2 else sides[::-1]:
                    wire.SHM_MIN = side.shm_min
                    t0 = time.perf_counter()
                    run(side)
                    times[case][side.name].append(time.perf_counter() - t0)
        print(f"rounds: {args.rounds} (medians); shared memory from {shared} bytes")
        for case, per in times.items():
            copy, shm = statistics.median(per["copy"]), statistics.median(per["shared"])
            print(f"{case:<36} copy {copy * 1e3:8.1f} ms   shared {shm * 1e3:8.1f} ms   ratio {shm / copy:.2f}")
    finally:
        for side in sides:
            side.close()


if __name__ == "__main__":
    main()
