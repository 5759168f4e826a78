"""Benchmark: how cost grows as work grows (tracker issue 17, item 5), one interleaved run.

    python benchmarks/scaling.py            # full sizes, about 3-5 minutes on 2 busy cores
    python benchmarks/scaling.py --quick    # smaller sizes, about 1 minute
    python benchmarks/scaling.py --only map,pipe

Four curves, each beside an anchor measured in the same run (rounds interleaved, the order
alternating between rounds, medians reported; compare ratios, not absolute times):

map     ``Pool(2).map`` of a tiny function over 10^3 .. 10^7 items (quick: .. 10^6) beside
        ``multiprocessing.Pool(2).map``: time per item. Target: flat within 20% (max/min of the
        medians) from 10^4 up. Calls timed per size and contender: 11, 11, 9, 7, 3 (quick: 7,
        7, 5, 3; a 10^7 call takes seconds, so it gets 3), sizes interleaved round by round.
imap    ``Pool(2).imap`` over an instrumented generator of 10^8 items (quick: 10^6): the
        parent's peak RSS (VmHWM, reset through /proc/self/clear_refs just before) and the most
        items the generator had yielded ahead of the results consumed (measured at every yield,
        where that lag peaks). Target: peak RSS <= 100 MB and a bounded lag. Again over 10^6
        items (quick: 2x10^5) with a consumer slower than the workers (1 ms sleep per 500
        results). Beside both, ``multiprocessing.Pool.imap(chunksize=1000)`` (at most 10^6
        items), measured alike.
pipe    one-way throughput (GB/s) parent -> long-lived child of ``Pipe`` (a numpy uint8 array, and
        the same data as ``bytes``; the child acknowledges each batch) for 1 KB .. 1 GB (quick:
        .. 16 MB; 1 GB is the cap: ~5 GB of memory at once, 3 samples), beside a raw
        ``os.write`` loop over a socketpair into a ``recv_into`` loop in a child (a fresh
        bytearray per message, as Pipe's receiver makes), and ``np.copyto`` of the same buffer
        in one process (memcpy: the machine's limit). Small payloads go in batches of up to
        5000 messages (a sample moves min(16 MB, 5000 messages)).
share   1, 2, 4, 8, 16 processes each doing ``share.counter += 1`` (full: 1000 times, quick: 200)
        beside ``mp.Value`` + ``Lock`` and ``Manager().Value`` + ``Manager().Lock()``: total
        updates/s, timed inside the workers from a common barrier.

Writes ``benchmarks/results/scaling.json`` (the data and the machine), prints Markdown tables
(``render`` is what ``run_all.py`` puts into docs/performance.md), and records two headline rows.
Every process, pool and pipe started here is shut down before the script exits.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "scaling.json"
WORKERS = 2
FLAT_LIMIT = 1.2  # per-item time: max / min from 10^4 up
RSS_LIMIT_MB = 100.0
KB, MB, GB = 1024, 1024**2, 1024**3
TIMEOUT = 300


def tiny(x: int) -> int:
    """The mapped function: as little work as possible, so the pool's own cost shows."""
    return x + 1


# -- machine ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python, date and load: the context every figure needs."""
    cpu = "unknown"
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1).strip() if found else platform.processor() or cpu
    except OSError:
        pass
    mem_gb = None
    try:
        kb = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_gb = round(int(kb.group(1)) / 1024**2, 1) if kb else None
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- map ----------------------------------------------------------------------------------


