"""Benchmark: Skprocess vs multiprocessing.Process + Queue (same run, interleaved, medians).

    python benchmarks/skprocess.py [--start-method fork|spawn|forkserver] [--rounds N]

1. start -> result of a trivial process: Skprocess(runs=1).run() against
   mp.Process(target=put 1 in a Queue) + queue.get() + join(), under the chosen
   start method. Target: <= 1.1x under each of fork, spawn and forkserver.
2. per-iteration overhead of the run loop: (runs=100000) - (runs=0), divided by
   100000 (the trivial __run__ itself is included). Targets: <= 1 us with
   checkpointing off (lives=1), <= 5 us with it on (lives=2, checkpoint=True,
   a small state: one int attribute updated each iteration).
3. what checkpointing costs for a large state: per-iteration cost of a process whose
   10 MB bytearray changes every iteration, with lives=2 (checkpointing on), against
   serializing that state with cucumber and copying the bytes into shared memory (a
   checkpoint saves the whole state after each iteration, so that is its floor).
   Target: <= 1.5x; process_config.checkpoint = False skips it.
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


class Checkpointed(Skprocess):
    """A small state saved after every iteration (lives > 1 turns checkpointing on)."""

    def __init__(self, runs: int = 1) -> None:
        self.process_config.runs = runs
        self.process_config.lives = 2
        self.process_config.checkpoint = True
        self.count = 0

    def __run__(self) -> None:
        self.count += 1

    def __result__(self) -> int:
        return 1


class BigState(Skprocess):
    """A 10 MB bytearray changed every iteration, checkpointed (lives=2)."""

    def __init__(self, runs: int = 1) -> None:
        self.process_config.runs = runs
        self.process_config.lives = 2
        self.buf = bytearray(BIG_STATE)
        self.count = 0

    def __run__(self) -> None:
        self.count += 1
        self.buf[self.count] = 1

    def __result__(self) -> int:
        return 1


BIG_STATE = 10 * 1024 * 1024


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


def sk_start_result(runs: int = 1, cls: type[Skprocess] = Trivial) -> float:
    t0 = time.perf_counter()
    assert cls(runs).run() == 1  # type: ignore[call-arg]
    return time.perf_counter() - t0


def per_iteration_us(cls: type[Skprocess], n: int, rounds: int) -> float:
    """Median run time with n iterations minus with 0, per iteration (interleaved)."""
    zero, many = [], []
    for i in range(rounds):
        order = (0, n) if i % 2 == 0 else (n, 0)
        for runs in order:
            (zero if runs == 0 else many).append(sk_start_result(runs, cls))
    return (statistics.median(many) - statistics.median(zero)) / n * 1e6


def checkpoint_floor_ms(obj: object, rounds: int) -> float:
    """Median time to serialize obj's own attributes with cucumber and copy the bytes into
    shared memory: what saving the whole state after an iteration cannot go below."""
    import mmap

    from suitkaise import cucumber

    state = {"buf": obj.buf, "count": obj.count}  # type: ignore[attr-defined]
    area = mmap.mmap(-1, 2 * BIG_STATE)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        data = cucumber.serialize(state)
        area[:len(data)] = data
        times.append(time.perf_counter() - t0)
    area.close()
    return statistics.median(times) * 1e3


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
    loop_rounds = max(5, args.rounds // 6)
    per_iter_us = per_iteration_us(Trivial, n, loop_rounds)
    per_iter_ckpt_us = per_iteration_us(Checkpointed, n, loop_rounds)
    big_ms = per_iteration_us(BigState, 40, loop_rounds) / 1e3
    big_floor_ms = checkpoint_floor_ms(BigState(), 15)

    print(f"start method: {method}, rounds: {args.rounds}")
    print(f"{'case':<52}{'median':>12}{'ratio':>9}{'target':>9}")
    print(f"{'mp.Process + Queue, start -> get -> join':<52}{mp_med * 1e3:>10.2f}ms{1.0:>9.2f}{'':>9}")
    print(f"{'Skprocess(runs=1).run()':<52}{sk_med * 1e3:>10.2f}ms{sk_med / mp_med:>9.2f}{'<= 1.1':>9}")
    print(f"{f'Skprocess loop, per iteration ({n} runs)':<52}{per_iter_us:>10.2f}us{'':>9}{'<= 1':>9}")
    print(f"{'  the same, checkpointing a small state':<52}{per_iter_ckpt_us:>10.2f}us{'':>9}{'<= 5':>9}")
    print(f"{'  checkpointing a 10 MB state, per iteration':<52}{big_ms:>10.2f}ms"
          f"{big_ms / big_floor_ms:>9.2f}{'<= 1.5':>9}")
    print(f"{'  serializing it and copying it to shared memory':<52}{big_floor_ms:>10.2f}ms{1.0:>9.2f}{'':>9}")
    from _results import headline

    headline("skprocess", f"start -> result, trivial process ({method})", sk_med * 1e3,
             "mp.Process + Queue", mp_med * 1e3, "<= 1.1x", sk_med / mp_med <= 1.1)
    headline("skprocess", "run-loop overhead per iteration", per_iter_us, "(absolute)", None,
             "<= 1 us", per_iter_us <= 1, "us")
    headline("skprocess", "run-loop overhead per iteration, checkpointing", per_iter_ckpt_us,
             "(absolute)", None, "<= 5 us", per_iter_ckpt_us <= 5, "us")
    headline("skprocess", "run loop per iteration, checkpointing a 10 MB state", big_ms,
             "cucumber.serialize + copy to shared memory", big_floor_ms, "<= 1.5x", big_ms / big_floor_ms <= 1.5)
    multiprocessing.active_children()


if __name__ == "__main__":
    main()
