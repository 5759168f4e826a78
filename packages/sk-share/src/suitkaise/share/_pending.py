"""Writes other processes make while the owner keeps the Share stopped.

::

    process B: share.x = 5 while stopped ──append under flock──► /dev/shm/<store name>-pending
                                                                 (one record per write: the
                                                                 operation as data, its ``rop``)
    owner:     start() ──creates the new store, then takes the file (reads, unlinks) and
                         applies each record in order──► the new store
    owner:     exit / handle dropped ──► the file is removed (owner_cleanup)
    owner:     SIGKILLed while stopped ──► the resource tracker removes the file (the owner
                         registers its name when it stops the Share, _lifecycle.track_pending)

The owner's own writes while stopped wait in its handle (``_sk_queue``); another process's
cannot wait in that process, which may exit before ``start()``. The file is made by the first
such write, so a stopped Share holds nothing in /dev/shm until then. A writer appends only
while the owner lives and the new store does not exist yet; otherwise it goes back to the
running Share, or is told the write cannot take effect.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from typing import Any

from suitkaise import cucumber

from ._store import path_of

_LEN = struct.Struct("<Q")


def file_name(store: str) -> str:
    """The pending file's name (beside the store's, in the same directory)."""
    return store + "-pending"


def append(store: str, rop: tuple[Any, ...]) -> bool:
    """Another process: queue ``rop`` for the owner's ``start()``. False when the Share runs
    again (its new store exists): the caller runs the write there instead."""
    data = cucumber.serialize(rop)  # fails before the file is touched
    fd = os.open(path_of(file_name(store)), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if os.path.exists(path_of(store)) or st.st_nlink == 0:
            if st.st_nlink and not st.st_size:
                discard(store)  # made by us just now, after start() took the last one
            return False
        os.write(fd, _LEN.pack(len(data)) + data)
        return True
    finally:
        os.close(fd)


def take(store: str) -> list[bytes]:
    """Owner, when starting: every queued operation (cucumber bytes of its ``rop``: the
    caller decodes each, so one it cannot load costs only that one), in the order they were
    queued; the file is gone afterwards. A record cut short (its writer killed mid-write) is
    dropped."""
    try:
        fd = os.open(path_of(file_name(store)), os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        blob = b""
        while chunk := os.read(fd, 1 << 20):
            blob += chunk
        discard(store)
    finally:
        os.close(fd)
    out = []
    pos = 0
    while pos + _LEN.size <= len(blob):
        (n,) = _LEN.unpack_from(blob, pos)
        pos += _LEN.size
        if pos + n > len(blob):
            break
        out.append(blob[pos : pos + n])
        pos += n
    return out


def discard(store: str) -> None:
    """Remove the pending file (start, and the owner's exit)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path_of(file_name(store)))
