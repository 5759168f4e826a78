"""suitkaise.processing: class-based subprocesses (Skprocess), Pool, Share, Pipe.

    from suitkaise.processing import Skprocess

    class Counter(Skprocess):
        def __init__(self):
            self.n = 0
            self.process_config.runs = 10
        def __run__(self):
            self.n += 1
        def __result__(self):
            return self.n

    assert Counter().run() == 10

``Share`` and ``Pipe``/``PipeEndpointError`` are re-exported from
``suitkaise.share`` and ``suitkaise.pipe`` (same objects).
"""

from __future__ import annotations

from typing import Any

from suitkaise.processing._autoreconnect import autoreconnect
from suitkaise.processing._errors import (
    ErrorHandlerError,
    OnFinishError,
    PostRunError,
    PreRunError,
    ProcessError,
    ProcessTimeoutError,
    ResultError,
    ResultTimeoutError,
    RunError,
)
from suitkaise.processing._pool import Pool
from suitkaise.processing._pool_life import worker_id, worker_state
from suitkaise.processing._skprocess import Skprocess
from suitkaise.processing._timers import ProcessTimers

__version__ = "0.5.0"

__all__ = [
    "Skprocess",
    "Pool",
    "DaskBackend",
    "worker_id",
    "worker_state",
    "Share",
    "Pipe",
    "PipeEndpointError",
    "autoreconnect",
    "ProcessTimers",
    "ProcessError",
    "PreRunError",
    "RunError",
    "PostRunError",
    "OnFinishError",
    "ResultError",
    "ErrorHandlerError",
    "ProcessTimeoutError",
    "ResultTimeoutError",
]

# Re-exports resolved on first use, so this package imports even while a
# sibling distribution is missing or half-installed (PEP 562).
_LAZY = {
    "Share": ("suitkaise.share", "Share"),
    "Pipe": ("suitkaise.pipe", "Pipe"),
    "PipeEndpointError": ("suitkaise.pipe", "PipeEndpointError"),
    # the cluster backend; dask itself is imported only when one is built
    "DaskBackend": ("suitkaise.processing._dask", "DaskBackend"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'suitkaise.processing' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(target[0])
    try:
        value = getattr(module, target[1])
    except AttributeError:
        raise ImportError(
            f"suitkaise.processing.{name} comes from {target[0]}, which does not define {target[1]} "
            f"(is the matching sk-* distribution installed and up to date?)"
        ) from None
    globals()[name] = value
    return value
