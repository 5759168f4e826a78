"""stop/kill/wait/result/run, tell/listen direction, Pipe points as attributes."""

from __future__ import annotations

import pytest
from skprocess_support import Counter, Echo, Forever, PipeUser, StopInPrerun, StopInRun

from suitkaise.processing import Pipe, Skprocess


def test_before_start():
    """Nothing ran: wait()/result() raise instead of True/None (decision 5: result() is None
    only after kill()); stop()/kill() have nothing to act on and are no-ops."""
    proc = Counter(1)
    proc.stop()
    proc.kill()
    for call, name in ((lambda: proc.wait(timeout=1), "wait"), (proc.wait, "wait"), (proc.result, "result"),
                       (lambda: proc.tell(1), "tell"), (lambda: proc.listen(timeout=0), "listen")):
        with pytest.raises(RuntimeError, match=f"^Cannot {name}\\(\\) - process not started; call start\\(\\) first$"):
            call()
    with pytest.raises(RuntimeError, match="not started"):
        proc.result.timeout(1)()
    assert proc.current_run == 0
    assert not proc.is_alive


def test_stop_and_kill_before_start_leave_start_unaffected(start_method):
    proc = Counter(3)
    proc.stop()
    proc.kill()
    assert proc.run() == 3  # neither a pending stop nor a "killed" result
    proc = Counter(2)
    proc.kill()
    proc.start()
    assert proc.wait(timeout=60) is True
    assert proc.result() == 2


def test_tell_and_listen_after_result_say_finished(start_method):
    """Spec 2.9: after result() the process is finished, not "not started"."""
    proc = Counter(1)
    assert proc.run() == 1
    with pytest.raises(RuntimeError, match=r"^Cannot tell\(\) - process finished"):
        proc.tell(1)
    with pytest.raises(RuntimeError, match=r"^Cannot listen\(\) - process finished"):
        proc.listen(timeout=0)
    assert proc.wait(timeout=0) is True  # finished: wait() and result() stay usable
    assert proc.result() == 1


def test_stop_during_run_skips_postrun(start_method):
    """Spec scenario 3, synchronised with tell/listen instead of sleeps."""
    proc = StopInRun()
    proc.start()
    assert proc.listen(timeout=60) == "in run 3"
    proc.stop()  # non-blocking
    proc.tell("go")
    assert proc.wait(timeout=60)
    log = proc.result()
    assert log[-3:] == ["pre3", "run3", "finish"]
    assert log[:3] == ["pre0", "run0", "post0"]
    assert proc.current_run == 3  # the interrupted iteration is not counted


def test_self_stop_in_prerun_skips_run(start_method):
    assert StopInPrerun().run() == ["pre0", "run0", "post0", "pre1", "finish"]


def test_echo_and_quit(start_method):
    """Spec scenario 7: tell goes to the other side on both ends; lambdas travel."""
    proc = Echo()
    proc.start()
    proc.tell("hello")
    kind, payload, _run = proc.listen(timeout=60)
    assert (kind, payload) == ("echo", "hello")
    proc.tell(lambda x: x * 2)
    assert proc.listen(timeout=60)[:2] == ("echo", 42)
    proc.tell("quit")
    assert proc.wait(timeout=60) is True
    assert proc.result() == "bye"
    with pytest.raises(RuntimeError, match="finished"):
        proc.listen(timeout=0)
    with pytest.raises(RuntimeError, match="finished"):
        proc.tell("late")


def test_listen_drains_after_wait(start_method):
    class Talker(Skprocess):
        def __init__(self):
            self.process_config.runs = 3

        def __run__(self):
            self.tell(self._current_run)

    proc = Talker()
    proc.start()
    assert proc.wait(timeout=60)
    assert [proc.listen(timeout=5) for _ in range(3)] == [0, 1, 2]
    assert proc.listen() is None  # finished and drained: returns instead of hanging
    assert proc.result() is None


def test_wait_timeout_then_stop(start_method):
    proc = Forever()
    proc.start()
    pid = proc.listen(timeout=60)
    assert isinstance(pid, int)
    assert proc.wait(timeout=0.1) is False
    assert proc.is_alive
    proc.stop()
    assert proc.wait(timeout=60) is True
    assert not proc.is_alive
    n = proc.result()
    assert n in (proc.current_run, proc.current_run + 1)  # a stopped __run__ is not counted


def test_a_timeout_that_is_not_a_number_is_named(start_method):
    # before: "unsupported operand type(s) for +: 'float' and 'str'" from deep inside wait()
    proc = Forever()
    proc.start()
    try:
        with pytest.raises(TypeError, match=r"^Forever.wait\(timeout=...\) must be a number of seconds or None, got 'x'$"):
            proc.wait(timeout="x")
        with pytest.raises(TypeError, match=r"^Forever.listen\(timeout=...\) must be a number"):
            proc.listen("1")
        assert proc.is_alive
    finally:
        proc.kill()


def test_kill_leaves_no_result(start_method):
    proc = Forever()
    proc.start()
    assert isinstance(proc.listen(timeout=60), int)
    proc.kill()
    assert not proc.is_alive
    assert proc.wait(timeout=10)
    assert proc.result() is None
    assert proc.error is None


def test_restart_after_kill(start_method):
    proc = Forever()
    proc.start()
    proc.kill()
    assert proc.result() is None
    proc.start()
    assert isinstance(proc.listen(timeout=60), int)
    proc.stop()
    assert isinstance(proc.result(), int)


def test_pipe_point_attribute_travels(start_method):
    anchor, point = Pipe.pair()
    proc = PipeUser(point)
    proc.start()
    anchor.send({"value": 21})
    assert anchor.recv() == {"doubled": 42}
    assert proc.wait(timeout=60)
    assert proc.result() == "done"
    anchor.close()
    point.close()


def test_current_run_is_live_in_parent(start_method):
    class Stepper(Skprocess):
        def __run__(self):
            if self._current_run == 5:
                self.tell("at 5")
                self.listen(timeout=30)

    proc = Stepper()
    proc.start()
    assert proc.listen(timeout=60) == "at 5"
    assert proc.current_run == 5
    proc.stop()
    proc.tell("go")
    assert proc.wait(timeout=60)
    assert proc.current_run == 5
