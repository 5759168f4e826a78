"""suitkaise: multi-process Python that reads like ordinary code.

This meta-package re-exports the public API of every ``sk-*`` distribution::

    from suitkaise import Skprocess, Pool, Share, Pipe, Sktimer, timethis
    from suitkaise import processing, cucumber, timing

``suitkaise`` is a namespace shared by several distributions, so this file
first extends ``__path__`` (``pkgutil.extend_path``) to keep every installed
``suitkaise.<module>`` reachable with editable, mixed and partial installs,
and then resolves the re-exported names lazily on first use (PEP 562): an
``import suitkaise`` costs almost nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.5.0"

# The one table of re-exports: module -> the names taken from it. ``__all__``
# and the lazy lookup below are derived from it. Type checkers and IDEs cannot
# run this, so __init__.pyi beside this file spells the same names out as
# ``from module import Name as Name``; tests/test_suitkaise_meta.py fails when
# the stub and this table differ, naming the lines to add or remove.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "suitkaise.processing": (
        "Skprocess", "Pool", "autoreconnect", "ProcessTimers",
        "ProcessError", "PreRunError", "RunError", "PostRunError", "OnFinishError",
        "ResultError", "ErrorHandlerError", "ProcessTimeoutError", "ResultTimeoutError",
        "DaskBackend", "TaskFuture", "ItemError", "ItemTimeoutError", "WorkerCrashedError", "QuarantineError",
        "worker_id", "worker_state",
    ),
    "suitkaise.share": ("Share", "ShareError", "Proxy"),
    "suitkaise.pipe": ("Pipe", "PipeEndpointError"),
    "suitkaise.timing": (
        "Sktimer", "TimerStats", "TimeThis", "timethis", "clear_global_timers", "elapsed",
    ),
    "suitkaise.cucumber": (
        "serialize", "deserialize", "serialize_ir", "reconnect_all",
        "to_json", "to_jsonable", "ir_to_json", "ir_to_jsonable",
        "SerializationError", "DeserializationError", "ReconnectWarning",
        "Reconnector", "register_handler", "remote_traceback",
    ),
}
_SUBMODULES = ("cucumber", "timing", "pipe", "share", "processing")
_ORIGIN = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [*_SUBMODULES, *_ORIGIN]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"suitkaise.{name}")
    module_name = _ORIGIN.get(name)
    if module_name is None:
        raise AttributeError(f"module 'suitkaise' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        dist = "sk-" + module_name.rsplit(".", 1)[1]
        raise ImportError(
            f"suitkaise.{name} needs {module_name}, which is not installed: pip install {dist}"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
