"""Benchmark: Skprocess vs multiprocessing.Process + Queue (same run, interleaved, medians).

    python benchmarks/skprocess.py [--start-method fork|spawn|forkserver] [--rounds N]

1. start -> result of a trivial process: Skprocess(runs=1).run() against
   mp.Process(target=put 1 in a Queue) + queue.get() + join(). Target: <= 1.5x.
2. per-iteration overhead of the run loop: (runs=100000) - (runs=0), divided by
   100000 (the trivial __run__ itself is included). Target: <= 10 us.
Everything started here is joined before the script exits.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

from suitkaise.processing import Skprocess


class Trivial(Skprocess):
    def __init__(self, runs: int = 1) -> None:
        self.process_config.runs = runs

    def __run__(self) -> None:
        pass

    def __result__(self) -> int:
        return 1


def _mp_target(q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q.put(1)


def mp_start_result() -> float:
    t0 = time.perf_counter()
    q: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    p = multiprocessing.Process(target=_mp_target, args=(q,))
    p.start()
    assert q.get() == 1
    p.join()
    q.close()
    q.join_thread()
    return time.perf_counter() - t0


def sk_start_result(runs: int = 1) -> float:
    t0 = time.perf_counter()
    assert Trivial(runs).run() == 1
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start-method", default=None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=100_000)
    args = parser.parse_args()
    if args.start_method:
        multiprocessing.set_start_method(args.start_method, force=True)
    method = multiprocessing.get_start_method()

    # warm-up (imports, forkserver start)
    mp_start_result()
    sk_start_result()

    mp_times, sk_times = [], []
    for i in range(args.rounds):
        pair = (mp_start_result, sk_start_result) if i % 2 == 0 else (sk_start_result, mp_start_result)
        for fn in pair:
            (mp_times if fn is mp_start_result else sk_times).append(fn())
    mp_med, sk_med = statistics.median(mp_times), statistics.median(sk_times)

    n = args.iterations
    zero, many = [], []
    for i in range(max(3, args.rounds // 6)):
        order = (0, n) if i % 2 == 0 else (n, 0)
        for runs in order:
            (zero if runs == 0 else many).append(sk_start_result(runs))
    per_iter_us = (statistics.median(many) - statistics.median(zero)) / n * 1e6

    print(f"start method: {method}, rounds: {args.rounds}")
    print(f"{'case':<44}{'median':>12}{'ratio':>9}{'target':>9}")
    print(f"{'mp.Process + Queue, start -> get -> join':<44}{mp_med * 1e3:>10.2f}ms{1.0:>9.2f}{'':>9}")
    print(f"{'Skprocess(runs=1).run()':<44}{sk_med * 1e3:>10.2f}ms{sk_med / mp_med:>9.2f}{'<= 1.5':>9}")
    print(f"{f'Skprocess loop, per iteration ({n} runs)':<44}{per_iter_us:>10.2f}us{'':>9}{'<= 10':>9}")
    from _results import headline

    headline("skprocess", "start -> result, trivial process", sk_med * 1e3, "mp.Process + Queue",
             mp_med * 1e3, "<= 1.5x", sk_med / mp_med <= 1.5)
    headline("skprocess", "run-loop overhead per iteration", per_iter_us, "(absolute)", None,
             "<= 10 us", per_iter_us <= 10, "us")
    multiprocessing.active_children()


if __name__ == "__main__":
    main()
