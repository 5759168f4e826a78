"""Draw the benchmark ratios of the last ``run_all.py`` as the docs' chart.

    python benchmarks/plot.py     # reads benchmarks/results/headline.json
                                  # writes docs/images/benchmark-ratios.png

Needs matplotlib (``pip install -r docs/requirements-plots.txt``). Every bar is
one headline row: suitkaise's time (or size) divided by its anchor's, on a log
scale so that 0.01x and 7x both read; the grey tick is the row's target. Rows
with an absolute target (no anchor) have no ratio and are left out. Nothing
is typed in here: rerun ``run_all.py`` and then this script to refresh it.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COLOURS = {
    "cucumber": "#4e79a7", "pipe": "#f28e2b", "skprocess": "#e15759",
    "pool": "#76b7b2", "share": "#59a14f", "cluster": "#b07aa1",
}
IMAGE = ROOT / "docs" / "images" / "benchmark-ratios.png"
TARGET = re.compile(r"<=\s*([0-9.]+)\s*x")
VS = re.compile(r"\s*\(vs [^)]*\)$")  # "(vs the anchor)" in a case name: the label's second line says it


def target_ratio(target: str) -> float | None:
    """The ratio a row must stay under (``"<= 1.5x"`` -> 1.5), or None for an absolute target."""
    match = TARGET.match(target)
    return float(match.group(1)) if match else None


def plot(run: dict[str, Any], out: Path) -> None:
    """Write the horizontal bar chart of ``run["rows"]`` (those with a ratio) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in run["rows"] if r["ratio"] is not None]
    rows.reverse()  # matplotlib draws the first bar at the bottom
    labels = [f"{r['benchmark']}: {VS.sub('', r['case'])}\nvs {r['anchor']}" for r in rows]
    ratios = [max(r["ratio"], 1e-3) for r in rows]  # a 0.0x ratio still gets a visible bar
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
    bars = ax.barh(range(len(rows)), ratios, color=[COLOURS.get(r["benchmark"], "#999") for r in rows])
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    for i, (row, bar) in enumerate(zip(rows, bars, strict=True)):
        goal = target_ratio(row["target"])
        if goal is not None:
            ax.plot([goal, goal], [i - 0.42, i + 0.42], color="#555", linewidth=2.5)
        mark = "" if row["passed"] else "  MISSED TARGET"
        ratio = row["ratio"]
        text = f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"
        ax.text(max(bar.get_width(), goal or 0) * 1.15, i, text + mark, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7.5)
    ax.set_xlim(min(ratios) / 2, max(max(ratios), 1.0) * 6)
    note = f"\ndata: {run['note']}" if run.get("note") else ""
    ax.set_xlabel(f"suitkaise / anchor (log scale; left of the black line = faster or smaller than the anchor){note}",
                  fontsize=8)
    load = ", ".join(f"{x:.1f}" for x in run.get("load_average", []))
    ax.set_title(
        f"suitkaise against its anchors: {run['measured']}, {run['cpus']} CPUs"
        f"{f' (load average {load})' if load else ''}, Python {run['python']}\n"
        f"one interleaved run of `{run['command']}`; grey tick = the row's target",
        fontsize=9,
    )
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "results" / "headline.json")
    parser.add_argument("--out", type=Path, default=IMAGE)
    args = parser.parse_args()
    plot(json.loads(args.data.read_text()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
