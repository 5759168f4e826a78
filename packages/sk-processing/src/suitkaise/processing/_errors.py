"""The ``ProcessError`` hierarchy, and how errors cross a process boundary.

Every class keeps its message, ``current_run``, ``original_error``, ``lives``
and (for timeouts) ``section``/``timeout`` when it travels (cucumber rebuilds
exceptions without calling ``__init__``), so ``str(e)`` in the parent is the
same as in the child (0.4.14 lost the message).

One traceback pair for every worker error: ``capture_traceback`` (sending
side) stores the formatted traceback as the string attribute
``__remote_traceback__`` -- the name cucumber uses when it serializes any
exception -- and ``attach_traceback`` (receiving side) turns it into a
``RemoteTraceback`` ``__cause__``, the way ``concurrent.futures`` shows worker
tracebacks (``with_remote_cause`` is that last step alone, for the Pool, whose
item errors always show the worker's traceback as their own ``__cause__``).
``describe_exit`` says why a process ended, for Skprocess and Pool alike.
``portable_error`` makes an error that cucumber cannot move
portable (a stand-in keeps type, message and traceback as text).
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import re
import reprlib
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from suitkaise import cucumber

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
    "attach_traceback",
    "bootstrap_failure",
    "check_can_start_processes",
    "capture_traceback",
    "describe_exception",
    "describe_exit",
    "short_repr",
    "with_remote_cause",
    "portable",
    "portable_error",
    "unsendable_attribute",
]

TB_ATTR = "__remote_traceback__"
T = TypeVar("T")


class RemoteTraceback(Exception):
    """Carries the text of a traceback formatted in another process."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4


def short_repr(obj: Any) -> str:
    """A repr short enough for an error message."""
    name = type(obj).__qualname__
    try:
        text = _repr.repr(obj)
    except Exception:
        return f"<{name} object>"
    if type(obj).__name__ in text or type(obj).__module__ == "builtins" or getattr(obj, "_plain_repr", False):
        return text
    return f"{name} {text}"


def describe_exception(exc: BaseException) -> str:
    """``"ValueError: bad input"`` (just the type when the message is empty)."""
    try:
        text = str(exc)
    except Exception as e:  # a broken __str__ must not hide the error itself
        text = f"<str() failed: {type(e).__name__}>"
    name = type(exc).__qualname__
    return f"{name}: {text}" if text else name


_SIGNAL_HINTS = {
    signal.SIGSEGV: "segmentation fault: a crash in native code (a C extension, ctypes, ...)",
    signal.SIGBUS: "bus error: a crash in native code",
    signal.SIGABRT: "abort(): a fatal error in native code",
    signal.SIGFPE: "floating-point exception in native code",
    signal.SIGILL: "illegal instruction in native code",
    signal.SIGKILL: "often the kernel's out-of-memory killer, or `kill -9`",
    signal.SIGTERM: "terminated by another process",
}


def describe_exit(code: int | None) -> str:
    """Why a process ended, from its exit code, as a phrase without its subject
    (Skprocess writes ``process <phrase>``, the Pool ``it <phrase>``, the report the phrase).

    ``'was killed by signal SIGSEGV (-11) (segmentation fault: ...)'``,
    ``'exited with code 3 (...)'``.
    """
    if code is None:
        return "ended without an exit code (its connection closed while it was still running)"
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"was killed by signal {-code}"
        hint = _SIGNAL_HINTS.get(sig)
        return f"was killed by signal {sig.name} ({code})" + (f" ({hint})" if hint else "")
    return f"exited with code {code} (os._exit(), sys.exit() or exit() in native code)"


def _stored_traceback(exc: BaseException) -> str | None:
    d = getattr(exc, "__dict__", None) or {}
    tb = d.get(TB_ATTR)
    return tb if isinstance(tb, str) and tb else None


capture_traceback = cucumber.remote_traceback
"""Sending side: the traceback text of an exception (kept if it already came from
elsewhere), stored on it as ``__remote_traceback__`` (cucumber's one capture)."""


