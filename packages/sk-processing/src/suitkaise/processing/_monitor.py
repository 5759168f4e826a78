"""One thread per parent process that watches every started ``Skprocess``.

::

    start() / a restart thread              monitor thread (daemon, started by the first start())
    --------------------------              --------------
    watch(run, conn, sentinel):      --->   epoll([wake pipe, conn + sentinel of every child],
      register both with epoll                    timeout: nearest section deadline + grace)
      (section timeouts: one byte           - conn       -> run.on_message(conn): one message
      on the wake pipe, so that the         - sentinel   -> unregister both, run.on_exit(conn)
      thread recomputes its timeout)        - wake pipe  -> take the new runs with timeouts
                                            - every run with section timeouts:
                                              run.check_deadline(now) -> SIGKILL when overdue

Why one thread: a thread per ``start()`` cost about as much CPU in the parent as
the rest of a fork start (creating it, scheduling it, its wait loop), on a
machine whose cores the new child needs. Registering a child costs two
``epoll_ctl`` calls in the caller's thread; epoll watches descriptors added
while the monitor is already waiting, so it is not woken unless it must
recompute its timeout.

Everything the thread calls must be short, since a slow step for one child
delays the others (a deadline kill included): a crashed child is replaced on a
thread of its own (``ParentRun.on_exit``), which hands the new child back
through ``watch()``; the fork itself runs on one long-lived forking thread
(``on_forker``), so that the new child keeps ``PR_SET_PDEATHSIG``.

Descriptors are unregistered on the monitor thread before anyone closes them
(``on_exit`` runs after that), and each event is checked against the
registration it was reported for (taken when ``poll`` returned), so a number
reused by a new pipe is never mistaken for an old one.

The thread is a daemon (it never keeps the interpreter alive), and a forked
child forgets it (``os.register_at_fork``): the child has no such thread, and
creates its own monitor if it starts processes itself.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

__all__ = ["Watched", "is_forker", "on_forker", "watch"]


class Watched(Protocol):
    """What the monitor calls on a started process (``_parent.ParentRun``)."""

    has_timeouts: bool

    def on_message(self, conn: Any) -> None:
        """Read one message from ``conn``; EOFError/OSError once the child's end is closed."""

    def on_exit(self, conn: Any) -> None:
        """The child has exited; its conn and sentinel are no longer watched."""

    def check_deadline(self, now: float) -> float:
        """Kill the child if it overran its section; seconds until the next look."""

    def on_monitor_error(self, error: BaseException) -> None:
        """A callback raised (a bug): fail the run so that ``result()`` does not hang."""


class _Entry:
    """One registered descriptor: a child's conn or its sentinel."""

    __slots__ = ("conn", "is_conn", "run")

    def __init__(self, run: Watched, conn: Any, is_conn: bool) -> None:
        self.run = run
        self.conn = conn
        self.is_conn = is_conn


