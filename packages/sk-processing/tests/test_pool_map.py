"""Pool: the four map methods, star(), lifecycle, functions travelling by value, big buffers."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from suitkaise import cucumber
from suitkaise.processing import Pool

pytestmark = pytest.mark.timeout(120)


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 10) -> int:
    return a + b


def identity(x: object) -> object:
    return x


def plus_one(a: np.ndarray) -> np.ndarray:
    return a + 1


class CountingFunction:
    """A callable that appends this process's pid to a file each time it is deserialized."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, x: int) -> int:
        return x + 1

    def __getstate__(self) -> dict[str, str]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.path = state["path"]
        if os.environ.get("SK_POOL_PARENT_PID") != str(os.getpid()):
            with open(self.path, "a") as f:
                f.write(f"{os.getpid()}\n")


class Released:
    """Writes ``<path>.released.<pid>`` when collected: its holder was let go in that process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __del__(self) -> None:
        Path(f"{self.path}.released.{os.getpid()}").touch()


class Holding:
    """``x + 1``, holding a ``Released``; writes ``<path>.ran.<pid>`` in each process it runs in."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.held = Released(path)

    def __call__(self, x: int) -> int:
        Path(f"{self.path}.ran.{os.getpid()}").touch()
        return x + 1


def _pids(tmp_path: Path, what: str) -> set[str]:
    return {p.name.rsplit(".", 1)[1] for p in tmp_path.glob(f"fn.{what}.*")}


def test_workers_let_a_function_go_once_its_call_has_every_result(start_method: str, tmp_path: Path) -> None:
    """Every worker that ran a call's function lets it go (and what it holds) as soon as the
    call's last result has reached the parent, before the caller has taken the results; the
    results are all there afterwards."""
    with Pool(2) as pool:
        fn = Holding(str(tmp_path / "fn"))
        results = pool.imap(fn, range(40), chunksize=40)  # the whole input in the first read
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (_pids(tmp_path, "ran") and
                                                   _pids(tmp_path, "ran") <= _pids(tmp_path, "released")):
            time.sleep(0.01)
        assert _pids(tmp_path, "ran"), "no worker ran the function"
        assert _pids(tmp_path, "ran") <= _pids(tmp_path, "released"), "a worker still holds the function"
        assert list(results) == list(range(1, 41))
        # a call of the same function after that loads it again
        assert pool.map(fn, range(5)) == [1, 2, 3, 4, 5]


def test_four_methods_order_and_values(start_method: str) -> None:
    items = list(range(200))
    expected = [x * x for x in items]
    offset = 7

    def closure(x: int) -> int:  # defined in the test: travels by value
        return x + offset

    with Pool(2) as pool:
        assert pool.map(square, items) == expected
        assert sorted(pool.unordered_map(square, items)) == expected
        assert list(pool.imap(square, items)) == expected
        assert sorted(pool.unordered_imap(square, iter(items))) == expected
        assert pool.map(lambda x: -x, [1, 2, 3]) == [-1, -2, -3]
        assert pool.map(closure, [1, 2]) == [8, 9]
        assert pool.map(square, []) == []
        assert pool.unordered_map(square, []) == []
        assert list(pool.imap(square, [])) == []
        assert list(pool.unordered_imap(square, iter([]))) == []
        # input of unknown length (generator) through map
        assert pool.map(square, (x for x in range(50))) == [x * x for x in range(50)]


def test_star_unpacks_only_tuples(start_method: str) -> None:
    with Pool(2) as pool:
        assert pool.star().map(add, [(1, 2), (3,), 5]) == [3, 13, 15]
        assert pool.star().map(identity, [[1, 2]]) == [[1, 2]]
        assert pool.map(identity, [(1, 2)]) == [(1, 2)]  # without star: passed whole
        assert sorted(pool.star().unordered_map(add, [(1, 2), (3, 4)])) == [3, 7]
        assert list(pool.star().imap(add, [(1, 2), (3, 4)])) == [3, 7]
        assert sorted(pool.star().unordered_imap(add, [(1, 2), (3, 4)])) == [3, 7]