def attach_traceback(err: BaseException) -> None:
    """Receiving side: show the sender's traceback as ``__cause__`` of the user's exception
    (``original_error`` of a ProcessError, else ``err`` itself), unless it has a cause."""
    target = getattr(err, "original_error", None)
    if not isinstance(target, BaseException):
        target = err
    if target.__cause__ is not None:
        return
    tb = _stored_traceback(target) or _stored_traceback(err)
    if tb:
        with_remote_cause(target, tb)


def with_remote_cause(exc: BaseException, tb: str) -> BaseException:
    """``exc`` with the sender's traceback text shown as its ``__cause__`` (returns ``exc``)."""
    exc.__cause__ = RemoteTraceback(tb)
    return exc


_ATTRIBUTE = re.compile(r"root\.([A-Za-z_]\w*)")
_MISSING = object()


def unsendable_attribute(owner: Any, err: cucumber.SerializationError) -> cucumber.SerializationError:
    """``err`` (the instance of an Skprocess could not be serialized for its child), headed by
    the attribute at fault: ``Job.v (multiprocessing.sharedctypes.Synchronized) cannot be sent
    to the child process``. The path alone runs through the attribute's internals
    (``root.v<arg 0><arg 1>[0]['_wrapper']...``). ``err`` itself when no attribute is at fault."""
    found = _ATTRIBUTE.match(err.path)
    value = owner.__dict__.get(found.group(1), _MISSING) if found else _MISSING
    if found is None or value is _MISSING:
        return err
    kind = type(value)
    where = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    hint = err.hint or (
        "start() sends every attribute of the instance to the child process: create this "
        "object there (in __prerun__, say), or keep the state it shares in a suitkaise Share."
    )
    return cucumber.SerializationError(
        err.reason,
        path=err.path,
        type_name=err.type_name,
        title=f"{type(owner).__qualname__}.{found.group(1)} ({where}) cannot be sent to the child process",
        hint=hint,
    )


def portable(obj: T, fallback: Callable[[], T]) -> T:
    """``obj`` if cucumber can serialize it, else ``fallback()``."""
    try:
        cucumber.serialize(obj)
        return obj
    except Exception:
        return fallback()


def portable_error(err: BaseException | None) -> BaseException | None:
    """``err`` if cucumber can move it; else the same ProcessError class with a
    stand-in ``original_error`` (type, message and traceback kept as text)."""
    if err is None:
        return None
    try:
        cucumber.serialize(err)
        return err
    except Exception as e:
        problem = f"{type(e).__name__}: {e}"
    orig = getattr(err, "original_error", None)
    tb = capture_traceback(orig if isinstance(orig, BaseException) else err)
    if isinstance(err, ProcessError) and orig is not None:
        clone = copy.copy(err)
        stand_in = ProcessError(f"{describe_exception(orig)} (the exception itself could not be sent: {problem})")
        setattr(stand_in, TB_ATTR, tb)
        clone.original_error = stand_in
        clone.__cause__ = stand_in
        clone.__context__ = None
        try:
            cucumber.serialize(clone)
            return clone
        except Exception:
            pass
    generic = ProcessError(describe_exception(err), getattr(err, "current_run", 0))
    setattr(generic, TB_ATTR, tb)
    return generic


def _rebuild_error(cls: type[ProcessError], args: tuple[Any, ...], state: dict[str, Any]) -> ProcessError:
    """Plain-pickle side of ``ProcessError.__reduce__`` (cucumber has its own exception handler)."""
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    original = state.get("original_error")
    if isinstance(original, BaseException):
        attach_traceback(err)
        err.__cause__ = original
    return err


