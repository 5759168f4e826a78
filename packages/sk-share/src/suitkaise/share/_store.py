"""The shared store: one file in /dev/shm, mapped by every process that uses the Share.

::

    process A (owner)          process B                 process C
    ┌──────────────┐          ┌──────────────┐          ┌──────────────┐
    │ Share handle │          │ Share handle │          │ Share handle │
    │ decoded cache│          │ decoded cache│          │ decoded cache│
    └──────┬───────┘          └──────┬───────┘          └──────┬───────┘
           │ mmap + fcntl lock (byte 0)  │                        │
           ▼                             ▼                        ▼
    /dev/shm/sk-share-<pid>-<rand>  (one file, MAP_SHARED)
    ┌────────┬───────────┬───────────┬──────────────────────┬───────────────────────┐
    │ magic  │ selector  │ slot 0/1  │ region A (active):   │ region B (spare), ... │
    │ gen,pid│ (1 byte)  │ seq,flags,│ values + index blob, │ target of compaction  │
    │        │           │ index,... │ bump-allocated       │                       │
    └────────┴───────────┴───────────┴──────────────────────┴───────────────────────┘

There is no server process: every process reads and writes the file itself.

* Writers take a per-process ``threading.RLock`` and then a POSIX ``fcntl`` lock on byte 0
  of the file. The kernel drops a POSIX lock when its holder dies (even by SIGKILL), so a
  killed writer never blocks anybody.
* Writes are copy-on-write: new values and a new index are written to free space, then the
  *inactive* header slot is filled and the one-byte selector flips to it. A writer killed
  at any instant leaves either the old or the new state, never a mix.
* When the active region is full, live entries are copied into the spare region (or a new
  bigger region at the end of the file, ``ftruncate`` + ``posix_fallocate``), and the slot
  flip switches regions. Compaction also never touches live data before the flip.
* Readers first compare the committed sequence number (two 8-byte reads, no syscall) with
  the sequence at which their cached copy was checked: if nothing was committed since, the
  cached value is current, so a read of an unchanged value costs no lock and no syscall.

The owner registers the file with multiprocessing's resource tracker (so a SIGKILLed owner
is cleaned up) and unregisters it when it unlinks the file (stop(), exit, garbage
collection): no "leaked shared_memory" warnings in normal use. Other processes never
register it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import marshal
import mmap
import os
import secrets
import struct
import tempfile
import threading
from typing import Any

MAGIC = b"SKSHARE1"
HEADER = 4096
SEL_OFF = 8
GEN_OFF = 16
PID_OFF = 24
SLOT_OFF = (64, 192)
SLOT = struct.Struct("<10Q")  # seq, flags, idx_off, idx_len, act_off, act_size, bump, spr_off, spr_size, fsize
SEQ = struct.Struct("<Q")
MIN_REGION = 1 << 20

FLAG_STOPPED = 1
FLAG_CLOSED = 2

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class StoreGone(Exception):
    """The file behind a store no longer exists (stopped or closed by its owner)."""


def _align(n: int) -> int:
    return (n + 7) & ~7


def path_of(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def new_name() -> str:
    return f"sk-share-{os.getpid()}-{secrets.token_hex(6)}"


class Store:
    """One process's attachment to a shared store file (shared by all handles in the process)."""

    def __init__(self, name: str, fd: int, mm: mmap.mmap) -> None:
        self.name = name
        self.fd = fd
        self.mm = mm
        self.tlock = threading.RLock()
        self.depth = 0
        self.closed = False
        self.generation = bytes(mm[GEN_OFF : GEN_OFF + 8])
        self.owner_pid = SEQ.unpack_from(mm, PID_OFF)[0]
        self._index: dict[str, tuple[int, int, int, int]] = {}
        self._index_seq = -1
        # decoded cache: name -> [ver, obj, checked_seq, immutable]
        self.cache: dict[str, list[Any]] = {}

    # -- creation / attachment ------------------------------------------------------------

    @classmethod
    def create(cls, name: str, seq: int = 0) -> Store:
        path = path_of(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = HEADER + 2 * MIN_REGION
            os.ftruncate(fd, size)
            _reserve(fd, 0, HEADER + MIN_REGION)
            mm = mmap.mmap(fd, size)
            mm[0:8] = MAGIC
            mm[GEN_OFF : GEN_OFF + 8] = secrets.token_bytes(8)
            SEQ.pack_into(mm, PID_OFF, os.getpid())
            blob = marshal.dumps({})
            act = HEADER
            mm[act : act + len(blob)] = blob
            SLOT.pack_into(
                mm, SLOT_OFF[0], seq, 0, act, len(blob), act, MIN_REGION,
                _align(act + len(blob)), HEADER + MIN_REGION, MIN_REGION, size,
            )
            mm[SEL_OFF] = 0
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return cls(name, fd, mm)

    @classmethod
    def attach(cls, name: str) -> Store:
        try:
            fd = os.open(path_of(name), os.O_RDWR)
        except FileNotFoundError:
            raise StoreGone(f"{name}: no such file") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER:
                raise StoreGone(f"{name}: file too small ({size} bytes)")
            mm = mmap.mmap(fd, size)
            if mm[0:8] != MAGIC:
                mm.close()
                raise StoreGone(f"{name}: not a Share store")
        except BaseException:
            os.close(fd)
            raise
        return cls(name, fd, mm)

    def file_generation(self) -> bytes | None:
        """Generation of the file now at our path (None if there is none)."""
        try:
            with open(path_of(self.name), "rb") as f:
                head = f.read(GEN_OFF + 8)
        except FileNotFoundError:
            return None
        if head[:8] != MAGIC:
            return None
        return head[GEN_OFF : GEN_OFF + 8]

    def close(self) -> None:
        """Drop this process's mapping and descriptor (the data stays for the others)."""
        with self.tlock:
            if self.closed:
                return
            self.closed = True
            self.cache.clear()
            with contextlib.suppress(Exception):
                self.mm.close()
            with contextlib.suppress(OSError):
                os.close(self.fd)

    # -- locking -------------------------------------------------------------------------

    def locked(self) -> _Locked:
        """Exclusive access across threads (RLock) and processes (fcntl, dies with holder)."""
        return _Locked(self)

    def try_lock_briefly(self) -> bool:
        """Non-blocking attempt (used at interpreter exit, where blocking is not allowed)."""
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            return True
        except OSError:
            return False

    # -- reading ---------------------------------------------------------------------------

    def seq(self) -> int:
        """Committed sequence number (no lock needed: two aligned reads)."""
        mm = self.mm
        return SEQ.unpack_from(mm, SLOT_OFF[mm[SEL_OFF]])[0]

    def slot(self) -> tuple[int, ...]:
        mm = self.mm
        s = SLOT.unpack_from(mm, SLOT_OFF[mm[SEL_OFF]])
        if len(mm) < s[9]:
            self._remap(s[9])
        return s

    def _remap(self, size: int) -> None:
        old = self.mm
        self.mm = mmap.mmap(self.fd, size)
        with contextlib.suppress(BufferError):
            old.close()

    def index(self) -> dict[str, tuple[int, int, int, int]]:
        """name -> (offset, length, kind, version); call under the lock."""
        s = self.slot()
        if s[0] != self._index_seq:
            self._index = marshal.loads(self.mm[s[2] : s[2] + s[3]])
            self._index_seq = s[0]
        return self._index

    def raw(self, entry: tuple[int, int, int, int]) -> bytes:
        return self.mm[entry[0] : entry[0] + entry[1]]

    # -- writing ---------------------------------------------------------------------------

    def commit(
        self,
        changes: dict[str, tuple[int, bytes] | None],
        *,
        clear: bool = False,
        flags: int | None = None,
    ) -> int:
        """Apply ``changes`` (name -> (kind, data) or None to delete) atomically; call under
        the lock. Returns the new sequence number."""
        s = self.slot()
        seq = s[0] + 1
        index = dict(self.index())
        if clear:
            index = {k: v for k, v in index.items() if k.startswith("\x00")}
        new: list[tuple[str, int, bytes]] = []
        for name, ch in changes.items():
            if ch is None:
                index.pop(name, None)
            else:
                index.pop(name, None)
                new.append((name, ch[0], ch[1]))
        new_flags = s[1] if flags is None else flags
        act_off, act_size, bump, spr_off, spr_size, fsize = s[4], s[5], s[6], s[7], s[8], s[9]
        # fast case: append new values + index to the active region
        placed = self._place(new, index, seq, bump, act_off + act_size, copy_live=False)
        if placed is None:
            # compaction into the spare region, or into a new bigger region
            live = sum(_align(v[1]) for v in index.values())
            need = live + sum(_align(len(d)) for _, _, d in new)
            need += 64 * (len(index) + len(new)) + 4096
            target = max(MIN_REGION, 2 * need)
            if spr_size >= target:
                t_off, t_size = spr_off, spr_size
            else:
                t_off, t_size = fsize, target
                fsize = t_off + t_size
                os.ftruncate(self.fd, fsize)
                _reserve(self.fd, t_off, t_size)
                self._remap(fsize)
            placed = self._place(new, index, seq, t_off, t_off + t_size, copy_live=True)
            if placed is None:  # pragma: no cover - sizes above always fit
                raise RuntimeError("Share store compaction failed to fit its data")
            spr_off, spr_size = act_off, act_size
            act_off, act_size = t_off, t_size
        index, idx_off, idx_len, bump = placed
        mm = self.mm
        inactive = 1 - mm[SEL_OFF]
        SLOT.pack_into(
            mm, SLOT_OFF[inactive], seq, new_flags, idx_off, idx_len,
            act_off, act_size, bump, spr_off, spr_size, fsize,
        )
        mm[SEL_OFF] = inactive  # the commit point: one byte
        self._index = index
        self._index_seq = seq
        return seq

    def _place(
        self,
        new: list[tuple[str, int, bytes]],
        index: dict[str, tuple[int, int, int, int]],
        seq: int,
        start: int,
        end: int,
        *,
        copy_live: bool,
    ) -> tuple[dict[str, tuple[int, int, int, int]], int, int, int] | None:
        mm = self.mm
        pos = start
        out: dict[str, tuple[int, int, int, int]] = {}
        if copy_live:
            for name, (off, ln, kind, ver) in index.items():
                if pos + ln > end:
                    return None
                mm[pos : pos + ln] = mm[off : off + ln]
                out[name] = (pos, ln, kind, ver)
                pos = _align(pos + ln)
        else:
            out = dict(index)
        for name, kind, data in new:
            ln = len(data)
            if pos + ln > end:
                return None
            mm[pos : pos + ln] = data
            out[name] = (pos, ln, kind, seq)
            pos = _align(pos + ln)
        blob = marshal.dumps(out)
        if pos + len(blob) > end:
            return None
        mm[pos : pos + len(blob)] = blob
        return out, pos, len(blob), _align(pos + len(blob))


class _Locked:
    """Context manager for :meth:`Store.locked` (a class: cheaper than a generator)."""

    __slots__ = ("st",)

    def __init__(self, st: Store) -> None:
        self.st = st

    def __enter__(self) -> None:
        st = self.st
        st.tlock.acquire()
        if st.closed:
            st.tlock.release()
            raise StoreGone(f"{st.name}: detached in this process")
        if st.depth == 0:
            try:
                fcntl.lockf(st.fd, fcntl.LOCK_EX, 1, 0)
            except BaseException:
                st.tlock.release()
                raise
        st.depth += 1

    def __exit__(self, *exc: object) -> None:
        st = self.st
        st.depth -= 1
        try:
            if st.depth == 0 and not st.closed:
                fcntl.lockf(st.fd, fcntl.LOCK_UN, 1, 0)
        finally:
            st.tlock.release()


def _reserve(fd: int, off: int, size: int) -> None:
    """Back the region with real pages now, so a full /dev/shm is an error, not a SIGBUS."""
    try:
        os.posix_fallocate(fd, off, size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate
            return
        raise


# -- the per-process registry of attachments ------------------------------------------------

_REGISTRY: dict[str, Store] = {}
_REGISTRY_LOCK = threading.Lock()


def get_store(name: str) -> Store:
    """This process's attachment to ``name`` (attaching on first use)."""
    st = _REGISTRY.get(name)
    if st is not None and not st.closed:
        return st
    with _REGISTRY_LOCK:
        st = _REGISTRY.get(name)
        if st is None or st.closed:
            st = Store.attach(name)
            _REGISTRY[name] = st
        return st


def register_store(st: Store) -> None:
    with _REGISTRY_LOCK:
        old = _REGISTRY.get(st.name)
        _REGISTRY[st.name] = st
    if old is not None and old is not st:
        old.close()


def forget_store(st: Store) -> None:
    with _REGISTRY_LOCK:
        if _REGISTRY.get(st.name) is st:
            del _REGISTRY[st.name]


def _after_fork_in_child() -> None:
    # a thread of the parent may have held these locks at fork time: start afresh
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.Lock()
    for st in list(_REGISTRY.values()):
        st.tlock = threading.RLock()
        st.depth = 0  # POSIX locks are not inherited by the child


os.register_at_fork(after_in_child=_after_fork_in_child)