class _Monitor:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards entries, fds, epoll registrations and timed_new
        self.epoll = select.epoll()
        self.entries: dict[int, _Entry] = {}
        self.fds: dict[Watched, tuple[int, int]] = {}  # run -> (conn fd, sentinel)
        self.timed: set[Watched] = set()  # runs with section timeouts (monitor thread only)
        self.timed_new: list[Watched] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.epoll.register(self.wake_r, select.EPOLLIN)
        self.thread = threading.Thread(target=self._loop, name="sk-monitor", daemon=True)
        self.thread.start()

    def watch(self, run: Watched, conn: Any, sentinel: int) -> None:
        fd = conn.fileno()
        with self.lock:
            self.fds[run] = (fd, sentinel)
            self.entries[fd] = _Entry(run, conn, True)
            self.entries[sentinel] = _Entry(run, conn, False)
            self.epoll.register(fd, select.EPOLLIN)
            self.epoll.register(sentinel, select.EPOLLIN)
            if not run.has_timeouts:
                return
            self.timed_new.append(run)
            if len(self.timed_new) > 1:
                return  # a wake-up is already on its way
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups: the thread will look
            pass

    def forget_in_child(self) -> None:
        """In a forked child: close our copies of the descriptors (the thread is not there)."""
        self.epoll.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _loop(self) -> None:
        timeout = -1.0
        while True:
            ready = self.epoll.poll(timeout)
            entries = self.entries
            batch = [(fd, entries.get(fd)) for fd, _ in ready]
            for fd, entry in batch:
                if fd == self.wake_r:
                    self._take_timed()
                elif entry is not None and entries.get(fd) is entry:  # not dropped meanwhile
                    self._dispatch(fd, entry)
            timeout = self._check_deadlines()

    def _dispatch(self, fd: int, entry: _Entry) -> None:
        run = entry.run
        try:
            if entry.is_conn:
                try:
                    run.on_message(entry.conn)
                except (EOFError, OSError):
                    self._unregister(fd)  # its sentinel says why
            else:
                self._drop(run)
                run.on_exit(entry.conn)
        except BaseException as e:
            self._fail(run, e)

    def _fail(self, run: Watched, error: BaseException) -> None:
        """A callback raised (a bug): fail that run and keep watching the others."""
        self._drop(run)
        try:
            run.on_monitor_error(error)
        except BaseException:  # nothing may stop the thread every other child depends on
            pass

    def _take_timed(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        with self.lock:
            new, self.timed_new = self.timed_new, []
        self.timed.update(run for run in new if run in self.fds)

    def _unregister(self, fd: int) -> None:
        with self.lock:
            if self.entries.pop(fd, None) is not None:
                self.epoll.unregister(fd)

    def _drop(self, run: Watched) -> None:
        """Stop watching ``run``'s child (its conn, its sentinel)."""
        with self.lock:
            for fd in self.fds.pop(run, ()):
                if self.entries.pop(fd, None) is not None:
                    self.epoll.unregister(fd)
        self.timed.discard(run)

    def _check_deadlines(self) -> float:
        """Look at each published section deadline; the time until the next look (-1: none)."""
        timeout = -1.0
        now = time.monotonic()
        for run in list(self.timed):
            try:
                wait = run.check_deadline(now)
            except BaseException as e:
                self._fail(run, e)
                continue
            timeout = wait if timeout < 0 else min(timeout, wait)
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


# -- the forking thread ---------------------------------------------------------------
#
# PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process. A
# crashed child is replaced off the monitor thread (spawning takes milliseconds), but forking
# it from a short-lived thread would leave the new child without the signal: one parked
# thread that lives as long as the process forks every replacement.

_forker: SimpleQueue[tuple[Callable[[], Any], Future[Any]]] | None = None
_forker_thread: threading.Thread | None = None


def on_forker(fn: Callable[[], T]) -> T:
    """Run ``fn()`` on this process's long-lived forking thread; its result or exception."""
    global _forker, _forker_thread
    with _lock:
        if _forker is None:
            _forker = SimpleQueue()
            _forker_thread = threading.Thread(target=_fork_loop, args=(_forker,), name="sk-forker", daemon=True)
            _forker_thread.start()
        queue = _forker
    done: Future[T] = Future()
    queue.put((fn, done))
    return done.result()


def is_forker(thread: threading.Thread) -> bool:
    """Whether ``thread`` is the forking thread (a child it forks may use PR_SET_PDEATHSIG)."""
    return thread is _forker_thread


def _fork_loop(queue: SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
    while True:
        fn, done = queue.get()
        try:
            done.set_result(fn())
        except BaseException as e:
            done.set_exception(e)
        del fn, done


def _after_fork_in_child() -> None:
    global _monitor, _lock, _forker, _forker_thread
    _lock = threading.Lock()  # may have been held by another thread at the fork
    _forker = _forker_thread = None  # the thread is not in the child
    if _monitor is not None:
        _monitor.forget_in_child()
        _monitor = None


os.register_at_fork(after_in_child=_after_fork_in_child)
