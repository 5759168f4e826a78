"""Open files, temporary files, memory maps and memoryviews.

An open file is an OS handle: it cannot travel, but the file it points to can
be opened again in the receiver. What travels is *where* and *how* it was
open, and the receiver reopens it:

* ``open()`` results of every io class (``TextIOWrapper``, ``BufferedReader``,
  ``BufferedWriter``, ``BufferedRandom``, ``FileIO``): reopened by path with the
  same mode, encoding, errors and newline, and seeked to the same position
  (the sender flushes first so the receiver sees every byte written so far).
  A file opened for writing is **never truncated or created** by the
  receiver: ``'w'``/``'x'`` files are reopened without ``O_TRUNC``/``O_CREAT``
  (same mode string, same read/write capability), ``'a'`` stays append-only.
  The absolute path (as seen by the sender) is tried first, then the name as
  written; a file missing in the receiver raises ``FileNotFoundError`` naming
  the path. A closed file comes back closed.
* ``sys.stdin``/``stdout``/``stderr`` (and fds 0, 1, 2): the *receiver's* streams.
* A file opened on a bare fd (``open(fd)``): a regular file is reopened through
  its path; an unlinked file (``tempfile.TemporaryFile``) is copied into a new
  ``TemporaryFile``; a pipe, socket or device is refused (its data lives in the
  kernel and cannot be copied) with a ``TypeError`` explaining what to do.
* ``NamedTemporaryFile``: with ``delete=True`` a NEW temporary file (same
  directory and extension, new name) holding the same content and position,
  deleted when it is closed or garbage collected (the usual ``delete=True``
  contract, now owned by the receiver: nothing is leaked). With
  ``delete=False`` the file is a persistent file: the same path is reopened.
* ``SpooledTemporaryFile``: same type, same ``max_size`` and arguments, content,
  position and rolled-over state.
* Anonymous ``mmap.mmap``: a new anonymous map with a copy of the bytes and the
  same position. A file-backed map is refused (the map does not expose its
  file; send the path and map it again).
* ``memoryview``: a memoryview (not ``bytes``, which is what cloudpickle
  gives) with the same format, shape and read-only flag, over a copy.
"""

from __future__ import annotations

import sys
from typing import Any

from suitkaise.cucumber._handoff import FILE, handoff
from suitkaise.cucumber._registry import register

__all__: list[str] = []

_STD_NAMES = ("stdin", "stdout", "stderr")


# -- standard streams -------------------------------------------------------------------


def _std_name(f: Any) -> str | None:
    for name in _STD_NAMES:
        if f is getattr(sys, name, None) or f is getattr(sys, f"__{name}__", None):
            return name
    return None


def _std_buffer_name(f: Any) -> str | None:
    import io

    for name in _STD_NAMES:
        for stream in (getattr(sys, name, None), getattr(sys, f"__{name}__", None)):
            # isinstance first: a replaced sys.stdout may answer any attribute (__getattr__)
            if isinstance(stream, io.TextIOWrapper) and f is stream.buffer:
                return name
    return None


def _std_stream(name: str) -> Any:
    return getattr(sys, name)


def _std_buffer(name: str) -> Any:
    stream = getattr(sys, name)
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a replaced stream (e.g. StringIO) has no binary layer
        buffer = getattr(sys, f"__{name}__").buffer
    return buffer


# -- describing an open file ---------------------------------------------------------------


def _raw_of(f: Any) -> Any:
    """The FileIO under a text or buffered file, or None for in-memory layers."""
    import io

    layer = f
    if isinstance(layer, io.TextIOWrapper):
        layer = layer.buffer
    if isinstance(layer, (io.BufferedReader, io.BufferedWriter, io.BufferedRandom)):
        layer = layer.raw
    return layer if isinstance(layer, io.FileIO) else None


def _binary_mode(mode: str) -> str:
    mode = mode.replace("t", "").replace("U", "")
    return mode if "b" in mode else mode + "b"


def _text_mode_from_raw(raw_mode: str) -> str:
    return raw_mode.replace("b", "")


