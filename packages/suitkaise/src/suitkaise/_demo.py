"""``python -m suitkaise demo``: the suite doing real work, start to finish.

Part 1 carries objects plain pickle refuses (a lambda, a held lock, an open
file half read, a logger with a file handler, an Sktimer) into a fresh
interpreter, uses them there, and brings them back.

Part 2 counts the primes below a bound, first serially and then with a
``Pool`` whose tasks report into a ``Share`` (a counter and an ``Sktimer``),
while an ``Skprocess`` auditor re-checks a sample of the answers it receives
through a ``Pipe`` with a different algorithm. A summary table closes it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from suitkaise.cucumber import deserialize, serialize
from suitkaise.pipe import Pipe
from suitkaise.processing import Pool, Skprocess
from suitkaise.share import Share
from suitkaise.timing import Sktimer

DISTRIBUTIONS = ("suitkaise", "sk-cucumber", "sk-timing", "sk-pipe", "sk-share", "sk-processing")


def versions() -> dict[str, str]:
    out = {}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line]
    for n, row in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            out.append(line)
    out.append(line)
    return "\n".join(out)


# -- part 1: what pickle refuses ------------------------------------------------

_CHILD = r"""
import sys, threading
from suitkaise.cucumber import deserialize, serialize
objs = deserialize(sys.stdin.buffer.read())
report = {}
report["square"] = f"square(7) = {objs['square'](7)}"
lock = objs["lock"]
held = lock.locked()
lock.release()
report["lock"] = f"arrived held={held}; released and re-acquired={lock.acquire(timeout=1)}"
report["file"] = f"next line: {objs['file'].readline().strip()!r}"
objs["logger"].warning("hello from the child interpreter")
report["logger"] = f"{len(objs['logger'].handlers)} handler(s), wrote one line"
timer = objs["timer"]
timer.add_time(0.25)
report["timer"] = f"{timer.num_times - 1} times arrived, added one"
sys.stdout.buffer.write(serialize({"report": report, "timer": timer, "square": objs["square"]}))
"""


def _refused_by_pickle(obj: Any) -> str:
    try:
        pickle.dumps(obj)
    except Exception as exc:
        return f"refused ({type(exc).__name__})"
    if isinstance(obj, logging.Logger):
        return "by name only: its handlers stay behind"
    return "ok"


def cucumber_tour() -> None:
    print("\n== 1. cucumber: objects pickle refuses, carried into a fresh interpreter ==")
    tmpdir = tempfile.mkdtemp(prefix="suitkaise-demo-")
    data_path = os.path.join(tmpdir, "lines.txt")
    log_path = os.path.join(tmpdir, "demo.log")
    with open(data_path, "w") as f:
        f.write("first line\nsecond line\nthird line\n")
    lock = threading.Lock()
    lock.acquire()
    logger = logging.getLogger("suitkaise.demo")
    handler = logging.FileHandler(log_path)
    logger.addHandler(handler)
    logger.propagate = False
    timer = Sktimer()
    for t in (0.1, 0.2, 0.3):
        timer.add_time(t)
    file = open(data_path)
    try:
        file.readline()  # the child must continue at the second line
        objs = {
            "square": lambda x: x * x,
            "lock": lock,
            "file": file,
            "logger": logger,
            "timer": timer,
        }
        child = subprocess.run(
            [sys.executable, "-c", _CHILD], input=serialize(objs), capture_output=True, timeout=120
        )
        if child.returncode != 0:
            raise RuntimeError("child interpreter failed:\n" + child.stderr.decode(errors="replace"))
        back = deserialize(child.stdout)
        rows = [
            [name, _refused_by_pickle(objs[name]), back["report"][name]]
            for name in ("square", "lock", "file", "logger")
        ]
        print(_table(["object", "plain pickle", "used in the child"], rows))
        handler.flush()
        with open(log_path) as f:
            logged = f.read().strip()
        returned = back["timer"]
        print(f"log file now says: {logged!r}")
        print(
            f"Sktimer: {back['report']['timer']}; back in the parent it has {returned.num_times} "
            f"times, mean {returned.mean:.3f} s, p50 {returned.percentile(50):.3f} s"
        )
        print(f"the lambda came back too: square(12) = {back['square'](12)}")
    finally:
        file.close()
        logger.removeHandler(handler)
        handler.close()
        lock.release()
        for path in (data_path, log_path):
            os.unlink(path)
        os.rmdir(tmpdir)


# -- part 2: a real workload -------------------------------------------------------

def count_primes(lo: int, hi: int) -> int:
    """Primes in [lo, hi) by trial division (deliberately CPU-bound)."""
    count = 0
    for n in range(max(lo, 2), hi):
        if n % 2 == 0:
            count += n == 2
            continue
        limit = math.isqrt(n)
        d = 3
        while d <= limit and n % d:
            d += 2
        count += d > limit
    return count


def sieve_count(lo: int, hi: int) -> int:
    """The same count by a segmented sieve: an independent check."""
    if hi <= 2:
        return 0
    lo = max(lo, 2)
    flags = bytearray([1]) * (hi - lo)
    for p in range(2, math.isqrt(hi - 1) + 1):
        start = max(p * p, (lo + p - 1) // p * p)
        flags[start - lo :: p] = bytes(len(range(start, hi, p)))
    return sum(flags)


def census_task(share: Share, lo: int, hi: int) -> int:
    started = time.perf_counter()
    found = count_primes(lo, hi)
    share.timer.add_time(time.perf_counter() - started)
    share.done += 1
    return found


class Auditor(Skprocess):
    """Re-checks (lo, hi, count) answers arriving on a Pipe until it receives None."""

    def __init__(self, point: Any) -> None:
        self.point = point
        self.checked = 0
        self.mismatches: list[tuple[int, int]] = []
        self.process_config.runs = None

    def __run__(self) -> None:
        message = self.point.recv()
        if message is None:
            self.stop()
            return
        lo, hi, count = message
        if sieve_count(lo, hi) != count:
            self.mismatches.append((lo, hi))
        self.checked += 1

    def __result__(self) -> dict[str, Any]:
        return {"checked": self.checked, "mismatches": self.mismatches}


def prime_census(quick: bool, workers: int | None) -> None:
    bound = 300_000 if quick else 2_000_000
    chunks = 24 if quick else 64
    step = bound // chunks
    ranges = [(i * step, (i + 1) * step) for i in range(chunks)]
    workers = workers or os.cpu_count() or 1
    print(f"\n== 2. Pool + Share + Skprocess + Pipe: primes below {bound:,} in {chunks} tasks ==")

    t0 = time.perf_counter()
    serial = [count_primes(lo, hi) for lo, hi in ranges]
    serial_s = time.perf_counter() - t0
    print(f"serial: {sum(serial):,} primes in {serial_s:.2f} s")

    anchor, point = Pipe.pair()
    auditor = Auditor(point)
    auditor.start()
    point.close()  # the auditor has its own copy now
    with Share() as share:
        share.done = 0
        share.timer = Sktimer()
        t0 = time.perf_counter()
        with Pool(workers) as pool:
            counts = pool.star().map(
                census_task, [(share, lo, hi) for lo, hi in ranges], progress=True
            )
        parallel_s = time.perf_counter() - t0
        tasks_done, mean_task = share.done, share.timer.mean
    for (lo, hi), count in list(zip(ranges, counts, strict=True))[::4]:  # audit every 4th answer
        anchor.send((lo, hi, count))
    anchor.send(None)
    verdict = auditor.result()
    anchor.close()
    print(f"pool of {workers}: {sum(counts):,} primes in {parallel_s:.2f} s")

    rows = [
        ["tasks", chunks],
        ["tasks counted in the Share", tasks_done],
        ["serial time", f"{serial_s:.2f} s"],
        [f"Pool({workers}) time", f"{parallel_s:.2f} s"],
        ["speed-up over serial", f"{serial_s / parallel_s:.2f}x"],
        ["mean task time (Share's Sktimer)", f"{mean_task * 1000:.1f} ms"],
        ["answers audited by the Skprocess", verdict["checked"]],
        ["audit mismatches", len(verdict["mismatches"])],
        ["same total as serial", sum(counts) == sum(serial)],
    ]
    print(_table(["summary", "value"], rows))
    busy = _busy_note(workers)
    if busy:
        print(busy)
    if sum(counts) != sum(serial) or verdict["mismatches"] or tasks_done != chunks:
        raise RuntimeError("the parallel run disagrees with the serial one")


def _busy_note(workers: int) -> str | None:
    """A note when other work competes for the CPUs (the speed-up then says little)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return None
    cpus = os.cpu_count() or 1
    if load <= cpus:
        return None
    return (f"note: this machine is busy (load average {load:.1f} on {cpus} CPUs), so the "
            f"{workers} workers shared the CPUs with other work: the speed-up above understates "
            "what the Pool does on an idle machine.")


def run_demo(*, quick: bool = False, workers: int | None = None) -> int:
    print("suitkaise demo — " + ", ".join(f"{d} {v}" for d, v in versions().items()))
    cucumber_tour()
    prime_census(quick, workers)
    print("\nAll done. Read the guides in docs/ or the package READMEs next.")
    return 0
