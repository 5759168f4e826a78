"""Stand-ins for objects whose *running state* cannot leave the process that owns it.

A coroutine, an asyncio task or a stack frame is bound to the interpreter
(and event loop, or thread) that runs it. cucumber does not pretend to copy
them: it sends what can be known about them and the receiver gets one of these
plain, documented objects. Using one for what it cannot do raises a clear
error instead of hanging or silently doing nothing.

==========================================  ==========================================
serialized object                           comes back as
==========================================  ==========================================
coroutine (``async def`` call result)       ``DeserializedCoroutine``
async generator                             ``DeserializedAsyncGenerator``
``asyncio.Future`` / ``asyncio.Task``       ``DeserializedFuture``
``contextvars.Token``                       ``DeserializedToken``
frame object                                ``FrameInfo``
pending ``concurrent.futures.Future``       a finished ``Future`` whose ``result()``
                                            raises ``PendingFutureError``
==========================================  ==========================================

These classes are importable, so they round-trip through cucumber (and plain
pickle) as themselves.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

__all__ = [
    "DeserializedAsyncGenerator",
    "DeserializedCoroutine",
    "DeserializedFuture",
    "DeserializedToken",
    "FrameInfo",
    "NotTransferableError",
    "PendingFutureError",
]


class NotTransferableError(RuntimeError):
    """A placeholder was used for something only the original object could do."""


class PendingFutureError(NotTransferableError):
    """A future was still pending when it was serialized; its result stayed behind.

    The copy of a pending ``concurrent.futures.Future`` is finished with this
    exception, so ``result()``/``wait()`` on it return at once instead of waiting
    forever for a result that will only ever be set in the sending process.
    """


class DeserializedCoroutine:
    """What a coroutine object becomes: its name and state, not its frame.

    A coroutine's suspended frame belongs to the sending process (and often to
    its event loop). ``await``-ing this placeholder, or calling ``send`` /
    ``throw``, raises ``NotTransferableError``; ``close()`` does nothing.
    Send the coroutine *function* and its arguments instead, and call it in the
    receiver.
    """

    def __init__(self, name: str, qualname: str, state: str) -> None:
        self.__name__ = name
        self.__qualname__ = qualname
        self.state = state  # CORO_CREATED / CORO_SUSPENDED / CORO_RUNNING / CORO_CLOSED

    def _refuse(self) -> NotTransferableError:
        return NotTransferableError(
            f"coroutine {self.__qualname__}() ({self.state}) was serialized, and its frame cannot "
            "run in another process. Send the async function and its arguments, and call it "
            "in the receiver."
        )

    def __await__(self) -> Generator[Any, None, Any]:
        raise self._refuse()

    def send(self, value: Any) -> Any:
        raise self._refuse()

    def throw(self, *args: Any) -> Any:
        raise self._refuse()

    def close(self) -> None:
        """Nothing to close: the original coroutine stayed in the sending process."""

    def __repr__(self) -> str:
        return f"<DeserializedCoroutine {self.__qualname__} state={self.state}>"


class DeserializedAsyncGenerator:
    """What an async generator becomes: its name and state; iterating raises.

    ``async for`` over it, ``__anext__``, ``asend`` and ``athrow`` raise
    ``NotTransferableError``; ``aclose()`` completes at once.
    """

    def __init__(self, name: str, qualname: str, running: bool, finished: bool) -> None:
        self.__name__ = name
        self.__qualname__ = qualname
        self.running = running
        self.finished = finished

    def _refuse(self) -> NotTransferableError:
        return NotTransferableError(
            f"async generator {self.__qualname__}() was serialized, and its frame cannot run in "
            "another process. Send the async generator function and its arguments instead."
        )

    def __aiter__(self) -> DeserializedAsyncGenerator:
        return self

    async def __anext__(self) -> Any:
        raise self._refuse()

    async def asend(self, value: Any) -> Any:
        raise self._refuse()

    async def athrow(self, *args: Any) -> Any:
        raise self._refuse()

    async def aclose(self) -> None:
        """Nothing to close: the original stayed in the sending process."""

    def __repr__(self) -> str:
        return f"<DeserializedAsyncGenerator {self.__qualname__}>"


class DeserializedFuture:
    """A read-only snapshot of an ``asyncio.Future`` or ``asyncio.Task``.

    ``done()``, ``cancelled()``, ``result()`` and ``exception()`` answer like
    the original did when it was serialized (``result()`` of a pending future
    raises ``asyncio.InvalidStateError``; of a cancelled one,
    ``asyncio.CancelledError``). ``await placeholder`` returns the result of a
    finished future at once and raises ``NotTransferableError`` for a
    pending one (it would never finish here). Callbacks and cancellation do not
    reach the original, which lives on the sender's event loop.
    """

    def __init__(
        self,
        *,
        is_task: bool,
        name: str | None,
        state: str,
        result: Any = None,
        exception: BaseException | None = None,
        coro_qualname: str | None = None,
    ) -> None:
        self.is_task = is_task
        self.name = name
        self.state = state  # "PENDING", "CANCELLED" or "FINISHED"
        self._result = result
        self._exception = exception
        self.coro_qualname = coro_qualname

    def done(self) -> bool:
        return self.state != "PENDING"

    def cancelled(self) -> bool:
        return self.state == "CANCELLED"

    def _check_finished(self) -> None:
        import asyncio

        if self.state == "CANCELLED":
            raise asyncio.CancelledError()
        if self.state == "PENDING":
            raise asyncio.InvalidStateError(
                "Result is not set: the future was still pending when it was serialized"
            )

    def result(self) -> Any:
        self._check_finished()
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        self._check_finished()
        return self._exception

    def get_name(self) -> str | None:
        return self.name

    def __await__(self) -> Generator[Any, None, Any]:
        if self.state == "PENDING":
            raise NotTransferableError(
                f"{'task' if self.is_task else 'future'} {self.name or ''} was still pending when "
                "it was serialized; it can only complete in the sending process's event loop"
            )
        return self.result()
        yield  # pragma: no cover - makes this a generator, as __await__ must be

    def __repr__(self) -> str:
        kind = "Task" if self.is_task else "Future"
        return f"<DeserializedFuture ({kind}) {self.name or ''} state={self.state}>"


class DeserializedToken:
    """What a ``contextvars.Token`` becomes: its variable and the old value.

    A real Token can only reset the context it was created in, so it cannot be
    passed to ``ContextVar.reset`` in another process. ``var`` is the
    (deserialized) ``ContextVar``, ``old_value`` the value before the ``set()``
    that made the token, or ``contextvars.Token.MISSING`` if there was none
    (``old_value_missing`` is then true).
    ``restore`` sets ``var`` back to ``old_value`` in the *current* context.
    """

    def __init__(self, var: Any, old_value: Any, old_value_missing: bool) -> None:
        self.var = var
        self.var_name: str = var.name
        self.old_value_missing = old_value_missing
        self.old_value = _token_missing() if old_value_missing else old_value

    def restore(self) -> None:
        """Set the variable back to its old value here (there is no 'unset' across processes)."""
        if self.old_value_missing:
            raise NotTransferableError(
                f"ContextVar {self.var_name!r} had no value before the set() that created this "
                "token, and a context variable cannot be unset from another process"
            )
        self.var.set(self.old_value)

    def __repr__(self) -> str:
        old = "<MISSING>" if self.old_value_missing else repr(self.old_value)
        return f"<DeserializedToken var={self.var_name!r} old_value={old}>"


def _token_missing() -> Any:
    import contextvars

    return contextvars.Token.MISSING


class FrameInfo:
    """Metadata of a stack frame: where it was, not the frame itself.

    A frame (with its locals and evaluation stack) belongs to a running thread.
    ``function``, ``qualname``, ``filename``, ``lineno``, ``module`` and the
    *names* of its locals travel; local values do not (they may be anything,
    including the sender's whole program state).
    """

    def __init__(
        self,
        function: str,
        qualname: str,
        filename: str,
        lineno: int,
        module: str | None,
        local_names: tuple[str, ...],
    ) -> None:
        self.function = function
        self.qualname = qualname
        self.filename = filename
        self.lineno = lineno
        self.module = module
        self.local_names = local_names

    def __repr__(self) -> str:
        return f"<FrameInfo {self.qualname} at {self.filename}:{self.lineno}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameInfo):
            return NotImplemented
        return vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((self.qualname, self.filename, self.lineno))
