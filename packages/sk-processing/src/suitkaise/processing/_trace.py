"""Opt-in recording of what a ``Pool`` did, for ``python -m suitkaise report``.

::

    caller thread ─ call start / call end ─┐
    manager thread ─ worker start / worker death ─┼─► $SK_POOL_TRACE (JSON lines, O_APPEND)
    worker processes ─ item start / item end ─┘

Off unless the environment variable ``SK_POOL_TRACE`` names a file when the
process starts (workers inherit it). Each event is one JSON object on one
line, written with a single ``os.write`` to a file opened with ``O_APPEND``,
so lines from every process interleave whole. Times are ``time.monotonic()``:
one clock for every process of the machine (Linux, macOS), so the parent's
and the workers' events line up. A worker that dies inside an item leaves its
"item" start without an end; the manager writes the "death" with the exit.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

__all__ = ["ENV", "Trace", "from_env"]

ENV = "SK_POOL_TRACE"


class Trace:
    """Appends events to one trace file (shared by threads and processes)."""

    __slots__ = ("_fd", "_pid", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    def event(self, kind: str, **fields: Any) -> None:
        """Write ``{"t": now, "pid": ..., "kind": kind, **fields}`` as one line; never raises."""
        pid = os.getpid()
        line = json.dumps({"t": time.monotonic(), "pid": pid, "kind": kind, **fields}, default=repr)
        try:
            if self._fd is None or self._pid != pid:  # opened per process: a forked copy reopens
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                self._pid = pid
            os.write(self._fd, (line + "\n").encode())
        except OSError:
            pass  # a trace must never break the work it records


def from_env() -> Trace | None:
    """The trace named by ``$SK_POOL_TRACE``, or ``None`` (recording off)."""
    path = os.environ.get(ENV)
    return Trace(path) if path else None
