"""Record a real Pool run with a crash in it, and draw its timeline for the docs.

    python scripts/pool_timeline.py            # record + draw
    python scripts/pool_timeline.py --draw     # draw again from the recorded JSON

Recording: a ``Pool(2)`` maps a task over 12 items; item 5 kills its worker
(``os._exit``) halfway, so the call raises ``ProcessError``; the caller then
maps the items that did not finish again, and the pool starts a replacement
worker for them. Each task appends "start"/"end" lines (pid, item,
``time.monotonic()``, one clock for every process on Linux) to a file of its
own process; the caller notes when each call started and when the error
arrived. Everything drawn comes from those records
(benchmarks/results/pool-timeline.json). The Pool itself records nothing
here: this is what a user can see from the outside.

Needs matplotlib (``pip install -r docs/requirements-plots.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "results" / "pool-timeline.json"
IMAGE = ROOT / "docs" / "images" / "pool-timeline.png"
CRASH_ITEM = 5
ITEMS = list(range(12))


def task(args: tuple[str, int]) -> int:
    """Work for 40-100 ms, writing when it starts and ends; item CRASH_ITEM dies halfway."""
    log_dir, item = args
    path = os.path.join(log_dir, str(os.getpid()))
    with open(path, "a") as f:
        f.write(f"start {item} {time.monotonic()}\n")
    duration = 0.04 + 0.02 * (item % 4)
    if item == CRASH_ITEM:
        time.sleep(duration / 2)
        os._exit(1)
    time.sleep(duration)
    with open(path, "a") as f:
        f.write(f"end {item} {time.monotonic()}\n")
    return item


def record() -> dict[str, Any]:
    """Run the two calls and return what the tasks and the caller wrote down."""
    from suitkaise.processing import Pool, ProcessError

    calls: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sk-timeline-") as log_dir, Pool(2) as pool:
        pool.map(task, [(log_dir, -1), (log_dir, -2)])  # start both workers before the clock matters
        for name in os.listdir(log_dir):
            os.unlink(os.path.join(log_dir, name))
        todo = ITEMS
        for _attempt in range(3):
            call: dict[str, Any] = {"items": todo, "start": time.monotonic()}
            try:
                pool.map(task, [(log_dir, i) for i in todo])
                call["end"] = time.monotonic()
            except ProcessError as err:
                call["end"] = time.monotonic()
                call["error"] = f"{type(err).__name__}: {err}"
            calls.append(call)
            if "error" not in call:
                break
            # Like a user would: map again what did not finish, leaving out the item that crashed.
            records = [line.split() for line in _lines(log_dir)]
            done = {int(item) for _, what, item, _ in records if what == "end"}
            todo = [i for i in ITEMS if i not in done and i != CRASH_ITEM]
        else:
            raise RuntimeError(f"the retry failed too: {calls[-1]['error']}")
        tasks: dict[tuple[int, int], dict[str, Any]] = {}
        for line in _lines(log_dir):
            pid, what, item, t = line.split()
            entry = tasks.setdefault((int(pid), int(item)), {"pid": int(pid), "item": int(item)})
            entry.setdefault(what, float(t))  # the first run of an item per worker
    return {
        "recorded": time.strftime("%Y-%m-%d"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "crash_item": CRASH_ITEM,
        "calls": calls,
        "tasks": sorted(tasks.values(), key=lambda e: e["start"]),
    }


def _lines(log_dir: str) -> list[str]:
    out = []
    for name in os.listdir(log_dir):
        with open(os.path.join(log_dir, name)) as f:
            out += [f"{name} {line}" for line in f.read().splitlines()]
    return out


def _ranges(items: list[int]) -> str:
    """[3, 6, 7, 8] -> '3, 6-8'."""
    runs: list[list[int]] = []
    for i in items:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def draw(run: dict[str, Any], out: Path) -> None:
    """One lane per worker process, one bar per item; the crash and the replacement marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = run["calls"][0]["start"]

    def ms(t: float) -> float:
        return (t - t0) * 1000

    pids = sorted({e["pid"] for e in run["tasks"]}, key=lambda p: min(e["start"] for e in run["tasks"] if e["pid"] == p))
    first_error = next((c["end"] for c in run["calls"] if "error" in c), None)
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.9 * len(pids)))
    for lane, pid in enumerate(pids):
        mine = [e for e in run["tasks"] if e["pid"] == pid]
        replacement = first_error is not None and min(e["start"] for e in mine) > first_error
        for e in mine:
            start = ms(e["start"])
            call = next(c for c in run["calls"] if c["start"] <= e["start"] <= c["end"])
            if "end" in e:
                # Finished after its call had already raised: the result was thrown away.
                dropped = "error" in call and e["end"] > call["end"]
                ax.barh(lane, ms(e["end"]) - start, left=start, height=0.6, edgecolor="white",
                        color="#c7d9d8" if dropped else "#76b7b2", hatch="//" if dropped else None)
                label = f"{e['item']} (result dropped)" if dropped else str(e["item"])
                ax.text(start + (ms(e["end"]) - start) / 2, lane, label, ha="center", va="center", fontsize=7)
            else:  # started, never ended: the worker died inside it; drawn up to the caller's error
                died = call["end"]
                ax.barh(lane, ms(died) - start, left=start, height=0.6, color="#e15759", edgecolor="white")
                ax.text(start + (ms(died) - start) / 2, lane, str(e["item"]), ha="center", va="center",
                        fontsize=8, color="white")
                ax.plot(ms(died), lane, marker="X", color="black", markersize=9)
                ax.text(start, lane - 0.42, f"item {e['item']}: os._exit(1); X = the caller gets ProcessError",
                        va="top", fontsize=7, color="#b22")
        label = f"worker pid {pid}" + ("\n(replacement)" if replacement else "")
        ax.text(-2, lane, label, ha="right", va="center", fontsize=8)
    for n, call in enumerate(run["calls"], 1):
        ax.axvspan(ms(call["start"]), ms(call["end"]), color="#bbb" if n % 2 else "#ddd", alpha=0.25, lw=0)
        what = "all results returned"
        if "error" in call:
            what = call["error"].split(":")[0] + f" (the worker died running item {run['crash_item']})"
        ax.text(ms(call["start"]) + 2, len(pids) - 0.35 + 0.45 * (n % 2),
                f"call {n}: map over items {_ranges(call['items'])}\n-> {what}", fontsize=7, va="bottom")
    ax.set_yticks([])
    ax.set_ylim(-0.9, len(pids) + 0.7)
    ax.set_xlabel("ms since the first call started")
    ax.set_title(
        f"A Pool(2) run: item {run['crash_item']} kills its worker; the caller maps what did not finish again\n"
        f"recorded {run['recorded']}, Python {run['python']}, {run['cpus']} CPUs, by scripts/pool_timeline.py",
        fontsize=9,
    )
    ax.margins(x=0.02)
    fig.subplots_adjust(left=0.16, right=0.98, top=0.82, bottom=0.14)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draw", action="store_true", help="draw from the recorded JSON; run nothing")
    args = parser.parse_args()
    if not args.draw:
        DATA.write_text(json.dumps(record(), indent=1) + "\n")
        print(f"wrote {DATA.relative_to(ROOT)}")
    draw(json.loads(DATA.read_text()), IMAGE)
    print(f"wrote {IMAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
