"""Error delivery: __error__ values (decision 3), section errors, messages across processes."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skprocess_support import (
    Crasher,
    ErrorValue,
    FailingFinish,
    FailsIn,
    Holds,
    Logged,
    ReportsPid,
    Sleeper,
)

from suitkaise import cucumber
from suitkaise.processing import (
    ErrorHandlerError,
    OnFinishError,
    PostRunError,
    PreRunError,
    ProcessError,
    ProcessTimeoutError,
    ResultError,
    ResultTimeoutError,
    RunError,
    Skprocess,
)


def test_error_value_is_returned(start_method):
    proc = ErrorValue("dict")
    assert proc.run() == {"status": "failed", "error": "RunError"}
    assert isinstance(proc.error, RunError)
    assert isinstance(proc.error.original_error, KeyError)
    proc2 = ErrorValue("none")
    proc2.start()
    assert proc2.result() is None
    assert isinstance(proc2.error, RunError)


def test_returned_exception_is_raised_as_matching_process_error(start_method):
    with pytest.raises(RunError) as info:
        ErrorValue("exception").run()
    assert isinstance(info.value.original_error, LookupError)
    assert str(info.value.original_error) == "from handler"
    assert info.value.current_run == 0


def test_default_error_handler_raises_the_error_with_remote_traceback(start_method):
    with pytest.raises(RunError) as info:
        ErrorValue("default").run()
    err = info.value
    assert isinstance(err.original_error, KeyError)
    assert err.__cause__ is err.original_error
    cause = err.original_error.__cause__
    assert cause is not None and "in __run__" in str(cause) and "KeyError" in str(cause)


def test_error_handler_failure(start_method):
    with pytest.raises(ErrorHandlerError) as info:
        ErrorValue("raise").run()
    err = info.value
    assert isinstance(err.original_error, OSError)
    assert isinstance(err.handled_error, RunError)
    assert str(err) == f"ErrorValue (pid {err.pid}): Error in __error__ on run 0: OSError: handler broke"


def test_onfinish_failure_is_not_retried(start_method):
    proc = FailingFinish("onfinish")
    with pytest.raises(OnFinishError) as info:
        proc.run()
    assert str(info.value.original_error) == "finish failed"
    assert proc.timers.onfinish.num_times == 0
    assert proc.timers.error.num_times == 1


def test_result_failure(start_method):
    with pytest.raises(ResultError) as info:
        FailingFinish("result").run()
    assert str(info.value.original_error) == "result failed"


def test_unserializable_result_is_a_result_error(start_method):
    with pytest.raises(ResultError) as info:
        FailingFinish("unserializable").run()
    assert "cannot be sent to the parent" in str(info.value.original_error)


def test_unserializable_attribute_fails_start_in_parent(start_method):
    from suitkaise.pipe import Pipe

    anchor, point = Pipe.pair()
    proc = FailingFinish("none")
    proc.anchor = anchor
    with pytest.raises(cucumber.SerializationError):
        proc.start()
    assert not proc.is_alive
    with pytest.raises(RuntimeError, match="not started"):  # it never started: no None result
        proc.result()
    anchor.close()
    point.close()


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("lives", 0, ValueError),
        ("lives", 1.5, TypeError),
        ("runs", -1, ValueError),
        ("runs", "3", TypeError),
        ("join_in", -0.1, ValueError),
        ("timeouts.run", 0, ValueError),
        ("timeouts.error", "1", TypeError),
    ],
)
def test_config_is_validated_at_start(field, value, exc):
    proc = FailingFinish("none")
    target = proc.process_config
    name = field
    if field.startswith("timeouts."):
        target = proc.process_config.timeouts
        name = field.split(".", 1)[1]
    setattr(target, name, value)
    with pytest.raises(exc, match=name):
        proc.start()
    assert not proc.is_alive


def test_error_classes_round_trip_with_messages():
    errors = [
        ProcessError("plain", 3, ValueError("v")),
        PreRunError(1, KeyError("k")),
        RunError(2, ValueError("boom")),
        PostRunError(3),
        OnFinishError(4),
        ResultError(5),
        ErrorHandlerError(6),
        ProcessTimeoutError("__run__", 1.5, 7),
        ResultTimeoutError("result() timed out after 0.5s"),
    ]
    for err in errors:
        back = cucumber.deserialize(cucumber.serialize(err))
        assert type(back) is type(err)
        assert str(back) == str(err)
        assert back.current_run == err.current_run
        assert type(back.original_error) is type(err.original_error)
    t = cucumber.deserialize(cucumber.serialize(errors[7]))
    assert (t.section, t.timeout, t.current_run) == ("__run__", 1.5, 7)
    assert str(t) == "Timeout in __run__ after 1.5s on run 7"
    assert isinstance(errors[8], TimeoutError) and isinstance(errors[8], ProcessError)
    for cls in (PreRunError, RunError, PostRunError, OnFinishError, ResultError, ErrorHandlerError,
                ProcessTimeoutError, ResultTimeoutError):
        assert issubclass(cls, ProcessError)


def test_prerun_and_postrun_errors(start_method):
    class Bad(Skprocess):
        def __init__(self, where):
            self.where = where
            self.process_config.runs = 2

        def __prerun__(self):
            if self.where == "pre":
                raise ValueError("pre")

        def __postrun__(self):
            if self.where == "post" and self._current_run == 1:
                raise ValueError("post")

    with pytest.raises(PreRunError, match="Error in __prerun__ on run 0"):
        Bad("pre").run()
    with pytest.raises(PostRunError, match="Error in __postrun__ on run 1"):
        Bad("post").run()


def test_logged_error_keeps_child_log_in_error_handler(start_method):
    class Report(Logged):
        def __error__(self):
            return {"log": self.log, "run": self.error.current_run}

    out = Report(runs=3, lives=1, fail_at=(1,)).run()
    assert out == {"log": ["pre0", "run0", "post0", "pre1", "run1"], "run": 1}


def test_custom_exception_without_default_constructor(start_method):
    class Weird(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}-{b}")
            self.lock = threading.Lock()  # not serializable: must not break delivery

    class Proc(Skprocess):
        def __init__(self):
            self.process_config.runs = 1

        def __run__(self):
            raise Weird(1, 2)

    with pytest.raises(RunError) as info:
        Proc().run()
    assert "1-2" in str(info.value.original_error)


@pytest.mark.parametrize(
    ("section", "lives", "cls", "expected"),
    [
        ("run", 3, RunError, "Error in __run__ on run 3 (after 3 of 3 lives): ValueError: bad input at run 3"),
        ("run", 1, RunError, "Error in __run__ on run 3: ValueError: bad input at run 3"),
        ("prerun", 2, PreRunError, "Error in __prerun__ on run 3 (after 2 of 2 lives): ValueError: bad input at run 3"),
        ("postrun", 1, PostRunError, "Error in __postrun__ on run 3: ValueError: bad input at run 3"),
        # onfinish/result failures are not retried: no lives were used up
        ("onfinish", 3, OnFinishError, "Error in __onfinish__ on run 5: ValueError: bad input at run 3"),
        ("result", 3, ResultError, "Error in __result__ on run 5: ValueError: bad input at run 3"),
    ],
)
def test_str_of_section_error_names_the_original_exception(start_method, section, lives, cls, expected):
    """Issue 14.2: the message shows the user's exception and how many lives it took."""
    proc = FailsIn(section, "bad input at run 3", lives=lives, at=3)
    with pytest.raises(cls) as info:
        proc.run.timeout(60)()
    named = f"FailsIn (pid {info.value.pid}): {expected}"  # the parent names the process
    assert str(info.value) == named
    assert str(proc.error) == named  # the parent's copy of the child's error