def bench_map(quick: bool) -> dict[str, Any]:
    """Median time per item of ``Pool.map`` and ``mp.Pool.map`` at growing sizes."""
    from suitkaise.processing import Pool

    plan = [(10**3, 7), (10**4, 7), (10**5, 5), (10**6, 3)] if quick else \
        [(10**3, 11), (10**4, 11), (10**5, 9), (10**6, 7), (10**7, 3)]
    inputs = {n: list(range(n)) for n, _ in plan}
    times: dict[int, dict[str, list[float]]] = {n: {"suitkaise": [], "multiprocessing": []} for n, _ in plan}
    with Pool(WORKERS) as sk, mp.get_context("fork").Pool(WORKERS) as mpp:
        contenders: dict[str, Callable[[list[int]], list[int]]] = {
            "suitkaise": lambda xs: sk.map(tiny, xs), "multiprocessing": lambda xs: mpp.map(tiny, xs),
        }
        for fn in contenders.values():  # warm-up: workers started, function shipped
            fn(inputs[plan[0][0]])
        # every round visits every size still due (sizes interleaved too, so that a change in
        # the machine's load between sizes does not pass for a change in cost)
        for r in range(max(rounds for _, rounds in plan)):
            for n, rounds in plan:
                if r >= rounds:
                    continue
                for name in (list(contenders) if r % 2 == 0 else list(contenders)[::-1]):
                    gc.collect()
                    t0 = time.perf_counter()
                    out = contenders[name](inputs[n])
                    times[n][name].append(time.perf_counter() - t0)
                    if len(out) != n or out[-1] != n:
                        raise SystemExit(f"map {name}: wrong result at n={n}")
                    del out
    rows = []
    for n, rounds in plan:
        row: dict[str, Any] = {"items": n, "rounds": rounds}
        for name, ts in times[n].items():
            row[f"{name}_ns_per_item"] = statistics.median(ts) / n * 1e9
        rows.append(row)
        print(f"  map {n:>11,} items x{rounds}: suitkaise {row['suitkaise_ns_per_item']:8.1f} ns/item, "
              f"mp.Pool {row['multiprocessing_ns_per_item']:8.1f} ns/item", flush=True)
    del inputs
    def spread(name: str, smallest: int) -> float:
        per = [r[f"{name}_ns_per_item"] for r in rows if r["items"] >= smallest]
        return max(per) / min(per)

    flat = {name: spread(name, 10**4) for name in contenders}
    print(f"  spread from 10^4 up: suitkaise {flat['suitkaise']:.2f}x, mp.Pool {flat['multiprocessing']:.2f}x "
          f"(target <= {FLAT_LIMIT}x for suitkaise: {'holds' if flat['suitkaise'] <= FLAT_LIMIT else 'does not hold'})")
    return {"rows": rows, "spread_from_1e4": flat, "spread_from_1e5": {n: spread(n, 10**5) for n in contenders},
            "limit": FLAT_LIMIT, "holds": flat["suitkaise"] <= FLAT_LIMIT}


# -- imap ---------------------------------------------------------------------------------


class Tally:
    """Counts shared by the instrumented generator and the consuming loop."""

    __slots__ = ("consumed", "max_lag", "yielded")

    def __init__(self) -> None:
        self.yielded = self.consumed = self.max_lag = 0

    def source(self, n: int) -> Iterator[int]:
        """Yield 0..n-1, noting how far ahead of the consumer each yield is (where the lag peaks)."""
        for i in range(n):
            self.yielded += 1
            lag = self.yielded - self.consumed
            if lag > self.max_lag:
                self.max_lag = lag
            yield i


