"""The two errors cucumber raises, and the banner that makes them readable.

Every message has the same shape, so a user can see at a glance *where* in
their object the problem is and *why*::

    ======================================================================
    SERIALIZATION FAILED
    ======================================================================
    Path: root.jobs[3].anchor
    Object: suitkaise.pipe.Anchor
    Error: Locked pipe endpoint cannot be transferred. Keep it in the parent process.
    ======================================================================
"""

from __future__ import annotations

from typing import Any

_RULE = "=" * 70

__all__ = ["DeserializationError", "SerializationError"]


def banner(title: str, lines: list[tuple[str, str]]) -> str:
    body = "\n".join(f"{key}: {value}" for key, value in lines if value)
    return f"\n{_RULE}\n{title}\n{_RULE}\n{body}\n{_RULE}"


class SerializationError(Exception):
    """An object (or something inside it) could not be serialized.

    ``path`` names where the offending object sits inside the root object,
    in Python terms (``root.jobs[3].lock``); ``type_name`` is its type and
    ``reason`` the underlying error message. The original exception is
    chained as ``__cause__``.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str = "root",
        type_name: str = "",
        title: str = "SERIALIZATION FAILED",
        hint: str = "",
    ) -> None:
        self.reason = reason
        self.path = path
        self.type_name = type_name
        self.hint = hint
        lines = [("Path", path), ("Object", type_name), ("Error", reason), ("Hint", hint)]
        super().__init__(banner(title, lines))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_serialization_error, (self.reason, self.path, self.type_name, self.hint))


def _rebuild_serialization_error(reason: str, path: str, type_name: str, hint: str) -> SerializationError:
    return SerializationError(reason, path=path, type_name=type_name, hint=hint)


class DeserializationError(Exception):
    """Bytes could not be turned back into an object.

    Raised for input that is not bytes-like, truncated or garbage payloads, and
    for a live resource that cannot be rebuilt in this process (a file that does
    not exist here, for example). ``reason`` holds the short message.
    """

    def __init__(self, reason: str, *, type_name: str = "", hint: str = "") -> None:
        self.reason = reason
        self.type_name = type_name
        self.hint = hint
        lines = [("Object", type_name), ("Error", f"Failed to deserialize: {reason}"), ("Hint", hint)]
        super().__init__(banner("DESERIALIZATION FAILED", lines))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_deserialization_error, (self.reason, self.type_name, self.hint))


def _rebuild_deserialization_error(reason: str, type_name: str, hint: str) -> DeserializationError:
    return DeserializationError(reason, type_name=type_name, hint=hint)
