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
from typing import TYPE_CHECKING, Any

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.5.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    # processing
    "Skprocess": "suitkaise.processing",
    "Pool": "suitkaise.processing",
    "autoreconnect": "suitkaise.processing",
    "ProcessTimers": "suitkaise.processing",
    "ProcessError": "suitkaise.processing",
    "PreRunError": "suitkaise.processing",
    "RunError": "suitkaise.processing",
    "PostRunError": "suitkaise.processing",
    "OnFinishError": "suitkaise.processing",
    "ResultError": "suitkaise.processing",
    "ErrorHandlerError": "suitkaise.processing",
    "ProcessTimeoutError": "suitkaise.processing",
    "ResultTimeoutError": "suitkaise.processing",
    # share and pipe
    "Share": "suitkaise.share",
    "Pipe": "suitkaise.pipe",
    "PipeEndpointError": "suitkaise.pipe",
    # timing
    "Sktimer": "suitkaise.timing",
    "TimerStats": "suitkaise.timing",
    "TimeThis": "suitkaise.timing",
    "timethis": "suitkaise.timing",
    "clear_global_timers": "suitkaise.timing",
    "elapsed": "suitkaise.timing",
    # cucumber
    "serialize": "suitkaise.cucumber",
    "deserialize": "suitkaise.cucumber",
    "serialize_ir": "suitkaise.cucumber",
    "reconnect_all": "suitkaise.cucumber",
    "to_json": "suitkaise.cucumber",
    "to_jsonable": "suitkaise.cucumber",
    "ir_to_json": "suitkaise.cucumber",
    "ir_to_jsonable": "suitkaise.cucumber",
    "SerializationError": "suitkaise.cucumber",
    "DeserializationError": "suitkaise.cucumber",
}
_SUBMODULES = ("cucumber", "timing", "pipe", "share", "processing")

__all__ = [
    "cucumber",
    "timing",
    "pipe",
    "share",
    "processing",
    "Skprocess",
    "Pool",
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
    "Share",
    "Pipe",
    "PipeEndpointError",
    "Sktimer",
    "TimerStats",
    "TimeThis",
    "timethis",
    "clear_global_timers",
    "elapsed",
    "serialize",
    "deserialize",
    "serialize_ir",
    "reconnect_all",
    "to_json",
    "to_jsonable",
    "ir_to_json",
    "ir_to_jsonable",
    "SerializationError",
    "DeserializationError",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from suitkaise import cucumber, pipe, processing, share, timing
    from suitkaise.cucumber import (
        DeserializationError,
        SerializationError,
        deserialize,
        ir_to_json,
        ir_to_jsonable,
        reconnect_all,
        serialize,
        serialize_ir,
        to_json,
        to_jsonable,
    )
    from suitkaise.pipe import Pipe, PipeEndpointError
    from suitkaise.processing import (
        ErrorHandlerError,
        OnFinishError,
        Pool,
        PostRunError,
        PreRunError,
        ProcessError,
        ProcessTimeoutError,
        ProcessTimers,
        ResultError,
        ResultTimeoutError,
        RunError,
        Skprocess,
        autoreconnect,
    )
    from suitkaise.share import Share
    from suitkaise.timing import (
        Sktimer,
        TimerStats,
        TimeThis,
        clear_global_timers,
        elapsed,
        timethis,
    )


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"suitkaise.{name}")
    module_name = _EXPORTS.get(name)
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
