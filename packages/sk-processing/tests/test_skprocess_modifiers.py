"""`.timeout()`, `.background()`, `.asynced()` on wait/result/run/listen (decision 2)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import pytest
from skprocess_support import Counter, Forever

from suitkaise.processing import ProcessError, ResultTimeoutError


def test_timeouts_raise_result_timeout_error(start_method):
    proc = Forever()
    proc.start()
    try:
        assert isinstance(proc.listen(timeout=60), int)
        with pytest.raises(ResultTimeoutError) as info:
            proc.result.timeout(0.2)()
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, ProcessError)
        assert "result() timed out after 0.2s" in str(info.value)
        with pytest.raises(ResultTimeoutError, match="wait"):
            proc.wait.timeout(0.2)()
        assert proc.wait(timeout=0.2) is False
        with pytest.raises(ResultTimeoutError, match="listen"):
            proc.listen.timeout(0.2)()
        assert proc.listen(timeout=0.2) is None
        assert proc.is_alive  # the child keeps running after a modifier timeout
    finally:
        proc.stop()
    assert isinstance(proc.result(), int)  # a later result() still returns the value


def test_run_timeout_expires_and_process_continues(start_method):
    proc = Forever()
    with pytest.raises(ResultTimeoutError, match="run\\(\\) timed out"):
        proc.run.timeout(0.3)()
    assert proc.is_alive
    proc.stop()
    assert isinstance(proc.result(), int)


def test_background_and_chaining(start_method):
    proc = Counter(3)
    future = proc.run.background()()
    assert isinstance(future, Future)
    assert future.result(timeout=60) == 3
    future2 = proc.run.timeout(60).background()()
    assert future2.result(timeout=60) == 3
    listen_future = Forever().listen.background()  # bound ModifiedCall, not started
    assert callable(listen_future)


def test_asynced(start_method):
    async def main():
        a, b = Counter(2), Counter(4)
        results = await asyncio.gather(a.run.asynced()(), b.run.asynced().timeout(60)())
        done = await a.wait.asynced()()
        return results, done

    assert asyncio.run(main()) == ([2, 4], True)
