"""Record a real Pool run with a crash in it, and draw its timeline for the docs.

    python scripts/pool_timeline.py            # record + draw
    python scripts/pool_timeline.py --draw     # draw again from the recorded trace

Recording: a ``Pool(2)`` maps a task over 12 items; item 5 kills its worker
(``os._exit``) halfway, so the call raises ``ProcessError``; the caller then
maps the other items again, and the pool starts a replacement worker for them. The Pool records the run itself (``SK_POOL_TRACE``, the
mechanism behind ``python -m suitkaise report``) into
benchmarks/results/pool-timeline.jsonl, and ``suitkaise._report`` draws
docs/images/pool-timeline.svg from it: the same picture a user gets for their
own script with ``python -m suitkaise report script.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "benchmarks" / "results" / "pool-timeline.jsonl"
IMAGE = ROOT / "docs" / "images" / "pool-timeline.svg"
CRASH_ITEM = 5
ITEMS = list(range(12))


def task(item: int) -> int:
    """Work for 40-100 ms; item CRASH_ITEM kills its worker halfway."""
    duration = 0.04 + 0.02 * (item % 4)
    if item == CRASH_ITEM:
        time.sleep(duration / 2)
        os._exit(1)
    time.sleep(duration)
    return item


def scenario() -> None:
    """Runs with SK_POOL_TRACE set: the crash, then the other items again."""
    from suitkaise.processing import Pool, ProcessError

    with Pool(2) as pool:
        try:
            pool.map(task, ITEMS)
        except ProcessError:
            pass
        # Like a user would: map the other items again, leaving out the one that crashed.
        pool.map(task, [i for i in ITEMS if i != CRASH_ITEM])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draw", action="store_true", help="draw from the recorded trace; run nothing")
    parser.add_argument("--scenario", action="store_true", help=argparse.SUPPRESS)  # the recorded child
    args = parser.parse_args()
    if args.scenario:
        scenario()
        return
    if not args.draw:
        TRACE.write_text("")
        env = dict(os.environ, SK_POOL_TRACE=str(TRACE))
        subprocess.run([sys.executable, __file__, "--scenario"], env=env, check=True)
        print(f"wrote {TRACE.relative_to(ROOT)}")
    from suitkaise._report import load, write

    write(load(str(TRACE)), str(IMAGE),
          f"A Pool(2) run: item {CRASH_ITEM} kills its worker; the caller maps the other items again "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})")
    print(f"wrote {IMAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
