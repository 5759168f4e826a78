"""Pipe: out-of-band buffers of ``wire.SHM_MIN`` bytes and more travel in shared memory.

Sizes straddle both thresholds (``OOB_MIN`` 64 KiB, ``SHM_MIN``) up to 100 MB,
every kind of buffer, many buffers in one message, and the lifetimes: a
received buffer is an ``mmap`` of an anonymous memfd that is unmapped when the
last object using it is dropped; no descriptor or mapping outlives its
message, in the receiver or the sender, also when the peer is SIGKILLed in the
middle of a message (nothing can be left in ``/dev/shm``: the testkit's leak
check looks after every test).
"""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from sk_testkit import BUFFER_KINDS, make_buffer, memfd_mappings, open_fds
from suitkaise.pipe import Pipe, PipeEndpointError, wire

pytestmark = pytest.mark.timeout(300)

SHM = wire.SHM_MIN
SIZES = [0, 1, wire.OOB_MIN - 1, wire.OOB_MIN, SHM - 1, SHM, 100 * 1024 * 1024]


def assert_same(want: Any, have: Any) -> None:
    """Equal content, the same type, and for arrays the dtype, shape and strides a local
    pickle gives, writeable (as the copy through the socket gives them)."""
    assert type(have) is type(want)
    if isinstance(want, np.ndarray):
        local = pickle.loads(pickle.dumps(want, protocol=5))
        assert (have.dtype, have.shape, have.strides) == (local.dtype, local.shape, local.strides)
        assert have.flags.writeable and np.array_equal(have, want)
    elif isinstance(want, memoryview):
        assert (have.format, have.shape) == (want.format, want.shape)
        assert have.tobytes() == want.tobytes()
    else:
        assert have == want


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_sizes_across_the_thresholds(echo: Any, kind: str, n: int) -> None:
    obj = make_buffer(kind, n, n % 251)
    echo.send(obj)
    assert_same(obj, echo.recv())
    echo.send([obj, make_buffer("ndarray", 10, 1)])
    back = echo.recv()
    assert_same(obj, back[0])
    assert_same(make_buffer("ndarray", 10, 1), back[1])


def test_layouts_and_dtypes(echo: Any) -> None:
    """Fortran order, non-contiguous views, other dtypes: as a local pickle round trip gives them."""
    base = np.random.default_rng(0).random((1024, 1280))  # 10 MiB of float64
    objs = [base, np.asfortranarray(base), base[:, ::2], base.T, base.astype(np.float32),
            base.astype(">i8"), np.zeros(SHM, dtype=np.bool_)]
    echo.send(objs)
    for want, have in zip(objs, echo.recv(), strict=True):
        assert_same(want, have)


