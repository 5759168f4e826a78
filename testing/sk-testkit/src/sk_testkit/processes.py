"""Run a target in several real processes and require that each one exits cleanly."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psutil


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


def alive(pid: int) -> bool:
    """``pid`` is a running process (an exited one that is not reaped yet, a zombie, is not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def kill_and_wait(parent: subprocess.Popen[Any], pids: Iterable[int], limit: float = 5.0) -> tuple[list[int], float]:
    """SIGKILL ``parent``, then wait (up to ``limit`` seconds) for every process in ``pids``
    to be gone; the survivors and the seconds waited (the no-orphans tests)."""
    pids = list(pids)
    parent.kill()
    parent.wait(30)
    t0 = time.monotonic()
    while any(alive(pid) for pid in pids) and time.monotonic() - t0 < limit:
        time.sleep(0.01)
    return [pid for pid in pids if alive(pid)], time.monotonic() - t0
