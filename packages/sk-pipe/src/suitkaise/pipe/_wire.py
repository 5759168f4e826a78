"""Wire format of one ``send``/``recv`` over a ``multiprocessing`` connection.

::

    sender process                                   receiver process
    --------------                                   ----------------
    cucumber.serialize(obj, buffer_callback)
      |  pickle stream + PickleBuffers (numpy arrays, ...)
      v
    [frame 1] head | lengths | data | small buffers  ---->  one read of frame 1
    [frame 2] data           (only if data > 64 KiB) ---->  read into bytearray
    [raw]     large buffer 1 ... large buffer n      ---->  os.readv() straight
              (os.write from the object's memory)           into bytearray(len_i)
                                                      cucumber.deserialize(
                                                          data, buffers=[...])

A frame is what ``multiprocessing.connection`` writes (``!i`` length, or -1
and a ``!Q`` length above 2 GiB, then the bytes), so the framed fallback can
use ``Connection.send_bytes``/``recv_bytes`` unchanged. On POSIX fd
connections we read and write frames ourselves: one ``os.write`` and one
``os.read`` per small message (see ``Reader``), with no ``BytesIO`` in between.

``head = <flags:u8><kind:u8><nbufs:u32><data_len:u64>`` (network order),
then ``nbufs`` little-endian u64 buffer lengths whose top bit marks a buffer carried inside frame 1. A small
object is therefore one frame. Buffers of 64 KiB and more never enter a
frame: the sender writes them straight from the object's memory and the
receiver reads them straight into the ``bytearray`` that becomes the new
object's storage (``multiprocessing.connection`` would copy every message
twice on receipt). A top-level ``bytes``/``bytearray`` of that size and any
top-level ``memoryview`` skip pickle entirely (kinds below). Where raw fd I/O
is unavailable (a non-POSIX connection) every large buffer is its own frame,
read with ``recv_bytes_into``; ``FLAG_FRAMED_BUFFERS`` tells the receiver.

The functions here are not thread-safe; the endpoint serialises callers.
``Progress`` flags tell the endpoint whether an exception interrupted a
message half way (the stream is then out of step and the endpoint broken).
"""

from __future__ import annotations

import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

from suitkaise.cucumber import deserialize, serialize

__all__ = ["OOB_MIN", "Progress", "Reader", "raw_io_available", "recv_message", "send_message"]

# Buffers smaller than this ride inside frame 1 (one small copy beats an
# extra write/read pair); larger ones are written and read in place.
OOB_MIN = 64 * 1024
# Pickle streams up to this size ride in frame 1 (one concatenation copy).
INLINE_MAX = 64 * 1024

FLAG_DATA_SEPARATE = 0x01
FLAG_FRAMED_BUFFERS = 0x02

KIND_PICKLE = 0
KIND_BYTES = 1
KIND_BYTEARRAY = 2
KIND_MEMORYVIEW = 3

_INLINE_BIT = 1 << 63
_HEAD = struct.Struct("!BBIQ")
_HEAD_SIZE = _HEAD.size
_FRAMED_HEAD = struct.Struct("!iBBIQ")  # frame length + head: one concatenation
_LEN32 = struct.Struct("!i")
_LEN64 = struct.Struct("!Q")
_HAVE_RAW_IO = hasattr(os, "readv")
_CHUNK = 64 * 1024 + 64


class Progress:
    """Tracks whether a message is half written / half read."""

    __slots__ = ("rx_dirty", "tx_dirty")

    def __init__(self) -> None:
        self.tx_dirty = False
        self.rx_dirty = False


def raw_io_available(conn: Any) -> bool:
    """True when ``conn`` is a POSIX fd connection we may read/write directly."""
    return _HAVE_RAW_IO and type(conn) is Connection


# -- encoding --------------------------------------------------------------------

