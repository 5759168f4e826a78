"""Message framing between a ``Pool`` and its workers.

Each worker owns one duplex ``multiprocessing.Pipe`` (a Unix socketpair). A
message on that socket is::

    [8-byte length L][header (fixed struct) + buffer sizes + in-band payload: L bytes]
    [raw out-of-band buffer 0][raw buffer 1]...

The payload is ``cucumber.serialize(obj, buffer_callback=...)``: large
contiguous buffers (numpy arrays, bytearrays, ...) are left out of the pickle
stream and written to the socket as they are (no copy), then read straight
into a preallocated ``bytearray`` with ``os.readv`` (no copy either) and
handed to ``cucumber.deserialize(..., buffers=...)``. We read and write the
raw file descriptor instead of ``Connection.send_bytes``/``recv_bytes_into``
because CPython 3.11's ``recv_bytes_into`` still reads through an
``io.BytesIO`` (two extra copies of every 20 MB array).

Only this module knows the layout; everything else sees ``Message``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from suitkaise.cucumber import deserialize, serialize

__all__ = [
    "ERROR",
    "FN",
    "DROP",
    "OK",
    "OOB_MIN",
    "RESULT",
    "RETIRE",
    "STOP",
    "TASK",
    "Message",
    "dumps",
    "loads",
    "recv_message",
    "send_message",
]

# message kinds
FN = 1  # parent -> worker: the function of a job (job)
TASK = 2  # parent -> worker: a chunk of items (job, seq, start)
DROP = 3  # parent -> worker: forget the function of a job (job)
STOP = 4  # parent -> worker: exit after the current message
RESULT = 5  # worker -> parent: results of a chunk (job, seq, count)

# RESULT status
OK = 0  # every item of the chunk succeeded
ERROR = 1  # results up to a failing item, then its error
RETIRE = 2  # like ERROR, and the worker exits right after (e.g. MemoryError)

# Buffers smaller than this stay inside the pickle stream: one syscall less.
OOB_MIN = 64 * 1024

_LEN = struct.Struct("<Q")
# kind, status/flags, job, seq, a (start or count), b, elapsed seconds, number of buffers
_HEAD = struct.Struct("<BBqqqqdI")


class Message(NamedTuple):
    kind: int
    flags: int
    job: int
    seq: int
    a: int
    b: int
    elapsed: float
    payload: memoryview
    buffers: list[bytearray]


def dumps(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Serialize ``obj`` with large contiguous buffers kept out of band."""
    buffers: list[memoryview] = []

    def keep(pb: Any) -> bool:
        try:
            raw = pb.raw()
        except BufferError:  # not contiguous: let pickle copy it in band
            return True
        if raw.nbytes < OOB_MIN:
            return True
        buffers.append(raw)
        return False

    data = serialize(obj, buffer_callback=keep)
    return data, buffers


def loads(payload: memoryview | bytes, buffers: Sequence[bytearray]) -> Any:
    """Inverse of ``dumps``."""
    return deserialize(payload, buffers=list(buffers))


def _write_all(fd: int, views: list[memoryview]) -> None:
    views = [v for v in views if v.nbytes]
    while views:
        n = os.writev(fd, views)
        while n:
            first = views[0]
            if n >= first.nbytes:
                n -= first.nbytes
                views.pop(0)
            else:
                views[0] = first[n:]
                n = 0


def _read_into(fd: int, view: memoryview) -> None:
    pos = 0
    total = view.nbytes
    while pos < total:
        n = os.readv(fd, [view[pos:]])
        if n == 0:
            raise EOFError("connection closed in the middle of a message" if pos else "connection closed")
        pos += n


def send_message(
    fd: int,
    kind: int,
    *,
    flags: int = 0,
    job: int = 0,
    seq: int = 0,
    a: int = 0,
    b: int = 0,
    elapsed: float = 0.0,
    payload: bytes = b"",
    buffers: Sequence[memoryview] = (),
) -> None:
    """Write one message (blocking until the whole message is in the socket)."""
    bufs = [memoryview(buf).cast("B") for buf in buffers]
    head = _HEAD.pack(kind, flags, job, seq, a, b, elapsed, len(bufs))
    sizes = struct.pack(f"<{len(bufs)}Q", *(v.nbytes for v in bufs))
    length = len(head) + len(sizes) + len(payload)
    _write_all(fd, [memoryview(_LEN.pack(length)), memoryview(head), memoryview(sizes), memoryview(payload), *bufs])


def recv_message(fd: int) -> Message:
    """Read one message; ``EOFError`` when the peer closed the socket."""
    lenbuf = bytearray(_LEN.size)
    _read_into(fd, memoryview(lenbuf))
    (length,) = _LEN.unpack(lenbuf)
    block = bytearray(length)
    _read_into(fd, memoryview(block))
    kind, flags, job, seq, a, b, elapsed, nbuf = _HEAD.unpack_from(block)
    offset = _HEAD.size
    sizes = struct.unpack_from(f"<{nbuf}Q", block, offset)
    offset += 8 * nbuf
    buffers = []
    for size in sizes:
        buf = bytearray(size)
        _read_into(fd, memoryview(buf))
        buffers.append(buf)
    return Message(kind, flags, job, seq, a, b, elapsed, memoryview(block)[offset:], buffers)