def test_function_sent_once_per_worker_per_call(start_method: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(str(tmp_path), "loads.txt")
    monkeypatch.setenv("SK_POOL_PARENT_PID", str(os.getpid()))
    fn = CountingFunction(path)
    with Pool(2) as pool:
        assert pool.map(fn, range(1000)) == list(range(1, 1001))
        assert list(pool.imap(fn, range(300))) == list(range(1, 301))
    with open(path) as f:
        loads = f.read().split()
    # two calls, at most one load per worker per call (1000 items = 8 chunks)
    assert 1 <= len(loads) <= 4, loads


def test_workers_argument_validation() -> None:
    assert Pool().workers == (os.cpu_count() or 1)
    assert Pool(3).workers == 3
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0)
    with pytest.raises(TypeError, match="int or None"):
        Pool(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int or None"):
        Pool(True)
    with pytest.raises(TypeError, match="progress"):
        Pool(2, progress="yes")  # type: ignore[arg-type]
    pool = Pool(1)
    with pytest.raises(TypeError, match="function or an Skprocess"):
        pool.map(42, [1])
    with pytest.raises(TypeError, match="must be iterable"):
        pool.map(square, 5)
    with pytest.raises(ValueError, match="seconds"):
        pool.map.timeout(-1)
    with pytest.raises(ValueError, match="seconds"):
        pool.imap.timeout("soon")  # type: ignore[arg-type]


def test_usable_after_close_terminate_and_context(start_method: str) -> None:
    pool = Pool(2)
    assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
    pool.close()
    assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
    pool.terminate()
    assert list(pool.imap(square, range(5))) == [0, 1, 4, 9, 16]
    with pool:
        assert pool.unordered_map(square, [3]) == [9]
    assert pool.map(square, [4]) == [16]  # usable after the with block too
    pool.close()
    pool.close()  # idempotent
    pool.terminate()


def test_workers_start_only_for_work_that_waits(start_method: str) -> None:
    # A 1-item call on a fresh pool forks one worker, not all (the others would boot on the
    # cores the first one needs, and close() would wait for them); more parts than running
    # workers fill the pool.
    with Pool(2) as pool:
        assert pool.map(square, [3]) == [9]
        assert len(pool._core.workers) == 1
        assert pool.map(square, range(200)) == [x * x for x in range(200)]
        assert len(pool._core.workers) == 2


def test_unclosed_pool_is_cleaned_up_when_collected(start_method: str) -> None:
    pool = Pool(2)
    assert pool.map(square, [1, 2]) == [1, 4]
    del pool
    gc.collect()
    # the autouse leak check fails this test if a worker outlives it


def test_pool_travels_through_cucumber(start_method: str) -> None:
    pool = Pool(3)
    copy = cucumber.deserialize(cucumber.serialize(pool))
    assert isinstance(copy, Pool) and copy.workers == 3
    assert copy.map(square, [2]) == [4]
    copy.close()
    pool.close()


def test_large_buffers_round_trip(start_method: str) -> None:
    arrays = [np.arange(300_000, dtype=np.float64) * i for i in range(4)]
    strided = np.arange(400_000, dtype=np.int32)[::2]  # not contiguous: travels in band
    with Pool(2) as pool:
        out = pool.map(plus_one, arrays)
        for i, (a, b) in enumerate(zip(arrays, out, strict=True)):
            assert b.dtype == a.dtype and np.array_equal(b, a + 1), i
            b += 1  # results are writable
        (s,) = pool.map(plus_one, [strided])
        assert np.array_equal(s, strided + 1)
        blob = bytearray(os.urandom(300_000))
        assert pool.map(identity, [blob]) == [blob]


def test_concurrent_calls_on_one_pool(start_method: str) -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    with Pool(2) as pool:
        def work(k: int) -> None:
            try:
                results[k] = pool.map(square, range(k, k + 300))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors
    for k in range(4):
        assert results[k] == [x * x for x in range(k, k + 300)]


def _megabyte(_: int) -> bytes:
    return bytes(2**20)


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


def test_imap_read_ahead_is_bounded_in_bytes_too():
    """New-user trial: an idle imap consumer of 1 MB results saw the parent grow to several GB
    (read-ahead counted items, not bytes). Now about 64 MB of results wait, at most."""
    import time

    with Pool(2) as pool:
        it = pool.imap(_megabyte, range(20_000))
        for _ in range(50):
            next(it)
        before = _rss_mb()
        time.sleep(3)  # the consumer idles; the workers could fill the parent
        grown = _rss_mb() - before
        assert sum(1 for _ in zip(range(200), it, strict=False)) == 200
        it.close()
    assert grown < 400, f"the parent grew by {grown} MB while the consumer idled"
