"""Children that die with their parent: Linux's ``PR_SET_PDEATHSIG``.

Used by every process we start (``Skprocess`` children and ``Pool`` workers),
so that none outlives a parent that was SIGKILLed, even while its main thread
holds the GIL in a long C call (where a watchdog thread could not run).

The signal fires when the *thread* that forked the child ends, not the
process: callers only ask for it when that thread outlives the child (the
main thread, a Pool's manager thread, which stops its workers before it
returns).
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

__all__ = ["preload", "set_pdeathsig"]

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)  # a plain int: ctypes converts it with less work in the child
_prctl: Any = None  # libc's prctl, looked up once (ctypes builds a new function pointer per lookup)


def _load() -> Any:
    global _prctl
    if _prctl is None:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def preload() -> None:
    """Look up ``prctl`` in the parent before forking, so that forked children find it
    ready (a ``dlopen`` and a symbol lookup less in each child's start). Called only when
    processes are started."""
    try:
        _load()
    except (OSError, AttributeError):  # not available: each child finds out for itself
        pass


def set_pdeathsig(expected_ppid: int) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has.

    ``expected_ppid`` is the parent's pid as the parent saw it before starting us
    (0: unknown); a different ``os.getppid()`` after the call means the parent died
    first and we were re-parented. Returns False where unavailable (not Linux):
    the caller then watches its pipe's EOF instead.
    """
    try:
        if _load()(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # not Linux
        return False
    if expected_ppid and os.getppid() != expected_ppid:
        os._exit(1)
    return True