def _encode(obj: Any) -> tuple[int, bytes, list[memoryview]]:
    """Return ``(kind, data, buffers)`` for ``obj``; ``buffers`` are flat byte views."""
    tp = type(obj)
    if tp is memoryview:
        # pickle cannot move a memoryview at all: ship its bytes and its
        # format/shape so the receiver can rebuild an equivalent view.
        mv: memoryview = obj
        try:
            flat = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
        except TypeError:  # non-native format such as '<d': copy its bytes
            flat = memoryview(mv.tobytes())
        return KIND_MEMORYVIEW, serialize((mv.format, mv.shape)), [flat]
    if (tp is bytes or tp is bytearray) and len(obj) >= OOB_MIN:
        return (KIND_BYTES if tp is bytes else KIND_BYTEARRAY), b"", [memoryview(obj)]

    collected: list[pickle.PickleBuffer] = []
    # Every PickleBuffer goes out-of-band (the callback returns None); small
    # ones are packed into frame 1 below, so this costs nothing for them.
    data = serialize(obj, buffer_callback=collected.append)
    buffers: list[memoryview] = []
    for pb in collected:
        try:
            buffers.append(pb.raw())
        except BufferError:  # not contiguous (pickle normally copies those in-band)
            buffers.append(memoryview(bytes(pb)))
    return KIND_PICKLE, data, buffers


# -- frames on a raw fd ----------------------------------------------------------

def _write_all(fd: int, view: Any) -> None:
    n = os.write(fd, view)
    total = len(view) if not isinstance(view, memoryview) else view.nbytes
    if n < total:
        mv = memoryview(view).cast("B")
        while n < total:
            n += os.write(fd, mv[n:])


def _write_frame(fd: int, payload: Any, size: int) -> None:
    if size > 0x7FFFFFFF:
        _write_all(fd, _LEN32.pack(-1) + _LEN64.pack(size))
        _write_all(fd, payload)
    elif size <= INLINE_MAX:
        _write_all(fd, _LEN32.pack(size) + payload)
    else:
        _write_all(fd, _LEN32.pack(size))
        _write_all(fd, payload)


