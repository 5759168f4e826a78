"""Run a target in several real processes and require that each one exits cleanly."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_processes(target: Callable[..., Any], args_list: Sequence[tuple[Any, ...]], timeout: float = 110.0) -> None:
    """Start one process (current start method) per ``args`` tuple, wait for all of them
    within ``timeout`` seconds in total, kill any still running, and assert that every one
    exited with code 0 (nothing outlives the call)."""
    ctx = multiprocessing.get_context()
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    codes = [p.exitcode for p in procs]
    assert codes == [0] * len(procs), f"child exit codes {codes} (a process killed at the timeout shows -9)"