def _newline_of(f: Any) -> str | None:
    """The ``newline=`` argument a TextIOWrapper was opened with.

    TextIOWrapper keeps it in a C field with no getter, so read it from the
    objects the wrapper references (in order: buffer, encoding, encoder,
    decoder, readnl, decoded_chars, ..., errors). Must be called after flush().
    """
    import codecs
    import gc
    import io

    refs = gc.get_referents(f)
    encoding, errors = f.encoding, f.errors
    candidates: list[str] = []
    decoder: Any = None
    started = False
    for ref in refs:
        if ref is encoding and not started:
            started = True
            continue
        if not started:
            continue
        if ref is errors:
            break
        if isinstance(ref, str):
            candidates.append(ref)
        elif isinstance(ref, (io.IncrementalNewlineDecoder, codecs.IncrementalDecoder)):
            decoder = ref
    if decoder is None:  # write-only: no decoded text, the only str is readnl (if any)
        if candidates and candidates[0] in ("", "\n", "\r", "\r\n"):
            return candidates[0]
        return None
    if isinstance(decoder, io.IncrementalNewlineDecoder):
        # newline is None or "" (universal newlines). readnl is "" for "", absent for
        # None; decoded text may follow it, so a lone "" in a readable file is ambiguous
        # and resolved to the default (None).
        if len(candidates) >= 2 and candidates[0] == "":
            return ""
        return None
    if candidates and candidates[0] in ("\n", "\r", "\r\n"):
        return candidates[0]
    return None


def _position(f: Any, what: str) -> int:
    try:
        return int(f.tell())
    except OSError as exc:
        if "next()" in str(exc):
            raise TypeError(
                f"cannot serialize {what}: it is being iterated (for line in file / next()), "
                "and Python does not report a text file's position during iteration. Read "
                "lines with readline() instead, or finish the loop, before sending the file."
            ) from exc
        raise


def _flush(f: Any) -> None:
    try:
        writable = f.writable()
    except (OSError, ValueError):
        return
    if writable:
        f.flush()


@register("_io.TextIOWrapper", "_io.BufferedReader", "_io.BufferedWriter", "_io.BufferedRandom", "_io.FileIO")
def _reduce_file(f: Any) -> Any:
    import io
    import os
    import stat

    if isinstance(f, io.TextIOWrapper):
        kind = "text"
        std = _std_name(f)
        if std is not None:
            return (_std_stream, (std,))
    else:
        kind = "raw" if isinstance(f, io.FileIO) else "buffered"
        std = _std_buffer_name(f)
        if std is not None:
            return (_std_buffer, (std,))

    raw = _raw_of(f)
    if raw is None:
        if kind == "text":  # a TextIOWrapper over an in-memory buffer (BytesIO, ...)
            return _reduce_text_over_memory(f)
        raise TypeError(
            f"cannot serialize {f!r}: it wraps {type(f.raw).__name__}, not an OS file"
        )

    name = raw.__dict__.get("name", raw.__dict__.get("_name"))
    mode = f.__dict__.get("mode") if kind == "text" else raw.mode
    if mode is None:
        mode = _text_mode_from_raw(raw.mode)
    cls = type(f)
    text_args: tuple[Any, ...] = ()

    if f.closed:
        return (_rebuild_closed_file, (kind, cls, name if isinstance(name, (str, bytes)) else None, mode))
    if writable_os_file(f):
        rv = handoff(f, FILE)  # a process being started writes through the same open file
        if rv is not None:
            return rv

    _flush(f)
    if kind == "text":
        text_args = (f.encoding, f.errors, _newline_of(f), f.line_buffering, f.write_through)

    if isinstance(name, int):
        if name in (0, 1, 2):
            std = _STD_NAMES[name]
            return (_std_stream, (std,)) if kind == "text" else (_std_buffer, (std,))
        st = os.fstat(name)
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            what = "an OS pipe" if stat.S_ISFIFO(st.st_mode) else "a socket"
            raise TypeError(
                f"cannot serialize {type(f).__name__} on fd {name}: it is one end of {what}, whose "
                "data lives in the kernel and cannot be copied into another process. Send the "
                "pipe itself through multiprocessing (or suitkaise.pipe), or read the data and "
                "send that."
            )
        if not stat.S_ISREG(st.st_mode):
            raise TypeError(
                f"cannot serialize {type(f).__name__} on fd {name}: it is not a regular file "
                f"(mode {stat.filemode(st.st_mode)}). Send its path and open it in the receiver."
            )
        position = _position(f, f"file on fd {name}")
        if st.st_nlink == 0:  # unlinked (tempfile.TemporaryFile): copy the content
            return (
                _rebuild_anonymous_file,
                (kind, mode, _read_all(name), position, text_args),
            )
        path = os.readlink(f"/proc/self/fd/{name}")
        return (_reopen_file, (kind, cls, path, path, mode, position, text_args))

    if not isinstance(name, (str, bytes)):
        raise TypeError(f"cannot serialize {f!r}: its name {name!r} is not a path")
    position = _position(f, f"file {name!r}")
    return (_reopen_file, (kind, cls, name, os.path.abspath(name), mode, position, text_args))


