"""Endpoint rules that need no second process: roles, locking, transfer refusal,
one-way direction, closed endpoints, payload kinds, threads."""

from __future__ import annotations

import copy
import pickle
import threading
from typing import Any

import pytest

from suitkaise import cucumber
from suitkaise.pipe import Pipe, PipeEndpointError

TRANSFER_REFUSED = "Locked pipe endpoint cannot be transferred. Keep it in the parent process."


@pytest.fixture
def pair() -> Any:
    anchor, point = Pipe.pair()
    yield anchor, point
    anchor.close()
    point.close()


def _in_thread(fn: Any) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_pair_roles_and_shared_base(pair: Any) -> None:
    anchor, point = pair
    assert isinstance(anchor, Pipe.Anchor) and isinstance(point, Pipe.Point)
    assert type(anchor).__mro__[1] is type(point).__mro__[1]
    assert issubclass(PipeEndpointError, RuntimeError)
    assert anchor.locked is True and point.locked is False
    assert not anchor.closed and not point.closed
    assert "Pipe.Anchor" in repr(anchor) and "locked=True" in repr(anchor)


def test_pipe_is_a_namespace() -> None:
    with pytest.raises(TypeError, match="namespace"):
        Pipe()
    with pytest.raises(TypeError, match="one_way"):
        Pipe.pair(one_way="yes")  # type: ignore[arg-type]


def test_anchor_always_locked(pair: Any) -> None:
    anchor, _ = pair
    anchor.lock()
    assert anchor.locked
    with pytest.raises(PipeEndpointError) as info:
        anchor.unlock()
    assert str(info.value) == "Anchor endpoints are always locked."
    assert anchor.locked


def test_point_lock_toggles(pair: Any) -> None:
    _, point = pair
    point.lock()
    assert point.locked
    point.unlock()
    assert not point.locked


def test_locked_endpoints_refuse_pickle_and_cucumber(pair: Any) -> None:
    anchor, point = pair
    point.lock()
    for ep in (anchor, point):
        with pytest.raises(PipeEndpointError) as info:
            pickle.dumps(ep)
        assert str(info.value) == TRANSFER_REFUSED
        with pytest.raises(cucumber.SerializationError) as cinfo:
            cucumber.serialize({"nested": [ep]})
        assert "Locked pipe endpoint cannot be transferred" in str(cinfo.value)
    point.unlock()
    clone = pickle.loads(pickle.dumps(point))  # same process: resource_sharer path
    try:
        assert isinstance(clone, Pipe.Point) and clone.locked is False
        assert point.locked is False  # transfer does not lock the original
        anchor.send("to the clone")
        assert clone.recv() == "to the clone"
        point.send("from the original")  # the original stays usable
        assert anchor.recv() == "from the original"
    finally:
        clone.close()


def test_endpoints_cannot_be_copied(pair: Any) -> None:
    _, point = pair
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.copy(point)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.deepcopy({"p": point})


def test_closed_endpoint_raises_closed(pair: Any) -> None:
    anchor, point = pair
    anchor.close()
    anchor.close()  # idempotent
    assert anchor.closed
    with pytest.raises(PipeEndpointError, match="closed"):
        anchor.send(1)
    with pytest.raises(PipeEndpointError, match="closed"):
        anchor.recv()
    with pytest.raises(PipeEndpointError, match="closed"):
        anchor.poll()
    point.unlock()
    point.close()
    with pytest.raises(PipeEndpointError, match="closed"):
        pickle.dumps(point)


def test_peer_closed_in_process(pair: Any) -> None:
    anchor, point = pair
    anchor.send("last words")
    anchor.close()
    assert point.recv() == "last words"
    with pytest.raises(PipeEndpointError, match="peer closed"):
        point.recv()
    with pytest.raises(PipeEndpointError, match="peer closed"):
        point.send("anyone?")


