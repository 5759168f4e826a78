"""A toy client library, like a database driver: its ``Client`` holds a live session.

The session cannot be pickled (``Client`` refuses, as many C-extension clients do),
and it is opened with a token that must never travel. The package's cucumber
handlers live in ``skext_demo._cucumber``, which this module never imports: the
``suitkaise.cucumber`` entry point brings them in when a ``Client`` is serialized.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Client"]


class Client:
    """Appends ``token:record`` lines to a log file through an open session."""

    def __init__(self, path: str, token: str) -> None:
        self.path = path
        self._token = token
        self._session = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: str) -> None:
        with self._lock:
            self._session.write(f"{self._token}:{record}\n")
            self._session.flush()

    def close(self) -> None:
        self._session.close()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("cannot pickle 'skext_demo.Client' object: it holds a live session")
