"""What the three runtimes of an ``Skprocess`` share.

An instance always has one runtime object under ``RUNTIME_ATTR`` while it is
started, and its control methods (``stop``, ``tell``, ``listen``, ``wait``,
``result`` ...) delegate to it:

=================  ==============================  =============================
runtime            where the instance lives        module
=================  ==============================  =============================
``ParentRun``      the parent (after ``start()``)  ``_parent`` (+ ``_monitor``)
``ChildRuntime``   inside its child process        ``_child``
``InlineRuntime``  inside a Pool worker            ``_inline``
=================  ==============================  =============================

All three implement ``Runtime``. This module also fixes the layout of the
control array the parent and the child share, and the tags of the messages on
their pipe.
"""

from __future__ import annotations

import mmap
from typing import Any, NamedTuple, Protocol

__all__ = [
    "RUNTIME_ATTR", "FinalState", "Outcome", "Runtime", "SectionTimeout", "is_skprocess",
    "is_skprocess_class", "min_timeout", "new_ctrl",
]

# The attribute of an Skprocess instance holding its runtime (never serialized).
RUNTIME_ATTR = "_sk_rt"
# Class attribute marking Skprocess and its subclasses (lets lower modules recognise one
# without importing the class, which sits above them).
SKPROCESS_MARK = "_sk_is_skprocess"

# ctrl: CTRL_SLOTS doubles shared with the child in a started process (new_ctrl), a plain
# list inline.
STOP, DEADLINE, TIMEOUT, SECTION, RUN, LIVES, BOOTED = range(7)
CTRL_SLOTS = 7

# child <-> parent messages: one tag byte, then cucumber bytes (or marshal's)
TAG_TELL = b"T"  # either way: a tell() message
TAG_FINAL = b"F"  # child -> parent: the final state (result or error, current_run, timers)
TAG_FINAL_MARSHAL = b"M"  # the same in marshal bytes, not cucumber's (_child._final_message)
TAG_ACK = b"A"  # child -> parent: one tell() message taken off the pipe


class Outcome(NamedTuple):
    """How a run ended: ``("value", v)``, ``("raise", ProcessError)`` or ``("killed", None)``."""

    kind: str
    value: Any


class FinalState(NamedTuple):
    """The last message of a child's life: its outcome and the state the parent adopts.

    ``timers is None`` when the child could not send them; ``has_state`` is False when
    the instance could not even be rebuilt in the child.
    """

    kind: str
    value: Any
    has_state: bool = False
    current_run: int = 0
    error: BaseException | None = None
    timers: Any = None


class SectionTimeout(NamedTuple):
    """A section that was given ``timeout`` seconds on run ``run``."""

    section: str
    timeout: float
    run: int


class Runtime(Protocol):
    """The interface ``Skprocess``'s control methods call on ``RUNTIME_ATTR``."""

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def tell(self, data: Any) -> None: ...

    def listen(self, timeout: float | None, sk_timeout: float | None) -> Any: ...

    def wait(self, timeout: float | None, sk_timeout: float | None) -> bool: ...

    def result(self, sk_timeout: float | None, what: str = "result") -> Any: ...

    def live_current_run(self) -> int | None: ...

    def is_alive(self) -> bool: ...

    def describe(self) -> str: ...


def is_skprocess(obj: object) -> bool:
    """Whether ``obj`` is an Skprocess instance."""
    return bool(getattr(type(obj), SKPROCESS_MARK, False))


def is_skprocess_class(obj: object) -> bool:
    """Whether ``obj`` is Skprocess or a subclass (Pool items are then run as processes)."""
    return isinstance(obj, type) and bool(getattr(obj, SKPROCESS_MARK, False))


def min_timeout(a: float | None, b: float | None) -> float | None:
    """The tighter of two optional timeouts."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def new_ctrl(ctx: Any) -> Any:
    """A zeroed control array that a started process shares with its child.

    Under fork an anonymous shared mapping, which the child inherits: what multiprocessing's
    heap does under fork, without its allocator, lock and finalizer (~30 fewer pages written
    by the parent per start, each one copied while a forked child lives). Otherwise a
    ``RawArray``, which reaches a spawned child through a file descriptor.
    """
    if ctx.get_start_method() == "fork":
        return memoryview(mmap.mmap(-1, 8 * CTRL_SLOTS)).cast("d")
    return ctx.RawArray("d", CTRL_SLOTS)