class Reader:
    """Bytes already read from the fd but not yet consumed.

    A small message is fetched with one ``os.read`` of up to 64 KiB instead of
    a header read plus a body read; whatever follows it (the start of the next
    message) waits here. Large frames and raw buffers are read exactly, so at
    most one chunk is ever pending.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: bytes = b""


def _fill(fd: int, rd: Reader, need: int) -> bytes:
    buf = rd.pending
    while len(buf) < need:
        chunk = os.read(fd, max(_CHUNK, need - len(buf)))
        if not chunk:
            rd.pending = buf
            raise EOFError("end of file in the middle of a message" if buf else "peer closed")
        buf = buf + chunk if buf else chunk
    rd.pending = buf
    return buf


def _read_into(fd: int, buf: bytearray | memoryview) -> None:
    view = memoryview(buf)
    try:
        total = view.nbytes
        done = 0
        while done < total:
            n = os.readv(fd, [view[done:]])
            if n == 0:
                raise EOFError("end of file in the middle of a message")
            done += n
    finally:
        view.release()


def _read_raw(fd: int, rd: Reader, buf: bytearray) -> None:
    """Fill ``buf`` exactly: pending bytes first, then straight from the fd."""
    pending = rd.pending
    if not pending:
        _read_into(fd, buf)
        return
    k = min(len(pending), len(buf))
    buf[:k] = memoryview(pending)[:k]
    rd.pending = pending[k:]
    if k < len(buf):
        with memoryview(buf) as view:
            _read_into(fd, view[k:])


def _read_frame(fd: int, progress: Progress, rd: Reader) -> bytes | bytearray:
    buf = rd.pending
    if len(buf) < 4:
        buf = _fill(fd, rd, 4)
    progress.rx_dirty = True  # from the first byte on, an interruption desyncs the stream
    (size,) = _LEN32.unpack_from(buf, 0)
    hdr = 4
    if size == -1:
        buf = _fill(fd, rd, 12)
        (size,) = _LEN64.unpack_from(buf, 4)
        hdr = 12
    end = hdr + size
    if size <= INLINE_MAX:
        if len(buf) < end:
            buf = _fill(fd, rd, end)
        rd.pending = buf[end:]
        return buf[hdr:end]
    out = bytearray(size)
    rd.pending = buf[hdr:]
    _read_raw(fd, rd, out)
    return out


# -- messages --------------------------------------------------------------------

def send_message(conn: Connection, raw: bool, obj: Any, progress: Progress) -> None:
    """Serialize ``obj`` and write it to ``conn`` (see the module docstring)."""
    kind, data, buffers = _encode(obj)
    try:
        if not buffers and len(data) <= INLINE_MAX:
            size = len(data)
            progress.tx_dirty = True
            if raw:
                _write_all(conn.fileno(),
                           _FRAMED_HEAD.pack(_HEAD_SIZE + size, 0, kind, 0, size) + data)
            else:
                conn.send_bytes(_HEAD.pack(0, kind, 0, size) + data)
            progress.tx_dirty = False
            return
        flags = 0 if raw else FLAG_FRAMED_BUFFERS
        separate = len(data) > INLINE_MAX
        if separate:
            flags |= FLAG_DATA_SEPARATE
        lengths = []
        inline = []
        large = []
        for b in buffers:
            if b.nbytes < OOB_MIN:
                lengths.append(b.nbytes | _INLINE_BIT)
                inline.append(b)
            else:
                lengths.append(b.nbytes)
                large.append(b)
        parts: list[Any] = [_HEAD.pack(flags, kind, len(buffers), len(data))]
        parts.append(struct.pack(f"<{len(lengths)}Q", *lengths))
        if not separate:
            parts.append(data)
        parts.extend(inline)
        frame = b"".join(parts)
        fd = conn.fileno() if raw else -1
        progress.tx_dirty = True
        if raw:
            _write_frame(fd, frame, len(frame))
            if separate:
                _write_frame(fd, data, len(data))
            for b in large:
                _write_all(fd, b)
        else:
            conn.send_bytes(frame)
            if separate:
                conn.send_bytes(data)
            for b in large:
                conn.send_bytes(b)
        progress.tx_dirty = False
    finally:
        for b in buffers:
            b.release()


def recv_message(conn: Connection, raw: bool, progress: Progress, rd: Reader) -> Any:
    """Read one message written by ``send_message`` and rebuild the object."""
    fd = conn.fileno() if raw else -1
    msg = _read_frame(fd, progress, rd) if raw else conn.recv_bytes()
    flags, kind, nbufs, data_len = _HEAD.unpack_from(msg, 0)
    if nbufs == 0 and not flags and kind == KIND_PICKLE:
        progress.rx_dirty = False
        return deserialize(msg[_HEAD_SIZE:])
    progress.rx_dirty = True
    offset = _HEAD_SIZE
    lengths: tuple[int, ...] = ()
    if nbufs:
        lengths = struct.unpack_from(f"<{nbufs}Q", msg, offset)
        offset += 8 * nbufs
    if flags & FLAG_DATA_SEPARATE:
        data: Any = _read_frame(fd, progress, rd) if raw else conn.recv_bytes()
    else:
        data = msg[offset:offset + data_len]
        offset += data_len
    buffers: list[bytearray] = []
    for n in lengths:
        if n & _INLINE_BIT:
            n &= ~_INLINE_BIT
            buffers.append(bytearray(memoryview(msg)[offset:offset + n]))
            offset += n
            continue
        buf = bytearray(n)
        if raw:
            _read_raw(fd, rd, buf)
        else:
            got = conn.recv_bytes_into(buf)
            if got != n:
                raise EOFError(f"pipe buffer frame has {got} bytes, expected {n}")
        buffers.append(buf)
    progress.rx_dirty = False
    del msg
    if kind == KIND_PICKLE:
        return deserialize(data, buffers=buffers)
    if kind == KIND_BYTES:
        return bytes(buffers[0])
    if kind == KIND_BYTEARRAY:
        return buffers[0]
    if kind == KIND_MEMORYVIEW:
        fmt, shape = deserialize(data)
        view = memoryview(buffers[0])
        if fmt != "B" or len(shape) != 1:
            try:
                view = view.cast(fmt, shape)
            except (TypeError, ValueError):
                pass  # non-native format: keep the flat byte view (documented)
        return view
    raise EOFError(f"unknown pipe message kind {kind}: the peer speaks another protocol")
