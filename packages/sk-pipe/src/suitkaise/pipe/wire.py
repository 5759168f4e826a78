"""``suitkaise.pipe.wire``: the one framing of cucumber payloads between processes.

::

    sender process                                        receiver process
    ──────────────                                        ────────────────
    Pipe.Anchor/Point.send ─┐                        ┌──► Pipe.Point/Anchor.recv
    Pool caller / manager ──┼─ dumps(obj)            │    Pool manager / worker reader
    Pool worker ────────────┘   │ bytes + buffers    │
                                v                    │
             send(fd, head, data, buffers)           recv(fd, head_size) ─► loads()
                    │  one os.writev                  ▲  exact reads into bytearrays
                    ├──── socketpair / os.pipe ───────┤
                    │  buffers >= 8 MiB: memfd        │  mmap (no copy)
                    └──── descriptor (SCM_RIGHTS) ────┘

One message on the file descriptor::

    <u64 L> head (caller's fixed-size header) <u32 n> <n x u64 buffer sizes> data
    [pad | marker byte + memfds]  (only if some buffer is in shared memory)
    raw buffer 0 | raw buffer 1 | ... | raw buffer n-1  (those not in shared memory)

``L`` counts the bytes after itself up to the end of ``data``. The head is the
caller's: the Pipe puts one byte there (what kind of object, see ``encode``),
the Pool its message kind, job, chunk and timing fields
(``suitkaise.processing._pool_wire``). ``data`` is a cucumber payload.

**The buffer rule.** ``dumps`` serializes with cucumber and a
``buffer_callback`` that follows pickle's protocol-5 semantics (a true return
keeps the buffer in-band): a contiguous buffer of at least ``OOB_MIN`` bytes
(64 KiB; numpy arrays, ``PickleBuffer`` objects) goes **out-of-band**; smaller
or non-contiguous ones stay **in-band** in the pickle stream (one small copy
beats an extra write/read). Out-of-band buffers are written straight from the
object's memory (``os.writev``, no copy) and read straight into the
``bytearray`` that becomes the new object's storage (``os.readv``), then
handed to ``cucumber.deserialize(data, buffers=...)`` in order. We use the raw
file descriptor because ``Connection.recv_bytes_into`` still reads through an
``io.BytesIO`` (two extra copies of every 20 MB array).

**Shared memory.** On a Unix socket, an out-of-band buffer of at least
``SHM_MIN`` bytes (8 MiB) is copied once into its own anonymous ``memfd``
instead of through the socket; the descriptors travel with the message
(``SCM_RIGHTS`` on one marker byte, its size flagged with ``_IN_MEMFD``) and
the receiver maps each one private and writable (copy-on-write: a process forked
later does not share it, as with a bytearray): the ``mmap`` is the new object's
storage (no second copy) and is unmapped, and the memory freed, when the last
object using it is dropped. A memfd has no name (nothing in ``/dev/shm``) and
the kernel frees it with its last descriptor or mapping, so a SIGKILL of
either side leaks nothing, nor does a message nobody reads (descriptors in a
socket are freed with it). ``SHM_MIN`` is where shared memory starts to win by
measurement: below it the socket's copy overlaps the two processes and reuses
warm memory, while fresh shared pages cost a page fault each
(``docs/guides/pipe.md``). An ``os.pipe`` (a one-way ``Pipe``), a platform
without ``memfd_create``, or a failure to make a memfd keeps the copy.

The functions are not thread-safe per descriptor: the caller serialises
senders and receivers (the Pipe endpoints hold one lock each; the Pool has a
single writer and a single reader per socket). ``Progress`` tells the caller
whether an exception interrupted a message half way (the stream is then out of
step and must not be used again).
"""

from __future__ import annotations

import _socket
import errno
import mmap
import os
import resource
import socket
import stat
import struct
import sys
import weakref
from array import array
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias

from suitkaise.cucumber import deserialize, serialize

Buffer: TypeAlias = bytearray | mmap.mmap
"""A received out-of-band buffer: read from the stream, or mapped shared memory."""

