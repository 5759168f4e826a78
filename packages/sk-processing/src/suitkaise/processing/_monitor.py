"""One thread per parent process that watches every started ``Skprocess``.

::

    caller / restart thread               monitor thread (daemon, started on the first start())
    -----------------------               --------------
    watch(run): queue (run, conn,  --->   poll([wake pipe, conn and sentinel of each child])
    sentinel), one byte to the              timeout: the nearest section deadline + grace
    wake pipe if none is pending            - wake pipe  -> register the queued children
                                            - conn       -> run.on_message(conn)
                                            - sentinel   -> unregister both, run.on_exit(conn)
                                            - each run with section timeouts:
                                              run.check_deadline(now) -> SIGKILL when overdue

A thread per ``start()`` cost about as much as the rest of a fork start (creating
it and waiting for it to be scheduled on a loaded machine); one thread for all
of them costs a byte on a pipe per start. Everything it calls must be short,
since a slow step for one child delays the deadline kills of the others: a
crashed child is replaced on a thread of its own (``ParentRun.on_exit``), which
hands the new child back through ``watch()``.

Descriptors are registered and unregistered on the monitor thread only, and
unregistered before anyone closes them (``on_exit`` runs after that), so a
number reused by a new pipe is never mistaken for an old one. ``poll`` rather
than ``epoll``: it holds no state about a descriptor beyond its number.

The thread is a daemon (it never keeps the interpreter alive) and a forked
child forgets it (``os.register_at_fork``): the child has no such thread, and
creates its own monitor if it starts processes itself.
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from typing import Any, Protocol

__all__ = ["Watched", "watch"]


class Watched(Protocol):
    """What the monitor calls on a started process (``_parent.ParentRun``)."""

    has_timeouts: bool

    def on_message(self, conn: Any) -> None:
        """Read one message from ``conn``; EOFError/OSError once the child's end is closed."""

    def on_exit(self, conn: Any) -> None:
        """The child has exited; ``conn`` and the sentinel are no longer watched."""

    def check_deadline(self, now: float) -> float:
        """Kill the child if it overran its section; seconds until the next look."""

    def on_monitor_error(self, error: BaseException) -> None:
        """A callback raised (a bug): fail the run so that ``result()`` does not hang."""


class _Monitor:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued: list[tuple[Watched, Any, int]] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.selector = selectors.PollSelector()
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.fds: dict[Watched, tuple[int, int]] = {}  # run -> (conn, sentinel) descriptors
        self.timed: set[Watched] = set()
        self.thread = threading.Thread(target=self._loop, name="sk-monitor", daemon=True)
        self.thread.start()

    def watch(self, run: Watched, conn: Any, sentinel: int) -> None:
        with self.lock:
            self.queued.append((run, conn, sentinel))
            if len(self.queued) > 1:
                return  # a wake-up is already on its way
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups: the thread will look
            pass

    def forget_in_child(self) -> None:
        """In a forked child: close the copies of our descriptors (the thread is not there)."""
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _loop(self) -> None:
        timeout: float | None = None
        while True:
            for key, _ in self.selector.select(timeout):
                if self.selector.get_map().get(key.fd) is not key:
                    continue  # unregistered by an earlier event of this batch
                if key.data is None:
                    self._take_queued()
                    continue
                run, conn, is_conn = key.data
                try:
                    if is_conn:
                        try:
                            run.on_message(conn)
                        except (EOFError, OSError):
                            self.selector.unregister(key.fd)  # the sentinel says why
                    else:
                        self._drop(run)
                        run.on_exit(conn)
                except BaseException as e:  # a bug: fail this run, keep watching the others
                    self._drop(run)
                    run.on_monitor_error(e)
            timeout = self._check_deadlines()

    def _take_queued(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        with self.lock:
            queued, self.queued = self.queued, []
        for run, conn, sentinel in queued:
            self.fds[run] = (conn.fileno(), sentinel)
            self.selector.register(conn.fileno(), selectors.EVENT_READ, (run, conn, True))
            self.selector.register(sentinel, selectors.EVENT_READ, (run, conn, False))
            if run.has_timeouts:
                self.timed.add(run)

    def _drop(self, run: Watched) -> None:
        """Stop watching ``run``'s child (its conn, its sentinel)."""
        registered = self.selector.get_map()
        for fd in self.fds.pop(run, ()):
            if fd in registered:
                self.selector.unregister(fd)
        self.timed.discard(run)

    def _check_deadlines(self) -> float | None:
        """Look at each published section deadline; the time until the next look."""
        timeout = None
        now = time.monotonic()
        for run in list(self.timed):
            try:
                wait = run.check_deadline(now)
            except BaseException as e:
                self._drop(run)
                run.on_monitor_error(e)
                continue
            timeout = wait if timeout is None else min(timeout, wait)
        return timeout


_monitor: _Monitor | None = None
_lock = threading.Lock()


def watch(run: Watched, conn: Any, sentinel: int) -> None:
    """Have the monitor pump ``conn`` and watch ``sentinel`` until the child exits."""
    global _monitor
    monitor = _monitor
    if monitor is None:
        with _lock:
            if _monitor is None:
                _monitor = _Monitor()
            monitor = _monitor
    monitor.watch(run, conn, sentinel)


def _after_fork_in_child() -> None:
    global _monitor, _lock
    _lock = threading.Lock()  # may have been held by another thread at the fork
    if _monitor is not None:
        _monitor.forget_in_child()
        _monitor = None


os.register_at_fork(after_in_child=_after_fork_in_child)
