"""run_inline (private, used by Pool workers): the whole lifecycle in the current process."""

from __future__ import annotations

import threading

import pytest
from skprocess_support import Counter, ErrorValue, Forever, Logged, Sleeper

from suitkaise.processing import ProcessTimeoutError, RunError, Skprocess
from suitkaise.processing._inline import run_inline


def test_result_and_state():
    proc = Counter(5)
    assert run_inline(proc) == 5
    assert proc.counter == 5 and proc.current_run == 5
    assert proc.timers.run.num_times == 5


def test_retry_scenario_and_errors():
    assert run_inline(Logged(runs=4, lives=2))[-1] == "finish"
    with pytest.raises(RunError) as info:
        run_inline(Logged(runs=4, lives=2, fail_at=(1, 2)))
    assert info.value.current_run == 2
    assert run_inline(ErrorValue("dict")) == {"status": "failed", "error": "RunError"}


def test_tell_and_listen_raise_inside():
    class Talker(Skprocess):
        def __init__(self):
            self.process_config.runs = 1

        def __run__(self):
            self.tell("x")

    with pytest.raises(RunError) as info:
        run_inline(Talker())
    assert isinstance(info.value.original_error, RuntimeError)
    assert "not available" in str(info.value.original_error)


def test_stop_event_and_self_stop():
    event = threading.Event()

    class StopsItself(Skprocess):
        def __run__(self):
            if self._current_run == 3:
                self.stop()

        def __result__(self):
            return self._current_run

    assert run_inline(StopsItself()) == 3
    event.set()
    assert run_inline(Forever(), stop_event=event) == 0


def test_timeout_on_main_thread_uses_alarm():
    with pytest.raises(ProcessTimeoutError):
        run_inline(Sleeper(nap=30, timeout=0.2))
    assert run_inline(Sleeper(nap=30, timeout=0.2, lives=2, slow_times=1))["attempts"] == 2


def test_timeout_off_main_thread():
    box = {}

    def work():
        try:
            run_inline(Sleeper(nap=2, timeout=0.2))
        except ProcessTimeoutError as e:
            box["err"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert isinstance(box.get("err"), ProcessTimeoutError)


def test_validation():
    proc = Counter(1)
    proc.process_config.lives = 0
    with pytest.raises(ValueError, match="lives"):
        run_inline(proc)
    with pytest.raises(TypeError):
        run_inline(object())  # type: ignore[arg-type]