def test_many_buffers_in_one_message(echo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """More shared buffers than one message may carry descriptors (253), mixed with
    streamed and in-band ones: every buffer comes back in its place."""
    monkeypatch.setattr(wire, "SHM_MIN", wire.OOB_MIN)  # the sender's choice; 64 KiB each
    objs: list[Any] = []
    for i in range(300):
        objs.append(make_buffer("ndarray", wire.OOB_MIN + i, i))
        if i % 50 == 0:
            objs += [make_buffer("bytes", 100, i), make_buffer("bytearray", wire.OOB_MIN - 1, i), {"i": i}]
    echo.send(objs)
    back = echo.recv()
    assert len(back) == len(objs)
    for want, have in zip(objs, back, strict=True):
        assert_same(want, have)


def _send_in_thread(fd: int, buffers: list[Any]) -> threading.Thread:
    t = threading.Thread(target=wire.send, args=(fd, b"h", b"payload", buffers))
    t.start()
    return t


def test_a_received_buffer_is_mapped_and_released_with_its_last_user() -> None:
    here, there = socket.socketpair()
    fds = open_fds()
    try:
        arr = np.arange(SHM // 8, dtype=np.float64)
        t = _send_in_thread(here.fileno(), [memoryview(arr).cast("B"), memoryview(b"x" * 100_000)])
        head, data, buffers = wire.recv(there.fileno(), 1)
        t.join()
        assert (bytes(head), bytes(data)) == (b"h", b"payload")
        assert type(buffers[0]) is mmap.mmap and type(buffers[1]) is bytearray
        assert memfd_mappings("suitkaise-wire") == 1 and open_fds() <= fds + 1  # +1: the mmap's own (Python < 3.13)
        back = np.frombuffer(buffers[0], dtype=np.float64)
        del buffers
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 1  # the array still uses it
        back += 1  # writeable, in place
        assert back[0] == 1 and back[-1] == arr[-1] + 1
        del back
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 0 and open_fds() == fds
    finally:
        here.close()
        there.close()


def test_a_received_array_is_not_shared_with_a_process_forked_later() -> None:
    # A received buffer in shared memory must behave like the bytearray it replaces: a child
    # forked afterwards that writes to the array changes its own copy, not the receiver's.
    # Before, the mapping was MAP_SHARED and the parent saw the child's write.
    anchor, point = Pipe.pair()
    try:
        anchor.send(np.zeros(SHM // 8))
        got = point.recv()
        assert memfd_mappings("suitkaise-wire") == 1
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            got[0] = 7.0
            got[-1] = 7.0
            os._exit(0 if got[0] == 7.0 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert got[0] == 0.0 and got[-1] == 0.0
        got[1] = 3.0  # and the receiver's own writes stay its own
        assert got[1] == 3.0
    finally:
        anchor.close()
        point.close()


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13+ maps without keeping a descriptor")
def test_past_the_descriptor_budget_buffers_are_copied_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each live mapping keeps a descriptor before Python 3.13: past a quarter of the
    descriptor limit, received buffers are copied out of their memfd instead (same content)."""
    monkeypatch.setattr(wire.resource, "getrlimit", lambda _: (8, 8))  # room for 2 mappings
    here, there = socket.socketpair()
    try:
        arrays = [np.full(SHM, i, dtype=np.uint8) for i in range(3)]
        t = _send_in_thread(here.fileno(), [memoryview(a) for a in arrays])
        buffers = wire.recv(there.fileno(), 1).buffers
        t.join()
        assert [type(b) for b in buffers] == [mmap.mmap, mmap.mmap, bytearray]
        assert [bytes(b) == a.tobytes() for b, a in zip(buffers, arrays, strict=True)] == [True] * 3
        del buffers
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 0
    finally:
        here.close()
        there.close()


def test_one_way_pipe_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """An os.pipe cannot carry descriptors: large buffers go through it as before."""
    anchor, point = Pipe.pair(one_way=True)
    with anchor, point:
        arr = np.arange(SHM, dtype=np.uint8)
        t = threading.Thread(target=anchor.send, args=(arr,))
        t.start()
        back = point.recv()
        t.join()
        assert np.array_equal(back, arr) and back.flags.writeable
        assert type(back.base) is not mmap.mmap and memfd_mappings("suitkaise-wire") == 0


def test_no_descriptor_or_mapping_left_after_many_messages(echo: Any) -> None:
    arr = make_buffer("ndarray", SHM, 3)
    echo.send(arr)
    echo.recv()  # warm up (the child's first message)
    gc.collect()
    fds, maps = open_fds(), memfd_mappings("suitkaise-wire")
    for i in range(40):
        echo.send([arr, i])
        back, j = echo.recv()
        assert j == i and back[-1] == arr[-1]
        del back
    gc.collect()
    assert (open_fds(), memfd_mappings("suitkaise-wire")) == (fds, maps) == (fds, 0)


def test_small_messages_between_shared_ones(echo: Any) -> None:
    """The receiver reads small messages ahead; a read never reaches the byte that carries
    a later message's descriptors (they would be lost), whatever the mix."""
    big = make_buffer("ndarray", SHM, 9)
    for at in range(5):
        for k in range(5):  # queued before any is read back (as many as the socket holds)
            echo.send(big if k == at else k)
        time.sleep(0.2)  # let the echoes queue up on our side too
        for k in range(5):
            got = echo.recv()
            if k == at:
                assert np.array_equal(got, big)
            else:
                assert got == k


# -- SIGKILL in the middle of a message ---------------------------------------------

def big_sender_child(point: Any) -> None:
    """One message: two shared buffers, then 64 MB of streamed ones that block in the socket
    (nobody reads yet) after the descriptors went out."""
    streamed = [make_buffer("ndarray", SHM - 1, i) for i in range(8)]
    point.send([make_buffer("ndarray", SHM, 1), *streamed, make_buffer("ndarray", SHM, 2)])


def _memfds_of(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += "memfd:suitkaise-wire" in os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return n


def test_sender_killed_mid_message(start_method: str) -> None:
    anchor, point = Pipe.pair()
    child = multiprocessing.Process(target=big_sender_child, args=(point,))
    child.start()
    point.close()
    fds = open_fds()
    try:
        deadline = time.monotonic() + 60
        while _memfds_of(child.pid) < 2:  # made both memfds: now it sends and blocks
            assert time.monotonic() < deadline, "the child never made its memfds"
            time.sleep(0.01)
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        with pytest.raises(PipeEndpointError, match="peer closed"):
            anchor.recv()  # maps the two buffers, then finds the end of the stream
    finally:
        anchor.close()
    gc.collect()
    assert memfd_mappings("suitkaise-wire") == 0 and open_fds() == fds - 1  # the anchor itself


def stopped_child(point: Any) -> None:
    os.kill(os.getpid(), signal.SIGSTOP)
    point.recv()


def test_receiver_killed_before_reading(start_method: str) -> None:
    """The message waits in the socket with its descriptors; the receiver dies; the sender
    holds nothing (its memfds were closed once sent) and sees the peer closed."""
    anchor, point = Pipe.pair()
    child = multiprocessing.Process(target=stopped_child, args=(point,))
    child.start()
    point.close()
    fds = open_fds()
    try:
        anchor.send([make_buffer("ndarray", SHM, 1), make_buffer("ndarray", 3 * SHM, 2)])
        assert memfd_mappings("suitkaise-wire") == 0 and open_fds() == fds
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        with pytest.raises(PipeEndpointError, match="peer closed"):
            anchor.recv()
    finally:
        anchor.close()
    assert open_fds() == fds - 1  # the anchor itself