def _status_kb(field: str) -> int:
    found = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(found.group(1)) if found else 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _imap_run(imap: Callable[[Callable[[int], int], Iterator[int]], Iterator[int]], n: int,
              pause_every: int = 0) -> dict[str, Any]:
    """Consume ``imap(tiny, generator of n)``; peak RSS, the largest lag, samples for the plot.

    ``pause_every``: sleep 1 ms after every that many results (a consumer slower than the
    workers), to show whether the input is read ahead of what the caller takes.
    """
    tally = Tally()
    gc.collect()
    reset = _reset_peak()
    rss0 = _status_kb("VmRSS") / 1024
    samples: list[tuple[int, float, int]] = []  # (consumed, RSS MB, lag)
    every = max(n // 200, 1)
    expected = 1
    t0 = time.perf_counter()
    for value in imap(tiny, tally.source(n)):
        if value != expected:
            raise SystemExit(f"imap: got {value}, expected {expected}")
        expected += 1
        tally.consumed += 1
        if tally.consumed % every == 0:
            samples.append((tally.consumed, _status_kb("VmRSS") / 1024, tally.yielded - tally.consumed))
        if pause_every and tally.consumed % pause_every == 0:
            time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    if tally.consumed != n:
        raise SystemExit(f"imap: {tally.consumed} results for {n} items")
    return {"items": n, "seconds": elapsed, "rss_start_mb": rss0, "peak_rss_mb": _status_kb("VmHWM") / 1024,
            "peak_is_vmhwm": reset, "max_lag": tally.max_lag, "pause_every": pause_every, "samples": samples}


IMAP_RUNS = {  # key: label in the tables and the chart
    "suitkaise": "suitkaise Pool.imap",
    "multiprocessing": "mp.Pool.imap(chunksize=1000)",
    "suitkaise_slow": "suitkaise Pool.imap, slow consumer",
    "multiprocessing_slow": "mp.Pool.imap(chunksize=1000), slow consumer",
}


def bench_imap(quick: bool) -> dict[str, Any]:
    """Parent's peak RSS and generator lag of ``Pool.imap`` over a long generator."""
    from suitkaise.processing import Pool

    n = 10**6 if quick else 10**8
    n_mp = min(n, 10**6)
    n_slow, pause = (2 * 10**5 if quick else 10**6), 500  # 1 ms per 500 results: slower than the workers
    out: dict[str, Any] = {}
    with Pool(WORKERS) as sk:
        list(sk.imap(tiny, range(1000)))  # warm-up
        out["suitkaise"] = _imap_run(sk.imap, n)
        out["suitkaise_slow"] = _imap_run(sk.imap, n_slow, pause)
    with mp.get_context("fork").Pool(WORKERS) as mpp:
        list(mpp.imap(tiny, range(1000), chunksize=1000))

        def mp_imap(f: Callable[[int], int], it: Iterator[int]) -> Iterator[int]:
            return mpp.imap(f, it, chunksize=1000)

        out["multiprocessing"] = _imap_run(mp_imap, n_mp)
        out["multiprocessing_slow"] = _imap_run(mp_imap, n_slow, pause)
    for key, label in IMAP_RUNS.items():
        r = out[key]
        print(f"  {label}: {r['items']:,} items in {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.1f} MB "
              f"(start {r['rss_start_mb']:.1f} MB), max lag {r['max_lag']:,} items", flush=True)
    ours = out["suitkaise"]
    bounded = max(ours["max_lag"], out["suitkaise_slow"]["max_lag"]) < min(n_slow, n) // 2
    return {**out, "rss_limit_mb": RSS_LIMIT_MB, "lag_bounded": bounded,
            "holds": ours["peak_rss_mb"] <= RSS_LIMIT_MB and bounded}


# -- pipe ---------------------------------------------------------------------------------


def _child_pipe(point: Any) -> None:
    """Receive ("batch", k) then k arrays; answer each batch with the bytes received."""
    while True:
        head = point.recv()
        if head is None:
            return
        total = 0
        for _ in range(head[1]):
            msg = point.recv()
            total += msg.nbytes if hasattr(msg, "nbytes") else len(msg)
        point.send(total)


def _recv_exact(sock: socket.socket, buf: memoryview) -> None:
    got = 0
    while got < len(buf):
        n = sock.recv_into(buf[got:])
        if n == 0:
            raise EOFError("peer closed")
        got += n


def _child_raw(sock: socket.socket) -> None:
    """Raw receiver: a (k, size) header, then k messages read into fresh bytearrays; ack the bytes."""
    head = bytearray(16)
    while True:
        _recv_exact(sock, memoryview(head))
        k, size = struct.unpack("<QQ", head)
        if k == 0:
            return
        total = 0
        for _ in range(k):
            buf = bytearray(size)
            _recv_exact(sock, memoryview(buf))
            total += len(buf)
            del buf
        sock.sendall(struct.pack("<Q", total))


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def bench_pipe(quick: bool) -> dict[str, Any]:
    """One-way GB/s of Pipe, a raw os.write loop, and memcpy, payload by payload."""
    import numpy as np

    from suitkaise.pipe import Pipe

    sizes = [KB, 64 * KB, MB, 16 * MB] if quick else [KB, 64 * KB, MB, 16 * MB, 256 * MB, GB]
    ctx = mp.get_context("fork")
    anchor, point = Pipe.pair()
    p_ours = ctx.Process(target=_child_pipe, args=(point,), daemon=True)
    p_ours.start()
    point.close()
    here, there = socket.socketpair()
    p_raw = ctx.Process(target=_child_raw, args=(there,), daemon=True)
    p_raw.start()
    there.close()

    def ours(arr: Any, k: int) -> float:
        t0 = time.perf_counter()
        anchor.send(("batch", k))
        for _ in range(k):
            anchor.send(arr)
        if anchor.recv() != k * len(memoryview(arr)):
            raise SystemExit("pipe: wrong byte count")
        return time.perf_counter() - t0

    def raw(arr: Any, k: int) -> float:
        view = memoryview(arr).cast("B")
        t0 = time.perf_counter()
        here.sendall(struct.pack("<QQ", k, arr.nbytes))
        for _ in range(k):
            _write_all(here.fileno(), view)
        ack = bytearray(8)
        _recv_exact(here, memoryview(ack))
        if struct.unpack("<Q", ack)[0] != k * arr.nbytes:
            raise SystemExit("raw: wrong byte count")
        return time.perf_counter() - t0

    rows = []
    try:
        for fn in (ours, raw):  # warm-up
            fn(np.ones(MB, dtype=np.uint8), 4)
        for size in sizes:
            arr = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
            dst = np.empty_like(arr)
            np.copyto(dst, arr)  # fault the destination's pages in once
            k = max(1, min(5000, 16 * MB // size))
            reps = 3 if size >= GB else 5

            def memcpy(arr: Any = arr, dst: Any = dst, k: int = k) -> float:
                t0 = time.perf_counter()
                for _ in range(k):
                    np.copyto(dst, arr)
                return time.perf_counter() - t0

            as_bytes = arr.tobytes()
            runs: dict[str, Callable[[], float]] = {
                "suitkaise": functools.partial(ours, arr, k),
                "suitkaise_bytes": functools.partial(ours, as_bytes, k),
                "os_write": functools.partial(raw, arr, k),
                "memcpy": memcpy,
            }
            times: dict[str, list[float]] = {name: [] for name in runs}
            for r in range(reps):
                names = list(runs)
                for name in names[r % len(names):] + names[:r % len(names)]:
                    times[name].append(runs[name]())
            row: dict[str, Any] = {"bytes": size, "messages": k, "reps": reps}
            for name, ts in times.items():
                row[f"{name}_gbps"] = k * size / statistics.median(ts) / 1e9
            rows.append(row)
            print(f"  pipe {_size(size):>7} x{k:<5} reps {reps}: Pipe numpy {row['suitkaise_gbps']:6.2f} GB/s, "
                  f"Pipe bytes {row['suitkaise_bytes_gbps']:6.2f} GB/s, os.write {row['os_write_gbps']:6.2f} GB/s, memcpy {row['memcpy_gbps']:6.2f} GB/s", flush=True)
            del arr, dst, as_bytes, runs
            gc.collect()
    finally:
        try:
            anchor.send(None)
            here.sendall(struct.pack("<QQ", 0, 0))
        except OSError:
            pass
        for proc in (p_ours, p_raw):
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        anchor.close()
        here.close()
    return {"rows": rows, "transport": "socketpair (Pipe.pair() and the raw loop alike)"}


def _pow10(n: int) -> str:
    """10**k as "10^k" (other numbers with thousands separators)."""
    k = len(str(n)) - 1
    return f"10^{k}" if n == 10**k else f"{n:,}"


def _size(n: int) -> str:
    return f"{n // GB} GB" if n >= GB else f"{n // MB} MB" if n >= MB else f"{n // KB} KB"


# -- share --------------------------------------------------------------------------------


def _w_share(share: Any, ops: int, bar: Any, out: Any) -> None:
    share.counter  # noqa: B018 - warm-up: attach before the barrier
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(ops):
        share.counter += 1
    out.put((t0, time.perf_counter()))


def _w_locked(value: Any, lock: Any, ops: int, bar: Any, out: Any) -> None:
    value.value  # noqa: B018 - warm-up: connect (Manager) / touch (mp.Value)
    with lock:
        pass
    bar.wait()
    t0 = time.perf_counter()
    for _ in range(ops):
        with lock:
            value.value += 1
    out.put((t0, time.perf_counter()))


def _run_workers(ctx: Any, target: Any, args: tuple[Any, ...], n: int) -> float:
    """Start n workers, release them together; seconds from the first start to the last end."""
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
    return max(s[1] for s in spans) - min(s[0] for s in spans)


def bench_share(quick: bool) -> dict[str, Any]:
    """Total updates/s of ``counter += 1`` from 1..16 processes: Share, mp.Value+Lock, Manager."""
    from suitkaise.share import Share

    ops = 200 if quick else 1000
    rounds = 3
    ctx = mp.get_context("fork")
    rows = []
    with ctx.Manager() as manager:

        def share_run(n: int) -> float:
            with Share() as share:
                share.counter = 0
                dt = _run_workers(ctx, _w_share, (share, ops), n)
                if share.counter != n * ops:
                    raise SystemExit(f"Share counter {share.counter} != {n * ops}")
            return dt

        def value_run(n: int) -> float:
            v, lock = ctx.Value("q", 0, lock=False), ctx.Lock()
            dt = _run_workers(ctx, _w_locked, (v, lock, ops), n)
            if v.value != n * ops:
                raise SystemExit("mp.Value counter wrong")
            return dt

        def manager_run(n: int) -> float:
            v, lock = manager.Value("q", 0), manager.Lock()
            dt = _run_workers(ctx, _w_locked, (v, lock, ops), n)
            if v.value != n * ops:
                raise SystemExit("Manager Value counter wrong")
            return dt

        runs = {"suitkaise": share_run, "mp_value": value_run, "manager_value": manager_run}
        for n in (1, 2, 4, 8, 16):
            times: dict[str, list[float]] = {name: [] for name in runs}
            for r in range(rounds):
                names = list(runs)
                for name in names[r % 3:] + names[:r % 3]:
                    times[name].append(runs[name](n))
            row: dict[str, Any] = {"processes": n, "ops_per_process": ops, "rounds": rounds}
            for name, ts in times.items():
                row[f"{name}_ops"] = n * ops / statistics.median(ts)
            rows.append(row)
            print(f"  share {n:>2} procs x {ops}: Share {row['suitkaise_ops']:>10,.0f}/s, "
                  f"mp.Value+Lock {row['mp_value_ops']:>10,.0f}/s, Manager {row['manager_value_ops']:>9,.0f}/s",
                  flush=True)
    return {"rows": rows}


# -- report -------------------------------------------------------------------------------


def _g(x: float) -> str:
    return f"{x:,.3g}" if x < 1000 else f"{x:,.0f}"


def sections(data: dict[str, Any]) -> dict[str, str]:
    """One Markdown section ("### title" then its table and verdict) per curve in ``data``."""
    out: dict[str, str] = {}
    if "map" in data:
        m = data["map"]
        lines = ["### Pool.map: time per item as the items grow", "",
                 "| items | calls timed | suitkaise ns/item | mp.Pool ns/item | ratio |", "|---|---|---|---|---|"]
        for r in m["rows"]:
            lines.append(f"| {r['items']:,} | {r['rounds']} | {_g(r['suitkaise_ns_per_item'])} | "
                         f"{_g(r['multiprocessing_ns_per_item'])} | "
                         f"{r['suitkaise_ns_per_item'] / r['multiprocessing_ns_per_item']:.2f}x |")
        sp, sp5 = m["spread_from_1e4"], m["spread_from_1e5"]
        lines += ["", f"From 10^4 items up, the slowest per-item median is {sp['suitkaise']:.2f}x the fastest for "
                  f"suitkaise ({sp['multiprocessing']:.2f}x for mp.Pool); target <= {m['limit']}x: "
                  f"**{'met' if m['holds'] else 'not met'}**. From 10^5 up: {sp5['suitkaise']:.2f}x "
                  f"({sp5['multiprocessing']:.2f}x for mp.Pool). Each call also has a fixed cost, shared by "
                  "its items: most of the 10^3 row, and still visible at 10^4."]
        out["map"] = "\n".join(lines)
    if "imap" in data:
        im = data["imap"]
        ours = im["suitkaise"]
        lines = ["### Pool.imap over a long generator: the parent's memory", "",
                 "| contender | items consumed | seconds | RSS at start | peak RSS | most items yielded ahead of results |",
                 "|---|---|---|---|---|---|"]
        for key, name in IMAP_RUNS.items():
            r = im[key]
            lines.append(f"| {name} | {r['items']:,} | {r['seconds']:.1f} | {r['rss_start_mb']:.1f} MB | "
                         f"{r['peak_rss_mb']:.1f} MB | {r['max_lag']:,} |")
        how = "VmHWM, reset" if ours["peak_is_vmhwm"] else "VmHWM (which could not be reset)"
        lines += ["", f"Peak RSS is the parent's {how} just before the call; the lag (items the generator "
                  "has yielded minus results the caller has taken) is measured at every yield, where it peaks. "
                  f"The slow consumer sleeps 1 ms every {im['suitkaise_slow']['pause_every']} results, "
                  "slower than the workers. "
                  f"Target: <= {im['rss_limit_mb']:.0f} MB with a bounded lag (under half the items of the "
                  f"shorter run): **{'met' if im['holds'] else 'not met'}**."]
        out["imap"] = "\n".join(lines)
    if "pipe" in data:
        lines = ["### Pipe: one-way throughput by payload", "",
                 "| payload | messages per sample | Pipe, numpy GB/s | Pipe, bytes GB/s | raw os.write GB/s | "
                 "memcpy GB/s | Pipe numpy / os.write |",
                 "|---|---|---|---|---|---|---|"]
        for r in data["pipe"]["rows"]:
            lines.append(f"| {_size(r['bytes'])} | {r['messages']} | {r['suitkaise_gbps']:.2f} | "
                         f"{r['suitkaise_bytes_gbps']:.2f} | {r['os_write_gbps']:.2f} | {r['memcpy_gbps']:.2f} | "
                         f"{r['suitkaise_gbps'] / r['os_write_gbps']:.2f}x |")
        lines += ["", f"Both cross-process columns use a {data['pipe']['transport']}, parent to a long-lived "
                  "child that acknowledges each batch; memcpy is `np.copyto` of the same buffer into a "
                  "ready buffer in one process (for small payloads that is mostly the call's own cost)."]
        out["pipe"] = "\n".join(lines)
    if "share" in data:
        lines = ["### Processes updating one Share: `counter += 1`", "",
                 "| processes | updates each | Share updates/s | mp.Value + Lock | Manager().Value + Lock |",
                 "|---|---|---|---|---|"]
        for r in data["share"]["rows"]:
            lines.append(f"| {r['processes']} | {r['ops_per_process']} | {_g(r['suitkaise_ops'])} | "
                         f"{_g(r['mp_value_ops'])} | {_g(r['manager_value_ops'])} |")
        lines += ["", "Total updates per second, timed inside the workers from a common barrier "
                  "(process start and the first attach are not timed); medians of the rounds."]
        out["share"] = "\n".join(lines)
    return out


def render(data: dict[str, Any]) -> str:
    """All sections of one run as Markdown."""
    return "\n\n".join(sections(data).values()) + "\n"


def machine_line(data: dict[str, Any]) -> str:
    """One sentence: when, on what, how busy, in which mode."""
    m = data["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average_start"])
    end = ", ".join(f"{x:.1f}" for x in m.get("load_average_end", []))
    return (f"Measured {m['measured']} on {m['cpu']} ({m['cores']} cores, {m['memory_gb']} GB memory, "
            f"{m['platform']}), Python {m['python']}; load average {load} at the start"
            f"{f' and {end} at the end' if end else ''}. Mode: **{data['mode']}** (`{data['command']}`), "
            f"{data['seconds']:.0f} s in all.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    ap.add_argument("--only", default="imap,map,pipe,share",
                    help="comma-separated: imap, map, pipe, share (imap first: its RSS starts clean)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    parts = [p for p in args.only.split(",") if p]
    benches = {"map": bench_map, "imap": bench_imap, "pipe": bench_pipe, "share": bench_share}
    data: dict[str, Any] = {"machine": machine(), "mode": "quick" if args.quick else "full",
                            "command": " ".join(["python benchmarks/scaling.py", *sys.argv[1:]])}
    t0 = time.perf_counter()
    for part in parts:
        print(f"-- {part}", flush=True)
        data[part] = benches[part](args.quick)
    data["seconds"] = time.perf_counter() - t0
    data["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print("\n" + machine_line(data) + "\n\n" + render(data))

    from _results import headline

    if "map" in data:
        m = data["map"]
        top = m["rows"][-1]["items"]
        headline("scaling", f"Pool.map time/item spread, 10^4..{_pow10(top)} items (max/min)",
                 m["spread_from_1e4"]["suitkaise"], "(absolute)", None, f"<= {FLAT_LIMIT}x", m["holds"], "x")
    if "imap" in data:
        im = data["imap"]
        headline("scaling", f"Pool.imap over {_pow10(im['suitkaise']['items'])} items: parent peak RSS",
                 im["suitkaise"]["peak_rss_mb"], "(absolute)", None, f"<= {RSS_LIMIT_MB:.0f} MB", im["holds"], "MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
