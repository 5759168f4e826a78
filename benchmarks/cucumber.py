"""Benchmark: suitkaise.cucumber against pickle, cloudpickle and dill, same run, interleaved.

Everything happens in this one process (no children), except the import-cost
part, which starts short-lived fresh interpreters one after the other and waits
for each of them::

    this process: for each round, for each case, for each contender (rotated order)
                      t0 -> serialize -> t1 -> deserialize -> t2     (gc off while timed)
    import cost:  python -c pass | python -c "import cloudpickle"
                  | python -c "import suitkaise.cucumber"           (interleaved, medians)
                  then python -X importtime -c "import suitkaise.cucumber" (a few runs)
                  (children may write and read .pyc files, as an installed package has
                  them, even when PYTHONDONTWRITEBYTECODE is set here)

Cases:
  dict 10k          dict of 10 000 small str keys -> small ints / short strings
  1k dataclasses    1 000 instances of a dataclass defined in this script (__main__)
  numpy 10 MB       a 10 MB float64 array (in-band: no buffer_callback)
  graph ~1.1k       a 1 111-node tree: every node holds its parent and a children list
  closure + lambda  a closure over a __main__ function's local plus a __main__ lambda

Contenders: pickle (protocol 5), cloudpickle, dill and cucumber (all at protocol 5).
pickle carries __main__ classes by *reference* (fine inside this process, useless in
a fresh interpreter): such cells are marked "r"; cells marked "c" rebuilt a new copy
of a __main__ class (so isinstance against the original fails). A contender that
cannot carry a case prints "fails". Every round trip is checked for equality before timing starts.

Prints round-trip medians (serialize + deserialize), the serialize / deserialize
split, output sizes, and per row the ratios cucumber / cloudpickle for time and
size against the targets (time <= 1.5x, size <= 1.1x) with PASS/FAIL; then the
cost of `import suitkaise.cucumber` over a bare interpreter (target <= 60 ms) and
the biggest modules it imports.

Run: python benchmarks/cucumber.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from typing import Any

import cloudpickle
from _results import headline

from suitkaise import cucumber

try:
    import numpy as np
except ImportError:  # pragma: no cover - optional anchor
    np = None  # type: ignore[assignment]

try:
    import dill  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - optional anchor
    dill = None

TIME_TARGET = 1.5  # cucumber / cloudpickle round-trip time
SIZE_TARGET = 1.1  # cucumber / cloudpickle output size
IMPORT_TARGET_MS = 60.0
SAMPLE_NS = 4_000_000  # aim for >= 4 ms per timed sample (inner repeats for tiny cases)


# -- the objects ----------------------------------------------------------------


@dataclass
class Item:
    """A small dataclass that lives in __main__ (pickle can only carry it by reference)."""

    ident: int
    name: str
    score: float
    tags: list[str] = field(default_factory=list)


class Node:
    """Tree node with a back reference to its parent: every edge is a cycle."""

    __slots__ = ("children", "parent", "value")

    def __init__(self, value: int, parent: Node | None = None) -> None:
        self.value = value
        self.parent = parent
        self.children: list[Node] = []
        if parent is not None:
            parent.children.append(self)

    # __slots__ without __getstate__ pickles fine at protocol >= 2.


OFFSET = 7


def make_scaler(factor: int) -> Callable[[int], int]:
    """Return a closure over ``factor`` (defined in __main__, so not importable by name)."""

    def scale(x: int) -> int:
        return x * factor + OFFSET

    return scale


def build_dict() -> dict[str, Any]:
    return {f"key{i}": (i if i % 2 else f"v{i}") for i in range(10_000)}


def build_items() -> list[Item]:
    return [Item(i, f"item{i}", i * 0.5, ["a", "b"] if i % 3 else []) for i in range(1_000)]


def build_array() -> Any:
    return np.random.default_rng(0).random(10 * 1024 * 1024 // 8)


def build_graph() -> Node:
    root = Node(0)
    n = 1
    for _ in range(10):
        a = Node(n, root)
        n += 1
        for _ in range(10):
            b = Node(n, a)
            n += 1
            for _ in range(10):
                Node(n, b)
                n += 1
    return root


def build_functions() -> tuple[Callable[[int], int], Callable[[int], int]]:
    return (make_scaler(3), lambda x: x * x - OFFSET)


# -- equality checks (a round trip must give an equivalent object) ------------------


def _graph_signature(root: Node) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        parent_value = -1 if node.parent is None else node.parent.value
        if node.parent is not None and not any(c is node for c in node.parent.children):
            raise AssertionError(f"node {node.value}: parent pointer is not the same object")
        out.append((node.value, parent_value, len(node.children)))
        stack.extend(node.children)
    return out


def same_graph(a: Node, b: Node) -> bool:
    return _graph_signature(a) == _graph_signature(b)


def same_functions(a: Any, b: Any) -> bool:
    return all(f(x) == g(x) for f, g in zip(a, b, strict=True) for x in range(-3, 4))


def same_items(a: list[Item], b: list[Any]) -> bool:
    """Field-by-field (dataclass ``==`` also demands the very same class object)."""
    return [(type(x).__qualname__, astuple(x)) for x in a] == [
        (type(y).__qualname__, astuple(y)) for y in b
    ]


def same_array(a: Any, b: Any) -> bool:
    return bool(a.dtype == b.dtype and np.array_equal(a, b))


@dataclass
class Case:
    name: str
    build: Callable[[], Any]
    same: Callable[[Any, Any], bool]
    main_types: bool = False  # holds classes/functions defined in __main__
    main_class: Callable[[Any], type] | None = None  # the __main__ class inside the object
    needs: str = ""  # optional module needed ("numpy")


CASES = [
    Case("dict 10k", build_dict, lambda a, b: a == b),
    Case("1k dataclasses", build_items, same_items, True, lambda o: type(o[0])),
    Case("numpy 10 MB", build_array, same_array, needs="numpy"),
    Case("graph ~1.1k", build_graph, same_graph, True, type),
    Case("closure + lambda", build_functions, same_functions, main_types=True),
]


# -- the contenders ------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    by_reference_main: bool = False  # carries __main__ classes/functions by name


def contenders() -> list[Contender]:
    out = [
        Contender("pickle", lambda o: pickle.dumps(o, protocol=5), pickle.loads, True),
        Contender("cloudpickle", lambda o: cloudpickle.dumps(o, protocol=5), cloudpickle.loads),
    ]
    if dill is not None:
        out.append(Contender("dill", lambda o: dill.dumps(o, protocol=5), dill.loads))
    out.append(Contender("cucumber", cucumber.serialize, cucumber.deserialize))
    return out


# -- measuring -----------------------------------------------------------------------


@dataclass
class Cell:
    """What one contender did on one case."""

    status: str = "ok"  # ok | fails | skipped
    note: str = ""
    size: int = 0
    reps: int = 1
    rt: list[float] = field(default_factory=list)  # seconds per round trip, one per sample
    ser: list[float] = field(default_factory=list)
    de: list[float] = field(default_factory=list)


def check(case: Case, con: Contender, obj: Any) -> Cell:
    """One untimed round trip: does this contender carry this case at all?"""
    try:
        data = con.dumps(obj)
        back = con.loads(data)
        if not case.same(obj, back):
            return Cell("fails", "round trip differs")
    except Exception as exc:
        return Cell("fails", f"{type(exc).__name__}: {str(exc)[:70]}")
    note = "by reference" if (con.by_reference_main and case.main_types) else ""
    if case.main_class is not None and case.main_class(back) is not case.main_class(obj):
        note = "class copy"
    return Cell("ok", note, size=len(data))


def sample(con: Contender, obj: Any, reps: int) -> tuple[float, float]:
    """``reps`` round trips; returns (serialize, deserialize) seconds per round trip."""
    dumps, loads = con.dumps, con.loads
    ser = de = 0
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        data = dumps(obj)
        t1 = time.perf_counter_ns()
        loads(data)
        t2 = time.perf_counter_ns()
        ser += t1 - t0
        de += t2 - t1
    return ser / reps / 1e9, de / reps / 1e9


def run_serialization(
    rounds: int,
) -> tuple[list[Case], list[Contender], dict[tuple[str, str], Cell]]:
    cons = contenders()
    cases: list[Case] = []
    objs: dict[str, Any] = {}
    cells: dict[tuple[str, str], Cell] = {}
    for case in CASES:
        if case.needs == "numpy" and np is None:
            print(f"skipping {case.name!r}: numpy is not installed")
            continue
        cases.append(case)
        objs[case.name] = case.build()
        for con in cons:
            cell = check(case, con, objs[case.name])
            cells[case.name, con.name] = cell
        # Inner repeats so a sample lasts >= SAMPLE_NS for the fastest contender.
        fastest = min(
            (
                sum(sample(con, objs[case.name], 1))
                for con in cons
                if cells[case.name, con.name].status == "ok"
            ),
            default=1.0,
        )
        reps = max(1, int(SAMPLE_NS / 1e9 / max(fastest, 1e-9)))
        for con in cons:
            cells[case.name, con.name].reps = reps
    if dill is None:
        print("dill is not installed: its column is left out")

    gc_was_enabled = gc.isenabled()
    try:
        for r in range(rounds):
            for case in cases:
                obj = objs[case.name]
                k = r % len(cons)
                for con in cons[k:] + cons[:k]:  # round-robin, rotated start
                    cell = cells[case.name, con.name]
                    if cell.status != "ok":
                        continue
                    gc.collect()
                    gc.disable()
                    try:
                        s, d = sample(con, obj, cell.reps)
                    finally:
                        if gc_was_enabled:
                            gc.enable()
                    cell.ser.append(s)
                    cell.de.append(d)
                    cell.rt.append(s + d)
    finally:
        if gc_was_enabled:
            gc.enable()
    return cases, cons, cells


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else (f"{ms:.2f}" if ms < 100 else f"{ms:.0f}")


def fmt_size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else (f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} B")


def print_tables(
    cases: list[Case], cons: list[Contender], cells: dict[tuple[str, str], Cell]
) -> bool:
    w0, w = 18, 14
    names = [c.name for c in cons]

    def cell_text(cell: Cell, pick: Callable[[Cell], str]) -> str:
        if cell.status != "ok":
            return cell.status
        return pick(cell) + {"by reference": " r", "class copy": " c"}.get(cell.note, "")

    def table(title: str, pick: Callable[[Cell], str]) -> None:
        print(f"\n{title}")
        print(f"{'case':<{w0}}" + "".join(f"{n:>{w}}" for n in names))
        for case in cases:
            row = f"{case.name:<{w0}}"
            for n in names:
                cell = cells[case.name, n]
                row += f"{cell_text(cell, pick):>{w}}"
            print(row)

    table(
        "round trip (serialize + deserialize), median ms", lambda c: fmt_ms(statistics.median(c.rt))
    )
    table("serialize, median ms", lambda c: fmt_ms(statistics.median(c.ser)))
    table("deserialize, median ms", lambda c: fmt_ms(statistics.median(c.de)))
    table("output size", lambda c: fmt_size(c.size))

    print("\nr = class/function carried by reference (a fresh interpreter could not load it)")
    print("c = rebuilt a new copy of the __main__ class (isinstance against the original fails)")
    failures = [(k, c) for k, c in cells.items() if c.status == "fails"]
    for (case_name, con_name), cell in failures:
        print(f"fails: {con_name} on {case_name!r}: {cell.note}")

    print(f"\ncucumber / cloudpickle (targets: time <= {TIME_TARGET}x, size <= {SIZE_TARGET}x)")
    print(f"{'case':<{w0}}{'time':>8}{'':>6}{'size':>8}{'':>6}")
    ok_all = True
    for case in cases:
        cu, cp = cells[case.name, "cucumber"], cells[case.name, "cloudpickle"]
        if cu.status != "ok" or cp.status != "ok":
            print(f"{case.name:<{w0}}  cucumber {cu.status}, cloudpickle {cp.status}")
            ok_all = ok_all and cu.status == "ok"
            continue
        tr = statistics.median(cu.rt) / statistics.median(cp.rt)
        sr = cu.size / cp.size
        tp, sp = tr <= TIME_TARGET, sr <= SIZE_TARGET
        ok_all = ok_all and tp and sp
        print(
            f"{case.name:<{w0}}{tr:>7.2f}x {'PASS' if tp else 'FAIL':<5}"
            f"{sr:>7.3f}x {'PASS' if sp else 'FAIL':<5}"
        )
        headline("cucumber", f"{case.name}: round trip", statistics.median(cu.rt) * 1e3,
                 "cloudpickle", statistics.median(cp.rt) * 1e3, f"<= {TIME_TARGET}x", tp)
        headline("cucumber", f"{case.name}: size", cu.size / 1e3, "cloudpickle", cp.size / 1e3,
                 f"<= {SIZE_TARGET}x", sp, "kB")
    rounds = max((len(c.rt) for c in cells.values()), default=0)
    reps = {case.name: cells[case.name, "cloudpickle"].reps for case in cases}
    print(f"({rounds} rounds; round trips per sample: {reps})")
    return ok_all


# -- import cost -------------------------------------------------------------------


IMPORT_CMDS = {
    "bare (pass)": "pass",
    "import cloudpickle": "import cloudpickle",
    "import suitkaise.cucumber": "import suitkaise.cucumber",
}


# The children may write and then read bytecode caches (.pyc), as an installed package
# has them (pip compiles on install): with PYTHONDONTWRITEBYTECODE set in the
# environment, an editable checkout that was never compiled recompiles every module
# of suitkaise at each import (about 30 ms more in our dev venv than a clean venv).
# run_imports makes one untimed import first, which writes the caches.
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=_CHILD_ENV,
    )


def run_imports(runs: int, importtime_runs: int) -> bool:
    """Wall and CPU (user + sys of the child) time of fresh interpreters, interleaved.

    The verdict uses CPU time: on a shared, loaded machine the wall time of a
    40 ms process mostly measures the queue for a core, CPU time much less so.
    """
    wall: dict[str, list[float]] = {k: [] for k in IMPORT_CMDS}
    cpu: dict[str, list[float]] = {k: [] for k in IMPORT_CMDS}
    items = list(IMPORT_CMDS.items())
    for _label, code in items:
        _run(code)  # untimed: writes any missing bytecode caches (see _CHILD_ENV)
    for r in range(runs):
        k = r % len(items)
        for label, code in items[k:] + items[:k]:
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            _run(code)
            wall[label].append(time.perf_counter() - t0)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[label].append(ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime)
    mw = {k: statistics.median(v) * 1e3 for k, v in wall.items()}
    mc = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
    bw, bc = mw["bare (pass)"], mc["bare (pass)"]
    print(
        f"\nimport cost: {runs} fresh interpreters each, interleaved, medians "
        f"(load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        "bytecode caches written and read, as in an installed package)"
    )
    print(f"  {'':<28}{'wall ms':>9}{'added':>9}{'cpu ms':>9}{'added':>9}")
    for label in IMPORT_CMDS:
        extra = label != "bare (pass)"
        print(
            f"  {label:<28}{mw[label]:9.1f}{(f'+{mw[label] - bw:.1f}' if extra else ''):>9}"
            f"{mc[label]:9.1f}{(f'+{mc[label] - bc:.1f}' if extra else ''):>9}"
        )
    added = mc["import suitkaise.cucumber"] - bc
    added_wall = mw["import suitkaise.cucumber"] - bw

    # -X importtime: per-module self/cumulative microseconds, medians over runs. Only the
    # lines after the interpreter's own `site` import count: those are what the -c
    # statement imported (what `python -c pass` also imports is left out).
    line_re = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
    self_us: dict[str, list[int]] = {}
    cum_us: dict[str, list[int]] = {}
    totals: list[int] = []
    for _ in range(importtime_runs):
        err = _run("import suitkaise.cucumber", "-X", "importtime").stderr
        rows = [
            (int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4))
            for m in line_re.finditer(err)
        ]
        site_at = max((i for i, r in enumerate(rows) if r[3] == "site" and r[2] == 1), default=-1)
        mine = rows[site_at + 1 :]
        totals.append(sum(r[1] for r in mine if r[2] == 1))  # top-level cumulative times
        for s, c, _indent, mod in mine:
            self_us.setdefault(mod, []).append(s)
            cum_us.setdefault(mod, []).append(c)
    print(
        f"  -X importtime, sum of what `import suitkaise.cucumber` imports: "
        f"{statistics.median(totals) / 1e3:.1f} ms (median of {len(totals)} runs; "
        f"module execution only: no interpreter start-up or shutdown), {len(self_us)} modules"
    )
    by_self = sorted(self_us, key=lambda m: statistics.median(self_us[m]), reverse=True)[:20]
    print("  biggest of those modules by self time (median us: self | cumulative):")
    for mod in by_self:
        print(
            f"    {statistics.median(self_us[mod]):>8.0f} | {statistics.median(cum_us[mod]):>8.0f}  {mod}"
        )
    ok = added <= IMPORT_TARGET_MS
    headline("cucumber", "import suitkaise.cucumber (added CPU time)", added, "bare interpreter",
             None, f"<= {IMPORT_TARGET_MS:.0f} ms", ok)
    print(
        f"  added by import suitkaise.cucumber: {added:.1f} ms CPU ({added_wall:.1f} ms wall) "
        f"(target <= {IMPORT_TARGET_MS:.0f} ms) {'PASS' if ok else 'FAIL'}"
    )
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="timed samples per case and contender (default 40, quick 8)",
    )
    ap.add_argument("--quick", action="store_true", help="few rounds and few import runs")
    ap.add_argument("--no-import", action="store_true", help="skip the import-cost part")
    args = ap.parse_args()
    rounds = args.rounds if args.rounds is not None else (8 if args.quick else 40)
    if rounds < 1:
        ap.error("--rounds must be >= 1")
    print(
        f"python {sys.version.split()[0]}, cloudpickle {cloudpickle.__version__}, "
        f"dill {getattr(dill, '__version__', 'missing')}, "
        f"numpy {getattr(np, '__version__', 'missing')}, cucumber {cucumber.__version__}"
    )
    cases, cons, cells = run_serialization(rounds)
    ok = print_tables(cases, cons, cells)
    if not args.no_import:
        runs = 8 if args.quick else 30
        ok = run_imports(runs, 3 if args.quick else 7) and ok
    print(f"\noverall: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