# -- a file open for writing, handed to a child process at its start (see .._handoff) --------


def writable_os_file(f: Any) -> bool:
    """Whether ``f`` is an open OS file (not a standard stream) that can be written."""
    import io

    if type(f) not in (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom, io.FileIO):
        return False
    raw = _raw_of(f)
    if raw is None or raw.closed or raw.fileno() in (0, 1, 2):
        return False
    return bool(raw.writable())


def reduce_file_for_child(f: Any) -> Any:
    """A file open for writing, for a spawn/forkserver child (``handoff`` flushed it): a new
    file object on a duplicate of its descriptor, so both processes write through one open
    file description (one offset, as a fork child's inherited file does) and neither
    overwrites the other."""
    import io
    from multiprocessing import reduction

    raw = _raw_of(f)
    kind = "text" if isinstance(f, io.TextIOWrapper) else ("raw" if f is raw else "buffered")
    mode = f.__dict__.get("mode") if kind == "text" else raw.mode
    if mode is None:
        mode = _text_mode_from_raw(raw.mode)
    text_args: tuple[Any, ...] = ()
    if kind == "text":
        text_args = (f.encoding, f.errors, _newline_of(f), f.line_buffering, f.write_through)
    name = raw.__dict__.get("name", raw.__dict__.get("_name"))
    return (_file_from_fd, (kind, type(f), reduction.DupFd(raw.fileno()), name, mode, text_args))


def _file_from_fd(
    kind: str, cls: Any, dup: Any, name: Any, mode: str, text_args: tuple[Any, ...]
) -> Any:
    bin_mode = _binary_mode(mode).replace("x", "w")  # a descriptor is never created again
    binary: Any = open(dup.detach(), bin_mode, buffering=0 if kind == "raw" else -1)
    if name is not None:  # the parent's name (a path), not the descriptor's number
        (binary if kind == "raw" else binary.raw).name = name
    return _wrap(kind, cls, binary, mode, text_args)


def _read_all(fd: int) -> bytes:
    """The whole content of a regular file, without moving its position."""
    import os

    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _reduce_text_over_memory(f: Any) -> Any:
    _flush(f)
    position = _position(f, f"{type(f).__name__}")
    return (
        _rebuild_text_over,
        (type(f), f.buffer, f.encoding, f.errors, _newline_of(f), f.line_buffering,
         f.write_through, position, f.__dict__.get("mode")),
    )


def _rebuild_text_over(
    cls: Any, buffer: Any, encoding: str, errors: str, newline: str | None,
    line_buffering: bool, write_through: bool, position: int, mode: str | None,
) -> Any:
    import io

    text = cls.__new__(cls)
    io.TextIOWrapper.__init__(text, buffer, encoding, errors, newline, line_buffering, write_through)
    if mode is not None:
        text.mode = mode
    text.seek(position)
    return text