def test_messages_arriving_in_pieces(pair: Any) -> None:
    # The receiver's first read may return less than the 8-byte length (or part of the
    # message): it keeps reading; a peer that closes inside the length is "peer closed".
    import os
    import time

    from suitkaise.pipe import wire

    anchor, point = pair
    frame = b"".join(wire._LEN.pack(1 + 4 + len(d)) + b"\0" + wire._NO_BUFFERS + d
                     for d in (cucumber.serialize({"a": 1}), cucumber.serialize([2, 3])))

    def trickle() -> None:
        for i in range(len(frame)):
            os.write(anchor._fd, frame[i:i + 1])
            time.sleep(0.001)

    t = _in_thread(trickle)
    assert point.recv() == {"a": 1} and point.recv() == [2, 3]
    t.join()
    os.write(anchor._fd, frame[:3])
    anchor.close()
    with pytest.raises(PipeEndpointError, match="peer closed"):
        point.recv()


def test_one_way_direction_rules() -> None:
    anchor, point = Pipe.pair(one_way=True)
    try:
        assert anchor.writable and not anchor.readable
        assert point.readable and not point.writable
        anchor.send({"x": 1})
        assert point.recv() == {"x": 1}
        with pytest.raises(PipeEndpointError, match="send-only"):
            anchor.recv()
        with pytest.raises(PipeEndpointError, match="receive-only"):
            point.send(1)
        with pytest.raises(cucumber.SerializationError):
            cucumber.serialize(anchor)
        with pytest.raises(PipeEndpointError, match="always locked"):
            anchor.unlock()
    finally:
        anchor.close()
        point.close()


def test_poll_and_message_order(pair: Any) -> None:
    anchor, point = pair
    assert point.poll() is False
    for i in range(5):
        anchor.send(i)
    assert point.poll(5.0) is True
    assert [point.recv() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert point.poll() is False


def test_poll_names_a_timeout_that_is_not_a_number(pair: Any) -> None:
    anchor, point = pair
    for end in (anchor, point):
        with pytest.raises(TypeError, match=r"^Pipe\.(Anchor|Point)\.poll\(timeout\) must be a number of seconds or None, got 'x'$"):
            end.poll("x")
    anchor.send(1)
    assert point.poll(5) is True and point.recv() == 1


def test_payload_kinds_round_trip(pair: Any) -> None:
    anchor, point = pair
    big = bytes(range(256)) * 2000  # > 64 KiB: out-of-band path
    values: list[Any] = [
        None, 0, "text", {"a": [1, 2.5, (3, "x")]}, b"small", bytearray(b"ba"),
        big, bytearray(big), list(range(50_000)),
    ]
    received: list[Any] = []
    reader = _in_thread(lambda: received.extend(point.recv() for _ in range(len(values))))
    for v in values:
        anchor.send(v)
    reader.join(30)
    assert received == values
    assert [type(v) for v in received] == [type(v) for v in values]


def test_memoryview_round_trip(pair: Any) -> None:
    anchor, point = pair
    mv = memoryview(bytearray(range(200))).cast("H")
    anchor.send(mv)
    got = point.recv()
    assert isinstance(got, memoryview)
    assert got.format == "H" and got.tolist() == mv.tolist()


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable refuses to travel")


def test_unserializable_payload_sends_nothing(pair: Any) -> None:
    anchor, point = pair
    # the object's own __reduce__ raised: its exception propagates as itself (issue 10, item 8)
    with pytest.raises(TypeError, match="refuses to travel"):
        anchor.send({"ok": bytes(100_000), "bad": Unpicklable()})
    anchor.send("next")
    assert point.recv() == "next"  # the stream is still in step


def test_concurrent_senders_never_interleave(pair: Any) -> None:
    anchor, point = pair
    chunk = b"z" * 200_000  # multi-part messages

    def sender(tag: int) -> None:
        for i in range(20):
            anchor.send((tag, i, chunk if i % 5 == 0 else b""))

    got: list[Any] = []
    reader = _in_thread(lambda: got.extend(point.recv() for _ in range(80)))
    senders = [_in_thread(lambda t=t: sender(t)) for t in range(4)]
    for s in senders:
        s.join(60)
    reader.join(60)
    assert len(got) == 80
    for tag in range(4):
        mine = [m for m in got if m[0] == tag]
        assert [m[1] for m in mine] == list(range(20))
        assert all(m[2] == (chunk if m[1] % 5 == 0 else b"") for m in mine)
