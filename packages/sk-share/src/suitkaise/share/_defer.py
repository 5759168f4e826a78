"""Signals that land as a held ``with`` block's ``__exit__`` begins wait until it has run.

Python runs a signal's handler (``KeyboardInterrupt`` for Ctrl-C) at the first line of
every Python function, so one that arrives as a ``with share.lock():`` block ends can be
raised before ``__exit__`` has done anything: the with statement then propagates it without
calling ``__exit__`` again, and the block's lock and transaction stay held for good (every
other process hangs; bpo-29988). A C-level lock's ``__exit__`` has no such line; ours does.

So while such a block holds the lock in the main thread (the only thread Python runs
handlers in), SIGINT and SIGTERM, when they have Python handlers, go through
``Deferral._handle`` (a stand-in for the handler, two ``sigaction`` calls a block): landing
in a registered ``__exit__`` (``EXITS``) it is kept, anywhere else (the block's own code,
the Share's operations, which handle it) it is handled at once. ``Deferral.end``, the last
thing ``__exit__`` does, puts the handlers back and then runs the kept signals' handlers:
the exception reaches the caller once the lock is free and the block committed or rolled
back.
"""

from __future__ import annotations

# ``_signal`` is the C module under ``signal``, whose wrappers convert to and from enums on
# every call (a failed Enum lookup for each Python handler): ~20x the cost of a block's swap
import _signal  # type: ignore[import-not-found]
import os
import signal
import threading
from types import CodeType, FrameType
from typing import Any

# the signals programs give raising handlers (Ctrl-C; a SIGTERM handler raising SystemExit);
# one left at SIG_DFL/SIG_IGN is not touched (``getsignal`` reads Python's own table)
_SIGNALS = tuple(int(getattr(signal, n)) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))
EXITS: set[CodeType] = set()  # the ``__exit__`` code objects signals must not land in


class Deferral:
    """The handlers a held block replaced, and the signals kept while it ends."""

    __slots__ = ("active", "pending", "saved")

    def __init__(self, saved: list[tuple[int, Any]]) -> None:
        self.saved = saved
        self.pending: list[tuple[int, FrameType | None]] = []
        self.active = False  # installed, not yet restoring

    def _handle(self, signum: int, frame: FrameType | None) -> Any:
        if self.active and frame is not None and frame.f_code in EXITS:
            self.pending.append((signum, frame))
            return None
        return self._original(signum)(signum, frame)

    def _original(self, signum: int) -> Any:
        for sig, h in self.saved:
            if sig == signum:
                return h
        return signal.default_int_handler  # pragma: no cover - only saved signals come here

    def install(self) -> None:
        self.active = True
        for sig, _ in self.saved:
            _signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Put the handlers back (unless the block installed its own since), SIGINT last.
        A signal landing here meanwhile is kept (this code is in ``EXITS``) unless its own
        handler is back already: should that raise, the stand-ins left only pass signals
        on (``active`` is off), and the next ``defer`` unwraps them."""
        try:
            for sig, h in reversed(self.saved):
                if _signal.getsignal(sig) == self._handle:
                    _signal.signal(sig, h)
        finally:
            self.active = False

    def end(self) -> None:
        """``restore``, then run the handlers of the signals kept: the first one that
        raises ends this call."""
        self.restore()
        pending, self.pending = self.pending, []
        for signum, frame in pending:
            self._original(signum)(signum, frame)


def defer() -> Deferral | None:
    """In the main thread, a Deferral for the signals with Python handlers, to ``install``
    once the caller keeps it (None elsewhere, or when an outer block's is installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    saved = []
    for sig in _SIGNALS:
        h = _signal.getsignal(sig)
        owner = getattr(h, "__self__", None)
        if isinstance(owner, Deferral):
            if owner.active:
                return None  # an outer block's: it keeps what lands in ours
            h = owner._original(sig)  # one left by a restore a signal cut short
        if callable(h):
            saved.append((sig, h))
    return Deferral(saved) if saved else None


def start(block: Any) -> None:
    """Give a ``with`` block that now holds the lock its Deferral (``block.deferral``,
    kept before it is installed, so the block's error path can always restore it)."""
    block.deferral = defer()
    if block.deferral is not None:
        block.deferral.install()


def _after_fork_in_child() -> None:
    # A child forked inside a held block (Process.start() in `with share.lock():`) inherits
    # the installed stand-in but holds no block: left active, it would keep the signals that
    # land in the child's own blocks' __exit__ (its defer() would take it for an outer
    # block's and install nothing) and no end() would ever run them. Inactive, it only
    # passes signals on, and the child's next block unwraps it.
    for sig in _SIGNALS:
        owner = getattr(_signal.getsignal(sig), "__self__", None)
        if isinstance(owner, Deferral):
            owner.active = False


# (a signal landing while a Deferral puts the handlers back waits too: handled there, it
# would stop the restore half-way and leave the stand-in installed)
EXITS.update((Deferral.restore.__code__, Deferral.end.__code__))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