@settings(max_examples=15, deadline=None)
@given(message=st.text(max_size=40))
def test_str_of_run_error_carries_any_message(message):
    """Inline (no process per example): whatever the user's message, it is in str(err)."""
    from suitkaise.processing._inline import run_inline

    with pytest.raises(RunError) as info:
        run_inline(FailsIn("run", message, lives=1, at=0))
    tail = f"ValueError: {message}" if message else "ValueError"
    assert str(info.value) == f"Error in __run__ on run 0: {tail}"
    back = cucumber.deserialize(cucumber.serialize(info.value))
    assert str(back) == str(info.value)


def test_str_of_crash_error_counts_lives(start_method):
    """A hard crash in every life: the message names the exit and the lives used."""
    proc = Crasher("exit", lives=2)
    with pytest.raises(ProcessError) as info:
        proc.run.timeout(60)()
    assert "exited with code 3" in str(info.value)
    assert "(on run 1, after 2 of 2 lives)" in str(info.value)


def test_str_of_timeout_counts_lives(start_method):
    with pytest.raises(ProcessTimeoutError) as info:
        Sleeper(nap=30, timeout=0.2, lives=2).run.timeout(60)()
    assert str(info.value) == f"Sleeper (pid {info.value.pid}): Timeout in __run__ after 0.2s on run 0 (after 2 of 2 lives)"