__all__ = [
    "KIND_BYTEARRAY",
    "KIND_BYTES",
    "KIND_MEMORYVIEW",
    "KIND_PICKLE",
    "Buffer",
    "OOB_MIN",
    "SHM_MIN",
    "Frame",
    "Progress",
    "Reader",
    "decode",
    "dumps",
    "encode",
    "loads",
    "read_into",
    "recv",
    "send",
    "write_all",
]

OOB_MIN = 64 * 1024
"""Buffers of at least this many bytes travel out-of-band; smaller ones in the pickle stream."""

SHM_MIN = 8 * 1024 * 1024
"""Out-of-band buffers of at least this many bytes travel in shared memory on a socket."""

# Frames up to this size are gathered into one bytes object / read in one os.read.
_SMALL = 64 * 1024
_CHUNK = _SMALL + 64
_LEN = struct.Struct("<Q")
_COUNT = struct.Struct("<I")
_NO_BUFFERS = _COUNT.pack(0)

# What ``encode`` made of an object (the Pipe puts it in its one-byte head).
KIND_PICKLE = 0
KIND_BYTES = 1
KIND_BYTEARRAY = 2
KIND_MEMORYVIEW = 3


# -- the buffer rule -----------------------------------------------------------------

def dumps(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Serialize ``obj``; return the payload and its out-of-band buffers (see the buffer rule)."""
    buffers: list[memoryview] = []

    def keep_in_band(pb: Any) -> bool:
        try:
            raw = pb.raw()
        except BufferError:  # not contiguous: pickle copies it in-band
            return True
        if raw.nbytes < OOB_MIN:
            return True
        buffers.append(raw)
        return False

    return serialize(obj, buffer_callback=keep_in_band), buffers


def loads(data: Any, buffers: Sequence[Any]) -> Any:
    """Inverse of ``dumps``: ``buffers`` are the out-of-band buffers in the order sent."""
    return deserialize(data, buffers=buffers)


def encode(obj: Any) -> tuple[int, bytes, list[memoryview]]:
    """``(kind, data, buffers)`` for one object sent on its own (the Pipe's messages).

    A top-level ``memoryview`` (pickle cannot carry one) travels as its bytes
    plus its format and shape; a top-level ``bytes``/``bytearray`` of at least
    ``OOB_MIN`` bytes skips pickle entirely. Everything else is ``dumps``.
    """
    tp = type(obj)
    if tp is memoryview:
        mv: memoryview = obj
        try:
            flat = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
        except TypeError:  # non-native format such as '<d': copy its bytes
            flat = memoryview(mv.tobytes())
        return KIND_MEMORYVIEW, serialize((mv.format, mv.shape)), [flat]
    if (tp is bytes or tp is bytearray) and len(obj) >= OOB_MIN:
        return (KIND_BYTES if tp is bytes else KIND_BYTEARRAY), b"", [memoryview(obj)]
    data, buffers = dumps(obj)
    return KIND_PICKLE, data, buffers


def decode(kind: int, data: Any, buffers: list[Buffer]) -> Any:
    """Inverse of ``encode``."""
    if kind == KIND_PICKLE:
        # None, not []: pickle.loads sets up an iterator for a buffers list, even an empty
        # one (~0.1 us of a small message's ~0.7 us).
        return deserialize(data, buffers=buffers or None)
    if kind == KIND_BYTES:
        return bytes(buffers[0])
    if kind == KIND_BYTEARRAY:
        buf = buffers[0]
        return buf if type(buf) is bytearray else bytearray(buf)
    if kind == KIND_MEMORYVIEW:
        fmt, shape = deserialize(data)
        view = memoryview(buffers[0])
        if fmt != "B" or len(shape) != 1:
            try:
                view = view.cast(fmt, shape)
            except (TypeError, ValueError):
                pass  # non-native format: keep the flat byte view (documented)
        return view
    raise EOFError(f"unknown message kind {kind}: the peer speaks another protocol")


# -- raw descriptor I/O --------------------------------------------------------------

class Progress:
    """Whether a message is half written (``tx_dirty``) or half read (``rx_dirty``)."""

    __slots__ = ("rx_dirty", "tx_dirty")

    def __init__(self) -> None:
        self.tx_dirty = False
        self.rx_dirty = False


class Reader:
    """Bytes read from the descriptor ahead of the message being parsed.

    With a ``Reader``, a small message costs one ``os.read`` of up to 64 KiB
    instead of one per field; whatever follows it (the start of the next
    message) waits in ``pending``, so a caller that polls the descriptor must
    check ``pending`` first. Without one (``reader=None``) every read is exact.
    A read never reaches a marker byte (see ``_PAD``).
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: bytes = b""


def write_all(fd: int, views: Sequence[Any]) -> None:
    """Write every byte of ``views`` (bytes-like objects), in order, with ``os.writev``."""
    parts = [v if isinstance(v, memoryview) else memoryview(v) for v in views]
    parts = [v.cast("B") if v.ndim != 1 or v.itemsize != 1 else v for v in parts if v.nbytes]
    while parts:
        n = os.writev(fd, parts[:1024])  # IOV_MAX
        while n:
            first = parts[0]
            if n >= first.nbytes:
                n -= first.nbytes
                parts.pop(0)
            else:
                parts[0] = first[n:]
                n = 0


def read_into(fd: int, buf: bytearray | memoryview) -> None:
    """Fill ``buf`` exactly from ``fd``; ``EOFError`` if the peer closed first."""
    with memoryview(buf) as view:
        total = view.nbytes
        done = 0
        while done < total:
            n = os.readv(fd, [view[done:]])
            if n == 0:
                raise EOFError("end of file in the middle of a message" if done else "peer closed")
            done += n


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


def _read_exact(fd: int, rd: Reader | None, buf: bytearray) -> None:
    """Fill ``buf``: pending bytes first, then straight from ``fd``."""
    pending = rd.pending if rd is not None else b""
    if not pending:
        read_into(fd, buf)
        return
    assert rd is not None
    k = min(len(pending), len(buf))
    buf[:k] = memoryview(pending)[:k]
    rd.pending = pending[k:]
    if k < len(buf):
        with memoryview(buf) as view:
            read_into(fd, view[k:])


# -- shared memory -------------------------------------------------------------------

_IN_MEMFD = 1 << 63  # set in a buffer's size: the buffer is in a memfd, not in the stream
_MARKER = b"\x01"  # the byte that carries a message's memfds
# Zeros before the marker. A Reader's read-ahead (``_fill``) starts inside the message
# being parsed, less than 8 + _SMALL bytes in, and reads at most _CHUNK bytes: it never
# reaches 2 * _CHUNK bytes past the start of any later message. A plain read that
# reached a marker would make the kernel close its descriptors (the buffers lost), so
# the marker sits further than that, and small messages keep their one os.read.
_PAD = bytes(2 * _CHUNK)
_PROT = mmap.PROT_READ | mmap.PROT_WRITE
_MAX_FDS = 253  # SCM_MAX_FD: the most descriptors one message may carry
_ANCILLARY = socket.CMSG_SPACE(_MAX_FDS * array("i").itemsize)
_HAVE_MEMFD = hasattr(os, "memfd_create")
# SOCK_NONBLOCK in the type makes the socket object skip setting the descriptor's own
# blocking mode (a plain wrap turns it non-blocking after socket.setdefaulttimeout(),
# under a thread that may be writing to it); calls still block in the kernel.
_WRAP_TYPE = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


def _wrap(fd: int) -> _socket.socket:
    """A socket object on ``fd`` that does not own it (``detach()`` it after use); the C
    type, without ``socket.socket``'s Python-level ``__init__`` (half the cost)."""
    return _socket.socket(socket.AF_UNIX, _WRAP_TYPE, 0, fd)


def _is_socket(fd: int) -> bool:
    return stat.S_ISSOCK(os.fstat(fd).st_mode)


def _memfd(view: memoryview) -> int | None:
    """A new memfd holding a copy of ``view``; ``None`` if none can be made (out of
    descriptors or memory: the buffer then goes through the stream)."""
    try:
        fd = os.memfd_create("suitkaise-wire", os.MFD_CLOEXEC)
        try:
            write_all(fd, [view])
        except BaseException:
            os.close(fd)
            raise
    except OSError:
        return None
    return fd


def _send_memfds(fd: int, memfds: list[int]) -> None:
    """Write the marker byte with ``memfds`` attached (``SCM_RIGHTS``)."""
    sock = _wrap(fd)
    try:
        sock.sendmsg([_MARKER], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", memfds))])
    finally:
        sock.detach()


def _recv_marker(fd: int) -> list[Buffer]:
    """Read the marker byte; return the buffers of the memfds it carries."""
    sock = _wrap(fd)
    try:
        marker, ancillary, flags, _ = sock.recvmsg(1, _ANCILLARY, _CMSG_CLOEXEC)
    finally:
        sock.detach()
    memfds = array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            memfds.frombytes(payload[: len(payload) - len(payload) % memfds.itemsize])
    try:
        if flags & socket.MSG_CTRUNC:
            raise OSError(errno.EMFILE, "shared-memory buffers of a message were lost: "
                          "this process is out of file descriptors")
        shared = [_map(memfd) for memfd in memfds]
    finally:
        for memfd in memfds:
            os.close(memfd)
    if not marker:
        raise EOFError("end of file in the middle of a message")
    if marker != _MARKER or not shared:
        raise EOFError("malformed message: the peer speaks another protocol")
    return shared


def _copy_out(fd: int) -> bytearray:
    """The whole content of the memfd ``fd``, copied into a new ``bytearray``."""
    size = os.fstat(fd).st_size
    buf = bytearray(size)
    with memoryview(buf) as view:
        done = 0
        while done < size:
            n = os.preadv(fd, [view[done:]], done)
            if n == 0:
                raise EOFError("a shared-memory buffer is shorter than its size")
            done += n
    return buf


if sys.version_info >= (3, 13):
    def _map(fd: int) -> Buffer:
        """The memfd ``fd`` mapped private and writable; unmapped (and freed) when the
        last object using it is dropped."""
        return mmap.mmap(fd, 0, mmap.MAP_PRIVATE, _PROT, trackfd=False)
else:
    # Before 3.13 an mmap keeps a duplicate of its descriptor for life, so a process
    # holding many received arrays would run out of descriptors (and receiving a message
    # needs some free): past a quarter of the limit, buffers are copied out instead.
    _mapped: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()

    def _map(fd: int) -> Buffer:
        """The memfd ``fd`` mapped private and writable; unmapped (and freed) when the
        last object using it is dropped."""
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit != resource.RLIM_INFINITY and len(_mapped) >= limit // 4:
            return _copy_out(fd)
        m = mmap.mmap(fd, 0, mmap.MAP_PRIVATE, _PROT)
        _mapped.add(m)
        return m


def _take_shared(fd: int, rd: Reader | None) -> list[Buffer]:
    """Skip the pad that follows a message's payload; return the marker's buffers."""
    _read_exact(fd, rd, bytearray(len(_PAD)))
    if rd is not None and rd.pending:  # cannot happen (see _PAD): the buffers would be lost
        raise EOFError("malformed message: the peer speaks another protocol")
    return _recv_marker(fd)


# -- messages ------------------------------------------------------------------------

_tuple_new = tuple.__new__

class Frame(NamedTuple):
    """One received message: the caller's head, the payload, the out-of-band buffers
    (``head`` and ``data`` are ``bytes`` for a small message read whole, otherwise views
    of one ``bytearray``; a buffer is a ``bytearray``, or an ``mmap`` of shared memory)."""

    head: bytes | memoryview
    data: bytes | memoryview
    buffers: list[Buffer]


def send(fd: int, head: bytes, data: Any = b"", buffers: Sequence[memoryview] = (),
         progress: Progress | None = None) -> None:
    """Write one message (blocks until all of it is in the descriptor's buffer)."""
    if not buffers and len(head) + len(data) <= _SMALL - 4:
        # The common small message: one bytes object, one os.write.
        frame = b"".join((_LEN.pack(len(head) + 4 + len(data)), head, _NO_BUFFERS, data))
        if progress is not None:
            progress.tx_dirty = True
        written = os.write(fd, frame)
        if written < len(frame):
            write_all(fd, [memoryview(frame)[written:]])
        if progress is not None:
            progress.tx_dirty = False
        return
    bufs: list[memoryview] = []
    for buf in buffers:
        view = memoryview(buf)
        bufs.append(view if view.ndim == 1 and view.itemsize == 1 else view.cast("B"))
    sizes = [b.nbytes for b in bufs]
    streamed = bufs  # the buffers written into the stream after the payload
    memfds: list[int] = []
    try:
        if _HAVE_MEMFD and max(sizes, default=0) >= SHM_MIN and _is_socket(fd):
            streamed = []
            for i, b in enumerate(bufs):
                memfd = _memfd(b) if sizes[i] >= SHM_MIN and len(memfds) < _MAX_FDS else None
                if memfd is None:
                    streamed.append(b)
                else:
                    memfds.append(memfd)
                    sizes[i] |= _IN_MEMFD
        n = len(bufs)
        prefix = (_LEN.pack(len(head) + 4 + 8 * n + len(data)) + head + _COUNT.pack(n)
                  + struct.pack(f"<{n}Q", *sizes))
        if progress is not None:
            progress.tx_dirty = True
        if memfds:
            write_all(fd, [prefix, data, _PAD])
            _send_memfds(fd, memfds)
            write_all(fd, streamed)
        else:
            write_all(fd, [prefix, data, *streamed])
    finally:
        for memfd in memfds:  # the receiver holds its own copies from the marker on
            os.close(memfd)
    if progress is not None:
        progress.tx_dirty = False


def recv(fd: int, head_size: int, reader: Reader | None = None, progress: Progress | None = None) -> Frame:
    """Read one message written by ``send`` with a head of ``head_size`` bytes.

    ``EOFError`` when the peer closed the descriptor (before or inside a message).
    """
    if reader is not None:
        buf = reader.pending
        if not buf:
            # The common case (nothing read ahead): one read, inline (_fill is a call more).
            buf = os.read(fd, _CHUNK)
            if not buf:
                raise EOFError("peer closed")
            reader.pending = buf
        if len(buf) < 8:
            buf = _fill(fd, reader, 8)
        if progress is not None:
            progress.rx_dirty = True
        (length,) = _LEN.unpack_from(buf, 0)
        if length <= _SMALL:
            if length < head_size + 4:
                raise EOFError(f"malformed message of {length} bytes: the peer speaks another protocol")
            end = 8 + length
            if len(buf) < end:
                buf = _fill(fd, reader, end)
            reader.pending = buf[end:]
            offset = 12 + head_size
            if not _COUNT.unpack_from(buf, 8 + head_size)[0]:
                # The common small message read whole: slices of what was read, no other copy;
                # tuple.__new__ skips the NamedTuple's Python-level __new__ (~0.1 us).
                if progress is not None:
                    progress.rx_dirty = False
                return _tuple_new(Frame, (buf[8:8 + head_size], buf[offset:end], []))
            block: bytes | bytearray = buf[8:end]
        else:
            reader.pending = buf[8:]
            block = bytearray(length)
            _read_exact(fd, reader, block)
    else:
        lenbuf = bytearray(8)
        read_into(fd, lenbuf)
        if progress is not None:
            progress.rx_dirty = True
        (length,) = _LEN.unpack(lenbuf)
        block = bytearray(length)
        read_into(fd, block)
    (n,) = _COUNT.unpack_from(block, head_size)
    offset = head_size + 4
    if not n and type(block) is bytes:  # a small message read whole: plain slices are cheaper
        if progress is not None:
            progress.rx_dirty = False
        return _tuple_new(Frame, (block[:head_size], block[offset:], []))
    view = memoryview(block)
    buffers: list[Buffer] = []
    if n:
        sizes = struct.unpack_from(f"<{n}Q", block, offset)
        offset += 8 * n
        shared = iter(_take_shared(fd, reader) if any(s & _IN_MEMFD for s in sizes) else ())
        for size in sizes:
            if size & _IN_MEMFD:
                mapped = next(shared, None)
                if mapped is None or len(mapped) != size & ~_IN_MEMFD:
                    raise EOFError("malformed message: the peer speaks another protocol")
                buffers.append(mapped)
                continue
            b = bytearray(size)
            _read_exact(fd, reader, b)
            buffers.append(b)
    if progress is not None:
        progress.rx_dirty = False
    return Frame(view[:head_size], view[offset:], buffers)
