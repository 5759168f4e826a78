"""TimeThis and timethis: recording rules, forms, registry naming, recursion, async, threads."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import warnings

import pytest

from sk_testkit import run_fresh
from suitkaise.timing import Sktimer, TimeThis, clear_global_timers, timethis


def timer_of(fn: object) -> Sktimer:
    """The ``.timer`` that ``timethis`` attaches (not visible to the type checker)."""
    timer = fn.timer  # type: ignore[attr-defined]
    assert isinstance(timer, Sktimer)
    return timer


# -- TimeThis -----------------------------------------------------------------

def test_timethis_cm_returns_the_timer_and_records() -> None:
    t = Sktimer()
    with TimeThis(t) as got:
        assert got is t
        time.sleep(0.01)
    assert t.num_times == 1
    assert t.most_recent is not None and t.most_recent >= 0.01
    assert t.total_time_paused == 0.0


def test_timethis_cm_creates_a_timer() -> None:
    tt = TimeThis()
    assert isinstance(tt.timer, Sktimer)
    assert tt.threshold == 0.0
    with tt as got:
        pass
    assert got is tt.timer
    assert tt.timer.num_times == 1
    with tt:  # reusable
        pass
    assert tt.timer.num_times == 2


def test_scenario_6_threshold_and_exceptions() -> None:
    t = Sktimer()
    with TimeThis(t, threshold=0.5):
        pass
    assert t.num_times == 0
    with pytest.raises(KeyError, match="boom"), TimeThis(t):
        raise KeyError("boom")
    assert t.num_times == 0
    assert not t._has_active_frame(), "the frame is closed even when the block raises"
    with TimeThis(t, threshold=0.01):
        time.sleep(0.02)
    assert t.num_times == 1


def test_timethis_cm_pause_excluded_but_not_counted_as_paused() -> None:
    t = Sktimer()
    wall0 = time.perf_counter()
    with TimeThis(t) as timer:
        timer.pause()
        time.sleep(0.05)
        timer.resume()
    wall = time.perf_counter() - wall0
    assert t.num_times == 1
    assert t.most_recent is not None and t.most_recent <= wall - 0.05 + 1e-6
    assert t.total_time_paused == 0.0


def test_timethis_cm_delegates_pause_resume_lap() -> None:
    t = Sktimer()
    tt = TimeThis(t)
    with tt:
        tt.pause()
        tt.resume()
        lap = tt.lap()
    assert t.times[0] == lap
    assert t.num_times == 2


def test_stop_inside_block_exits_silently() -> None:
    t = Sktimer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with TimeThis(t) as timer:
            recorded = timer.stop()
    assert t.times == [recorded]


def test_reset_inside_block_exits_silently() -> None:
    t = Sktimer()
    with TimeThis(t) as timer:
        timer.add_time(1)
        timer.reset()
    assert t.num_times == 0


def test_timethis_cm_nested_on_same_timer_warns_and_records_both() -> None:
    t = Sktimer()
    tt = TimeThis(t)
    with tt, pytest.warns(UserWarning, match="nested timing frame"), tt:
        pass
    assert t.num_times == 2
    assert t.times[0] <= t.times[1]


def test_timethis_cm_shared_between_threads() -> None:
    tt = TimeThis()
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait(timeout=30)
        for _ in range(100):
            with tt:
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert tt.timer.num_times == 400


@pytest.mark.parametrize(("kwargs", "exc"), [
    ({"timer": "x"}, TypeError), ({"threshold": "1"}, TypeError), ({"threshold": None}, TypeError),
])
def test_timethis_cm_validates(kwargs: dict[str, object], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        TimeThis(**kwargs)  # type: ignore[arg-type]


# -- timethis: forms -------------------------------------------------------------

def test_called_form_uses_global_timer() -> None:
    @timethis()
    def f(x: int) -> int:
        """Doc."""
        return x * 2

    assert f(2) == 4
    assert f.__name__ == "f" and f.__doc__ == "Doc."
    assert isinstance(timer_of(f), Sktimer)
    assert timer_of(f).num_times == 1


def test_bare_form() -> None:
    @timethis
    def g(x: int) -> int:
        return x + 1

    assert g(1) == 2
    assert g(2) == 3
    assert timer_of(g).num_times == 2


def test_explicit_timer_and_max_times() -> None:
    t = filled_timer(1, 2, 3)

    @timethis(t, max_times=2)
    def h() -> None:
        pass

    assert t.max_times == 2
    assert t.times == [2, 3], "max_times is applied at decoration time"
    assert not hasattr(h, "timer"), "an explicit timer gives the wrapper no .timer"
    h()
    assert t.num_times == 2
    assert t.times[0] == 3


def filled_timer(*values: float) -> Sktimer:
    t = Sktimer()
    for v in values:
        t.add_time(v)
    return t


def test_threshold_filters_fast_calls() -> None:
    t = Sktimer()

    @timethis(t, threshold=10)
    def fast() -> int:
        return 1

    @timethis(t, threshold=0.01)
    def slow() -> int:
        time.sleep(0.02)
        return 2

    assert fast() == 1
    assert t.num_times == 0
    assert slow() == 2
    assert t.num_times == 1


def test_exception_records_nothing_and_propagates() -> None:
    t = Sktimer()

    @timethis(t)
    def bad() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        bad()
    assert t.num_times == 0
    assert not t._has_active_frame()


def test_recursion_records_every_call() -> None:
    t = Sktimer()

    @timethis(t)
    def rec(n: int) -> int:
        return 0 if n == 0 else 1 + rec(n - 1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recursion must not trigger nested-frame warnings
        assert rec(3) == 3
    assert t.num_times == 4
    assert t.times[-1] == max(t.times), "the outermost call finishes last and is the longest"


def test_inside_running_timethis_block() -> None:
    t = Sktimer()

    @timethis(t)
    def inner() -> None:
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with TimeThis(t):
            inner()
    assert t.num_times == 2


def test_pause_inside_decorated_function_applies_to_its_frame() -> None:
    t = Sktimer()

    @timethis(t)
    def work() -> None:
        t.pause()
        time.sleep(0.05)
        t.resume()

    wall0 = time.perf_counter()
    work()
    wall = time.perf_counter() - wall0
    assert t.most_recent is not None and t.most_recent <= wall - 0.05 + 1e-6


def test_stacking_records_independently_and_exposes_inner_timer() -> None:
    shared = Sktimer()

    @timethis(shared)
    @timethis()
    def f() -> None:
        pass

    f()
    f()
    assert shared.num_times == 2
    assert timer_of(f) is not shared
    assert timer_of(f).num_times == 2


@pytest.mark.parametrize(("kwargs", "exc"), [
    ({"timer": 5}, TypeError), ({"threshold": "0.1"}, TypeError), ({"max_times": 0}, ValueError),
    ({"max_times": 1.5}, ValueError),
])
def test_timethis_validates(kwargs: dict[str, object], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        timethis(**kwargs)  # type: ignore[call-overload]


def test_timethis_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="only decorate callables"):
        timethis()(42)  # type: ignore[type-var]


def test_threads_each_call_recorded() -> None:
    t = Sktimer()

    @timethis(t)
    def f() -> None:
        pass

    def work() -> None:
        for _ in range(100):
            f()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert t.num_times == 400


# -- async ------------------------------------------------------------------------

def test_scenario_5_async_def_times_the_awaited_body() -> None:
    @timethis()
    async def work(x: int) -> int:
        await asyncio.sleep(0.05)
        return x

    assert inspect.iscoroutinefunction(work)
    assert asyncio.run(work(7)) == 7
    assert timer_of(work).num_times == 1
    recent = timer_of(work).most_recent
    assert recent is not None
    assert 0.04 <= recent < 30


def test_async_concurrent_calls_and_exceptions() -> None:
    t = Sktimer()

    @timethis(t)
    async def work(x: int) -> int:
        await asyncio.sleep(0.01)
        if x < 0:
            raise ValueError("negative")
        return x

    async def main() -> list[object]:
        return await asyncio.gather(*(work(i) for i in (1, 2, -1, 3)), return_exceptions=True)

    results = asyncio.run(main())
    assert results[:2] == [1, 2] and results[3] == 3
    assert isinstance(results[2], ValueError)
    assert t.num_times == 3
    assert all(x >= 0.009 for x in t.times)


def test_async_threshold() -> None:
    t = Sktimer()

    @timethis(t, threshold=10)
    async def work() -> None:
        await asyncio.sleep(0)

    asyncio.run(work())
    assert t.num_times == 0


# -- global registry --------------------------------------------------------------

def test_same_qualname_in_one_module_shares_a_timer() -> None:
    def make() -> object:
        @timethis()
        def twin() -> None:
            pass
        return twin

    a, b = make(), make()
    assert timer_of(a) is timer_of(b)


def test_max_times_updates_registry_timer() -> None:
    def make(n: int | None) -> object:
        @timethis(max_times=n)
        def windowed() -> None:
            pass
        return windowed

    first = make(3)
    assert timer_of(first).max_times == 3
    second = make(5)
    assert timer_of(second) is timer_of(first)
    assert timer_of(first).max_times == 5
    make(None)
    assert timer_of(first).max_times == 5


def test_naming_rule_uses_the_decorating_module() -> None:
    from suitkaise.timing import _decorators

    namespace: dict[str, object] = {"__name__": "pkg.sub.mymod", "timethis": timethis}
    exec(
        "@timethis()\ndef f(): pass\n"
        "class A:\n    class B:\n        @timethis()\n        def m(self): pass\n"
        "def outer():\n    @timethis()\n    def inner(): pass\n    return inner\n"
        "inner = outer()\n",
        namespace,
    )
    registry = _decorators._GLOBAL_TIMERS
    assert registry["mymod_f_timer"] is timer_of(namespace["f"])
    assert registry["mymod_A.B_m_timer"] is timer_of(namespace["A"].B.m)  # type: ignore[attr-defined]
    assert registry["mymod_outer.<locals>_inner_timer"] is timer_of(namespace["inner"])


def test_naming_rule_in_main_of_a_fresh_interpreter() -> None:
    code = (
        "from suitkaise.timing import timethis\n"
        "from suitkaise.timing._decorators import _GLOBAL_TIMERS\n"
        "@timethis\ndef f(): pass\n"
        "class A:\n    class B:\n        @timethis()\n        def m(self): pass\n"
        "def outer():\n    @timethis()\n    def inner(): pass\n    return inner\n"
        "outer()\n"
        "print(sorted(_GLOBAL_TIMERS))\n"
    )
    out = run_fresh(code).stdout.decode().strip()
    assert out == str(sorted(
        ["__main___f_timer", "__main___A.B_m_timer", "__main___outer.<locals>_inner_timer"]
    ))


def test_clear_global_timers() -> None:
    def make() -> object:
        @timethis()
        def cleared() -> None:
            pass
        return cleared

    old = make()
    old()  # type: ignore[operator]
    old_timer = timer_of(old)
    assert old_timer.num_times == 1
    clear_global_timers()
    assert old_timer.num_times == 0, "registry timers are reset"
    assert timer_of(old) is old_timer
    old()  # type: ignore[operator]
    assert old_timer.num_times == 1, "earlier functions keep their timer object"
    new = make()
    assert timer_of(new) is not old_timer, "functions decorated afterwards get new timers"
