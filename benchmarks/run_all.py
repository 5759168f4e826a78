"""Run every benchmark and write one Markdown table of the headline results.

    python benchmarks/run_all.py            # full runs (several minutes)
    python benchmarks/run_all.py --quick    # fewer rounds

Each script prints its own detailed tables (kept in benchmarks/results/<name>.txt)
and records its headline rows through ``_results.headline``; this script
collects them into ``benchmarks/results/headline.json`` (the data, with the
machine and its load) and ``benchmarks/RESULTS.md``, and copies that table
into the README and docs/performance.md between the BENCHMARKS markers.
``python benchmarks/plot.py`` draws the docs' chart from the JSON. Ratios come
from one interleaved run on one machine: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    # name: (full args, quick args)
    "cucumber": ([], ["--quick"]),
    "pipe": ([], ["--reps", "7"]),
    "skprocess": ([], ["--rounds", "10", "--iterations", "50000"]),
    "pool": ([], ["--quick", "--rounds", "3"]),
    "share": ([], ["--quick"]),
    "cluster": ([], ["--quick"]),
    "share_redis": ([], ["--rounds", "3"]),
}
MARK = re.compile(r"<!-- BENCHMARKS:START -->.*?<!-- BENCHMARKS:END -->", re.S)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| benchmark | case | suitkaise | anchor | anchor value | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        lines.append(
            f"| {r['benchmark']} | {r['case']} | {fmt(r['ours'], r['unit'])} | {r['anchor']} | "  # type: ignore[arg-type]
            f"{fmt(r['anchor_value'], r['unit'])} | {ratio} | {r['target']} | "  # type: ignore[arg-type]
            f"{'yes' if r['passed'] else '**no**'} |"
        )
    return "\n".join(lines)


def header(run: dict[str, Any]) -> str:
    """The sentence above the table: when, where, how busy the machine was, which command."""
    load = ", ".join(f"{x:.1f}" for x in run["load_average"])
    return (
        f"Measured {run['measured']} on {run['machine']} with {run['cpus']} CPUs"
        f"{f' (load average {load} at the start)' if load else ''}, Python {run['python']}, `{run['command']}`. "
        "One interleaved run; ratios are ours / anchor (lower is better)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--no-write", action="store_true", help="print only; change no file")
    args = parser.parse_args()
    names = [n for n in (args.only.split(",") if args.only else SCRIPTS) if n]
    load_at_start = os.getloadavg()
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    fd, json_path = tempfile.mkstemp(prefix="sk-bench-", suffix=".jsonl")
    os.close(fd)
    failed_scripts = []
    try:
        for name in names:
            script = HERE / f"{name}.py"
            if not script.exists():
                print(f"-- {name}: no such benchmark, skipped")
                continue
            full, quick = SCRIPTS[name]
            cmd = [sys.executable, str(script), *(quick if args.quick else full)]
            print(f"-- running {' '.join(cmd[1:])}", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "SK_BENCH_JSON": json_path})
            (out_dir / f"{name}.txt").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                failed_scripts.append(name)
                print(f"   {name} exited {proc.returncode}; see {out_dir / f'{name}.txt'}")
        rows = [json.loads(line) for line in Path(json_path).read_text().splitlines() if line]
    finally:
        os.unlink(json_path)
    run = {
        "measured": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": f"python benchmarks/run_all.py{' --quick' if args.quick else ''}",
        "load_average": [round(x, 2) for x in load_at_start],
        "rows": rows,
    }
    body = f"{header(run)}\n\n{table(rows)}\n"
    print("\n" + body)
    if not args.no_write:
        (out_dir / "headline.json").write_text(json.dumps(run, indent=1) + "\n")
        (HERE / "RESULTS.md").write_text("# Benchmark results\n\n" + body)
        block = f"<!-- BENCHMARKS:START -->\n{body}<!-- BENCHMARKS:END -->"
        for target in (ROOT / "README.md", ROOT / "docs" / "performance.md"):
            if target.exists() and MARK.search(target.read_text()):
                target.write_text(MARK.sub(lambda _: block, target.read_text()))
                print(f"updated {target.relative_to(ROOT)}")
        try:
            import plot  # benchmarks/plot.py, beside this script
            plot.plot(run, plot.IMAGE)
            print(f"updated {plot.IMAGE.relative_to(ROOT)}")
        except ImportError:
            print("the chart needs matplotlib: pip install -r docs/requirements-plots.txt; python benchmarks/plot.py")
    return 1 if failed_scripts else 0


if __name__ == "__main__":
    sys.exit(main())
