"""Live objects on an Skprocess are shared with its child, never copied (cucumber._handoff).

multiprocessing queues, locks, events, values, Pipe connections, sockets and files open
for writing, given to an Skprocess, reach its child as ``multiprocessing.Process(args=)``
gives them: the very object under fork, the same OS resource (descriptor, semaphore,
shared memory) under spawn and forkserver. They used to be copied (a new queue, a new
connection to the same address, a file reopened with its own offset): what the child put,
sent or wrote silently never reached the parent, or overwrote its lines.
"""

from __future__ import annotations

import multiprocessing
import socket

import pytest
from live_support import ReadsLine, SendsOnConnection, SendsOnSocket, UsesMpObjects, WritesLines

from suitkaise.cucumber import SerializationError
from suitkaise.processing import Pool

pytestmark = pytest.mark.timeout(180)


def _put(q, x):
    q.put(x)
    return x


def test_multiprocessing_objects_are_shared_with_the_child(start_method):
    objs = {
        "queue": multiprocessing.Queue(),
        "simple": multiprocessing.SimpleQueue(),
        "joinable": multiprocessing.JoinableQueue(),
        "event": multiprocessing.Event(),
        "lock": multiprocessing.Lock(),
        "rlock": multiprocessing.RLock(),
        "condition": multiprocessing.Condition(),
        "semaphore": multiprocessing.Semaphore(0),
        "barrier": multiprocessing.Barrier(2),
        "value": multiprocessing.Value("i", 1),
        "array": multiprocessing.Array("i", 3),
        "raw": multiprocessing.RawValue("i", 0),
    }
    try:
        proc = UsesMpObjects(objs)
        proc.start()
        objs["barrier"].wait(timeout=60)
        assert proc.result() == "used"
        assert objs["queue"].get(timeout=30) == "queue"
        assert objs["simple"].get() == "simple"
        assert objs["joinable"].get(timeout=30) == "joinable"
        objs["joinable"].task_done()
        assert objs["event"].is_set()
        assert objs["value"].value == 42
        assert list(objs["array"]) == [0, 7, 0]
        assert objs["raw"].value == 3
        assert objs["semaphore"].acquire(timeout=30)
    finally:
        for name in ("queue", "joinable", "simple"):
            objs[name].close()
        for name in ("queue", "joinable"):
            objs[name].join_thread()


def test_a_connected_socket_is_the_same_connection_in_the_child(start_method):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        peer, _ = srv.accept()
        try:
            peer.settimeout(30)
            SendsOnSocket(client).run()
            assert peer.recv(10) == b"hello"  # was: a new connection nobody accepted
        finally:
            client.close()
            peer.close()


def test_a_pipe_connection_is_shared_with_the_child(start_method):
    ours, theirs = multiprocessing.Pipe()
    try:
        SendsOnConnection(theirs).run()
        assert ours.poll(30) and ours.recv() == {"from": "child"}
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("mode", ["w", "a", "r+", "wb"])
def test_a_file_open_for_writing_shares_its_offset_with_the_child(start_method, tmp_path, mode):
    path = tmp_path / "out.txt"
    path.write_text("")
    text = "b" not in mode
    with open(path, mode) as f:
        f.write("header\n" if text else b"header\n")
        WritesLines(f).run()
        f.write("parent after\n" if text else b"parent after\n")
    # was: the child wrote at the parent's offset through a reopened file, and the parent
    # then overwrote the child's lines
    assert path.read_text() == "header\nchild 0\nchild 1\nchild 2\nparent after\n"


def test_a_file_open_for_reading_is_reopened_at_its_position(start_method, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("one\ntwo\nthree\n")
    with open(path) as f:
        assert f.readline() == "one\n"
        assert ReadsLine(f).run() == "two\n"
        assert f.readline() == "two\n"  # its own offset: the child's read does not move ours


def test_a_pool_item_holding_a_queue_is_refused_not_copied(start_method):
    q = multiprocessing.Queue()
    try:
        with Pool(1) as pool, pytest.raises(SerializationError) as info:
            pool.star().map(_put, [(q, 1)])
        text = str(info.value)
        assert "root[0][0]" in text and "multiprocessing Queue" in text and "Skprocess" in text
    finally:
        q.close()
        q.join_thread()
