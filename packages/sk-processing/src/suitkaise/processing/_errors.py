"""The ``ProcessError`` hierarchy raised by ``Skprocess`` (and ``Pool``).

Every class keeps its message, ``current_run``, ``original_error`` and (for
timeouts) ``section``/``timeout`` when it crosses a process boundary: the
reduction stores the constructor-independent state, so ``str(e)`` in the
parent is the same as in the child (0.4.14 lost the message). The child's
formatted traceback travels as ``remote_traceback`` and is re-attached in the
receiving process as the ``__cause__`` of ``original_error``, the way
``concurrent.futures`` shows worker tracebacks.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ProcessError",
    "PreRunError",
    "RunError",
    "PostRunError",
    "OnFinishError",
    "ResultError",
    "ErrorHandlerError",
    "ProcessTimeoutError",
    "ResultTimeoutError",
    "RemoteTraceback",
    "describe_exception",
]


class RemoteTraceback(Exception):
    """Carries the text of a traceback formatted in another process."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def describe_exception(exc: BaseException) -> str:
    """``"ValueError: bad input"`` (just the type when the message is empty)."""
    try:
        text = str(exc)
    except Exception as e:  # a broken __str__ must not hide the error itself
        text = f"<str() failed: {type(e).__name__}>"
    name = type(exc).__qualname__
    return f"{name}: {text}" if text else name


def _rebuild_error(cls: type[ProcessError], args: tuple[Any, ...], state: dict[str, Any]) -> ProcessError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    original = state.get("original_error")
    if isinstance(original, BaseException):
        tb = state.get("remote_traceback")
        if tb and original.__cause__ is None:
            original.__cause__ = RemoteTraceback(tb)
        err.__cause__ = original
    return err


class ProcessError(Exception):
    """Base class of every process-related error.

    ``current_run`` is the iteration the error happened on; ``original_error``
    the user's exception (``None`` when there is none, e.g. a crash).
    """

    current_run: int
    original_error: BaseException | None
    remote_traceback: str | None
    lives: int | None

    def __init__(
        self, message: str = "", current_run: int = 0, original_error: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.current_run = current_run
        self.original_error = original_error
        self.remote_traceback = None
        self.lives = None
        if original_error is not None:
            self.__cause__ = original_error

    def _compose(self) -> str:
        """The message, rebuilt from the attributes (subclasses that know their parts override it)."""
        return str(self.args[0]) if self.args else ""

    def _note_lives(self, lives: int) -> None:
        """Record that this error ended the process after all ``lives`` were used (shown by ``str``)."""
        self.lives = lives
        self.args = (self._compose(),)

    def _lives_note(self) -> str:
        lives = self.__dict__.get("lives")
        return "" if not lives or lives <= 1 else f" (after {lives} of {lives} lives)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


class _SectionError(ProcessError):
    """A lifecycle section raised.

    ``str(e)`` is ``Error in <section> on run N: <Type>: <message>``, with
    ``(after L of L lives)`` after the run when retries were configured and all were used.
    """

    section: str = ""

    def __init__(self, current_run: int = 0, original_error: BaseException | None = None) -> None:
        super().__init__("", current_run, original_error)
        self.args = (self._compose(),)

    def _compose(self) -> str:
        text = f"Error in {self.section} on run {self.current_run}{self._lives_note()}"
        original = self.original_error
        return text if original is None else f"{text}: {describe_exception(original)}"


class PreRunError(_SectionError):
    """``__prerun__()`` raised."""

    section = "__prerun__"


class RunError(_SectionError):
    """``__run__()`` raised."""

    section = "__run__"


class PostRunError(_SectionError):
    """``__postrun__()`` raised."""

    section = "__postrun__"


class OnFinishError(_SectionError):
    """``__onfinish__()`` raised."""

    section = "__onfinish__"


class ResultError(_SectionError):
    """``__result__()`` raised (or returned a value that cannot be sent to the parent)."""

    section = "__result__"


class ErrorHandlerError(_SectionError):
    """``__error__()`` raised while handling another error (available as ``handled_error``)."""

    section = "__error__"
    handled_error: BaseException | None = None


class ProcessTimeoutError(ProcessError):
    """A lifecycle section ran longer than its ``process_config.timeouts`` value."""

    section: str
    timeout: float

    def __init__(self, section: str, timeout: float, current_run: int = 0) -> None:
        super().__init__("", current_run)
        self.section = section
        self.timeout = timeout
        self.args = (self._compose(),)

    def _compose(self) -> str:
        return f"Timeout in {self.section} after {self.timeout}s on run {self.current_run}{self._lives_note()}"


class ResultTimeoutError(ProcessError, TimeoutError):
    """``wait``/``result``/``run``/``listen`` gave up after its ``.timeout()`` value."""

    def __init__(self, message: str = "") -> None:
        ProcessError.__init__(self, message)


SECTION_ERRORS: dict[str, type[_SectionError]] = {
    cls.section: cls
    for cls in (PreRunError, RunError, PostRunError, OnFinishError, ResultError, ErrorHandlerError)
}
