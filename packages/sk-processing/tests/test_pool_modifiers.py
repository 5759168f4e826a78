"""Pool modifiers: .timeout() (whole call for map, per result for imap), .background(),
.asynced(), their chains and star(); lazy input with bounded read-ahead; progress."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from suitkaise.processing import Pool, ResultTimeoutError

pytestmark = pytest.mark.timeout(120)


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def sleep_then_return(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_background_and_asynced_return_lists(start_method: str) -> None:
    items = list(range(20))
    expected = [x * x for x in items]
    with Pool(2) as pool:
        futures: list[Future[list[int]]] = [
            pool.map.background()(square, items),
            pool.unordered_map.background()(square, items),
            pool.imap.background()(square, items),
            pool.unordered_imap.background()(square, items),
            pool.map.timeout(30).background()(square, items),
            pool.map.background().timeout(30)(square, items),
            pool.imap.timeout(30).background()(square, items),
            pool.star().map.background()(add, [(1, 2), (3, 4)]),
        ]
        results = [f.result(timeout=60) for f in futures]
        for r in results[:7]:
            assert isinstance(r, list) and sorted(r) == expected
        assert results[0] == expected and results[2] == expected
        assert results[7] == [3, 7]

        async def main() -> list[list[int]]:
            return list(await asyncio.gather(
                pool.map.asynced()(square, items),
                pool.unordered_map.asynced()(square, items),
                pool.imap.asynced()(square, items),
                pool.unordered_imap.asynced()(square, items),
                pool.map.asynced().timeout(30)(square, items),
                pool.map.timeout(30).asynced()(square, items),
                pool.star().imap.asynced()(add, [(1, 2), (3, 4)]),
            ))

        got = asyncio.run(main())
        for r in got[:6]:
            assert isinstance(r, list) and sorted(r) == expected
        assert got[0] == expected and got[2] == expected
        assert got[6] == [3, 7]
        # star composes with timeout, and plain timeouts pass through results
        assert pool.star().map.timeout(30)(add, [(1, 1)]) == [2]
        assert list(pool.star().imap.timeout(30)(add, [(2, 2)])) == [4]
        assert sorted(pool.unordered_imap.timeout(30)(square, [1, 2])) == [1, 4]


def test_background_with_asynced_is_refused() -> None:
    pool = Pool(1)
    with pytest.raises(TypeError, match="cannot be combined"):
        pool.map.background().asynced()
    with pytest.raises(TypeError, match="cannot be combined"):
        pool.imap.asynced().background()


def test_map_timeout_bounds_the_whole_call(start_method: str) -> None:
    with Pool(1) as pool:
        t0 = time.monotonic()
        with pytest.raises(ResultTimeoutError) as info:
            pool.map.timeout(1.5)(sleep_then_return, [0.6] * 6)
        assert isinstance(info.value, TimeoutError)
        assert "Pool.map timed out after 1.5s" in str(info.value)
        assert time.monotonic() - t0 < 30
        # the worker that ran the stuck call was replaced: the pool is usable at once
        assert pool.map(square, [3]) == [9]
        with pytest.raises(ResultTimeoutError):
            pool.unordered_map.timeout(0.5)(sleep_then_return, [30])


def test_imap_timeout_is_per_result(start_method: str) -> None:
    with Pool(1) as pool:
        # six 0.4 s items: 2.4 s in total, but each result arrives well within 1.5 s
        assert list(pool.imap.timeout(1.5)(sleep_then_return, [0.4] * 6)) == [0.4] * 6
        with pytest.raises(ResultTimeoutError, match="next result"):
            list(pool.unordered_imap.timeout(0.5)(sleep_then_return, [0.01, 30]))
        assert pool.map(square, [2]) == [4]


def test_imap_reads_endless_input_lazily(start_method: str) -> None:
    pulled = 0

    def counting() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    with Pool(2) as pool:
        first = list(itertools.islice(pool.imap(square, counting()), 100))
        assert first == [x * x for x in range(100)]
        assert pulled < 50_000  # bounded read-ahead, not the whole (endless) input
        pulled = 0
        it = pool.unordered_imap(square, counting())
        got = [next(it) for _ in range(100)]
        it.close()
        assert len(set(got)) == 100
        assert pulled < 50_000
        # abandoned iterators do not block the pool
        assert pool.map(square, range(10)) == [x * x for x in range(10)]


def test_imap_yields_in_order_as_results_arrive(start_method: str) -> None:
    with Pool(2) as pool:
        it = pool.imap(sleep_then_return, [0.3, 0.05, 0.05])
        assert next(it) == 0.3
        assert list(it) == [0.05, 0.05]
        first = next(iter(pool.unordered_imap(sleep_then_return, [5, 0.05])))
        assert first == 0.05


def test_progress_callback(start_method: str) -> None:
    calls: list[tuple[int, int | None]] = []
    with Pool(2, progress=lambda done, total: calls.append((done, total))) as pool:
        assert pool.map(square, range(100)) == [x * x for x in range(100)]
        assert calls[-1] == (100, 100)
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)
        calls.clear()
        list(pool.imap(square, iter(range(30))))
        assert calls[-1] == (30, None)
        calls.clear()
        pool.map(square, range(10), progress=False)  # per-call override
        assert calls == []
    per_call: list[int] = []
    with Pool(1) as pool:
        pool.unordered_map(square, range(7), progress=lambda d, t: per_call.append(d))
        assert per_call[-1] == 7


def test_progress_bar_is_silent_without_a_terminal(start_method: str, capfd: pytest.CaptureFixture[str]) -> None:
    with Pool(1, progress=True) as pool:
        assert pool.map(square, range(50)) == [x * x for x in range(50)]
    out, err = capfd.readouterr()
    assert out == "" and err == ""
