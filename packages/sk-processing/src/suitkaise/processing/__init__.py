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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are imported on first use (see _LAZY)
    from suitkaise.pipe import Pipe, PipeEndpointError
    from suitkaise.processing._autoreconnect import autoreconnect
    from suitkaise.processing._dask import DaskBackend
    from suitkaise.processing._errors import (
        ErrorHandlerError,
        ItemError,
        ItemTimeoutError,
        OnFinishError,
        PostRunError,
        PreRunError,
        ProcessError,
        ProcessTimeoutError,
        QuarantineError,
        ResultError,
        ResultTimeoutError,
        RunError,
        WorkerCrashedError,
    )
    from suitkaise.processing._pool import Pool
    from suitkaise.processing._pool_life import worker_id, worker_state
    from suitkaise.processing._pool_submit import TaskFuture
    from suitkaise.processing._skprocess import Skprocess
    from suitkaise.processing._timers import ProcessTimers
    from suitkaise.share import Share

__version__ = "0.5.0"

__all__ = [
    "Skprocess",
    "Pool",
    "TaskFuture",
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
    "ItemError",
    "ItemTimeoutError",
    "WorkerCrashedError",
    "QuarantineError",
]

# Every public name is imported on first use (PEP 562): a Pool worker, which imports
# only what it runs, starts without loading the Skprocess machinery, and this package
# imports even while a sibling distribution is missing or half-installed.
_ERRORS = "suitkaise.processing._errors"
_LAZY = {
    "Skprocess": ("suitkaise.processing._skprocess", "Skprocess"),
    "Pool": ("suitkaise.processing._pool", "Pool"),
    "TaskFuture": ("suitkaise.processing._pool_submit", "TaskFuture"),
    "worker_id": ("suitkaise.processing._pool_life", "worker_id"),
    "worker_state": ("suitkaise.processing._pool_life", "worker_state"),
    "autoreconnect": ("suitkaise.processing._autoreconnect", "autoreconnect"),
    "ProcessTimers": ("suitkaise.processing._timers", "ProcessTimers"),
    **{name: (_ERRORS, name) for name in __all__ if name.endswith("Error")},
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


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
