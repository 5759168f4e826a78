"""Checkpointed resume: a hard crash restarts the next life after the last completed iteration.

The parent owns one unnamed file per ``start()`` (``memfd_create``, else an
``O_TMPFILE``: nothing to clean up, nothing left behind by a SIGKILLed parent) and hands its
descriptor to every life of the child. After each completed iteration the
child writes into it, through a shared memory map (no system call per
iteration)::

    offset 0     header (one page)
                   magic | timer log: offset, capacity
                   slot 0: seq, offset, capacity, length, run, consumed, records
                   slot 1: seq, offset, capacity, length, run, consumed, records
    ...          regions, allocated at the end of the file as they grow (x2):
                   state of slot 0 | state of slot 1 | timer log
                   (timer log: 4 float64 per record: prerun, run, postrun, completed?)

``state`` is cucumber bytes of the instance's own attributes (not
``process_config``, ``timers``, ``error``, ``current_run``: those are the
library's). A commit writes the slot that is *not* the latest: the bytes, the
fields, then the new ``seq`` last, so a child killed in the middle of a commit
leaves the latest checkpoint (the other slot, with the higher ``seq``) intact. The timers are an
append-only log of per-iteration samples (serializing the timers every
iteration would cost O(runs)); a checkpoint covers the first ``records`` of
them. ``consumed`` counts the ``listen()`` messages the child had taken by
then: the parent keeps every later message and sends it to the next life.

The next life rebuilds the instance from the start payload, then ``resume``
overwrites the attributes, ``current_run`` and the timers from the latest
checkpoint (``@autoreconnect`` runs after that, so resources reconnect).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import tempfile
import warnings
from typing import IO, Any, NamedTuple

from suitkaise import cucumber
from suitkaise.processing._runtime import RUNTIME_ATTR
from suitkaise.processing._sections import LOOP
from suitkaise.processing._timers import ProcessTimers

__all__ = ["Checkpoint", "Saved", "clear", "create_file", "read_saved", "resume"]

_MAGIC = 0x736B636B70740001  # "skckpt" v1
_PAGE = mmap.PAGESIZE
_HEADER = max(_PAGE, 4096)
_LOG_AT = 8  # timer log: offset, capacity (records)
_SLOT_AT = (24, 80)  # slot: seq, offset, capacity, length, run, consumed, records
_SLOT = struct.Struct("<7Q")
_FIELDS = struct.Struct("<6Q")  # everything after seq
_RECORD = struct.Struct("<4d")
_LOOP_KEYS = tuple(s.key for s in LOOP)  # prerun, run, postrun: the first three fields of a record
_SEQ = struct.Struct("<Q")
_LOG = struct.Struct("<2Q")
# attributes the library owns: the next life gets them from the start payload or rebuilds them
_LIBRARY = frozenset({RUNTIME_ATTR, "process_config", "timers", "error", "_current_run"})
_NAN = float("nan")


class Saved(NamedTuple):
    """The latest complete checkpoint."""

    seq: int
    slot: int
    run: int  # current_run after the last completed iteration
    consumed: int  # listen() messages taken by then
    records: int  # timer records it covers
    offset: int
    length: int


def _own_attributes(d: dict[str, Any]) -> dict[str, Any]:
    """The instance's attributes without the library's (the hot path: ~0.4 us)."""
    own = d.copy()
    try:
        del own[RUNTIME_ATTR], own["process_config"], own["timers"], own["error"], own["_current_run"]
    except KeyError:  # an instance that skipped some library attribute
        own = {k: v for k, v in d.items() if k not in _LIBRARY}
    return own


def create_file() -> IO[bytes]:
    """A new, unnamed checkpoint file (the parent keeps the object; closing it frees it).

    In memory (``memfd_create``) where the system has it: each commit writes the whole state
    into the map, and in a disk file every page of it was dirtied again after each writeback
    (a fault per page: checkpointing a 10 MB state cost ~3.9 ms an iteration, ~1.6 ms in
    memory). Elsewhere, an unnamed temporary file.
    """
    try:
        f: IO[bytes] = open(os.memfd_create("sk-checkpoint"), "w+b", buffering=0)
    except (AttributeError, OSError):  # no memfd_create here
        f = tempfile.TemporaryFile(prefix="sk-checkpoint-")
    os.ftruncate(f.fileno(), _HEADER)
    os.pwrite(f.fileno(), _SEQ.pack(_MAGIC), 0)
    return f


def clear(fd: int) -> None:
    """Forget the checkpoint in a file, to reuse it for another process (a Pool's next item)."""
    for at in _SLOT_AT:
        os.pwrite(fd, _SEQ.pack(0), at)


def _latest(header: bytes) -> Saved | None:
    best: Saved | None = None
    for slot, at in enumerate(_SLOT_AT):
        seq, off, _cap, length, run, consumed, records = _SLOT.unpack_from(header, at)
        if seq and (best is None or seq > best.seq):
            best = Saved(seq, slot, run, consumed, records, off, length)
    return best


def read_saved(fd: int) -> Saved | None:
    """The latest checkpoint, read by the parent while the child may be writing
    (seqlock-style: two reads must agree, else ``None`` -- "not known now")."""
    first = os.pread(fd, 136, 0)
    if os.pread(fd, 136, 0) != first or _SEQ.unpack_from(first, 0)[0] != _MAGIC:
        return None
    return _latest(first)


def read_timers(fd: int, saved: Saved) -> ProcessTimers:
    """The timers as of ``saved`` (the parent adopts them when no life is left)."""
    log_off, _ = _LOG.unpack(os.pread(fd, _LOG.size, _LOG_AT))
    return _timers_from(os.pread(fd, _RECORD.size * saved.records, log_off))


def _timers_from(log: bytes) -> ProcessTimers:
    timers = ProcessTimers()
    ensure = timers._ensure_timer
    for pre, run, post, completed in _RECORD.iter_unpack(log):
        total = 0.0
        for key, value in zip(_LOOP_KEYS, (pre, run, post), strict=True):
            if not math.isnan(value):
                ensure(key).add_time(value)
                total += value
        if completed and total > 0:
            timers.full_run.add_time(total)
    return timers


class Checkpoint:
    """The writer (one per life, in the child or a Pool worker): implements ``Checkpointer``."""

    def __init__(self, fd: int, owner: str = "Skprocess") -> None:
        self.fd = fd
        self.owner = owner
        self.size = os.fstat(fd).st_size
        self.mm = mmap.mmap(fd, self.size)
        if _SEQ.unpack_from(self.mm, 0)[0] != _MAGIC:
            raise ValueError(f"file descriptor {fd} is not a checkpoint file")
        self.log_off, self.log_cap = _LOG.unpack_from(self.mm, _LOG_AT)
        self.regions = [list(_SLOT.unpack_from(self.mm, at)[1:3]) for at in _SLOT_AT]
        saved = _latest(self.mm[:136])
        self.saved = saved
        self.seq = 0 if saved is None else saved.seq
        self.slot = 0 if saved is None else saved.slot
        self.run = 0 if saved is None else saved.run  # current_run of the latest checkpoint
        self.records = 0 if saved is None else saved.records
        self.consumed = 0 if saved is None else saved.consumed  # listen()s taken so far
        self.broken = False

    # -- writing -------------------------------------------------------------------

    def _allocate(self, nbytes: int) -> tuple[int, int]:
        """A new region of at least ``nbytes`` (doubled, page-rounded) at the end of the file."""
        cap = -(-max(2 * nbytes, _PAGE) // _PAGE) * _PAGE
        off = self.size
        self.size += cap
        os.ftruncate(self.fd, self.size)
        self.mm.close()
        self.mm = mmap.mmap(self.fd, self.size)
        return off, cap

    def _record(self, samples: tuple[float, float, float], completed: float) -> None:
        n = self.records
        if n >= self.log_cap:
            off, cap = self._allocate(_RECORD.size * max(n, 128))
            used = _RECORD.size * n
            self.mm[off:off + used] = self.mm[self.log_off:self.log_off + used]
            self.log_off, self.log_cap = off, cap // _RECORD.size
            _LOG.pack_into(self.mm, _LOG_AT, self.log_off, self.log_cap)
        _RECORD.pack_into(self.mm, self.log_off + _RECORD.size * n, samples[0], samples[1], samples[2], completed)
        self.records = n + 1

    def failed(self, samples: tuple[float, float, float]) -> None:
        """An iteration failed and is retried: keep the samples it recorded (next commit covers them)."""
        if not self.broken:
            self._record(samples, 0.0)

    def commit(self, proc: Any, samples: tuple[float, float, float]) -> None:
        """After a completed iteration: save the instance's attributes, current_run and timers.

        Writes the older slot; a crash before its ``seq`` is written leaves it older than the
        other slot, which readers take instead (so no separate invalidation step).
        """
        if self.broken:
            return
        try:
            data = cucumber.serialize(_own_attributes(proc.__dict__))
        except Exception as e:
            self._stop(proc, e)
            return
        n = self.records
        if n < self.log_cap:
            _RECORD.pack_into(self.mm, self.log_off + _RECORD.size * n, samples[0], samples[1], samples[2], 1.0)
            self.records = n + 1
        else:
            self._record(samples, 1.0)
        slot = self.slot ^ 1
        at = _SLOT_AT[slot]
        region = self.regions[slot]
        size = len(data)
        if size > region[1]:
            region[0], region[1] = self._allocate(size)
        mm = self.mm
        off = region[0]
        mm[off:off + size] = data
        run = proc._current_run
        _FIELDS.pack_into(mm, at + 8, off, region[1], size, run, self.consumed, self.records)
        self.seq += 1
        _SEQ.pack_into(mm, at, self.seq)  # the commit point
        self.slot = slot
        self.run = run

    def _stop(self, proc: Any, exc: Exception) -> None:
        self.broken = True
        warnings.warn(
            f"{self.owner}: checkpointing stopped at run {proc._current_run}: its attributes cannot be "
            f"serialized ({type(exc).__name__}: {exc}); a crash now restarts from run {self.run}. Keep such "
            "objects out of the instance's attributes, or set process_config.checkpoint = False.",
            RuntimeWarning,
            stacklevel=2,
        )

    # -- reading (the next life) ---------------------------------------------------

    def saved_state(self) -> tuple[Saved, bytes, bytes] | None:
        """The latest checkpoint with its state bytes and timer log, or ``None``."""
        saved = self.saved
        if saved is None:
            return None
        state = self.mm[saved.offset:saved.offset + saved.length]
        log = self.mm[self.log_off:self.log_off + _RECORD.size * saved.records]
        return saved, state, log


def resume(proc: Any, checkpoint: Checkpoint) -> bool:
    """Continue ``proc`` (rebuilt from the start payload) from the latest checkpoint, if any."""
    found = checkpoint.saved_state()
    if found is None:
        return False
    saved, state, log = found
    proc.__dict__.update(cucumber.deserialize(state))
    proc._current_run = saved.run
    proc.timers = _timers_from(log)
    return True
