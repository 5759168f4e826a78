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

Both are pickle's own error types (``PicklingError``/``UnpicklingError``). An
exception raised by the user's own hooks is not wrapped: it propagates as
itself with the path as a note (``raised_by_user_code``), as with pickle.
"""

from __future__ import annotations

import functools
import pickle
import sys
import types
from typing import Any

_RULE = "=" * 70

__all__ = ["DeserializationError", "SerializationError", "raised_by_user_code"]


def banner(title: str, lines: list[tuple[str, str]]) -> str:
    body = "\n".join(f"{key}: {value}" for key, value in lines if value)
    return f"\n{_RULE}\n{title}\n{_RULE}\n{body}\n{_RULE}"


class SerializationError(pickle.PicklingError):
    """An object (or something inside it) could not be serialized.

    A ``pickle.PicklingError``, so code written for pickle/cloudpickle catches it.
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


class DeserializationError(pickle.UnpicklingError):
    """Bytes could not be turned back into an object (a ``pickle.UnpicklingError``).

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


# -- whose exception is it? ---------------------------------------------------------

# Code that is not the user's: suitkaise itself, cloudpickle, and the standard library
# (pickle, copyreg, multiprocessing's "only through inheritance" refusals, ...).
_LIBRARY_PACKAGES = frozenset({"suitkaise", "cloudpickle"})


@functools.cache
def _stdlib() -> tuple[str, ...]:
    """The standard library's directories (on first use: importing sysconfig and its data
    cost ``import suitkaise.cucumber`` about 2 ms, and only errors need them)."""
    import sysconfig

    return tuple(
        {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
        | {p for p in (getattr(sys, "_stdlib_dir", None),) if p}
    )


def _is_user_frame(frame: types.FrameType) -> bool:
    name = str(frame.f_globals.get("__name__", ""))
    if name.partition(".")[0] in _LIBRARY_PACKAGES:
        return False
    filename = frame.f_code.co_filename
    if filename.startswith("<frozen "):
        return False
    return not (filename.startswith(_stdlib()) and "site-packages" not in filename)


def raised_by_user_code(exc: BaseException) -> bool:
    """Whether ``exc`` came out of the user's own code (a ``__reduce__``, ``__getstate__``,
    ``__serialize__``, ``__setstate__``, ``__deserialize__``, a constructor...).

    Such an exception propagates from ``serialize``/``deserialize`` as itself, as it
    does from pickle and cloudpickle; failures of the machinery itself (no handler, a
    library object that refuses to travel, garbage bytes) become cucumber's errors.
    Decided from the traceback: any frame outside suitkaise, cloudpickle and the
    standard library.
    """
    if isinstance(exc, RecursionError):
        return False  # runaway recursion is reported by cucumber (see _deep)
    tb = exc.__traceback__
    while tb is not None:
        if _is_user_frame(tb.tb_frame):
            return True
        tb = tb.tb_next
    return False
