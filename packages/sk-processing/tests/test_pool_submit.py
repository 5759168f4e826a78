"""Pool.submit / Pool.apply: one task, one Future -- results, errors, callbacks,
as_completed, cancelling a running task, per-task timeouts, asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sk_testkit import alive
from suitkaise.processing import (
    ItemTimeoutError,
    Pool,
    ProcessError,
    TaskFuture,
    WorkerCrashedError,
)
from suitkaise.processing._errors import RemoteTraceback

pytestmark = pytest.mark.timeout(180)


def add(a: int, b: int = 0, *, scale: int = 1) -> int:
    return (a + b) * scale


def fail(x: int) -> int:
    raise ValueError(f"bad {x}")


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def die(code: int) -> None:
    if code < 0:
        os.kill(os.getpid(), -code)
    os._exit(code)


def spin_in_c() -> None:
    # a long computation inside one C call: the GIL is held, no Python code runs
    sum(range(10**12))


def test_submit_apply_and_as_completed(start_method):
    with Pool(2) as pool:
        future = pool.submit(add, 1, 2, scale=10)
        assert isinstance(future, concurrent.futures.Future) and isinstance(future, TaskFuture)
        assert future.result(timeout=60) == 30
        assert pool.apply(add, 5, b=6) == 11
        futures = {pool.submit(add, i, i): i for i in range(50)}
        seen = {}
        for done in concurrent.futures.as_completed(futures, timeout=60):
            seen[futures[done]] = done.result()
        assert seen == {i: 2 * i for i in range(50)}
        # the pool's map methods and submissions share the workers
        assert pool.map(abs, [-1, -2]) == [1, 2]


@pytest.mark.parametrize("n", [0, 1, 2, 999])
def test_submissions_of_any_count_each_settle_once(n):
    with Pool(2) as pool:
        futures = [pool.submit(add, i, 1) for i in range(n)]
        assert [f.result(timeout=120) for f in futures] == [i + 1 for i in range(n)]


def test_each_failure_settles_only_its_own_future(start_method):
    with Pool(2) as pool:
        good = [pool.submit(add, i) for i in range(5)]
        bad = pool.submit(fail, 3)
        crash = pool.submit(die, -signal.SIGSEGV)
        more = [pool.submit(add, i, 1) for i in range(5)]
        with pytest.raises(ValueError, match="bad 3") as info:
            bad.result(timeout=60)
        assert isinstance(info.value.__cause__, RemoteTraceback)
        error = crash.exception(timeout=60)
        assert isinstance(error, WorkerCrashedError) and isinstance(error, ProcessError)
        assert error.signal == "SIGSEGV" and error.exitcode == -signal.SIGSEGV
        assert error.fault is not None and "die" in error.fault  # faulthandler's stack of the worker
        assert "die(-11)" in str(error)
        assert [f.result(timeout=60) for f in good + more] == list(range(5)) + [i + 1 for i in range(5)]


def test_callbacks_and_error_callbacks(start_method):
    done: list[object] = []
    errors: list[BaseException] = []
    finished = threading.Event()
    with Pool(2) as pool:
        ok = pool.submit(add, 2, 3)
        bad = pool.submit(fail, 1)
        for f in (ok, bad):
            f.add_error_callback(errors.append)
        ok.add_done_callback(lambda f: done.append(f.result()))
        bad.add_done_callback(lambda f: finished.set())
        concurrent.futures.wait([ok, bad], timeout=60)
        assert finished.wait(10)
    assert done == [5]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_cancel_a_running_task_frees_its_worker_within_a_second(start_method):
    with Pool(1) as pool:
        pool.apply(add, 0)  # the worker is up
        running = pool.submit(pid_after, 60)
        queued = pool.submit(add, 1)
        worker = _running_worker(pool)
        t0 = time.monotonic()
        assert running.cancel()
        assert running.cancelled() and running.done()
        with pytest.raises(concurrent.futures.CancelledError):
            running.result()
        while alive(worker) and time.monotonic() - t0 < 5:
            time.sleep(0.005)
        assert time.monotonic() - t0 < 1.0  # the worker running it is gone
        assert queued.result(timeout=30) == 1  # the pool goes on, on a fresh worker
        assert running.cancel() and running.cancelled()  # cancelling again: still cancelled
        assert not queued.cancel()  # finished: cannot be cancelled


def _running_worker(pool: Pool) -> int:
    """The pid of the worker running a task (waits until one does)."""
    core = pool._core
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with core.lock:
            for w in core.workers:
                if w.inflight and w.progress[2] == 2:  # PHASE_RUNNING
                    return int(w.process.pid)
        time.sleep(0.01)
    raise AssertionError("no task started running within 30 s")


def test_cancel_a_queued_task_never_runs_it(start_method, tmp_path):
    marker = tmp_path / "ran"
    with Pool(1) as pool:
        blocker = pool.submit(pid_after, 0.5)
        queued = [pool.submit(_touch, str(marker) + str(i)) for i in range(3)]
        assert queued[1].cancel()
        blocker.result(timeout=60)
        for i in (0, 2):
            queued[i].result(timeout=60)
    assert os.path.exists(str(marker) + "0") and os.path.exists(str(marker) + "2")
    assert not os.path.exists(str(marker) + "1")


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


def test_cancelled_futures_show_in_as_completed_and_wait(start_method):
    with Pool(1) as pool:
        slow = pool.submit(pid_after, 60)
        fast = pool.submit(add, 1)
        _running_worker(pool)
        assert slow.cancel()
        done = list(concurrent.futures.as_completed([slow, fast], timeout=60))
        assert set(done) == {slow, fast}


def test_cancel_of_a_running_task_wins_however_late_its_caller_runs(start_method, monkeypatch):
    # The worker is killed while cancel() is still inside the pool: the manager settles the
    # task's chunk meanwhile. On a loaded machine the caller's thread can wait that long for
    # the GIL; cancel() then said False and the future ended with an error.
    with Pool(1) as pool:
        slow = pool.submit(pid_after, 60)
        fast = pool.submit(add, 1)
        _running_worker(pool)
        core_cancel = type(pool._core).cancel

        def descheduled(core, chunk, offset):
            accepted = core_cancel(core, chunk, offset)
            time.sleep(1.0)
            return accepted

        monkeypatch.setattr(type(pool._core), "cancel", descheduled)
        assert slow.cancel()
        assert slow.cancelled()
        assert fast.result(timeout=60) == add(1)


def test_submit_timeout_kills_only_that_task_even_in_c(start_method):
    with Pool(2) as pool:
        stuck = pool.submit.timeout(0.5)(spin_in_c)
        others = [pool.submit(add, i) for i in range(10)]
        t0 = time.monotonic()
        error = stuck.exception(timeout=60)
        assert isinstance(error, ItemTimeoutError) and isinstance(error, TimeoutError)
        assert error.timeout == 0.5 and "spin_in_c()" in str(error)
        assert time.monotonic() - t0 < 5
        assert [f.result(timeout=60) for f in others] == list(range(10))
        assert pool.submit.timeout(30)(add, 2).result(timeout=60) == 2


def test_pool_wide_item_timeout_applies_to_submit():
    with Pool(1, item_timeout=0.3) as pool:
        with pytest.raises(ItemTimeoutError):
            pool.apply(pid_after, 30)
        assert pool.apply(add, 4) == 4


def test_submit_asynced():
    async def main(pool: Pool) -> list[int]:
        return list(await asyncio.gather(*(pool.submit.asynced()(add, i, 1) for i in range(10))))

    with Pool(2) as pool:
        assert asyncio.run(main(pool)) == [i + 1 for i in range(10)]


def test_retries_apply_to_submit(tmp_path):
    flag = str(tmp_path / "crashed-once")
    with Pool(1, retries=1) as pool:
        assert pool.apply(_crash_first_time, flag) == "second try"
        with pytest.raises(WorkerCrashedError) as info:
            pool.apply(die, 7)
        assert info.value.attempts == 2 and info.value.exitcode == 7


def _crash_first_time(flag: str) -> str:
    if not os.path.exists(flag):
        _touch(flag)
        os._exit(9)
    return "second try"


def test_terminate_fails_pending_futures_and_the_pool_goes_on():
    pool = Pool(1)
    try:
        futures = [pool.submit(pid_after, 30) for _ in range(3)]
        time.sleep(0.3)
        pool.terminate()
        for f in futures:
            assert isinstance(f.exception(timeout=30), ProcessError)
        assert pool.apply(add, 1, 1) == 2
    finally:
        pool.terminate()


def test_bad_submissions_fail_clearly():
    with Pool(1) as pool:
        with pytest.raises(TypeError, match=r"Pool\.submit: the first argument must be a function"):
            pool.submit(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="needs a number of seconds > 0"):
            pool.submit.timeout(-1)


def maybe_fail(x: int, bad: bool) -> int:
    if bad:
        raise KeyError(x)
    return -x


@settings(max_examples=20, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=600), st.sampled_from([None, 5.0]))
def test_property_each_future_gets_its_own_outcome(bad_flags, item_timeout):
    """Submissions share chunks (up to 256 while the workers are busy); whatever the mix of
    successes and failures, and with or without a per-task timeout, each future settles with
    its own result or its own exception."""
    with Pool(2, item_timeout=item_timeout) as pool:
        futures = [pool.submit(maybe_fail, i, bad) for i, bad in enumerate(bad_flags)]
        for i, (future, bad) in enumerate(zip(futures, bad_flags, strict=True)):
            if bad:
                error = future.exception(timeout=120)
                assert isinstance(error, KeyError) and error.args == (i,)
            else:
                assert future.result(timeout=120) == -i


def _bad_init() -> None:
    raise OSError("model file missing")


def test_a_failing_initializer_fails_submitted_futures(start_method):
    """New-user trial: submit/apply hung forever when the initializer raised."""
    with Pool(2, initializer=_bad_init) as pool:
        future = pool.submit(add, 1)
        error = future.exception(timeout=60)
        assert isinstance(error, ProcessError) and "_bad_init" in str(error)
        with pytest.raises(ProcessError, match="_bad_init"):
            pool.apply(add, 2)


def test_cancel_before_the_worker_started_the_task(start_method):
    """New-user trial: a task cancelled while its (first) worker was still starting ran anyway."""
    with Pool(1) as pool:
        slow = pool.submit(pid_after, 30)
        assert slow.cancel()
        t0 = time.monotonic()
        assert pool.submit(add, 2).result(timeout=60) == 2
        assert time.monotonic() - t0 < 20  # not behind the 30 s task


def test_running_tells_when_the_task_runs():
    with Pool(1) as pool:
        future = pool.submit(pid_after, 2)
        _running_worker(pool)
        assert future.running()
        future.result(timeout=60)
        assert not future.running() and future.done()