def test_section_error_names_the_process_and_its_pid(start_method):
    """In the parent, a section error says which process failed, like a crash error does;
    in the child (``self.error`` in ``__error__``) the message stays the spec's."""
    proc = ReportsPid()
    proc.start()
    child_pid, seen_in_child = proc.listen(timeout=60)
    with pytest.raises(RunError) as info:
        proc.result.timeout(60)()
    err = info.value
    assert child_pid != os.getpid()
    assert (err.process_name, err.pid) == ("ReportsPid", child_pid)
    assert str(err) == f"ReportsPid (pid {child_pid}): Error in __run__ on run 0: LookupError: no such key"
    assert seen_in_child == "Error in __run__ on run 0: LookupError: no such key"
    assert str(proc.error) == str(err)
    handled = ReportsPid(handle=True)
    assert handled.run.timeout(60)() == {"seen": "Error in __run__ on run 0: LookupError: no such key"}
    assert str(handled.error).startswith("ReportsPid (pid ")  # the parent's copy names it


def test_crash_and_timeout_errors_name_the_process_and_its_pid(start_method):
    with pytest.raises(ProcessError) as crash:
        Crasher("exit").run.timeout(60)()
    pid = crash.value.pid
    assert isinstance(pid, int) and pid != os.getpid() and crash.value.process_name == "Crasher"
    assert str(crash.value).startswith(f"Crasher (pid {pid}): process exited with code 3")
    with pytest.raises(ProcessTimeoutError) as timeout:
        Sleeper(nap=30, timeout=0.2).run.timeout(60)()
    assert timeout.value.process_name == "Sleeper" and timeout.value.pid not in (None, os.getpid())
    back = cucumber.deserialize(cucumber.serialize(timeout.value))
    assert (back.process_name, back.pid, str(back)) == ("Sleeper", timeout.value.pid, str(timeout.value))


@pytest.mark.parametrize("nested", [False, True])
def test_unsendable_attribute_error_names_the_class_and_attribute(start_method, nested, tmp_path):
    """The path runs through the attribute's internals; the headline names ``Holds.held``.
    (A file-backed mmap: cucumber refuses it, it cannot tell which file is mapped.)"""
    import mmap

    with open(tmp_path / "mapped", "w+b") as f:
        f.write(b"x" * 4096)
        f.flush()
        with mmap.mmap(f.fileno(), 4096) as mapped:
            proc = Holds(mapped, nested=nested)
            with pytest.raises(cucumber.SerializationError) as info:
                proc.start()
            proc.held = None
    err = info.value
    kind = "dict" if nested else "mmap.mmap"
    assert f"Holds.held ({kind}) cannot be sent to the child process" in str(err)
    assert err.path == ("root.held['jobs'][0]" if nested else "root.held")
    assert "cannot serialize a file-backed mmap.mmap" in str(err)  # cucumber's reason is kept
    assert "Hint: start() sends every attribute" in str(err)
    assert isinstance(err.__cause__, TypeError)
    assert not proc.is_alive
    with pytest.raises(RuntimeError, match="not started"):
        proc.result()


def test_multiprocessing_value_attribute_is_shared_or_named(start_method):
    """bug12: an mp.Value attribute either travels or the error says ``Holds.held``, not only a
    path into multiprocessing's internals (how cucumber treats it is cucumber's business)."""
    import multiprocessing as mp

    value = mp.get_context(start_method).Value("i", 0)
    proc = Holds(value)
    try:
        proc.start()
    except cucumber.SerializationError as err:
        assert "Holds.held (multiprocessing.sharedctypes.Synchronized) cannot be sent to the child process" in str(err)
    else:
        assert proc.result.timeout(60)() == "sent"
