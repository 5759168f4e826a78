"""``serialize`` and ``deserialize``: the two calls everything else is built on."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import Any

from suitkaise.cucumber._deep import TooDeepError, deep_dumps, is_recursion_error
from suitkaise.cucumber._diagnose import locate
from suitkaise.cucumber._errors import DeserializationError, SerializationError, raised_by_user_code
from suitkaise.cucumber._pickler import dumps, plain_dumps

__all__ = ["deserialize", "serialize"]

BufferCallback = Callable[[pickle.PickleBuffer], Any]


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _hint_for(exc: BaseException, culprit: Any) -> str:
    if isinstance(exc, (TypeError, pickle.PicklingError)) and "pickle" in str(exc):
        return (
            f"cucumber has no handler for {_type_name(culprit)}. Leave it out of what you send, "
            "or give its owner __serialize__()/__deserialize__(state) to choose what travels."
        )
    return ""


class _Tracer:
    """``verbose=True``: one line per object that a cucumber handler takes care of."""

    def __init__(self) -> None:
        self.color = sys.stdout.isatty()

    def say(self, text: str) -> None:
        if self.color:
            text = f"\x1b[38;5;208m[CUCUMBER]\x1b[0m {text}"
        else:
            text = f"[CUCUMBER] {text}"
        print(text)

    def __call__(self, obj: Any, reducer: Any) -> None:
        self.say(f"  {_type_name(obj)} -> handler {getattr(reducer, '__name__', reducer)}")


class _BufferRelay:
    """Passes each ``PickleBuffer`` to the caller's ``buffer_callback`` and returns its answer.

    A retry of the same object (the deep-payload path) meets the same buffers in
    the same order: their answers are replayed instead of calling the callback twice.
    """

    __slots__ = ("answers", "pos", "target")

    def __init__(self, target: BufferCallback) -> None:
        self.target = target
        self.answers: list[bool] = []
        self.pos = 0

    def __call__(self, buf: pickle.PickleBuffer) -> bool:
        pos = self.pos
        self.pos = pos + 1
        if pos < len(self.answers):
            return self.answers[pos]
        keep = bool(self.target(buf))
        self.answers.append(keep)
        return keep

    def rewind(self) -> None:
        self.pos = 0


def serialize(
    obj: Any,
    debug: bool = False,
    verbose: bool = False,
    *,
    buffer_callback: BufferCallback | None = None,
    for_fork: bool = False,
) -> bytes:
    """Turn ``obj`` into bytes that ``deserialize`` turns back into an equivalent object.

    Anything pickle or cloudpickle can carry, plus the live resources in
    cucumber's handler table (locks, files, loggers, queues, database
    connections, ...). Raises ``SerializationError`` naming the path to the
    first object that cannot be serialized.

    ``buffer_callback`` follows pickle's protocol-5 rule exactly: it is called
    once per ``PickleBuffer`` (numpy arrays, ``PickleBuffer`` objects), in
    order; when it returns a **true** value that buffer stays **in-band**
    (copied into the payload), when it returns a false value (``None``, as
    ``list.append`` does) the buffer is **out-of-band** and the caller must
    pass it, in the same order as the other out-of-band ones, to
    ``deserialize(data, buffers=[...])``. Each buffer is reported once even
    when a deep payload is serialized a second time by the explicit-stack pickler.

    ``for_fork=True``: the bytes are for a child ``fork()``ed from this process after
    ``obj``'s classes and functions were defined (sk-processing's Skprocess under fork).
    Classes and functions defined in ``__main__`` then travel by name instead of by
    value, since the child has the very same objects under those names: less work on
    both sides. Bytes made this way are not for any other receiver.
    """
    if not (verbose or for_fork):  # (for_fork: an Skprocess instance, never plain data)
        plain = plain_dumps(obj)  # builtin atoms and containers only: no buffers, no handlers
        if plain is not None:
            return plain
    tracer = _Tracer() if verbose else None
    if tracer:
        tracer.say(f"Starting serialization of {_type_name(obj)}")
    relay = _BufferRelay(buffer_callback) if buffer_callback is not None else None
    try:
        try:
            data = dumps(obj, buffer_callback=relay, trace=tracer, for_fork=for_fork)
        except Exception as exc:
            # Deep nesting: retry with the explicit-stack pickler (see _deep).
            if not is_recursion_error(exc):
                raise
            if relay is not None:
                relay.rewind()
            data = deep_dumps(obj, buffer_callback=relay, trace=tracer)
    except SerializationError:
        raise
    except TooDeepError as exc:
        raise SerializationError(
            str(exc), type_name=_type_name(obj), hint=exc.hint
        ) from exc
    except Exception as exc:
        path, culprit, cause = locate(obj, exc)
        type_name = _type_name(culprit)
        if debug:
            type_name += f"@{id(culprit):#x}"
        if raised_by_user_code(exc):
            # The user's own __reduce__/__getstate__/__serialize__ raised: as with pickle
            # and cloudpickle, that exception is what the caller sees (code written for
            # them catches it); cucumber adds where it happened.
            exc.add_note(f"cucumber: raised while serializing {path} ({type_name})")
            raise
        raise SerializationError(
            f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__,
            path=path,
            type_name=type_name,
            hint=_hint_for(cause, culprit),
        ) from cause
    if tracer:
        tracer.say(f"Serialization complete, bytes: {len(data)}")
    return data


def deserialize(
    data: Any,
    debug: bool = False,
    verbose: bool = False,
    *,
    buffers: Any = None,
) -> Any:
    """Rebuild the object that ``serialize`` turned into ``data``.

    Live resources come back live where that is safe (locks, files, loggers)
    or as Reconnectors (database connections, sockets, threads) that
    ``reconnect_all`` turns into live objects. Raises
    ``DeserializationError`` for anything that is not a valid payload.

    Like pickle, this runs code named by the payload: never deserialize
    bytes from a source you do not trust.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DeserializationError(
            f"a bytes-like object is required, not '{type(data).__name__}'",
            hint="pass the bytes that serialize() returned",
        )
    try:
        obj = pickle.loads(data, buffers=buffers)
    except DeserializationError:
        raise
    except Exception as exc:
        if isinstance(exc, ImportError) or raised_by_user_code(exc):
            # A module missing here, or the user's own __setstate__/__deserialize__/
            # constructor raised: propagate it as itself (as pickle does), with a note.
            exc.add_note(f"cucumber: raised while deserializing a {len(data)}-byte payload")
            raise
        detail = str(exc) or type(exc).__name__
        raise DeserializationError(
            f"{detail}" if isinstance(exc, pickle.UnpicklingError) else f"{type(exc).__name__}: {detail}",
            hint="the data is truncated, corrupted or not a cucumber payload",
        ) from exc
    if verbose:
        _Tracer().say(f"Deserialized {_type_name(obj)} from {len(data)} bytes")
    return obj
