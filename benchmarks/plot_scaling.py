"""Draw the scaling curves of the last ``scaling.py`` run as PNGs for docs/performance.md.

    python benchmarks/plot_scaling.py   # reads benchmarks/results/scaling.json, writes docs/images/scaling-*.png

Needs matplotlib (``pip install -r docs/requirements-plots.txt``). One chart per curve the
run measured: Pool.map time per item against items (log-log), the parent's RSS and the
generator's lead during the long Pool.imap, Pipe GB/s against payload with the raw os.write
and memcpy lines, and Share updates/s against processes. Nothing is typed in here: every
point comes from the JSON, and each title carries the machine and the mode of that run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "results" / "scaling.json"
IMAGES = ROOT / "docs" / "images"
OURS, ANCHOR, LIMIT, EXTRA = "#4e79a7", "#e15759", "#555555", "#59a14f"


def _subtitle(data: dict[str, Any]) -> str:
    m = data["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average_start"])
    return f"{m['measured']}, {m['cores']} cores (load {load}), Python {m['python']}, {data['mode']} run"


def _size(n: float) -> str:
    return f"{n / 2**30:g} GB" if n >= 2**30 else f"{n / 2**20:g} MB" if n >= 2**20 else f"{n / 2**10:g} KB"


def plot(data: dict[str, Any], out_dir: Path = IMAGES) -> list[Path]:
    """Write one PNG per measured curve into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    if "map" in data:
        rows = data["map"]["rows"]
        n = [r["items"] for r in rows]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot(n, [r["suitkaise_ns_per_item"] for r in rows], "o-", color=OURS, label="suitkaise Pool.map")
        ax.plot(n, [r["multiprocessing_ns_per_item"] for r in rows], "s--", color=ANCHOR,
                label="multiprocessing.Pool.map")
        big = [r["suitkaise_ns_per_item"] for r in rows if r["items"] >= 10**4]
        if big:
            lo = min(big)
            ax.axhspan(lo, lo * data["map"]["limit"], color=OURS, alpha=0.12,
                       label=f"target band from 10^4 up (min to {data['map']['limit']}x min)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items in one map call (2 workers, f(x) = x + 1)")
        ax.set_ylabel("time per item (ns, median)")
        ax.set_title(f"Pool.map: time per item as the items grow\n{_subtitle(data)}", fontsize=9)
        ax.grid(which="both", alpha=0.25)
        ax.legend(fontsize=8)
        save(fig, "scaling-pool-map.png")

    if "imap" in data:
        im = data["imap"]
        fig, (rss_ax, lag_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
        styles = {"suitkaise": (OURS, "-", "suitkaise Pool.imap"),
                  "multiprocessing": (ANCHOR, "-", "mp.Pool.imap(chunksize=1000)"),
                  "suitkaise_slow": (OURS, ":", "suitkaise, slow consumer"),
                  "multiprocessing_slow": (ANCHOR, ":", "mp.Pool, slow consumer")}
        for key, (colour, line, label) in styles.items():
            s = im.get(key, {}).get("samples")
            if not s:
                continue
            rss_ax.plot([x[0] for x in s], [x[1] for x in s], line, color=colour, label=label)
            lag_ax.plot([x[0] for x in s], [x[2] for x in s], line, color=colour, label=label)
        rss_ax.axhline(im["rss_limit_mb"], color=LIMIT, linewidth=1, label=f"{im['rss_limit_mb']:.0f} MB target")
        rss_ax.set_ylim(0, max(im["rss_limit_mb"] * 1.3, *(im[k]["peak_rss_mb"] * 1.1 for k in styles if k in im)))
        rss_ax.set_ylabel("parent RSS (MB)")
        lag_ax.set_ylim(bottom=0)
        lag_ax.set_ylabel("items yielded ahead of the results consumed")
        for ax in (rss_ax, lag_ax):
            ax.set_xscale("log")
            ax.set_xlabel("results consumed")
            ax.grid(which="both", alpha=0.25)
            ax.legend(fontsize=7)
        n = im["suitkaise"]["items"]
        items = f"10^{len(str(n)) - 1}" if n == 10 ** (len(str(n)) - 1) else f"{n:,}"
        fig.suptitle(f"Pool.imap over a {items}-item generator: parent memory and "
                     f"how far the input runs ahead\n{_subtitle(data)}", fontsize=9)
        save(fig, "scaling-pool-imap.png")

    if "pipe" in data:
        rows = data["pipe"]["rows"]
        size = [r["bytes"] for r in rows]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot(size, [r["suitkaise_gbps"] for r in rows], "o-", color=OURS, label="Pipe, numpy array")
        ax.plot(size, [r["suitkaise_bytes_gbps"] for r in rows], "^-", color="#76b7b2", label="Pipe, bytes")
        ax.plot(size, [r["os_write_gbps"] for r in rows], "s--", color=ANCHOR, label="raw os.write loop (socketpair)")
        ax.plot(size, [r["memcpy_gbps"] for r in rows], "d:", color=LIMIT, label="memcpy (np.copyto, one process)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(size, [_size(s) for s in size])
        ax.set_xlabel("payload per message")
        ax.set_ylabel("GB/s, one way (median)")
        ax.set_title(f"Pipe throughput by payload, parent -> child\n{_subtitle(data)}", fontsize=9)
        ax.grid(which="both", alpha=0.25)
        ax.legend(fontsize=8)
        save(fig, "scaling-pipe.png")

    if "share" in data:
        rows = data["share"]["rows"]
        procs = [r["processes"] for r in rows]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot(procs, [r["suitkaise_ops"] for r in rows], "o-", color=OURS, label="Share: share.counter += 1")
        ax.plot(procs, [r["mp_value_ops"] for r in rows], "s--", color=ANCHOR, label="mp.Value + Lock")
        ax.plot(procs, [r["manager_value_ops"] for r in rows], "d:", color=EXTRA, label="Manager().Value + Lock")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(procs, [str(p) for p in procs])
        ax.set_xlabel("processes updating the counter")
        ax.set_ylabel("total updates/s (median)")
        ax.set_title(f"One shared counter, more processes\n{_subtitle(data)}", fontsize=9)
        ax.grid(which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside: the lines fill the plot
        save(fig, "scaling-share.png")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out-dir", type=Path, default=IMAGES)
    args = parser.parse_args()
    for path in plot(json.loads(args.data.read_text()), args.out_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