def _no_create_opener(path: Any) -> Any:
    import os

    strip = os.O_TRUNC | os.O_CREAT | os.O_EXCL

    def opener(_name: Any, flags: int) -> int:
        return os.open(path, flags & ~strip)

    return opener


def _wrap(kind: str, cls: Any, binary: Any, mode: str, text_args: tuple[Any, ...]) -> Any:
    import io

    if kind != "text":
        return binary
    encoding, errors, newline, line_buffering, write_through = text_args
    text = cls.__new__(cls)
    io.TextIOWrapper.__init__(text, binary, encoding, errors, newline, line_buffering, write_through)
    text.mode = mode
    return text


def _reopen_file(
    kind: str, cls: Any, name: Any, abspath: Any, mode: str, position: int,
    text_args: tuple[Any, ...],
) -> Any:
    bin_mode = _binary_mode(mode)
    binary: Any = None
    errors: list[OSError] = []
    for path in dict.fromkeys((abspath, name)):  # the sender's absolute path first
        try:
            binary = open(
                name, bin_mode, buffering=0 if kind == "raw" else -1, opener=_no_create_opener(path)
            )
            break
        except OSError as exc:
            errors.append(exc)
    if binary is None:
        first = errors[0]
        if isinstance(first, FileNotFoundError):
            raise FileNotFoundError(
                first.errno,
                f"cucumber cannot reopen the file {name!r} (mode {mode!r}): it does not exist here "
                f"(tried {abspath!r}); files are reopened by path and must exist in the receiver",
                abspath,
            ) from first
        raise first
    f = _wrap(kind, cls, binary, mode, text_args)
    f.seek(position)
    return f


def _rebuild_closed_file(kind: str, cls: Any, name: Any, mode: str) -> Any:
    import os

    binary = open(
        name if name is not None else os.devnull, _binary_mode(mode),
        buffering=0 if kind == "raw" else -1, opener=_no_create_opener(os.devnull),
    )
    f = _wrap(kind, cls, binary, mode, ("utf-8", "strict", None, False, False))
    f.close()
    return f


def _rebuild_anonymous_file(
    kind: str, mode: str, data: bytes, position: int, text_args: tuple[Any, ...]
) -> Any:
    import os
    import tempfile

    if kind == "text":
        encoding, errors, newline, _lb, _wt = text_args
        f: Any = tempfile.TemporaryFile(
            "w+", encoding=encoding, errors=errors, newline=newline
        )
    else:
        f = tempfile.TemporaryFile("w+b", buffering=0 if kind == "raw" else -1)
    os.pwrite(f.fileno(), data, 0)
    f.seek(position)
    return f


# -- temporary files ---------------------------------------------------------------------


@register("tempfile._TemporaryFileWrapper")
def _reduce_named_temporary(t: Any) -> Any:
    import os

    inner = t.file
    if not t.delete:
        # A persistent file that happens to live in the temp dir: reopen it by path.
        return (_rebuild_named_persistent, (inner, t.name))
    text = _is_text(inner)
    kind = "text" if text else "binary"
    mode = inner.__dict__.get("mode", "w+") if text else "w+b"
    base = os.path.basename(t.name)
    stem, suffix = os.path.splitext(base)
    prefix = stem[:-8] if len(stem) > 8 else "tmp"  # tempfile appends 8 random characters
    directory = os.path.dirname(t.name)
    if inner.closed:
        return (_rebuild_named_temporary, (kind, mode, prefix, suffix, directory, b"", 0, (), True))
    _flush(inner)
    position = _position(inner, f"NamedTemporaryFile {t.name!r}")
    text_args: tuple[Any, ...] = ()
    if text:
        text_args = (inner.encoding, inner.errors, _newline_of(inner))
    data = _read_all(inner.fileno())
    return (
        _rebuild_named_temporary,
        (kind, mode, prefix, suffix, directory, data, position, text_args, False),
    )


def _is_text(f: Any) -> bool:
    import io

    return isinstance(f, io.TextIOWrapper)


