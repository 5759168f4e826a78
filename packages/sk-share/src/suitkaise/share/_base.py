"""What every Share module shares: the error, reserved names, the path type, warnings."""

from __future__ import annotations

import os
import sys
from typing import Any

oga = object.__getattribute__

Path = tuple[Any, ...]  # (root name, ("a", attr) | ("i", key), ...)

# names that are Share's own API: they cannot be used as shared attributes
RESERVED = frozenset(
    {"start", "stop", "exit", "clear", "reconnect_all", "is_running", "has_error", "serve", "lock"}
)

STOPPED_WARNING = (
    "Share is stopped. Changes are queued but will not take effect until share.start() is called."
)


class ShareError(RuntimeError):
    """The Share cannot be used from this process any more (closed, or its owner is gone)."""


_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this package."""
    f = sys._getframe(1)
    level = 1
    while f is not None and os.path.dirname(os.path.abspath(f.f_code.co_filename)) == _PKG_DIR:
        f = f.f_back  # type: ignore[assignment]
        level += 1
    return level
