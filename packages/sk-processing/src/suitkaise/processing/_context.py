"""Which start method a Pool or an Skprocess uses for its processes.

``None`` follows multiprocessing's default at the moment a process starts (what
``multiprocessing.set_start_method`` chose, globally); a method name
(``"fork"``, ``"spawn"``, ``"forkserver"``) or a context object from
``multiprocessing.get_context()`` fixes it for that one Pool or Skprocess
without touching the global default.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext
from typing import Any

__all__ = ["check_context", "get_context", "preload_in_forkserver"]


def check_context(context: Any, where: str) -> Any:
    """``context`` if valid (``None``, an available method name or a context); else a clear error."""
    if context is None or isinstance(context, BaseContext):
        return context
    if isinstance(context, str):
        methods = multiprocessing.get_all_start_methods()
        if context not in methods:
            raise ValueError(
                f"{where} must be one of {methods} (start methods available here), a context from "
                f"multiprocessing.get_context(), or None (the global default), got {context!r}"
            )
        return context
    raise TypeError(
        f"{where} must be a start method name, a multiprocessing context or None, got "
        f"{type(context).__name__} {context!r}"
    )


def get_context(context: Any) -> Any:
    """The multiprocessing context to start a process with now (typed ``Any``: typeshed's
    ``BaseContext`` has no ``Process``, the concrete contexts do)."""
    if isinstance(context, BaseContext):
        return context
    return multiprocessing.get_context(context)


def preload_in_forkserver(ctx: Any, module: str) -> None:
    """Have the fork server import ``module`` when it starts, so that each forkserver
    child gets it already imported (a Pool worker's code: ~0.2 s less per worker started,
    which is most of what replacing a crashed worker costs).

    Only adds to the modules the user chose to preload, and only before the server
    starts; a running server is left as it is.
    """
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    modules = getattr(server, "_preload_modules", None)
    if server is None or getattr(server, "_forkserver_pid", None) is not None or not isinstance(modules, list):
        return
    if module not in modules:
        ctx.set_forkserver_preload([*modules, module])