def _rebuild_named_persistent(inner: Any, name: str) -> Any:
    import tempfile

    return tempfile._TemporaryFileWrapper(inner, name, delete=False)


def _rebuild_named_temporary(
    kind: str, mode: str, prefix: str, suffix: str, directory: str, data: bytes,
    position: int, text_args: tuple[Any, ...], closed: bool,
) -> Any:
    import os
    import tempfile

    kwargs: dict[str, Any] = {}
    if kind == "text" and text_args:
        kwargs = dict(zip(("encoding", "errors", "newline"), text_args, strict=True))
    t = tempfile.NamedTemporaryFile(
        mode, prefix=prefix, suffix=suffix,
        dir=directory if directory and os.path.isdir(directory) else None, delete=True, **kwargs,
    )
    if closed:
        t.close()
        return t
    os.pwrite(t.fileno(), data, 0)
    t.file.seek(position)
    return t


@register("tempfile.SpooledTemporaryFile")
def _reduce_spooled(s: Any) -> Any:
    import io

    inner = s._file
    args = s.__dict__.get("_TemporaryFileArgs")
    if args is None:  # rollover() drops the saved arguments: read them off the real file
        args = {"mode": "w+b"}
        if isinstance(inner, io.TextIOWrapper):
            args = {"mode": inner.__dict__.get("mode", "w+"), "encoding": inner.encoding,
                    "errors": inner.errors, "newline": _newline_of(inner)}
    args = dict(args)
    if s.closed:
        return (_rebuild_spooled, (type(s), s._max_size, args, False, b"", 0, True))
    _flush(inner)
    position = _position(inner, "SpooledTemporaryFile")
    if s._rolled:
        data = _read_all(inner.fileno())
    elif isinstance(inner, io.TextIOWrapper):
        data = inner.buffer.getvalue()
    else:
        data = inner.getvalue()
    return (_rebuild_spooled, (type(s), s._max_size, args, bool(s._rolled), data, position, False))


def _rebuild_spooled(
    cls: Any, max_size: int, args: dict[str, Any], rolled: bool, data: bytes,
    position: int, closed: bool,
) -> Any:
    import io
    import os

    s = cls(max_size, **args)
    if closed:
        s.close()
        return s
    if rolled:
        s.rollover()
        os.pwrite(s._file.fileno(), data, 0)
    elif isinstance(s._file, io.TextIOWrapper):
        s._file.buffer.write(data)
    else:
        s._file.write(data)
    s._file.seek(position)
    return s


# -- mmap, memoryview ---------------------------------------------------------------------


@register("mmap.mmap")
def _reduce_mmap(m: Any) -> Any:
    if m.closed:
        return (_rebuild_mmap, (None, 0))
    try:
        m.size()  # the size of the mapped *file*: fails with EBADF for anonymous maps
    except OSError:
        return (_rebuild_mmap, (m[:], m.tell()))
    raise TypeError(
        "cannot serialize a file-backed mmap.mmap: the map does not expose which file it maps. "
        "Send the file's path (and offset) and map it again in the receiver."
    )


def _rebuild_mmap(data: bytes | None, position: int) -> Any:
    import mmap

    if data is None:
        m = mmap.mmap(-1, 1)
        m.close()
        return m
    m = mmap.mmap(-1, max(len(data), 1))
    m[: len(data)] = data
    m.seek(position)
    return m


@register("builtins.memoryview")
def _reduce_memoryview(mv: Any) -> Any:
    try:
        fmt, shape, readonly = mv.format, tuple(mv.shape), mv.readonly
    except ValueError as exc:
        raise TypeError("cannot serialize a released memoryview") from exc
    data = mv.tobytes()
    return (_rebuild_memoryview, (data if readonly else bytearray(data), fmt, shape))


def _rebuild_memoryview(data: bytes | bytearray, fmt: str, shape: tuple[int, ...]) -> memoryview:
    mv = memoryview(data)
    if fmt != "B" or shape != (len(data),):
        mv = mv.cast(fmt, shape)  # type: ignore[call-overload]
    return mv
