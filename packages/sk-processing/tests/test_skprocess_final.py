"""The child's final message: its encodings (marshal, cucumber's plain form, the full form)
and its frame, read by the parent's ``Connection.recv_bytes``."""

from __future__ import annotations

import marshal
import math
import multiprocessing
import pickle
import signal
import threading
from typing import Any

import pytest
from skprocess_support import Returns

from suitkaise.processing import ProcessTimers, Skprocess
from suitkaise.processing._child import ChildRuntime, _final_message
from suitkaise.processing._runtime import CTRL_SLOTS, TAG_FINAL, TAG_FINAL_MARSHAL
from suitkaise.processing._timers import _SKTIMER_ATTRS
from suitkaise.timing import Sktimer

RESULTS = [
    None, True, 7, 2**100, -0.0, 1.5, math.nan, 1 + 2j, "é\ud800", b"x",
    bytearray(b"xy"),  # marshal would turn it into bytes
    signal.SIGTERM,  # an int subclass: marshal refuses it
    [1, "a", (2.5,)], {"k": {1, 2}},
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b and repr(a) == repr(b)


@pytest.mark.parametrize("value", RESULTS, ids=repr)
def test_every_kind_of_result_comes_back_as_it_was(start_method, value):
    proc = Returns(value, runs=3)
    assert _same(proc.run(), value)
    assert proc.current_run == 3
    assert proc.timers.run.num_times == 3 and proc.timers.full_run.num_times == 3
    assert proc.timers.result.num_times == 1


def _finished(value: Any) -> Returns:
    proc = Returns(value, runs=2)
    proc.timers = ProcessTimers()
    proc._current_run = 2
    for t in (0.25, 0.5):
        proc.timers._ensure_timer("run").add_time(t)
        proc.timers.full_run.add_time(t)
    return proc


def test_an_atom_result_travels_in_marshal_bytes_anything_else_through_cucumber():
    message = _final_message(_finished(3), "value", 3)
    assert message[:1] == TAG_FINAL_MARSHAL
    kind, value, has_state, current_run, error, packed = marshal.loads(message[1:])
    assert (kind, value, has_state, current_run, error) == ("value", 3, True, 2, None)
    assert ProcessTimers._unpack(packed).run.times == [0.25, 0.5]
    assert _final_message(_finished(bytearray(b"x")), "value", bytearray(b"x"))[:1] == TAG_FINAL
    err = ValueError("boom")
    assert _final_message(_finished(None), "raise", err)[:1] == TAG_FINAL


def test_packed_timers_come_back_equal_with_lists_of_their_own():
    timers = _finished(None).timers
    timers.run._paused_durations[1] = 0.125  # a real pause is kept
    timers.full_run.set_max_times(5)
    timers.full_run.original_start_time = 12.0
    packed = timers._pack()
    assert packed is not None
    assert {key for key, *_ in packed} == {"run", "full_run"}
    for data in (marshal.dumps(packed), pickle.dumps(packed)):
        back = ProcessTimers._unpack((marshal.loads if data[:1] != b"\x80" else pickle.loads)(data))
        assert back.run.times == [0.25, 0.5] and back.run._paused_durations == [0.0, 0.125]
        assert back.full_run.times == [0.25, 0.5] and back.full_run._paused_durations == [0.0, 0.0]
        assert back.full_run.max_times == 5 and back.full_run.original_start_time == 12.0
        assert back.run.times is not back.full_run.times
        assert back.prerun is None and back.result is None
        back.run.add_time(1.0)  # a working timer (its lock, its sessions)
        assert back.run.num_times == 3


def test_a_timer_with_state_of_its_own_is_not_packed():
    """_pack sends only the attributes it knows; a new Sktimer has exactly those."""
    assert vars(Sktimer()).keys() == _SKTIMER_ATTRS
    timers = _finished(None).timers
    timers.run.note = "mine"
    assert timers._pack() is None


@pytest.mark.parametrize("size", [1, 100, 70_000, 1_000_000])
def test_the_final_frame_is_what_recv_bytes_reads(size):
    """``ChildRuntime.send_final`` writes ``Connection.send_bytes``'s frame itself, in as many
    writes as the pipe takes (a message larger than its buffer needs a reader meanwhile)."""
    ours, theirs = multiprocessing.Pipe(duplex=True)
    try:
        rt = ChildRuntime(ours, [0.0] * CTRL_SLOTS, watch_parent=False)
        message = TAG_FINAL_MARSHAL + bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        writer = threading.Thread(target=rt.send_final, args=(message,))
        writer.start()
        assert theirs.recv_bytes() == message
        writer.join(5)
        rt.send(b"T", b"next")  # the stream is still framed right
        assert theirs.recv_bytes() == b"Tnext"
    finally:
        ours.close()
        theirs.close()


def test_a_class_that_travels_by_value_runs_its_own_methods(start_method):
    """Under fork the parent looks up the section methods before the fork; they are the
    child's only when the child runs the instance it inherited. A class defined in a
    function travels by value with an instance that is serialized (a list attribute), and
    the child must run that copy's methods: ``super()`` in them needs the copy's class."""

    class Base(Skprocess):
        def __run__(self):
            self.seen.append(type(self).__name__)

    class Local(Base):
        def __init__(self):
            self.seen = []
            self.process_config.runs = 2

        def __run__(self):
            super().__run__()

        def __result__(self):
            return self.seen

    assert Local().run() == ["Local", "Local"]
