"""The shared store: one file in /dev/shm, mapped by every process that uses the Share.

::

    process A (owner)          process B                 process C
    ┌──────────────┐          ┌──────────────┐          ┌──────────────┐
    │ Share handle │          │ Share handle │          │ Share handle │
    │ decoded cache│          │ decoded cache│          │ decoded cache│
    └──────┬───────┘          └──────┬───────┘          └──────┬───────┘
           │ mmap + robust pthread mutex in the header (_lock.py) │
           ▼                             ▼                        ▼
    /dev/shm/sk-share-<pid>-<rand>  (one file, MAP_SHARED)
    ┌─────────────────────────────┬──────────────────────────────┬──────────────────────┐
    │ header page (own mapping):  │ region A (active):           │ holes (no memory):   │
    │ magic, selector (1 byte),   │ records, names blob          │ earlier regions, the │
    │ epoch, slot 0 | slot 1,     │ (the names in entry order),  │ next compaction's    │
    │ mutex, garbage count        │ entry table (one word per    │ target (reserved     │
    │                             │ name: its head record), both │ when it is made)     │
    │                             │ with room to grow in place   │                      │
    └─────────────────────────────┴──────────────────────────────┴──────────────────────┘

    record: len, kind, version, prev, base, log | data        (REC; data 8-byte aligned)
    a name's value: head record ─prev─► delta ─prev─► ... ─► full value (kind & K_DELTA == 0)
    names blob: piece | piece | ... | (room)   piece: length (8 bytes) | marshal'd (gone, put)
    entry table: word 0 .. word tab_n-1 | (room up to tab_cap words); an entry no name
                 points at any more is dead (dropped by the next rebuild)

This is the bytes layer only (lock, lookup, atomic commit); ``_txn.py`` turns entries into
Python values and ``_share.py`` is the attribute syntax. Another access path (e.g. a TCP
server holding the store for remote clients) can reuse this layer unchanged.

There is no server process: every process reads and writes the file itself.

* Writers take a per-process ``threading.RLock`` and then the robust process-shared mutex
  in the header (``_lock.py``; ``fcntl`` fallback). A holder killed even by SIGKILL never
  blocks anybody: the next locker gets ``EOWNERDEAD`` and repairs the mutex.
* Every commit leaves the old or the new state whatever instant its writer dies at, because
  its commit point is one aligned 8-byte store (or the one-byte selector) made last:
  - ``commit1`` (one existing name; also a delta, ``commit_delta``): the record goes to free
    space, then the bump and sequence words of the committed slot, then the name's table
    word (the commit point). O(1) in the number of names.
  - ``update_i64`` (``share.x += v`` on a ``K_I64`` value): epoch, sequence, the record's
    version, then its 8-byte value (the commit point), all in place.
  - ``commit`` with new or removed names (``_extend``; ``del share.x``, a block that adds
    names and updates others): the records go to free space; the written names' table
    words (new entry numbers, for existing names too) and one names piece (names gone,
    names put) go just past the counts the committed slot publishes (the table's and the
    blob's room), the *inactive* header slot is filled with the larger counts, then the
    one-byte selector flips to it. O(changes): a full table or blob is first copied to a
    1.5x bigger place in free space (amortized O(1) a name). A reader applies only the
    pieces added since the names it knows (same ``names_base``). The entries names left
    stay, dead; once they outnumber the live ones (+64) the commit is a rebuild instead,
    which drops them (amortized O(1) a change). Entry numbers are never reused under one
    ``names_base``: a number a process knows never leads to another name's record.
  - ``commit`` of several existing names (``_update``): records and a copy of the table.
  - ``clear``, flags, no room, dead entries to drop (``_rebuild``): copy-on-write:
    records, a new table (and names blob) in free space, the inactive slot filled, then
    the selector flips to it. The blob gets a new ``names_base`` (one piece of the live
    names) when a name went or the table had dead entries; else (a compaction) its pieces
    are copied as they are.
* Delta records (``_delta.py`` says what they hold) carry the offset of the record below
  them; ``chain`` walks back to a reader's cached version or to the full value.
  ``commit_delta`` refuses (``delta_fits``) once the deltas since the full value pass half
  of it plus 1 KiB (a method call's: 4 KiB, ``_calls._SLACK``), and the writer stores the
  full value instead: logs stay bounded.
* When the active region is full, live records (with their delta chains, ``prev``
  relocated) are copied into a region twice their size (``_region_for``: before the active
  one in the file if it fits there, else just after it, growing the file; pages reserved
  with ``posix_fallocate``), and the slot flip switches regions. Compaction never touches
  live data before the flip. A big region (``SHRINK_FROM``) also counts the bytes of the
  values replaced or deleted in it (``DEAD_Q``, ``_garbage``) and is compacted into a
  region half its size once its live data would fit that (a quarter of the region) with
  room to grow: after a peak it comes back to about 4x its live data or less. After every compaction the
  pages outside the header and the new region go back to the system (``_give_back``).
* Every commit first bumps the *epoch* word. A reader compares it (one 8-byte read through a
  memoryview, no lock, no syscall) with the epoch at which its cached copy was checked: if
  no commit started since, the cached value is current. While a ``with share.lock()`` block
  of this process runs, they compare with ``NO_EPOCH`` instead (``Store.eq``): no match.

The owner registers the file with multiprocessing's resource tracker (so a SIGKILLed owner
is cleaned up) and unregisters it when it unlinks the file (stop(), exit, garbage
collection): no "leaked shared_memory" warnings in normal use. Other processes never
register it.
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import mmap
import os
import secrets
import struct
import tempfile
import threading
from typing import Any

from . import _defer
from ._codec import K_CHAIN, K_I64
from ._lock import KIND_FCNTL, KIND_ROBUST, FcntlLock, RobustMutex, robust_available

MAGIC = b"SKSHARE6"  # 6: DEAD_Q, and pages outside the active region may be holes
HEADER = 4096
SEL_OFF = 8  # 1 byte: which slot is committed
LOCK_KIND_OFF = 9  # 1 byte: KIND_ROBUST or KIND_FCNTL
GEN_OFF = 16
PID_OFF = 24
EPOCH_OFF = 40  # 8 bytes, bumped at the start of every commit (readers' "anything new?")
EPOCH_Q = EPOCH_OFF // 8
# 8 bytes: garbage (bytes of replaced or deleted values) in the active region, counted in a
# big region (SHRINK_FROM) since its compaction; an estimate that makes ``_garbage`` look
DEAD_Q = 32 // 8
# ``Store.eq`` during a ``with share.lock()`` block: its epoch word equals no cached entry's
NO_EPOCH = (-2,)
SLOT_OFF = (64, 192)
MUTEX_OFF = 512
# seq, flags, names_off, names_len, names_ver, tab_off, tab_n,
# act_off, act_size, bump, spr_off, spr_size, fsize, names_base, names_cap, tab_cap
# (16 words: slot 0 ends where slot 1 starts)
SLOT = struct.Struct("<16Q")
(S_SEQ, S_FLAGS, S_NOFF, S_NLEN, S_NVER, S_TOFF, S_TN,
 S_AOFF, S_ASIZE, S_BUMP, S_SOFF, S_SSIZE, S_FSIZE, S_NBASE, S_NCAP, S_TCAP) = range(16)
# The entry table holds one 8-byte word per name: the offset of the name's head *record*.
ESIZE = 8
WORD = struct.Struct("<Q")
# A record: data length, kind, version (seq of its write), previous record (delta records),
# size of the last full value (base) and bytes of delta records written on top of it.
REC = struct.Struct("<6Q")
RSIZE = REC.size
R_LEN, R_KIND, R_VER, R_PREV, R_BASE, R_LOG = range(6)
# what ``update_i64`` reads: a slot's seq, flags, names version, table offset and file
# size; a record's kind and its K_I64 value (signed)
_SLOT_HOT = struct.Struct("<2Q16x2Q48xQ")
_REC_I64 = struct.Struct("<8xQ32xq")
K_DELTA = 16  # kind bit of a delta record (the low bits: the encoding of its payload)
_R_DATA = RSIZE // 8  # word index of a record's data (a K_I64 value)
_I64_MIN, _I64_MAX, _U64, _U64_MASK = -(1 << 63), (1 << 63) - 1, 1 << 64, (1 << 64) - 1
MISS: Any = object()  # update_i64: take the general path
_EBUSY = errno.EBUSY
SEQ = struct.Struct("<Q")
MIN_REGION = 1 << 20
# a rebuild of a region at least this big first checks whether its live data would fit a
# region half its size (with a region's room: twice the live data), and if so compacts into
# one (memory given back after a peak: at most ~4x the live data stays held)
SHRINK_FROM = 2 * MIN_REGION
_MADV_REMOVE = getattr(mmap, "MADV_REMOVE", None)

FLAG_STOPPED = 1
FLAG_CLOSED = 2
_NOT_LIVE = FLAG_STOPPED | FLAG_CLOSED

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()

Entry = tuple[int, int, int, int]
Slot = tuple[int, ...]


class StoreGone(Exception):
    """The file behind a store no longer exists (stopped or closed by its owner)."""


def _align(n: int) -> int:
    return (n + 7) & ~7


def path_of(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def new_name() -> str:
    return f"sk-share-{os.getpid()}-{secrets.token_hex(6)}"


class Store:
    """One process's attachment to a shared store file (shared by all handles in the process).

    The bytes layer only: locking, lookup of raw entries, atomic commits. It knows nothing
    about Python values (``_txn.py``) or attribute syntax (``_share.py``).
    """

    def __init__(self, name: str, fd: int, hdr: mmap.mmap, mm: mmap.mmap) -> None:
        self.name = name
        self.fd = fd
        self.hdr = hdr  # the header page: never remapped while attached
        self.mm = mm  # the whole file: remapped when another process grew it
        self.q = memoryview(hdr).cast("Q")  # 8-byte words of the header (epoch: q[EPOCH_Q])
        # what the lock-free fast reads take the epoch from (``eq[0]``): ``ew``, or
        # NO_EPOCH while a ``with share.lock()`` block runs (its staged writes are not in the
        # cache: every read goes through its Txn). One swap, not a pass over the cache.
        self.ew = self.q[EPOCH_Q:EPOCH_Q + 1]  # the epoch word alone: ``ew[0]``
        self.eq: Any = self.ew
        self.mq = _words(mm)  # 8-byte words of the file (records, tables)
        self.lock_kind = hdr[LOCK_KIND_OFF]
        self.plock: RobustMutex | FcntlLock
        self.fast_lock: tuple[Any, Any, Any] | None = None  # RobustMutex.fast()
        if self.lock_kind == KIND_ROBUST:
            self.plock = RobustMutex(hdr, MUTEX_OFF, init=False)
            self.fast_lock = self.plock.fast()
        else:
            self.plock = FcntlLock(fd)
        self.tlock = threading.RLock()
        self.depth = 0
        self.txn: Any = None  # the Txn of the `with share.lock():` block holding the lock
        self.closed = False
        self.recovered = 0  # how often this process took the lock over from a dead holder
        self.generation = bytes(hdr[GEN_OFF : GEN_OFF + 8])
        self.owner_pid = SEQ.unpack_from(hdr, PID_OFF)[0]
        self._s: Slot | None = None  # committed slot, valid while this process holds the lock
        self._names: dict[str, int] = {}
        self._nver = -1  # the names version (S_NVER) that _names is
        # (names_base, bytes of its blob, entries) that _names holds
        self._nread: tuple[int, int, int] = (-1, 0, 0)
        # decoded cache: name -> [version, obj, epoch at which it was known current, immutable]
        self.cache: dict[str, list[Any]] = {}
        # head_record's last answer: (the slot it was read under, name, answer)
        self._head_memo: tuple[Any, ...] = (None, None, None)
        # add_i64's last write: (epoch after it, name, sequence word, seq, record word, value)
        self._add_plan: tuple[Any, ...] = (-1, None)
        # commit1's last write: (epoch after it, name, slot word, table word, region end,
        # seq, free position, record, its base size, its log size); see commit_delta
        self._tail: tuple[Any, ...] = (-1, None)

    # -- creation / attachment ------------------------------------------------------------

    @classmethod
    def create(cls, name: str, seq: int = 0, flags: int = 0) -> Store:
        path = path_of(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = HEADER + 2 * MIN_REGION
            os.ftruncate(fd, size)
            _reserve(fd, 0, HEADER + MIN_REGION)
            hdr = mmap.mmap(fd, HEADER)
            mm = mmap.mmap(fd, size)
            if robust_available():
                m = RobustMutex(hdr, MUTEX_OFF, init=True)
                m.detach()
                hdr[LOCK_KIND_OFF] = KIND_ROBUST
            else:
                hdr[LOCK_KIND_OFF] = KIND_FCNTL
            hdr[GEN_OFF : GEN_OFF + 8] = secrets.token_bytes(8)
            SEQ.pack_into(hdr, PID_OFF, os.getpid())
            act = HEADER
            ncap, tcap = _room(0), _room(0) // ESIZE
            tab = act + ncap
            SLOT.pack_into(
                hdr, SLOT_OFF[0], seq, flags, act, 0, seq, tab, 0,
                act, MIN_REGION, tab + ESIZE * tcap, HEADER + MIN_REGION, MIN_REGION, size,
                seq, ncap, tcap,
            )
            hdr[SEL_OFF] = 0
            hdr[0:8] = MAGIC  # last: the store is complete
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return cls(name, fd, hdr, mm)

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
            hdr = mmap.mmap(fd, HEADER)
            if hdr[0:8] != MAGIC:
                hdr.close()
                raise StoreGone(f"{name}: not a Share store (or from another sk-share version)")
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return cls(name, fd, hdr, mm)

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
            if self.depth:  # never unmap a mutex we hold
                with contextlib.suppress(Exception):
                    self.plock.release()
                self.depth = 0
            self.closed = True
            self.cache.clear()
            self.fast_lock = None  # it holds the mutex's buffer: the mapping could not close
            self.plock.detach()
            for view in (self.ew, self.q, self.mq):  # readers of a released view get ValueError
                with contextlib.suppress(Exception):
                    view.release()
            for m in (self.hdr, self.mm):
                with contextlib.suppress(Exception):
                    m.close()
            with contextlib.suppress(OSError):
                os.close(self.fd)

    # -- locking -------------------------------------------------------------------------

    def acquire(self) -> None:
        """Exclusive access across threads (RLock) and processes (robust mutex); nests. The
        thread lock is counted once, by the outermost hold, so an exception a signal handler
        raises as its ``acquire`` returns can be undone exactly."""
        tl = self.tlock
        if self.depth and tl._is_owned():  # type: ignore[attr-defined]  # nested in our own hold
            self.depth += 1
            return
        try:
            tl.acquire()
        except BaseException:  # a signal's, raised as acquire returned: undo its count
            # (owned now means this call took it: an RLock this thread held already is
            # taken again at once, and an acquire interrupted while it waits takes nothing)
            if tl._is_owned():  # type: ignore[attr-defined]
                tl.release()
            raise
        if self.closed:
            tl.release()
            raise StoreGone(f"{self.name}: detached in this process")
        if self.depth == 0:  # (else: held by this thread for an operation, see aug)
            try:
                if self.plock.acquire():
                    self.recovered += 1
            except BaseException:  # a signal's, raised as the lock call returned: it may hold the mutex
                self.plock.drop_if_mine()
                tl.release()
                raise
            self._s = None
        self.depth += 1

    def release(self) -> None:
        """Undo one ``acquire``. Call it as ``settle`` says: an exception a signal handler
        raises can land as this call begins, before it has done anything."""
        depth = self.depth - 1
        self.depth = depth
        if depth:
            return
        try:
            self._s = None
            if not self.closed:
                self.plock.release()
        finally:
            self.tlock.release()

    def settle(self, depth: int) -> None:
        """Finish a ``release`` meant to leave ``depth`` that an exception (a signal
        handler's, e.g. KeyboardInterrupt) cut short, at its first line or inside::

            depth = st.depth - 1
            try:
                st.release()
            except BaseException:
                st.settle(depth)
                raise

        Left held, the process mutex would stop every other process until this one exits."""
        if self.depth > depth:  # it did nothing
            self.release()
        elif self.depth == 0 and not self.closed:  # it may have stopped before the unlock
            self.plock.drop_if_mine()

    def release_block(self, block: Any) -> None:
        """The end of a held ``with`` block (``with share.lock()``, ``_Locked``): one
        ``release`` as ``settle`` says, then ``block.deferral`` ended (the signals kept
        while it ended run once the lock is free). In ``_defer.EXITS``: a signal landing
        as this call begins waits too."""
        depth = self.depth - 1
        try:
            try:
                self.release()
            except BaseException:  # see settle
                self.settle(depth)
                raise
        finally:
            d, block.deferral = block.deferral, None
            if d is not None:
                d.end()

    def locked(self) -> _Locked:
        return _Locked(self)

    def try_lock_briefly(self) -> bool:
        """Non-blocking attempt on the process lock (caller holds ``tlock``, depth 0)."""
        if self.plock.try_acquire():
            self._s = None
            return True
        return False

    def unlock_process(self) -> None:
        """Release what ``try_lock_briefly`` took."""
        self._s = None
        self.plock.release()

    # -- reading ---------------------------------------------------------------------------

    def epoch(self) -> int:
        """Changes whenever a commit starts (no lock, no syscall: one 8-byte read)."""
        return self.q[EPOCH_Q]

    def flags(self) -> int:
        """Flags of the committed state (no lock needed)."""
        return self.q[(SLOT_OFF[self.hdr[SEL_OFF]] >> 3) + S_FLAGS]

    def slot(self) -> Slot:
        """The committed slot (under the lock it is cached until our own next commit)."""
        s = self._s
        if s is None or not self.depth:
            hdr = self.hdr
            s = SLOT.unpack_from(hdr, SLOT_OFF[hdr[SEL_OFF]])
            if len(self.mm) < s[S_FSIZE]:
                self._remap(s[S_FSIZE])
            if self.depth:
                self._s = s
        return s

    def _remap(self, size: int) -> None:
        old = self.mm
        self.mm = mmap.mmap(self.fd, size)
        self.mq.release()
        self.mq = _words(self.mm)
        with contextlib.suppress(BufferError):
            old.close()

    def names(self, s: Slot | None = None) -> dict[str, int]:
        """name -> entry number (call under the lock)."""
        if s is None:
            s = self.slot()
        if s[S_NVER] != self._nver:
            self._read_names(s)
        return self._names

    def _read_names(self, s: Slot) -> None:
        """Bring ``_names`` up to the names of ``s``. The same ``names_base`` means the
        blob this process read is a prefix of this one (pieces are only appended to it):
        only the pieces after it are applied, O(names changed since). A piece removes its
        gone names, then gives each of its put names the next entry number (a name that
        is there keeps its place in the order: ``dict`` assignment)."""
        base, have, n = self._nread
        names = self._names
        self._nver, self._nread = -1, (-1, 0, 0)  # (an exception below leaves no half state)
        if base != s[S_NBASE] or have > s[S_NLEN]:
            names, have, n = {}, 0, 0
        mm, off, end = self.mm, s[S_NOFF], s[S_NLEN]
        while have < end:
            p = off + have + ESIZE
            ln = WORD.unpack_from(mm, p - ESIZE)[0]
            gone, put = marshal.loads(mm[p : p + ln])
            for nm in gone:
                names.pop(nm, None)
            for nm in put:
                names[nm] = n
                n += 1
            have += ESIZE + ln
        self._names = names
        self._nver, self._nread = s[S_NVER], (s[S_NBASE], end, n)

    def head(self, name: str) -> int | None:
        """Offset of the head record of ``name``, or None; call under the lock."""
        s = self._s or self.slot()
        names = self._names if s[S_NVER] == self._nver else self.names(s)
        i = names.get(name)
        if i is None:
            return None
        return WORD.unpack_from(self.mm, s[S_TOFF] + ESIZE * i)[0]

    def head_record(self, name: str) -> tuple[int, tuple[int, ...]] | None:
        """(offset, header) of the head record of ``name``, or None; call under the lock.
        Remembered until this process's next commit (every commit replaces ``_s``, and no
        other process commits while the lock is held): one method call asks four times
        (its read, two room checks, the delta commit)."""
        s = self._s or self.slot()
        memo = self._head_memo
        if memo[0] is s and memo[1] == name:
            return memo[2]
        rec = self.head(name)
        got = None if rec is None else (rec, REC.unpack_from(self.mm, rec))
        if self.depth:  # (else ``s`` is a fresh tuple that no later call will match)
            self._head_memo = (s, name, got)
        return got

    def next_head(self, name: str) -> tuple[int, tuple[int, ...]] | None:
        """``head_record(name)`` when exactly one commit started since this process's last
        single-name commit, which was of ``name`` (``_tail``), and it left the committed
        slot where it was: two processes calling methods of one object in turn. Call under
        the lock. None: ask ``head_record``.

        One epoch bump and the same selector mean no slot flip since ``_tail`` (every flip
        comes with a bump of its own), so the table and the region are the ones ``_tail``
        names: the head is one word of the table, read again, and ``_tail`` is brought up to
        that commit (its sequence and free position read from the slot, as ``commit1``
        reads them), so that this process's next delta of ``name`` is appended without
        reading the slot either (``commit_delta``). Anything else (the head is not the one
        ``_tail`` wrote or a delta on top of it, or more happened) goes to ``head_record``."""
        t = self._tail
        q = self.q
        epoch = q[EPOCH_Q]
        if t[1] != name or epoch != t[0] + 1:
            return None
        _, _, sq, tw, end, _, _, rec, base, log = t
        if SLOT_OFF[self.hdr[SEL_OFF]] >> 3 != sq:
            return None
        head = self.mq[tw]
        h = REC.unpack_from(self.mm, head)
        if head != rec:
            if h[R_PREV] != rec or not h[R_KIND] & K_DELTA:
                return None
            base, log = h[R_BASE], h[R_LOG]
        self._tail = (epoch, name, sq, tw, end, q[sq + S_SEQ], q[sq + S_BUMP], head, base, log)
        return head, h

    def record(self, rec: int) -> tuple[int, ...]:
        """The header of the record at ``rec`` (see ``REC``)."""
        return REC.unpack_from(self.mm, rec)

    def entry(self, name: str) -> Entry | None:
        """(data offset, length, kind, version) of the head record of ``name``, or None;
        call under the lock. A kind with ``K_DELTA`` set is a delta on top of older records
        (``chain``)."""
        got = self.head_record(name)
        if got is None:
            return None
        rec, h = got
        return rec + RSIZE, h[R_LEN], h[R_KIND], h[R_VER]

    def raw(self, entry: Entry) -> bytes:
        return self.mm[entry[0] : entry[0] + entry[1]]

    def chain(self, name: str, have: int) -> tuple[tuple[int, bytes] | None, list[tuple[int, bytes]]] | None:
        """What a reader holding version ``have`` of ``name`` needs: (None, deltas after
        ``have``) when ``have`` is in the head's chain, else ((base kind, base bytes), every
        delta); deltas oldest first, as (payload kind, payload). None if there is no such
        name. Call under the lock."""
        rec = self.head(name)
        if rec is None:
            return None
        mm = self.mm
        deltas: list[tuple[int, bytes]] = []
        while True:
            ln, kind, ver, prev = REC.unpack_from(mm, rec)[:4]
            if ver == have:
                deltas.reverse()
                return None, deltas
            data = mm[rec + RSIZE : rec + RSIZE + ln]
            if not kind & K_DELTA:
                deltas.reverse()
                return (kind, data), deltas
            deltas.append((kind & ~K_DELTA, data))
            rec = prev

    def value(self, name: str) -> tuple[int, bytes, int] | None:
        """(kind, self-contained bytes, version) of ``name``: a delta chain comes back as one
        ``K_CHAIN`` value (what a snapshot or a remote reader carries). Under the lock."""
        e = self.entry(name)
        if e is None:
            return None
        if not e[2] & K_DELTA:
            return e[2], self.raw(e), e[3]
        got = self.chain(name, -1)
        assert got is not None and got[0] is not None
        return K_CHAIN, marshal.dumps((got[0][0], got[0][1], got[1])), e[3]

    def items(self) -> dict[str, tuple[int, bytes]]:
        """Every entry as name -> (kind, self-contained data); call under the lock."""
        out: dict[str, tuple[int, bytes]] = {}
        for name in self.names():
            v = self.value(name)
            assert v is not None
            out[name] = (v[0], v[1])
        return out

    # -- writing ---------------------------------------------------------------------------

    def commit(
        self,
        changes: dict[str, tuple[int, bytes] | None],
        *,
        clear: bool = False,
        flags: int | None = None,
    ) -> int:
        """Apply ``changes`` (name -> (kind, data), or None to delete) atomically; call under
        the lock. Returns the new sequence number (the version of every written entry)."""
        if len(changes) == 1 and not clear and flags is None:
            ((nm, ch),) = changes.items()
            if ch is not None:
                seq = self.commit1(nm, ch[0], ch[1])
                if seq is not None:
                    return seq
        s = self.slot()
        seq = s[S_SEQ] + 1
        names = self.names(s)
        self.q[EPOCH_Q] += 1  # first: every reader's "nothing changed" check now fails
        new_flags = s[S_FLAGS] if flags is None else flags
        if not clear:
            # a big region counts the values this commit replaces or deletes (``_garbage``)
            dead = self._replaced(s, names, changes) if s[S_ASIZE] >= SHRINK_FROM else 0
            if all(ch is not None and nm in names for nm, ch in changes.items()):  # existing names only
                ns = self._update(s, seq, names, changes, new_flags)  # type: ignore[arg-type]
                if ns is not None:
                    self._publish(ns)
                    if dead:
                        self._garbage(dead, ns[S_BUMP] - ns[S_AOFF], ns[S_ASIZE])
                    return seq
            else:
                got = self._extend(s, seq, names, changes, new_flags)
                if got is not None:
                    ns, gone, put = got
                    self._publish(ns)
                    if self._nver == s[S_NVER]:  # our names are the old ones: apply the piece
                        for nm in gone:
                            del names[nm]
                        for j, nm in enumerate(put):
                            names[nm] = s[S_TN] + j
                        self._nver, self._nread = seq, (ns[S_NBASE], ns[S_NLEN], ns[S_TN])
                    if dead:
                        self._garbage(dead, ns[S_BUMP] - ns[S_AOFF], ns[S_ASIZE])
                    return seq
        self._publish_rebuilt(*self._rebuild(s, seq, names, changes, clear, new_flags))
        return seq

    def commit1(self, name: str, kind: int, data: bytes, prev: int = 0, log: int = 0) -> int | None:
        """Commit one new head record for an existing ``name`` in place; call under the lock.
        Returns the new version, or None when ``name`` is new (the caller uses ``commit``). ``prev``/``log``: a delta record's
        previous record and the delta bytes since its base.

        Crash-safe without the slot switch: the record is written to free space first;
        then the region's bump word, the sequence word and finally the name's table word
        (the commit point) are each one aligned 8-byte store in the committed slot and
        table. A writer killed between them leaves the old value (plus unused space)."""
        s = self._s or self.slot()
        names = self._names if s[S_NVER] == self._nver else self.names(s)
        i = names.get(name)
        if i is None:
            return None
        mm = self.mm
        pos = s[S_BUMP]
        ln = len(data)
        nxt = _align(pos + RSIZE + ln)
        if nxt > s[S_AOFF] + s[S_ASIZE]:
            # the active region is full: compact it first (a copy-on-write commit of its
            # own), then write the record into the fresh region
            self.q[EPOCH_Q] += 1
            self._publish_rebuilt(*self._rebuild(s, s[S_SEQ] + 1, names, {}, False, s[S_FLAGS], extra=RSIZE + ln))
            s = self.slot()
            i = self.names(s)[name]
            mm = self.mm
            pos = s[S_BUMP]
            nxt = _align(pos + RSIZE + ln)
            if prev:  # a delta goes on the head, which the compaction moved
                prev = self.mq[(s[S_TOFF] >> 3) + i]
        base = ln if prev == 0 else REC.unpack_from(mm, prev)[R_BASE]
        sq = SLOT_OFF[self.hdr[SEL_OFF]] >> 3
        tail = (name, sq, (s[S_TOFF] >> 3) + i, s[S_AOFF] + s[S_ASIZE], s[S_SEQ], pos)
        if prev or s[S_ASIZE] < SHRINK_FROM:
            return self._append(tail, kind, data, nxt, prev, base, log)
        # a full value in a big region: the value it replaces is garbage now
        mq, q = self.mq, self.q
        r = mq[tail[2]] >> 3
        dead = q[DEAD_Q] + mq[r + R_BASE] + mq[r + R_LOG] + RSIZE
        q[DEAD_Q] = dead
        seq = self._append(tail, kind, data, nxt, prev, base, log)
        if (nxt - s[S_AOFF] - dead) * 4 <= s[S_ASIZE]:  # (``_garbage``'s test, inlined)
            self._garbage(0, nxt - s[S_AOFF], s[S_ASIZE])
        return seq

    def _replaced(self, s: Slot, names: dict[str, int], changes: dict[str, Any]) -> int:
        """Bytes of the values (with their delta logs) ``changes`` replaces or deletes."""
        mq, t = self.mq, s[S_TOFF] >> 3
        n = 0
        for nm in changes:
            i = names.get(nm)
            if i is not None:
                r = mq[t + i] >> 3
                n += mq[r + R_BASE] + mq[r + R_LOG] + RSIZE
        return n

    def _garbage(self, n: int, used: int, size: int) -> None:
        """A commit just made ``n`` bytes of a big region garbage (``used`` of its ``size``
        bytes are used now); call under the lock.
        When the region's used bytes less its garbage would fit a quarter of it, compact
        into a region sized for the live data (``_rebuild``: a copy-on-write commit of its
        own, then ``_give_back``). The count is an estimate (tables and names copied aside
        are not in it, so it only ever errs towards not compacting); a look that finds the
        live data too big to shrink for sets it so that the next look waits for size/16
        more bytes of garbage (each look walks every name: amortized over those writes)."""
        q = self.q
        dead = q[DEAD_Q] + n
        q[DEAD_Q] = dead
        if (used - dead) * 4 > size:
            return
        s = self.slot()
        names = self.names(s)
        mm = self.mm
        live: dict[str, tuple[int, int, bytes | None]] = {
            nm: (WORD.unpack_from(mm, s[S_TOFF] + ESIZE * i)[0], 0, None) for nm, i in names.items()
        }
        need = self._need(live, s[S_NLEN])
        if _region_for(need) * 2 > s[S_ASIZE]:
            q[DEAD_Q] = max(used - 5 * size // 16, 0)  # look again after size/16 more garbage
            return
        # the caller's write is committed: a failed compaction (a full /dev/shm) must not
        # read as its failure. It leaves the old state; try again after as much garbage
        try:
            q[EPOCH_Q] += 1
            self._publish_rebuilt(*self._rebuild(s, s[S_SEQ] + 1, names, {}, False, s[S_FLAGS]))
        except Exception:
            q[DEAD_Q] = 0

    def _append(
        self, tail: tuple[Any, ...], kind: int, data: bytes, nxt: int, prev: int, base: int, log: int,
    ) -> int:
        """``commit1``'s writes, once the place is known (``tail``: name, slot word, table
        word, region end, the committed sequence, free position): the epoch, the record,
        the slot's bump and sequence words, then the table word (the commit point). Leaves
        ``_tail`` for the next delta of the same name (``commit_delta``)."""
        name, sq, tw, end, seq, pos = tail
        seq += 1
        q = self.q
        epoch = q[EPOCH_Q] + 1  # every epoch bump is made under the lock: we know the value
        q[EPOCH_Q] = epoch
        mm = self.mm
        ln = len(data)
        REC.pack_into(mm, pos, ln, kind, seq, prev, base, log)
        mm[pos + RSIZE : pos + RSIZE + ln] = data
        q[sq + S_BUMP] = nxt
        q[sq + S_SEQ] = seq
        # the commit point: one aligned 8-byte store (a memoryview word; struct.pack_into
        # writes a little-endian word byte by byte, which a kill could cut in two)
        self.mq[tw] = pos
        self._s = None
        self._tail = (epoch, name, sq, tw, end, seq, nxt, pos, base, log)
        return seq

    def commit_delta(self, name: str, kind: int, payload: bytes, *, slack: int = 1024) -> int | None:
        """Append a delta record (payload encoded as ``kind``) on top of ``name``'s head;
        call under the lock. None when the log since the last full value would exceed half
        of that value plus ``slack`` bytes (see ``delta_fits``): the caller then writes the
        full value, which starts a new log.

        When the epoch is still the one this process's last single-name commit of ``name``
        left (``_tail``), no commit started since (each bumps it first, under the lock): the
        slot, the table and the head record are the ones that commit wrote, so none of them
        is read again (``add_i64``'s argument)."""
        t = self._tail
        if t[0] == self.q[EPOCH_Q] and t[1] == name:
            _, _, sq, tw, end, seq, pos, rec, base, log = t
            log += RSIZE + len(payload)
            if log > base // 2 + slack:
                return None
            nxt = _align(pos + RSIZE + len(payload))
            if nxt <= end:
                return self._append((name, sq, tw, end, seq, pos), kind | K_DELTA, payload, nxt, rec, base, log)
        got = self.head_record(name)
        if got is None:
            return None
        rec, h = got
        log = h[R_LOG] + RSIZE + len(payload)
        if log > h[R_BASE] // 2 + slack:
            return None
        return self.commit1(name, kind | K_DELTA, payload, rec, log)

    def aug(self, name: str, fn: Any, arg: Any, other: Any) -> bool:
        """``name = fn(name, arg)`` as one locked update: in place on a ``K_I64`` value
        (``update_i64``), else ``other(self, name, fn, arg)``. False when neither applies
        (nothing was changed): the caller takes the general path. ``acquire``/``release``
        inlined: this is the hottest write path (``share.x += v``)."""
        tl = self.tlock
        try:
            tl.acquire()
        except BaseException:  # a signal's, raised as acquire returned: undo its count
            if tl._is_owned():  # type: ignore[attr-defined]  # (see Store.acquire)
                tl.release()
            raise
        try:
            if self.depth or self.txn is not None or self.closed:
                return False  # nested in an operation or a `with share.lock()` block
            fl = self.fast_lock  # the robust mutex's C functions (None: fcntl lock)
            if fl is None:
                if self.plock.acquire():
                    self.recovered += 1
            else:
                try:
                    rc = fl[0](fl[2])  # trylock
                    if rc and self.plock.after_trylock(rc):  # type: ignore[union-attr]
                        self.recovered += 1
                except BaseException:  # a signal's, raised as a lock call returned: it may hold the mutex
                    self.plock.drop_if_mine()
                    raise
            self.depth = 1
            try:
                return self.update_i64(name, fn, arg) is not MISS or other(self, name, fn, arg)
            finally:
                self.depth = 0
                self._s = None
                if fl is None:
                    self.plock.release()
                else:
                    rc = fl[1](fl[2])  # unlock
                    if rc:
                        self.plock.after_unlock(rc)  # type: ignore[union-attr]
        finally:
            tl.release()

    def add_i64(self, name: str, amount: int) -> Any:
        """``share.x += amount`` on a ``K_I64`` value, in place, as one locked update: the
        new value, or ``MISS`` (nothing was changed) for the general path. ``aug`` and
        ``update_i64`` in one call, for the read of ``share.x += <int constant>`` that
        applies its own update (``_share.py``): the hottest write path.

        * The thread lock is taken only when the process mutex is busy (``_wait_for_add``).
          A free mutex means no thread of this process is inside an operation (each holds
          the mutex throughout: ``depth`` and ``txn`` are set only while it is held), and
          this update calls nothing that could start one: holding the mutex excludes every
          thread and process.
        * When the epoch is still the one this process's last ``add_i64`` left, no commit
          started since (every commit bumps it first, under the mutex): the slot, the
          record and its value are the ones that call wrote, so their reads are skipped
          (one 8-byte load instead of ~7).
        * The writes and their order are ``update_i64``'s (the value last)."""
        fl = self.fast_lock  # None: the fcntl lock, or closed (the general path says which)
        if fl is None:
            return MISS
        try:
            rc = fl[0](fl[2])  # trylock
            if rc and not self._wait_for_add(rc):
                return MISS
        except BaseException:  # a signal's, raised as a lock call returned: it may hold the mutex
            if not self.depth and self.txn is None:  # (else this thread held it already)
                self.plock.drop_if_mine()
            raise
        try:
            q = self.q
            epoch = q[EPOCH_Q]
            plan = self._add_plan
            if plan[0] == epoch and plan[1] == name:
                _, _, sq, seq, r, new = plan
            else:
                hdr = self.hdr
                so = SLOT_OFF[hdr[SEL_OFF]]
                seq, flags, nver, toff, fsize = _SLOT_HOT.unpack_from(hdr, so)
                mm = self.mm
                if flags & _NOT_LIVE or fsize > len(mm):
                    return MISS
                names = self._names if self._nver == nver else self.names(self.slot())
                i = names.get(name)
                if i is None:
                    return MISS
                rec = self.mq[(toff >> 3) + i]
                kind, new = _REC_I64.unpack_from(mm, rec)
                if kind != K_I64:
                    return MISS
                sq, r = (so >> 3) + S_SEQ, rec >> 3
            new += amount
            if not _I64_MIN <= new <= _I64_MAX:
                return MISS
            seq += 1
            epoch += 1
            q[EPOCH_Q] = epoch
            q[sq] = seq
            mq = self.mq
            mq[r + R_VER] = seq
            mq[r + _R_DATA] = new & _U64_MASK  # the commit point
            self._add_plan = (epoch, name, sq, seq, r, new)
            self.cache[name] = [seq, new, epoch, True]
            return new
        finally:
            rc = fl[1](fl[2])  # unlock
            if rc:
                self.plock.after_unlock(rc)  # type: ignore[union-attr]

    def _wait_for_add(self, rc: int) -> bool:
        """``add_i64``'s trylock returned ``rc``: take the mutex (True) or say that this
        thread is inside an operation or a ``with share.lock()`` block, where the update
        joins the general path (False). Busy: under the thread lock, as ``acquire``; the
        mutex stays held after it, the thread lock does not."""
        plock: RobustMutex = self.plock  # type: ignore[assignment]
        if rc != _EBUSY:
            if plock.after_trylock(rc):  # its holder died: we hold it now, repaired
                self.recovered += 1
            return True
        with self.tlock:
            if self.depth or self.txn is not None or self.closed:
                return False
            if plock.acquire():
                self.recovered += 1
            return True

    def update_i64(self, name: str, fn: Any, arg: Any) -> Any:
        """``share.x op= arg`` on a ``K_I64`` value, in place; call under the lock. Returns
        the new value, or ``MISS`` (not such a value, or the result is not one) for the
        general path.

        Crash-safe without copy-on-write: the epoch, the slot's sequence word, the record's
        version and finally its 8-byte value (the commit point) are each one aligned 8-byte
        store. A writer killed before the last one leaves the old value (with a newer
        version number, which only makes other processes decode it again)."""
        # reads: two struct calls (the slot's words, the record's kind and value) instead
        # of seven memoryview accesses; writes: four aligned 8-byte stores, in this order
        hdr = self.hdr
        so = SLOT_OFF[hdr[SEL_OFF]]
        seq, flags, nver, toff, fsize = _SLOT_HOT.unpack_from(hdr, so)
        mm = self.mm
        if flags & _NOT_LIVE or fsize > len(mm):
            return MISS  # (a file another process grew: the general path remaps it)
        # S_NVER is the sequence number of the last commit that changed the names: unique
        names = self._names if self._nver == nver else self.names(self.slot())
        i = names.get(name)
        if i is None:
            return MISS
        mq = self.mq
        rec = mq[(toff >> 3) + i]
        # (56 bytes: every record is at least that long, a 48-byte header and >= 1 data byte,
        # aligned to 8, so this never reads past the record whatever its kind)
        kind, cur = _REC_I64.unpack_from(mm, rec)
        if kind != K_I64:
            return MISS
        new = fn(cur, arg)
        if type(new) is not int or not _I64_MIN <= new <= _I64_MAX:
            return MISS
        seq += 1
        q = self.q
        epoch = q[EPOCH_Q] + 1  # every epoch bump is made under the lock: we know the value
        q[EPOCH_Q] = epoch
        q[(so >> 3) + S_SEQ] = seq
        r = rec >> 3
        mq[r + R_VER] = seq
        mq[r + _R_DATA] = new & _U64_MASK  # the commit point
        self._s = None
        self.cache[name] = [seq, new, epoch, True]
        return new

    def delta_fits(self, name: str, size: int, *, slack: int = 1024) -> bool:
        """Whether ``commit_delta`` of a ``size``-byte payload would append (not ask for
        the full value); call under the lock."""
        got = self.head_record(name)
        if got is None:
            return False
        h = got[1]
        return h[R_LOG] + RSIZE + size <= h[R_BASE] // 2 + slack

    def _publish(self, ns: Slot) -> None:
        hdr = self.hdr
        inactive = 1 - hdr[SEL_OFF]
        SLOT.pack_into(hdr, SLOT_OFF[inactive], *ns)
        hdr[SEL_OFF] = inactive  # the commit point: one byte
        self._s = ns if self.depth else None

    def _publish_rebuilt(self, ns: Slot, names: dict[str, int]) -> None:
        """Publish what ``_rebuild`` wrote; this process then knows its names (the ones
        just written) without decoding them."""
        hdr = self.hdr
        moved = SLOT.unpack_from(hdr, SLOT_OFF[hdr[SEL_OFF]])[S_AOFF] != ns[S_AOFF]
        self._publish(ns)
        self._names, self._nver, self._nread = names, ns[S_NVER], (ns[S_NBASE], ns[S_NLEN], ns[S_TN])
        if moved:
            self.q[DEAD_Q] = 0  # a fresh region
            self._give_back(ns)

    def _give_back(self, s: Slot) -> None:
        """After a compaction is published: return the memory of every page of the file
        outside the header and the new active region (the old region, older ones, the
        spare) to the system (``MADV_REMOVE``: a hole in the /dev/shm file, which keeps its
        size, so no process's mapping ever reaches past its end). Nobody reads there: record
        bytes are read under the lock, and only from the active region. The next compaction
        reserves its region's pages again (``_reserve``)."""
        a0, a1 = s[S_AOFF], s[S_AOFF] + s[S_ASIZE]
        self._punch(HEADER, a0)
        self._punch(a1, s[S_FSIZE])

    def _punch(self, lo: int, hi: int) -> None:
        """Give the pages of bytes ``lo..hi`` of the file back to the system (a hole);
        nothing where holes are not supported."""
        hi = min(hi, len(self.mm))
        if _MADV_REMOVE is None or hi <= lo:  # (not Linux)
            return
        with contextlib.suppress(OSError, ValueError):  # (a filesystem without holes)
            self.mm.madvise(_MADV_REMOVE, lo, hi - lo)

    def _write_rec(self, pos: int, end: int, seq: int, kind: int, data: bytes) -> int | None:
        ln = len(data)
        nxt = _align(pos + RSIZE + ln)
        if nxt > end:
            return None
        REC.pack_into(self.mm, pos, ln, kind, seq, 0, ln, 0)
        self.mm[pos + RSIZE : pos + RSIZE + ln] = data
        return nxt

    def _update(
        self, s: Slot, seq: int, names: dict[str, int], changes: dict[str, tuple[int, bytes]], flags: int,
    ) -> Slot | None:
        """Several existing names at once: new records + a copy of the entry table,
        appended to the active region. None if it does not fit."""
        mm = self.mm
        pos = s[S_BUMP]
        end = s[S_AOFF] + s[S_ASIZE]
        done = []
        for nm, (kind, data) in changes.items():
            nxt = self._write_rec(pos, end, seq, kind, data)
            if nxt is None:
                return None
            done.append((names[nm], pos))
            pos = nxt
        n = s[S_TN]
        tl = ESIZE * n
        if pos + tl > end:
            return None
        mm.move(pos, s[S_TOFF], tl)
        for i, rec in done:
            WORD.pack_into(mm, pos + ESIZE * i, rec)
        return (seq, flags, s[S_NOFF], s[S_NLEN], s[S_NVER], pos, n,
                s[S_AOFF], s[S_ASIZE], _align(pos + tl), s[S_SOFF], s[S_SSIZE], s[S_FSIZE],
                s[S_NBASE], s[S_NCAP], n)

    def _extend(
        self, s: Slot, seq: int, names: dict[str, int], changes: dict[str, tuple[int, bytes] | None], flags: int,
    ) -> tuple[Slot, list[str], list[str]] | None:
        """Names added, removed, or several written with an add or a removal: O(changes).
        The records of the written names go to free space; their table words (new entry
        numbers, new names and existing ones alike) and one names piece (gone, put) go
        past the counts ``s`` publishes (nobody reads there), in the room the table and
        the blob keep; the slot with the larger counts is the commit. The entries a name
        leaves stay in the table, dead (no name points at them: an entry number a reader
        knows never names another record). A table or blob without room is copied to a
        bigger place first (``_room``: 1.5x, so amortized O(1) a name). Returns (slot,
        gone, put), or None when the region is full or dead entries would outnumber the
        live ones (+64): the caller rebuilds, which drops them (amortized O(1) a change)."""
        gone = [nm for nm, ch in changes.items() if ch is None and nm in names]
        put = [nm for nm, ch in changes.items() if ch is not None]
        n, toff, tcap = s[S_TN], s[S_TOFF], s[S_TCAP]
        live = len(names) - len(gone) + sum(nm not in names for nm in put)
        if n + len(put) - live > live + 64:
            return None
        mm = self.mm
        pos = s[S_BUMP]
        end = s[S_AOFF] + s[S_ASIZE]
        recs = []
        for nm in put:
            kind, data = changes[nm]  # type: ignore[misc]
            nxt = self._write_rec(pos, end, seq, kind, data)
            if nxt is None:
                return None
            recs.append(pos)
            pos = nxt
        if n + len(recs) > tcap:
            tcap = _room(ESIZE * (n + len(recs))) // ESIZE
            if pos + ESIZE * tcap > end:
                return None
            mm.move(pos, toff, ESIZE * n)
            toff, pos = pos, pos + ESIZE * tcap
        piece = _piece(gone, put)
        noff, nlen, ncap = s[S_NOFF], s[S_NLEN], s[S_NCAP]
        if nlen + len(piece) > ncap:
            ncap = _room(nlen + len(piece))
            if pos + ncap > end:
                return None
            mm.move(pos, noff, nlen)
            noff, pos = pos, pos + ncap
        mm[noff + nlen : noff + nlen + len(piece)] = piece
        for j, rec in enumerate(recs):
            WORD.pack_into(mm, toff + ESIZE * (n + j), rec)
        ns = (seq, flags, noff, nlen + len(piece), seq, toff, n + len(recs),
              s[S_AOFF], s[S_ASIZE], pos, s[S_SOFF], s[S_SSIZE], s[S_FSIZE],
              s[S_NBASE], ncap, tcap)
        return ns, gone, put

    def _chain_size(self, rec: int) -> int:
        n = 0
        while True:
            h = REC.unpack_from(self.mm, rec)
            n += _align(RSIZE + h[R_LEN])
            if not h[R_KIND] & K_DELTA:
                return n
            rec = h[R_PREV]

    def _copy_chain(self, rec: int, pos: int, end: int) -> tuple[int, int] | None:
        """Copy the record at ``rec`` and the records below it to ``pos`` (oldest first,
        ``prev`` relocated): (new head, next free position), or None if it does not fit."""
        mm = self.mm
        recs = []
        while True:
            h = REC.unpack_from(mm, rec)
            recs.append((rec, RSIZE + h[R_LEN]))
            if not h[R_KIND] & K_DELTA:
                break
            rec = h[R_PREV]
        prev = 0
        for r, size in reversed(recs):
            if _align(pos + size) > end:
                return None
            mm.move(pos, r, size)
            if prev:
                WORD.pack_into(mm, pos + 8 * R_PREV, prev)
            prev = pos
            pos = _align(pos + size)
        return prev, pos

    def _rebuild(
        self, s: Slot, seq: int, names: dict[str, int],
        changes: dict[str, tuple[int, bytes] | None], clear: bool, flags: int, *, extra: int = -1,
    ) -> tuple[Slot, dict[str, int]]:
        """Structural commit (clear, flags, what ``_extend`` / ``_update`` found no room
        for, or the commit that drops dead entries): a new table and names blob, each with
        room to grow, holding the live names only. When no name goes and the table has no
        dead entry, the blob keeps its pieces and ``names_base`` (a process that knows the
        names decodes only a piece of the new ones), else it is one new piece under a new
        base (every process decodes the names again).
        ``extra`` >= 0: compact now, leaving at least ``extra`` free bytes. Returns the
        slot to publish and its names (name -> entry number)."""
        mm = self.mm
        live: dict[str, tuple[int, int, bytes | None]] = {}  # name -> (record, kind, data)
        for nm, i in names.items():
            if clear and not nm.startswith("\x00"):
                continue
            live[nm] = (WORD.unpack_from(mm, s[S_TOFF] + ESIZE * i)[0], 0, None)
        for nm, ch in changes.items():
            if ch is None:
                live.pop(nm, None)
            else:
                live[nm] = (0, ch[0], ch[1])  # (a name already there keeps its entry number)
        if clear or None in changes.values() or len(names) != s[S_TN]:
            nbase, blob = seq, _piece((), live)
        else:  # names only added, after the others: the old pieces stay a prefix
            nbase = s[S_NBASE]
            blob = bytes(mm[s[S_NOFF] : s[S_NOFF] + s[S_NLEN]]) + _piece((), [nm for nm in changes if nm not in names])
        act_off, act_size, spr_off, spr_size, fsize = s[S_AOFF], s[S_ASIZE], s[S_SOFF], s[S_SSIZE], s[S_FSIZE]
        need = -1
        if extra < 0 and act_size >= SHRINK_FROM:  # a big region: is it mostly garbage?
            need = self._need(live, len(blob))
            placed = None if _region_for(need) * 2 <= act_size else (
                self._place(live, blob, seq, s[S_BUMP], act_off + act_size, copy_live=False))
        else:
            placed = None if extra >= 0 else self._place(live, blob, seq, s[S_BUMP], act_off + act_size, copy_live=False)
        if placed is None:
            # compaction into a region twice the live data: the lowest place that does not
            # overlap the active region (before it, else just after it, growing the file)
            t_size = _region_for((need if need >= 0 else self._need(live, len(blob))) + max(extra, 0))
            t_off = HEADER if HEADER + t_size <= act_off else act_off + act_size
            if t_off + t_size > fsize:
                fsize = t_off + t_size
                os.ftruncate(self.fd, fsize)
                self._remap(fsize)
            try:
                _reserve(self.fd, t_off, t_size)  # (its pages were given back: see _give_back)
                placed = self._place(live, blob, seq, t_off, t_off + t_size, copy_live=True)
                if placed is None:  # pragma: no cover - sizes above always fit
                    raise RuntimeError("Share store compaction failed to fit its data")
            except BaseException:
                # (a full /dev/shm): the region is not published and nobody reads it; what
                # was reserved or copied there goes back now, not at the next compaction
                self._punch(t_off, t_off + t_size)
                raise
            spr_off, spr_size = act_off, act_size
            act_off, act_size = t_off, t_size
        noff, ncap, toff, tcap, bump = placed
        ns = (seq, flags, noff, len(blob), seq, toff, len(live), act_off, act_size, bump, spr_off, spr_size,
              fsize, nbase, ncap, tcap)
        return ns, {nm: i for i, nm in enumerate(live)}

    def _need(self, live: dict[str, tuple[int, int, bytes | None]], blob_len: int) -> int:
        """Bytes the live records (with their delta chains), names and table take, with
        their room to grow."""
        need = sum(
            _align(RSIZE + len(v[2])) if v[2] is not None else self._chain_size(v[0]) for v in live.values()
        )
        return need + _room(blob_len) + _room(ESIZE * len(live)) + 64 * len(live) + 4096

    def _place(
        self, live: dict[str, tuple[int, int, bytes | None]], blob: bytes, seq: int,
        start: int, end: int, *, copy_live: bool,
    ) -> tuple[int, int, int, int, int] | None:
        """Records of ``live`` (written or copied), then its names ``blob`` and
        table, each with room to grow: (names offset, names room, table offset, table room
        in words, next free position), or None if they do not fit before ``end``."""
        mm = self.mm
        pos = start
        table: list[int] = []
        for rec, kind, data in live.values():
            if data is not None:
                nxt = self._write_rec(pos, end, seq, kind, data)
                if nxt is None:
                    return None
                rec, pos = pos, nxt
            elif copy_live:
                got = self._copy_chain(rec, pos, end)
                if got is None:
                    return None
                rec, pos = got
            table.append(rec)
        ncap, tcap = _room(len(blob)), _room(ESIZE * len(table)) // ESIZE
        noff, toff = pos, pos + ncap
        pos = toff + ESIZE * tcap
        if pos > end:
            return None
        mm[noff : noff + len(blob)] = blob
        for i, rec in enumerate(table):
            WORD.pack_into(mm, toff + ESIZE * i, rec)
        return noff, ncap, toff, tcap, pos


class _Locked:
    """Context manager for ``Store.locked`` (signals landing as ``__exit__`` begins wait
    for it: ``_defer.py``)."""

    __slots__ = ("deferral", "st")

    def __init__(self, st: Store) -> None:
        self.st = st
        self.deferral: _defer.Deferral | None = None

    def __enter__(self) -> None:
        self.st.acquire()
        try:
            _defer.start(self)
        except BaseException:
            if self.deferral is not None:
                self.deferral.restore()
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        self.st.release_block(self)


_defer.EXITS.update((_Locked.__exit__.__code__, Store.release_block.__code__))


def _room(size: int) -> int:
    """Bytes to reserve for a names blob or table of ``size`` bytes: half as much again (a
    full one is copied to a new place: amortized O(1) per name added), 8-byte aligned."""
    return _align(size + size // 2 + 512)


def _piece(gone: Any, put: Any) -> bytes:
    """A names blob piece: the names removed and the names given the next entry numbers
    (in entry order), marshal'd after their length (none: empty)."""
    if not gone and not put:
        return b""
    data = marshal.dumps((tuple(gone), tuple(put)))
    return WORD.pack(len(data)) + data


def _words(mm: mmap.mmap) -> memoryview:
    """The mapping as 8-byte words (a file written by an older layout may end mid-word)."""
    return memoryview(mm)[: len(mm) & ~7].cast("Q")


def _region_for(need: int) -> int:
    """Size of a region for ``need`` bytes of live data: twice as much (a compaction every
    ``need`` bytes written: amortized O(1) a byte), whole pages, at least MIN_REGION."""
    return (max(MIN_REGION, 2 * need) + 4095) & ~4095


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
        st.depth = 0  # the child holds no lock (POSIX locks and mutex ownership stay with the parent)
        if st.txn is not None:  # forked inside a block: its uncommitted in-place changes
            st.cache.clear()  # may be in cached objects, and the child will not commit them
            st.txn = None
        st.eq = st.ew
        st._s = None


os.register_at_fork(after_in_child=_after_fork_in_child)
