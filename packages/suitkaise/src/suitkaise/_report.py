"""``python -m suitkaise report``: a timeline of what a Pool did, from a real run.

::

    suitkaise report script.py ──► python script.py   (SK_POOL_TRACE=trace file)
                                     caller, manager, workers append events
                                 ◄── trace file ──► timeline (SVG or HTML) + a summary

The Pool records only when ``SK_POOL_TRACE`` names a file (see
``suitkaise.processing._trace``): calls, workers started, items started and
finished (in the worker, on the machine's monotonic clock) and workers that
died, with their exit. This module reads those events and draws one lane per
worker process, one bar per item, the crash and its replacement marked. The
picture is plain SVG (no plotting library needed); ``.html`` wraps it with the
summary.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Timeline", "load", "main", "render_html", "render_svg", "summary"]

ENV = "SK_POOL_TRACE"  # the name suitkaise.processing._trace reads


@dataclass
class Bar:
    pid: int
    call: int  # 1-based call number
    item: int
    start: float
    end: float | None = None  # None: never finished
    died: str | None = None  # the worker died running it: how


@dataclass
class Call:
    number: int
    name: str
    start: float
    end: float | None = None
    error: str | None = None


@dataclass
class Timeline:
    """What one trace says: calls, workers (in order of appearance), item bars, deaths."""

    calls: list[Call] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)
    started: dict[int, float] = field(default_factory=dict)
    bars: list[Bar] = field(default_factory=list)
    deaths: list[dict[str, Any]] = field(default_factory=list)

    @property
    def t0(self) -> float:
        times = [c.start for c in self.calls] + [b.start for b in self.bars] + list(self.started.values())
        return min(times) if times else 0.0

    @property
    def t1(self) -> float:
        times = [c.end or c.start for c in self.calls] + [b.end or b.start for b in self.bars]
        times += [d["t"] for d in self.deaths]
        return max(times) if times else 0.0

    def dropped(self, bar: Bar) -> bool:
        """Finished after its call had already raised: nobody got the result."""
        call = self.calls[bar.call - 1]
        return bool(call.error) and call.end is not None and bar.end is not None and bar.end > call.end

    def replacement(self, pid: int) -> bool:
        """A worker started after another one died."""
        return any(d["t"] <= self.started.get(pid, float("inf")) for d in self.deaths)


def load(path: str) -> Timeline:
    """Read a trace file written by a Pool with ``SK_POOL_TRACE`` set."""
    events = []
    with open(path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a process killed mid-write
    events.sort(key=lambda e: e["t"])
    tl = Timeline()
    calls: dict[int, Call] = {}
    open_bars: dict[tuple[int, int, int], Bar] = {}

    def lane(pid: int, t: float) -> None:
        if pid not in tl.workers:
            tl.workers.append(pid)
            tl.started.setdefault(pid, t)

    for e in events:
        kind, t = e["kind"], e["t"]
        if kind == "call":
            calls[e["job"]] = Call(len(calls) + 1, e["name"], t)
        elif kind == "call-end" and e["job"] in calls:
            calls[e["job"]].end, calls[e["job"]].error = t, e.get("error")
        elif kind == "worker":
            tl.started[e["worker"]] = t
            lane(e["worker"], t)
        elif kind == "item" and e["job"] in calls:
            lane(e["pid"], t)
            bar = Bar(e["pid"], calls[e["job"]].number, e["item"], t)
            open_bars[(e["pid"], e["job"], e["item"])] = bar
            tl.bars.append(bar)
        elif kind == "item-end":
            bar_done = open_bars.pop((e["pid"], e["job"], e["item"]), None)
            if bar_done is not None:
                bar_done.end = t
        elif kind == "death":
            tl.deaths.append(e)
            for key, bar in list(open_bars.items()):
                if key[0] == e["worker"]:
                    bar.end, bar.died = t, e["exit"]
                    del open_bars[key]
    tl.calls = sorted(calls.values(), key=lambda c: c.number)
    return tl


def _ranges(items: list[int]) -> str:
    """[3, 6, 7, 8] -> '3, 6-8'."""
    runs: list[list[int]] = []
    for i in sorted(items):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def summary(tl: Timeline) -> str:
    """A few lines a person reads before the picture: calls, workers and crashes."""
    crashes = [b for b in tl.bars if b.died]
    lines = [
        f"{len(tl.calls)} call(s), {len(tl.workers)} worker process(es), "
        f"{sum(b.end is not None and not b.died for b in tl.bars)} item(s) finished, {len(crashes)} crash(es)"
    ]
    for c in tl.calls:
        took = f"{(c.end - c.start) * 1000:.0f} ms" if c.end is not None else "did not end"
        lines.append(f"  call {c.number}: Pool.{c.name}, {took}" + (f", raised {c.error}" if c.error else ""))
    for n, pid in enumerate(tl.workers, 1):
        by_call: dict[int, list[int]] = {}
        for b in tl.bars:
            if b.pid == pid and not b.died:
                by_call.setdefault(b.call, []).append(b.item)
        ran = "; ".join(f"call {c}: {'items' if len(items) > 1 else 'item'} {_ranges(items)}"
                        for c, items in sorted(by_call.items())) or "no items"
        tag = " (replacement)" if tl.replacement(pid) else ""
        lines.append(f"  worker {n} (pid {pid}){tag}: {ran}")
    for b in crashes:
        lines.append(f"  crash: worker pid {b.pid} died running item {b.item} of call {b.call}: {b.died}")
    return "\n".join(lines)


_LANE, _TOP, _LEFT, _WIDTH = 34, 58, 250, 1100
_COLOURS = ("#76b7b2", "#4e79a7", "#f28e2b", "#59a14f")


def render_svg(tl: Timeline, title: str = "Pool timeline") -> str:
    """One lane per worker, one bar per item; red bars and X marks where a worker died."""
    t0, span = tl.t0, max(tl.t1 - tl.t0, 1e-3)
    scale = (_WIDTH - _LEFT - 20) / span

    def x(t: float) -> float:
        return _LEFT + (t - t0) * scale

    height = _TOP + _LANE * max(len(tl.workers), 1) + 75
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="10" y="18" font-size="14">{html.escape(title)}</text>',
    ]
    for c in tl.calls:  # shaded call spans, labelled on top
        end = c.end if c.end is not None else tl.t1
        shade = "#e8e8e8" if c.number % 2 else "#f3f3f3"
        out.append(f'<rect x="{x(c.start):.1f}" y="{_TOP - 22}" width="{max(x(end) - x(c.start), 1):.1f}" '
                   f'height="{_LANE * len(tl.workers) + 22}" fill="{shade}"/>')
        label = f"call {c.number}: {c.name}" + (" - raised" if c.error else "")
        out.append(f'<text x="{x(c.start) + 3:.1f}" y="{_TOP - 10}">{html.escape(label)}'
                   f'<title>{html.escape(c.error or "returned")}</title></text>')
    for lane, pid in enumerate(tl.workers):
        y = _TOP + lane * _LANE
        tag = " (replacement)" if tl.replacement(pid) else ""
        out.append(f'<text x="{_LEFT - 8}" y="{y + _LANE / 2 + 4:.1f}" text-anchor="end">'
                   f'worker {lane + 1} (pid {pid}){tag}</text>')
        for b in (b for b in tl.bars if b.pid == pid):
            end = b.end if b.end is not None else tl.t1
            colour = "#e15759" if b.died else _COLOURS[(b.call - 1) % len(_COLOURS)]
            fill = colour if b.end is not None else "none"
            what = f"item {b.item} (call {b.call}), {(end - b.start) * 1000:.1f} ms"
            what += f": the worker died, {b.died}" if b.died else ("" if b.end is not None else ": unfinished")
            opacity = 1.0
            if tl.dropped(b):
                opacity, what = 0.4, what + ": finished after its call had raised; result dropped"
            out.append(f'<rect x="{x(b.start):.1f}" y="{y + 5}" width="{max(x(end) - x(b.start), 0.5):.1f}" '
                       f'height="{_LANE - 10}" fill="{fill}" fill-opacity="{opacity}" stroke="{colour}" '
                       f'stroke-width="0.5"><title>{html.escape(what)}</title></rect>')
            if x(end) - x(b.start) > 14:
                out.append(f'<text x="{(x(b.start) + x(end)) / 2:.1f}" y="{y + _LANE / 2 + 4:.1f}" '
                           f'text-anchor="middle" font-size="9">{b.item}</text>')
            if b.died:
                cx, cy = x(end), y + _LANE / 2
                out.append(f'<path d="M{cx - 5:.1f},{cy - 5:.1f} L{cx + 5:.1f},{cy + 5:.1f} '
                           f'M{cx - 5:.1f},{cy + 5:.1f} L{cx + 5:.1f},{cy - 5:.1f}" stroke="black" stroke-width="2"/>')
                out.append(f'<text x="{cx + 8:.1f}" y="{cy + 4:.1f}" fill="#b22" font-size="10">'
                           f'item {b.item}: {html.escape(b.died)}</text>')
    axis_y = _TOP + _LANE * len(tl.workers) + 18
    for i in range(6):
        t = t0 + span * i / 5
        anchor = "end" if i == 5 else "middle"  # the last label must not run off the edge
        out.append(f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="{anchor}">{(t - t0) * 1000:.0f} ms</text>')
    legend = ("Time since the first event. Numbers: each item's position in its call; hover a bar for details.",
              "Pale: finished after its call had raised (result dropped). Red with X: the worker died running it.")
    for row, line in enumerate(legend):
        out.append(f'<text x="{_LEFT}" y="{axis_y + 20 + 15 * row}" fill="#555">{line}</text>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(tl: Timeline, title: str = "Pool timeline") -> str:
    """The SVG and the summary on one self-contained page."""
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<body style='font-family:sans-serif'>{render_svg(tl, title)}"
            f"<pre>{html.escape(summary(tl))}</pre></body>")


def write(tl: Timeline, out: str, title: str) -> None:
    """Write ``out`` as SVG, or as HTML when it ends with ``.html``."""
    text = render_html(tl, title) if out.endswith((".html", ".htm")) else render_svg(tl, title)
    with open(out, "w") as f:
        f.write(text)


def main(script: list[str], out: str, trace: str | None, source: str | None) -> int:
    """Run ``script`` with recording on (or read ``source``), write ``out``, print the summary."""
    code = 0
    if source is None:
        if not script:
            print("suitkaise report: give a script to run (or --from TRACE)", file=sys.stderr)
            return 2
        if trace is None:
            fd, trace = tempfile.mkstemp(prefix="sk-pool-trace-", suffix=".jsonl")
            os.close(fd)
            keep = False
        else:
            keep = True
            open(trace, "w").close()
        try:
            code = subprocess.run([sys.executable, *script], env=dict(os.environ, **{ENV: trace})).returncode
            tl = load(trace)
        finally:
            if not keep:
                os.unlink(trace)
        title = f"Pool timeline of {' '.join(script)}"
    else:
        tl = load(source)
        title = f"Pool timeline of {source}"
    if not tl.calls:
        print("suitkaise report: no Pool call was recorded (did the script use a Pool?)", file=sys.stderr)
        return code or 1
    write(tl, out, title)
    print(summary(tl))
    print(f"wrote {out}")
    return code
