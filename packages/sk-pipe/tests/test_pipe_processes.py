"""Pipes across real processes, under fork, spawn and forkserver.

Children are plain ``multiprocessing.Process`` objects created from the default
context (which the ``start_method`` fixture sets); their targets live at module
level so spawn children can import them. A child reports failure through its
exit code, so every test checks ``exitcode == 0``.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

from suitkaise import cucumber
from suitkaise.pipe import Pipe, PipeEndpointError

JOIN = 60.0


# -- child targets ---------------------------------------------------------------

def echo_child(point: Any) -> None:
    """Echo every message until None."""
    while True:
        msg = point.recv()
        if msg is None:
            return
        point.send(msg)


def apply_child(point: Any) -> None:
    fn, arg = point.recv()
    point.send(fn(arg))


def one_way_child(point: Any, back: Any) -> None:
    """Receive on a one-way point, report through a second pipe; sending must fail."""
    got = point.recv()
    try:
        point.send("nope")
    except PipeEndpointError as e:
        back.send((got, str(e)))
    else:
        back.send((got, None))


def die_child(point: Any, after: int) -> None:
    for _ in range(after):
        point.send(point.recv())
    point.recv()  # the parent's last message: die without answering
    os._exit(3)


def wait_for_peer_close_child(point: Any) -> None:
    point.send("ready")
    try:
        point.recv()
    except PipeEndpointError as e:
        os._exit(0 if "peer closed" in str(e) else 1)
    os._exit(2)


def inherited_anchor_child(anchor: Any) -> None:
    """Under fork the child inherits a copy of the anchor: it must be closed there."""
    try:
        anchor.send("leak")
    except PipeEndpointError as e:
        os._exit(0 if "closed" in str(e) else 1)
    os._exit(2)


def forward_child(carrier_point: Any) -> None:
    """Receive a Point through a pipe, then talk on it."""
    other = carrier_point.recv()
    other.send(("hello from", os.getpid(), isinstance(other, Pipe.Point), other.locked))
    other.close()
    carrier_point.recv()  # wait until the parent is done


class Carrier:
    """Stands in for Skprocess: reduces itself through cucumber when multiprocessing pickles it."""

    def __init__(self, point: Any, label: str) -> None:
        self.point = point
        self.label = label

    def __reduce__(self) -> Any:
        return (_rebuild_carrier, (cucumber.serialize(self.__dict__),))


def _rebuild_carrier(data: bytes) -> Carrier:
    obj = Carrier.__new__(Carrier)
    obj.__dict__.update(cucumber.deserialize(data))
    return obj


def carrier_child(carrier: Carrier) -> None:
    carrier.point.send((carrier.label, carrier.point.recv()))


# -- helpers ---------------------------------------------------------------------

def start(target: Any, *args: Any) -> multiprocessing.Process:
    proc = multiprocessing.get_context().Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def finish(proc: multiprocessing.Process) -> int | None:
    proc.join(JOIN)
    if proc.is_alive():  # never leave a child behind, even when the test fails
        proc.kill()
        proc.join()
        pytest.fail("child did not finish")
    return proc.exitcode


# -- tests -----------------------------------------------------------------------

def test_echo_round_trips_through_process_args(start_method: str) -> None:
    anchor, point = Pipe.pair()
    proc = start(echo_child, point)
    point.close()  # the child has its own copy now
    try:
        for value in [1, "two", {"three": [3.0, (3,)]}, None.__class__, b"x" * 200_000]:
            anchor.send(value)
            assert anchor.recv() == value
        anchor.send(None)
    finally:
        code = finish(proc)
        anchor.close()
    assert code == 0


def test_lambda_travels(start_method: str) -> None:
    anchor, point = Pipe.pair()
    proc = start(apply_child, point)
    point.close()
    k = 7
    anchor.send((lambda x: x * k, 6))
    assert anchor.recv() == 42
    assert finish(proc) == 0
    anchor.close()


def test_one_way_across_processes(start_method: str) -> None:
    anchor, point = Pipe.pair(one_way=True)
    back_anchor, back_point = Pipe.pair()
    proc = start(one_way_child, point, back_point)
    point.close()
    back_point.close()
    anchor.send({"payload": 1})
    got, err = back_anchor.recv()
    assert got == {"payload": 1}
    assert err is not None and "receive-only" in err
    with pytest.raises(PipeEndpointError, match="send-only"):
        anchor.recv()
    assert finish(proc) == 0
    anchor.close()
    back_anchor.close()


def test_peer_death_does_not_hang(start_method: str) -> None:
    anchor, point = Pipe.pair()
    proc = start(die_child, point, 1)
    point.close()
    anchor.send("ping")
    assert anchor.recv() == "ping"
    anchor.send("you will not answer")  # the child is alive and waiting for this
    with pytest.raises(PipeEndpointError, match="peer closed"):
        anchor.recv()  # blocked while the child dies
    assert finish(proc) == 3
    with pytest.raises(PipeEndpointError, match="peer closed"):
        anchor.send("anyone?")
    anchor.close()


def test_child_sees_parent_close(start_method: str) -> None:
    anchor, point = Pipe.pair()
    proc = start(wait_for_peer_close_child, point)
    point.close()
    assert anchor.recv() == "ready"
    anchor.close()
    assert finish(proc) == 0


def test_locked_endpoint_cannot_reach_a_child(start_method: str) -> None:
    anchor, point = Pipe.pair()
    try:
        if start_method == "fork":
            # fork copies memory instead of pickling: the inherited copy is closed.
            assert finish(start(inherited_anchor_child, anchor)) == 0
        else:
            ctx = multiprocessing.get_context()
            for ep in (anchor, point):
                ep.lock()
                proc = ctx.Process(target=echo_child, args=(ep,), daemon=True)
                with pytest.raises(PipeEndpointError, match="cannot be transferred"):
                    proc.start()
        # the parent's endpoints are untouched either way
        point.unlock()
        anchor.send("still fine")
        assert point.recv() == "still fine"
    finally:
        anchor.close()
        point.close()


def test_point_inside_object_reduced_by_cucumber(start_method: str) -> None:
    """Skprocess hands itself to multiprocessing and reduces itself through cucumber."""
    anchor, point = Pipe.pair()
    proc = start(carrier_child, Carrier(point, "carried"))
    point.close()
    anchor.send("question")
    assert anchor.recv() == ("carried", "question")
    assert finish(proc) == 0
    anchor.close()


def test_point_sent_through_another_pipe(start_method: str) -> None:
    carrier_anchor, carrier_point = Pipe.pair()
    anchor, point = Pipe.pair()
    proc = start(forward_child, carrier_point)
    carrier_point.close()
    carrier_anchor.send(point)  # handle travels via the resource sharer
    point.close()
    label, pid, is_point, locked = anchor.recv()
    assert (label, pid, is_point, locked) == ("hello from", proc.pid, True, False)
    carrier_anchor.send("done")
    assert finish(proc) == 0
    with pytest.raises(PipeEndpointError, match="peer closed"):
        anchor.recv()  # every copy of the point is closed now (a fork child held one too)
    anchor.close()
    carrier_anchor.close()


def test_numpy_50mb_round_trip(start_method: str) -> None:
    np = pytest.importorskip("numpy")
    arr = np.random.default_rng(1).random(50 * 1024 * 1024 // 8)
    anchor, point = Pipe.pair()
    proc = start(echo_child, point)
    point.close()
    try:
        anchor.send(arr)
        back = anchor.recv()
        assert back.dtype == arr.dtype and back.shape == arr.shape
        assert np.array_equal(back, arr)
        assert back.flags.writeable
        nested = {"a": arr[:1000], "b": [arr[::2].copy()]}  # several buffers, small + large
        anchor.send(nested)
        got = anchor.recv()
        assert np.array_equal(got["a"], nested["a"]) and np.array_equal(got["b"][0], nested["b"][0])
        anchor.send(None)
    finally:
        code = finish(proc)
        anchor.close()
    assert code == 0
