"""Worker limits: max_tasks_per_worker= and max_memory_per_worker= recycle a worker
between items, and the rest of its chunk runs on another worker -- nothing lost,
nothing run twice."""

from __future__ import annotations

import os

import pytest

from suitkaise.processing import Pool
from suitkaise.processing._pool import parse_memory

pytestmark = pytest.mark.timeout(300)

_HOARD: list[bytearray] = []


def pid_of(x: int) -> tuple[int, int]:
    return x, os.getpid()


def hoard(arg: tuple[str, int]) -> tuple[int, int]:
    """Keeps 8 MB per item in the worker (a leak that grows its RSS), logs that it ran."""
    log, x = arg
    block = bytearray(8 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
    _HOARD.append(block)
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return x, os.getpid()


@pytest.mark.parametrize("method", ["map", "imap", "unordered_map", "unordered_imap"])
def test_max_tasks_per_worker(start_method, method):
    with Pool(2, max_tasks_per_worker=3) as pool:
        out = getattr(pool, method)(pid_of, range(20))
        out = out if isinstance(out, list) else list(out)
    assert sorted(x for x, _ in out) == list(range(20))
    per_worker: dict[int, int] = {}
    for _, pid in out:
        per_worker[pid] = per_worker.get(pid, 0) + 1
    assert max(per_worker.values()) <= 3
    assert len(per_worker) >= 7  # 20 items, 3 per worker


def test_max_tasks_per_worker_with_a_bigger_chunksize_splits_chunks():
    with Pool(1, max_tasks_per_worker=4) as pool:
        out = pool.map(pid_of, range(10), chunksize=10)
    assert [x for x, _ in out] == list(range(10))
    pids = [pid for _, pid in out]
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [4, 4, 2]


def test_max_tasks_per_worker_with_submit():
    with Pool(1, max_tasks_per_worker=2) as pool:
        pids = [pool.submit(os.getpid).result(timeout=60) for _ in range(6)]
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [2, 2, 2]


def test_worker_over_its_memory_limit_is_recycled_with_nothing_lost(start_method, tmp_path):
    log = str(tmp_path / "ran")
    with Pool(2) as probe:  # what one idle worker weighs here (start method, imports)
        base = max(probe.map(_rss, range(2)))
    limit = base + 40 * 2**20  # about five items' worth of hoarding
    with Pool(2, max_memory_per_worker=limit) as pool:
        out = pool.map(hoard, [(log, x) for x in range(40)], chunksize=20)
    assert [x for x, _ in out] == list(range(40))  # every result, in order
    with open(log) as f:
        ran = sorted(int(line) for line in f.read().split())
    assert ran == list(range(40))  # each item ran exactly once
    pids = [pid for _, pid in out]
    assert len(set(pids)) >= 4  # workers were recycled, each after a handful of items
    assert max(pids.count(p) for p in set(pids)) <= 8


def _rss(_: int) -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize(
    "given, expected",
    [(1, 1), (4096, 4096), ("512MB", 512 * 10**6), ("2GiB", 2 * 2**30), ("1.5 gb", 1_500_000_000), ("64k", 64_000)],
)
def test_memory_sizes(given, expected):
    assert parse_memory(given) == expected


@pytest.mark.parametrize("bad", [0, -5, "lots", "5TB", "", True, 1.5])
def test_bad_limits_fail_clearly(bad):
    with pytest.raises(ValueError, match="max_memory_per_worker"):
        Pool(1, max_memory_per_worker=bad)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_max_tasks_fail_clearly(bad):
    with pytest.raises(ValueError, match="max_tasks_per_worker"):
        Pool(1, max_tasks_per_worker=bad)
