"""The messages between a ``Pool`` and its workers, on ``suitkaise.pipe.wire`` frames.

Each worker owns one duplex ``multiprocessing.Pipe`` (a Unix socketpair). A
message is one ``suitkaise.pipe.wire`` frame whose head is ``_HEAD`` below
(kind, status, job, chunk number, three counters, elapsed seconds) and whose
payload is ``wire.dumps(obj)``: buffers of 64 KiB and more travel out-of-band,
written from and read into place. The framing, the buffer rule and the raw
descriptor I/O live in ``suitkaise.pipe.wire`` only; this module names the
Pool's message kinds.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from typing import NamedTuple

from suitkaise.pipe import wire
from suitkaise.pipe.wire import Buffer, dumps, loads

__all__ = [
    "CHECKPOINT",
    "DROP",
    "ERROR",
    "EXIT_FAILED",
    "FN",
    "INIT_FAILED",
    "LIFE_KINDS",
    "LOG",
    "OK",
    "RECYCLE",
    "RESULT",
    "RESUME",
    "RETIRE",
    "STOP",
    "TASK",
    "Buffer",
    "Message",
    "dumps",
    "guard",
    "loads",
    "recv_message",
    "send_message",
]

# message kinds
FN = 1  # parent -> worker: the function of a job (job)
TASK = 2  # parent -> worker: items lo..hi-1 of a chunk (job, seq, a=start, b=lo, c=hi)
DROP = 3  # parent -> worker: forget the function of a job (job)
STOP = 4  # parent -> worker: exit after the current message
RESULT = 5  # worker -> parent: results of a TASK's items (job, seq, a=count)
CHECKPOINT = 6  # parent -> worker: its checkpoint file for Skprocess items is /proc/<a>/fd/<b>
RESUME = 7  # parent -> worker: the next TASK's item resumes from /proc/<a>/fd/<b>, with c lives
# a worker's life (_pool_life), numbered from 10: handled by _pool_life.on_message
LOG = 10  # worker -> parent: a logging record (payload: the record's dict)
INIT_FAILED = 11  # worker -> parent: the initializer raised (payload: message, traceback)
EXIT_FAILED = 12  # worker -> parent: on_exit raised (payload: message, traceback)
LIFE_KINDS = frozenset({LOG, INIT_FAILED, EXIT_FAILED})

# RESULT status
OK = 0  # every item of the chunk succeeded
ERROR = 1  # results up to a failing item, then its error
RETIRE = 2  # like ERROR, and the worker exits right after (e.g. MemoryError)
RECYCLE = 3  # the first `a` items succeeded, the worker reached its limits and exits now:
# the rest of the TASK goes to another worker

# kind, status/flags, job, seq, a, b, c (counters, per kind), elapsed seconds
_HEAD = struct.Struct("<BBqqqqqd")


# Sockets written from several threads (a worker forwarding log records from any
# thread while its main thread sends results): one writer at a time, so that two
# frames never interleave. Other sockets have one writer and no lock.
_guarded: dict[int, threading.Lock] = {}


def guard(fd: int) -> None:
    """From now on, messages to ``fd`` may be sent from several threads."""
    _guarded[fd] = threading.Lock()  # new: a forked copy of a held lock would stay held


class Message(NamedTuple):
    kind: int
    flags: int
    job: int
    seq: int
    a: int
    b: int
    c: int
    elapsed: float
    payload: bytes | memoryview
    buffers: list[Buffer]


def send_message(
    fd: int,
    kind: int,
    *,
    flags: int = 0,
    job: int = 0,
    seq: int = 0,
    a: int = 0,
    b: int = 0,
    c: int = 0,
    elapsed: float = 0.0,
    payload: bytes = b"",
    buffers: Sequence[memoryview] = (),
) -> None:
    """Write one message (blocking until the whole message is in the socket)."""
    head = _HEAD.pack(kind, flags, job, seq, a, b, c, elapsed)
    lock = _guarded.get(fd)
    if lock is None:
        wire.send(fd, head, payload, buffers)
        return
    with lock:
        wire.send(fd, head, payload, buffers)


def recv_message(fd: int) -> Message:
    """Read one message; ``EOFError`` when the peer closed the socket."""
    frame = wire.recv(fd, _HEAD.size)
    kind, flags, job, seq, a, b, c, elapsed = _HEAD.unpack(frame.head)
    return Message(kind, flags, job, seq, a, b, c, elapsed, frame.data, frame.buffers)
