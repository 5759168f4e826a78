"""A Share on Redis (issue 15 item 3) updated from Pool workers, Skprocess items and a Pool on
Dask, against a real redis-server on loopback (sk_testkit's ``redis_server``).

::

    test process: Share(backend="redis://...") ──► Pool / Dask LocalCluster
        each item receives the Share (pickled or cucumber: URL, password, name, lease)
        and connects to the same redis-server itself; totals must be exact
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from suitkaise.processing import Pool, Skprocess
from suitkaise.share import Share

pytest.importorskip("redis")

N_ITEMS, N_OPS = 4, 500


def _all_forms(share: Share) -> int:
    for _ in range(N_OPS):
        share.counter += 1
        share.total = share.total + 2
        share.d["k"] += 1
    return os.getpid()


def test_pool_items_update_a_redis_share_exactly(redis_server: Any, start_method: str) -> None:
    with Share(backend=f"{redis_server.url}/2") as share:
        share.counter, share.total, share.d = 0, 0, {"k": 0}
        with Pool(workers=4) as pool:
            pids = pool.map(_all_forms, [share] * N_ITEMS)
        assert os.getpid() not in pids
        assert share.counter == N_ITEMS * N_OPS
        assert share.total == 2 * N_ITEMS * N_OPS
        assert share.d == {"k": N_ITEMS * N_OPS}


class Counter(Skprocess):
    def __init__(self, share: Share) -> None:
        self.share = share
        self.process_config.runs = 10

    def __run__(self) -> None:
        self.share.counter += 1
        self.share.log.append(self._current_run)

    def __result__(self) -> int:
        return int(self.share.counter)


def test_skprocess_items_in_a_pool(redis_server: Any, start_method: str) -> None:
    with Share(backend=f"{redis_server.url}/2") as share:
        share.counter, share.log = 0, []
        with Pool(workers=2) as pool:
            results = pool.map(Counter, [share] * 6)
        assert share.counter == 60 and len(share.log) == 60
        assert all(isinstance(r, int) and 10 <= r <= 60 for r in results)


def test_pool_on_dask_updates_a_redis_share(redis_server: Any) -> None:
    distributed = pytest.importorskip("distributed", reason="the Dask backend needs sk-processing[dask]")
    with Share(backend=f"{redis_server.url}/2") as share:
        share.counter, share.total, share.d = 0, 0, {"k": 0}
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.CRITICAL,
        ) as cluster, Pool(backend=cluster) as pool:
            pids = pool.map(_all_forms, [share] * N_ITEMS)
        assert os.getpid() not in pids
        assert share.counter == N_ITEMS * N_OPS
        assert share.total == 2 * N_ITEMS * N_OPS
        assert share.d == {"k": N_ITEMS * N_OPS}
