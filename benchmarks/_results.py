"""Headline rows shared by every benchmark script, for ``run_all.py``.

A script calls :func:`headline` for each target it checks; when the
environment variable ``SK_BENCH_JSON`` names a file, the rows are appended
to it as JSON lines at exit. Run on its own, a script just prints as usual.
"""

from __future__ import annotations

import atexit
import json
import os
from typing import Any

_ROWS: list[dict[str, Any]] = []


def headline(
    benchmark: str,
    case: str,
    ours: float,
    anchor: str,
    anchor_value: float | None,
    target: str,
    passed: bool,
    unit: str = "ms",
) -> None:
    """Record one result: ``ours`` against ``anchor`` (same unit), and whether ``target`` is met."""
    ratio = ours / anchor_value if anchor_value else None
    _ROWS.append({
        "benchmark": benchmark, "case": case, "ours": ours, "anchor": anchor,
        "anchor_value": anchor_value, "ratio": ratio, "target": target,
        "passed": passed, "unit": unit,
    })


def _flush() -> None:
    path = os.environ.get("SK_BENCH_JSON")
    if not path or not _ROWS:
        return
    with open(path, "a") as f:
        for row in _ROWS:
            f.write(json.dumps(row) + "\n")


atexit.register(_flush)