class ProcessError(Exception):
    """Base class of every process-related error.

    ``current_run`` is the iteration the error happened on; ``original_error``
    the user's exception (``None`` when there is none, e.g. a crash).
    ``process_name`` and ``pid`` say which process it happened in: set in the
    parent when the error arrives from the child (``None`` before, e.g. as
    ``self.error`` in the child's ``__error__``); for an Skprocess a Pool ran,
    set in its worker, with ``index``, the item's position in the call's input.
    """

    current_run: int
    original_error: BaseException | None
    lives: int | None
    # class attributes: errors rebuilt without __init__ (cucumber, older pickles) have them too
    process_name: str | None = None
    pid: int | None = None
    index: int | None = None

    def __init__(
        self, message: str = "", current_run: int = 0, original_error: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.current_run = current_run
        self.original_error = original_error
        self.lives = None
        if original_error is not None:
            self.__cause__ = original_error

    @property
    def remote_traceback(self) -> str | None:
        """The traceback text from the process the error happened in (``None`` if local)."""
        original = self.original_error
        found = _stored_traceback(original) if isinstance(original, BaseException) else None
        return found or _stored_traceback(self)

    def _compose(self) -> str:
        """The message, rebuilt from the attributes (subclasses that know their parts override it)."""
        return str(self.args[0]) if self.args else ""

    def _note_lives(self, lives: int) -> None:
        """Record that this error ended the process after all ``lives`` were used (shown by ``str``)."""
        self.lives = lives
        self.args = (self._compose(),)

    def _note_process(self, name: str, pid: int | None, index: int | None = None) -> None:
        """Record the process this error came from, and for a Pool's Skprocess item its index
        (``str`` of a section error or timeout starts with them)."""
        self.process_name = name
        self.pid = pid
        if index is not None:
            self.index = index
        self.args = (self._compose(),)

    def _origin(self) -> str:
        """``"Job (pid 4242): "`` once ``_note_process`` ran (``"Job (pid 4242, item 3): "`` for a
        Pool's item), else ``""``."""
        name = self.process_name
        if not name:
            return ""
        where = [] if self.pid is None else [f"pid {self.pid}"]
        if self.index is not None:
            where.append(f"item {self.index}")
        return f"{name} ({', '.join(where)}): " if where else f"{name}: "

    def _lives_note(self) -> str:
        lives = self.__dict__.get("lives")
        return "" if not lives or lives <= 1 else f" (after {lives} of {lives} lives)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


class _SectionError(ProcessError):
    """A lifecycle section raised.

    ``str(e)`` is ``Error in <section> on run N: <Type>: <message>``, with
    ``(after L of L lives)`` after the run when retries were configured and all were used;
    in the parent it starts with the process: ``Job (pid 4242): Error in ...``.
    """

    section: str = ""

    def __init__(self, current_run: int = 0, original_error: BaseException | None = None) -> None:
        super().__init__("", current_run, original_error)
        self.args = (self._compose(),)

    def _compose(self) -> str:
        text = f"{self._origin()}Error in {self.section} on run {self.current_run}{self._lives_note()}"
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


class ProcessTimeoutError(ProcessError, TimeoutError):
    """A lifecycle section ran longer than its ``process_config.timeouts`` value.

    Also a builtin ``TimeoutError``, like ``ResultTimeoutError`` and ``ItemTimeoutError``:
    ``except TimeoutError`` catches every timeout the library reports.
    """

    section: str
    timeout: float

    def __init__(self, section: str, timeout: float, current_run: int = 0) -> None:
        super().__init__("", current_run)
        self.section = section
        self.timeout = timeout
        self.args = (self._compose(),)

    def _compose(self) -> str:
        return (
            f"{self._origin()}Timeout in {self.section} after {self.timeout}s "
            f"on run {self.current_run}{self._lives_note()}"
        )


class ResultTimeoutError(ProcessError, TimeoutError):
    """``wait``/``result``/``run``/``listen`` gave up after its ``.timeout()`` value."""

    def __init__(self, message: str = "") -> None:
        ProcessError.__init__(self, message)



# -- Pool items that fail without raising -------------------------------------------------


class ItemError(ProcessError):
    """A Pool item failed without raising: base of ``ItemTimeoutError`` and ``WorkerCrashedError``.

    ``index`` is the item's position in the call's input (for ``submit``, the
    submission's number), ``item`` a short repr of it.
    """

    index: int
    item: str

    def __init__(self, message: str, index: int, item: str) -> None:
        ProcessError.__init__(self, message)
        self.index = index
        self.item = item


class ItemTimeoutError(ItemError, TimeoutError):
    """An item ran longer than its per-item timeout: its worker was killed and replaced;
    only this item failed."""

    timeout: float

    def __init__(self, message: str, index: int, item: str, timeout: float) -> None:
        ItemError.__init__(self, message, index, item)
        self.timeout = timeout


class WorkerCrashedError(ItemError):
    """The worker running an item died (segfault, ``os._exit``, SIGKILL, out of memory).

    ``exitcode`` is the worker's (negative: ``-signal``), ``signal`` the signal's name
    (``None`` for an exit), ``attempts`` how many workers the item took down (more than
    one with ``retries=``), ``fault`` the stack faulthandler dumped (``None`` when the
    signal could not be caught, e.g. SIGKILL).
    """

    exitcode: int | None
    signal: str | None
    attempts: int
    fault: str | None

    def __init__(
        self, message: str, index: int, item: str, exitcode: int | None, attempts: int = 1, fault: str | None = None,
    ) -> None:
        ItemError.__init__(self, message, index, item)
        self.exitcode = exitcode
        self.signal = _signal_name(exitcode)
        self.attempts = attempts
        self.fault = fault


def _signal_name(code: int | None) -> str | None:
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(-code)


class QuarantineError(ProcessError):
    """Items kept killing their worker through every retry; the rest of the call finished.

    ``quarantined``: a ``WorkerCrashedError`` per such item (index, repr, signal,
    faulthandler dump, attempts), in input order; ``results``: the other items'
    results, in the order the method returns them (``map``; empty for ``imap``,
    whose results were already yielded).
    """

    quarantined: list[WorkerCrashedError]
    results: list[Any]

    def __init__(self, name: str, quarantined: list[WorkerCrashedError], results: list[Any] | None = None) -> None:
        lines = "\n".join(f"  item {q.index} ({q.item}): {q.args[0] if q.args else ''}" for q in quarantined[:10])
        more = f"\n  ... and {len(quarantined) - 10} more" if len(quarantined) > 10 else ""
        ProcessError.__init__(
            self,
            f"Pool.{name}: {len(quarantined)} item(s) crashed their worker on every attempt and were quarantined; "
            f"every other item finished (their results are in .results, the report in .quarantined):\n{lines}{more}",
        )
        self.quarantined = quarantined
        self.results = [] if results is None else results


# -- children that die in multiprocessing's bootstrap -------------------------------------

_GUARD = 'put the code that starts processes under `if __name__ == "__main__":`'


def _main_module() -> str:
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return f"the main module {os.path.basename(path)!r}" if path else "the main module"


def bootstrap_failure(who: str, method: str, exitcode: int | None) -> str:
    """The message for a child that died in multiprocessing's bootstrap, before our code ran.

    ``who`` starts the sentence (``"Job: the child process"``). Under spawn and
    forkserver a child first re-imports the main module; a script without the
    ``__main__`` guard, or one that raises when imported, dies right there.
    """
    return (
        f"{who} raised while importing {_main_module()}, before any suitkaise code ran in it "
        f"(process exited with code {exitcode}; its traceback is on the child's stderr). "
        f"Under the {method!r} start method every child re-imports the script that started it: "
        f"{_GUARD}."
    )


def check_can_start_processes(what: str) -> None:
    """Refuse, in the caller's thread, to start processes where multiprocessing cannot.

    multiprocessing raises deep inside (for a Pool, in its manager thread) with a message
    about its own internals; this names the call and says what to do instead.
    """
    me = multiprocessing.current_process()
    if getattr(me, "_inheriting", False):
        raise RuntimeError(
            f"{what} was called while this process, a child started by multiprocessing, is "
            f"still importing {_main_module()}: it cannot start processes of its own yet. "
            f"The script runs again in every child; {_GUARD}."
        )
    if me.daemon:
        raise RuntimeError(
            f"{what} was called inside a daemonic process ({me.name}, e.g. a Pool worker): "
            "it cannot start processes of its own. Create the Pool with Pool(..., nested=True) to let "
            "its tasks start an Skprocess or a Pool, give the Pool Skprocess classes as items (they run "
            "inside the worker), or start the inner work from the parent."
        )
