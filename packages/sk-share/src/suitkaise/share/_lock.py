"""The cross-process lock of a store: a robust pthread mutex in the shared file.

::

    process A ──┐                                  ┌── process B
                │  pthread_mutex_t (pshared, robust) │
                └────────► header page of /dev/shm/sk-share-* ◄┘

* Uncontended lock/unlock is two atomic instructions in glibc, called through ctypes
  without releasing the GIL (``trylock``): ~0.25 µs, no system call (fcntl costs two).
* Contended: ``trylock`` polled for up to 0.2 ms, in bursts with a ``sched_yield`` between
  them (the holder is usually about to release: the critical sections are microseconds,
  and a sleeping waiter's wake-up costs far more), then ``pthread_mutex_timedlock`` in
  slices of 50 ms that release the GIL and sleep in the kernel (futex). Between slices
  Python runs its signal handlers, so Ctrl-C reaches a waiter at once.
* Interrupt-safe: Python raises a signal's exception (``KeyboardInterrupt``) as a C call
  returns, so a lock call that took the mutex may never hand back its result. Each call
  site catches that and, if the futex word names this thread, releases the mutex
  (``drop_if_mine``); a release a signal cuts short as it begins is finished by its caller
  (``Store.settle``); one that lands as a held ``with`` block's ``__exit__`` begins
  (Python's own window, bpo-29988) waits until it has run (``_defer.py``).
* Kill-safe: the mutex is *robust*. When its holder dies (even by SIGKILL) the kernel
  marks it and wakes a waiter, whose lock call returns ``EOWNERDEAD``; we call
  ``pthread_mutex_consistent`` and carry on. That is safe here because every commit
  publishes itself with one aligned store made last (a table word, an in-place 8-byte
  value, or the one-byte slot switch; see ``_store.py``): a dead writer leaves either the
  old or the new state, never a mix.

Where robust process-shared mutexes are unavailable (no glibc/musl), the store falls
back to a POSIX ``fcntl`` lock on byte 0 of the file (also released by the kernel when
the holder dies, but two system calls per lock/unlock). The creator of a store records
which kind it uses in the header, so every process uses the same one.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import threading
import time
from typing import Any

__all__ = ["KIND_FCNTL", "KIND_ROBUST", "MUTEX_SIZE", "FcntlLock", "RobustMutex", "robust_available"]

KIND_ROBUST = 1
KIND_FCNTL = 2
MUTEX_SIZE = 64  # bytes reserved for pthread_mutex_t (40 on x86-64, 48 on aarch64)

# A busy mutex is polled for up to _SPIN_NS before its waiter sleeps in the kernel: bursts
# of _SPIN_BURST trylocks (~2 us: a holder running on the other core usually releases within
# one), a sched_yield between bursts (a holder waiting for this core gets it). A futex
# sleep's wake-up took 0.2-5 ms on the loaded 2-core machine (the waker's core runs something
# else by then): two processes calling methods in a loop (benchmarks/share.py, 2 x 200
# obj.add(1)) took ~11 ms with 64 yielding trylocks before the sleep, ~8.5 ms with this.
_SPIN_NS = 200_000
_SPIN_BURST = 16

_EBUSY = errno.EBUSY
_ETIMEDOUT = errno.ETIMEDOUT
_SLICE_NS = 50_000_000  # a blocked waiter returns to Python this often (signals, Ctrl-C)
_TID_MASK = 0x3FFFFFFF  # the owner's thread id in a robust mutex's futex word (futex(2))
_native_id = threading.get_native_id
_ns = time.perf_counter_ns
_EOWNERDEAD = getattr(errno, "EOWNERDEAD", 130)
_ENOTRECOVERABLE = getattr(errno, "ENOTRECOVERABLE", 131)
_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1


def _load() -> tuple[Any, ...] | None:
    """(other functions, trylock, timedlock, unlock) or None when not available."""
    try:
        gil_free = ctypes.CDLL(None, use_errno=True)  # releases the GIL: may block
        with_gil = ctypes.PyDLL(None)  # keeps the GIL: never blocks
        fns = {}
        for name in (
            "pthread_mutexattr_init", "pthread_mutexattr_setpshared", "pthread_mutexattr_setrobust",
            "pthread_mutexattr_destroy", "pthread_mutex_init", "pthread_mutex_consistent",
        ):
            f = getattr(gil_free, name)
            f.restype = ctypes.c_int
            fns[name] = f
        lock = gil_free.pthread_mutex_timedlock
        lock.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lock.restype = ctypes.c_int
        # trylock/unlock run on every operation: no argtypes, they are passed the mutex's
        # ctypes buffer itself (a pointer; ~35 ns a pair less than converting an int)
        trylock = with_gil.pthread_mutex_trylock
        unlock = with_gil.pthread_mutex_unlock
        for f in (trylock, unlock):
            f.restype = ctypes.c_int
        for name in ("pthread_mutex_consistent", "pthread_mutexattr_init", "pthread_mutexattr_destroy"):
            fns[name].argtypes = [ctypes.c_void_p]
        fns["pthread_mutexattr_setpshared"].argtypes = [ctypes.c_void_p, ctypes.c_int]
        fns["pthread_mutexattr_setrobust"].argtypes = [ctypes.c_void_p, ctypes.c_int]
        fns["pthread_mutex_init"].argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    except (AttributeError, OSError):
        return None
    return fns, trylock, lock, unlock


_FUNCS = _load() if os.name == "posix" else None


def _spin(trylock: Any, buf: Any) -> int:
    """Poll a busy mutex (see ``_SPIN_NS``): ``trylock``'s last result (``_EBUSY``: give up
    and sleep in the kernel)."""
    end = _ns() + _SPIN_NS
    while True:
        for _ in _BURST:
            rc = trylock(buf)
            if rc != _EBUSY:
                return rc
        if _ns() > end:
            return rc
        os.sched_yield()


_BURST = range(_SPIN_BURST)


def robust_available() -> bool:
    """Whether this interpreter can use robust process-shared pthread mutexes."""
    return _FUNCS is not None and os.environ.get("SK_SHARE_LOCK", "") != "fcntl"


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(rc, f"{what} failed: {os.strerror(rc)}")


class _Timespec(ctypes.Structure):
    """``struct timespec`` (CLOCK_REALTIME, as ``pthread_mutex_timedlock`` reads it)."""

    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]

    def set(self, ns: int) -> None:
        self.sec, self.nsec = divmod(ns, 1_000_000_000)


class RobustMutex:
    """A robust, process-shared pthread mutex living at ``off`` in ``buf``."""

    __slots__ = ("_addr", "_buf")

    def __init__(self, buf: mmap.mmap, off: int, *, init: bool) -> None:
        if _FUNCS is None:  # pragma: no cover - checked by the caller
            raise OSError(errno.ENOSYS, "robust pthread mutexes are not available")
        self._buf: Any = (ctypes.c_char * MUTEX_SIZE).from_buffer(buf, off)
        self._addr = ctypes.addressof(self._buf)
        if init:
            fns = _FUNCS[0]
            attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes on Linux
            _check(fns["pthread_mutexattr_init"](attr), "pthread_mutexattr_init")
            try:
                _check(fns["pthread_mutexattr_setpshared"](attr, _PTHREAD_PROCESS_SHARED), "setpshared")
                _check(fns["pthread_mutexattr_setrobust"](attr, _PTHREAD_MUTEX_ROBUST), "setrobust")
                _check(fns["pthread_mutex_init"](self._addr, attr), "pthread_mutex_init")
            finally:
                fns["pthread_mutexattr_destroy"](attr)

    def acquire(self) -> bool:
        """Block until held. Returns True if the previous holder died holding it. The caller
        must not hold it (an exception raised here leaves it released)."""
        buf = self._buf
        _, trylock, lock, _ = _FUNCS  # type: ignore[misc]
        try:
            rc = trylock(buf)
            if rc == _EBUSY:
                rc = _spin(trylock, buf)
                if rc == _EBUSY:
                    until = _Timespec()
                    while True:  # sleeps in the kernel, GIL released, a slice at a time
                        until.set(time.time_ns() + _SLICE_NS)
                        rc = lock(self._addr, ctypes.byref(until))
                        if rc != _ETIMEDOUT:
                            break
            if rc == 0:
                return False
            return self._after(rc)
        except BaseException:
            self.drop_if_mine()
            raise

    def drop_if_mine(self) -> None:
        """Release the mutex if this thread holds it: after an exception raised as a lock
        call returned (a signal's), which may have taken it without anyone knowing. Only for
        callers that did not hold it before that call."""
        if self._buf is None or ctypes.c_uint32.from_buffer(self._buf).value & _TID_MASK != _native_id():
            return
        fns, _, _, unlock = _FUNCS  # type: ignore[misc]
        fns["pthread_mutex_consistent"](self._addr)  # (EINVAL unless a dead holder's: fine)
        unlock(self._buf)

    def fast(self) -> tuple[Any, Any, Any]:
        """(trylock, unlock, mutex buffer): the hottest path (``share.x += v``) calls them
        directly, saving two Python calls; a nonzero result goes to ``after_trylock`` /
        ``after_unlock``, an exception raised as trylock returns to ``drop_if_mine``. The
        tuple holds the mapping: drop it before closing that."""
        return _FUNCS[1], _FUNCS[3], self._buf  # type: ignore[index]

    def after_trylock(self, rc: int) -> bool:
        """Finish an acquisition whose ``trylock`` returned ``rc`` != 0 (held by another:
        wait; its holder died: we hold it now, repair). Returns ``acquire``'s result."""
        if rc == _EBUSY:
            return self.acquire()
        try:
            return self._after(rc)
        except BaseException:
            self.drop_if_mine()
            raise

    @staticmethod
    def after_unlock(rc: int) -> None:
        raise OSError(rc, f"pthread_mutex_unlock failed: {os.strerror(rc)}")

    def try_acquire(self) -> bool:
        """Take the mutex if it is free; never blocks."""
        try:
            rc = _FUNCS[1](self._buf)  # type: ignore[index]
            if rc == 0:
                return True
            if rc == _EBUSY:
                return False
            self._after(rc)  # (its holder died: ours now, repaired)
            return True
        except BaseException:
            self.drop_if_mine()
            raise

    def _after(self, rc: int) -> bool:
        if rc == _EOWNERDEAD:
            # the holder died; every commit publishes itself with one store, made last, so
            # the state is the old or the new one (see _store.py)
            _check(_FUNCS[0]["pthread_mutex_consistent"](self._addr), "pthread_mutex_consistent")  # type: ignore[index]
            return True
        if rc == _ENOTRECOVERABLE:
            raise OSError(rc, "the Share lock is not recoverable (a holder died and it was never repaired)")
        raise OSError(rc, f"pthread_mutex_lock failed: {os.strerror(rc)}")

    def release(self) -> None:
        rc = _FUNCS[3](self._buf)  # type: ignore[index]
        if rc != 0:
            raise OSError(rc, f"pthread_mutex_unlock failed: {os.strerror(rc)}")

    def detach(self) -> None:
        """Drop the buffer export so the mapping can be closed."""
        self._buf = None


class FcntlLock:
    """Fallback: a POSIX record lock on byte 0 of the store file."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def acquire(self) -> bool:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)
        return False

    def try_acquire(self) -> bool:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            return False
        return True

    def release(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)

    def drop_if_mine(self) -> None:
        """Nothing to do: a record lock belongs to the process, which takes it again at
        once and lets it go on its next operation (or exit), so a lock an interrupt left held
        delays the other processes until then, never for good."""

    def detach(self) -> None:
        pass
