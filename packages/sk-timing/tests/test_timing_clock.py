"""time / sleep / sleep.asynced / elapsed."""

from __future__ import annotations

import asyncio
import inspect
import time as stdlib_time

import pytest

from suitkaise import timing


def test_all_exports() -> None:
    assert set(timing.__all__) == {
        "time", "sleep", "elapsed", "Sktimer", "TimerStats", "TimeThis", "timethis",
        "clear_global_timers",
    }
    for name in timing.__all__:
        assert getattr(timing, name) is not None


def test_time_is_wall_clock() -> None:
    before = stdlib_time.time()
    now = timing.time()
    after = stdlib_time.time()
    assert before <= now <= after


def test_sleep_blocks_and_returns_wall_time() -> None:
    start = stdlib_time.perf_counter()
    woke = timing.sleep(0.02)
    assert stdlib_time.perf_counter() - start >= 0.02
    assert abs(woke - stdlib_time.time()) < 5.0
    assert isinstance(woke, float)


@pytest.mark.parametrize("bad", ["1", None, [1]])
def test_sleep_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(TypeError, match="seconds must be a real number"):
        timing.sleep(bad)  # type: ignore[arg-type]


def test_sleep_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        timing.sleep(-1)


def test_sleep_asynced_is_a_coroutine_function() -> None:
    fn = timing.sleep.asynced()
    assert inspect.iscoroutinefunction(fn)

    async def main() -> tuple[float, float]:
        t0 = stdlib_time.perf_counter()
        woke = await fn(0.02)
        return woke, stdlib_time.perf_counter() - t0

    woke, waited = asyncio.run(main())
    assert waited >= 0.019
    assert abs(woke - stdlib_time.time()) < 5.0


def test_sleep_asynced_yields_to_the_loop() -> None:
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async def main() -> None:
        task = asyncio.create_task(other())
        await timing.sleep.asynced()(0.01)
        order.append("slept")
        await task

    asyncio.run(main())
    assert order == ["other", "slept"]


def test_elapsed_is_symmetric() -> None:
    assert timing.elapsed(5, 3) == timing.elapsed(3, 5) == 2.0


def test_elapsed_defaults_to_now() -> None:
    past = stdlib_time.time() - 10
    assert 9.0 <= timing.elapsed(past) <= 70.0


@pytest.mark.parametrize("args", [("a",), (1, "b"), (None,)])
def test_elapsed_rejects_non_numbers(args: tuple[object, ...]) -> None:
    with pytest.raises(TypeError, match="must be a real number"):
        timing.elapsed(*args)  # type: ignore[arg-type]
