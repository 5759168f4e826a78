"""Pool: items and results of ``wire.SHM_MIN`` bytes and more travel in shared memory.

The Pool's sockets carry ``suitkaise.pipe.wire`` messages, so a large array
reaches a worker, and its result comes back, as a mapped anonymous memfd (one
copy instead of two). Sizes straddle both thresholds up to 100 MB under every
start method; a result's memory goes when the result is dropped; no
descriptor or mapping is left behind by many calls, by a result the Pool
discards (timed out), or by a worker SIGKILLed while sending one (nothing can
be left in ``/dev/shm``: the testkit's leak check looks after every test).
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

from sk_testkit import memfd_mappings, open_fds
from suitkaise.pipe import wire
from suitkaise.processing import Pool, ResultTimeoutError, WorkerCrashedError

pytestmark = pytest.mark.timeout(300)

SHM = wire.SHM_MIN
SIZES = [0, 1, wire.OOB_MIN - 1, wire.OOB_MIN, SHM - 1, SHM, 100 * 1024 * 1024]


def echo(x: Any) -> Any:
    return x


def plus_one(a: Any) -> Any:
    return a + 1


def big(seed: int) -> Any:
    return np.full(SHM // 8, float(seed))


def slow_big(seed: int) -> Any:
    time.sleep(1.0)
    return big(seed)


def die_while_sending(n: int) -> Any:
    """A result of two shared buffers and 200 MB streamed after them; SIGKILL while it goes
    (the memfds take milliseconds, the 200 MB through the socket about a tenth of a second)."""
    result = [big(1), *[np.ones(SHM // 8 - 1) for _ in range(25)], big(2)]
    threading.Timer(0.03, os.kill, (os.getpid(), signal.SIGKILL)).start()
    return result


def assert_same(want: Any, have: Any) -> None:
    local = pickle.loads(pickle.dumps(want, protocol=5))
    assert type(have) is np.ndarray
    assert (have.dtype, have.shape, have.strides) == (local.dtype, local.shape, local.strides)
    assert have.flags.writeable and np.array_equal(have, want)


@pytest.mark.parametrize("n", SIZES)
def test_items_and_results_across_the_thresholds(start_method: str, n: int) -> None:
    items = [np.arange(n, dtype=np.uint8), np.arange(n // 8, dtype=np.float64)]
    with Pool(2) as pool:
        for want, have in zip(items, pool.map(echo, items), strict=True):
            assert_same(want, have)
        for want, have in zip(items, pool.map(plus_one, items), strict=True):
            assert_same(want + 1, have)


def test_layouts(start_method: str) -> None:
    base = np.random.default_rng(0).random((1024, 1280))  # 10 MiB of float64
    items = [base, np.asfortranarray(base), base[:, ::2], base.T, base.astype(">f8"),
             [base, base.astype(np.float32), b"x" * SHM, bytearray(SHM), memoryview(bytes(SHM))]]
    with Pool(2) as pool:
        got = pool.map(echo, items)
    for want, have in zip(items[:-1], got[:-1], strict=True):
        assert_same(want, have)
    mixed = got[-1]
    assert_same(base, mixed[0])
    assert_same(base.astype(np.float32), mixed[1])
    assert mixed[2:4] == [b"x" * SHM, bytearray(SHM)] and type(mixed[3]) is bytearray
    assert bytes(mixed[4]) == bytes(SHM)


def test_a_result_is_released_when_dropped(start_method: str) -> None:
    with Pool(2) as pool:
        pool.map(big, range(2))  # warm up
        gc.collect()
        fds = open_fds()
        assert memfd_mappings("suitkaise-wire") == 0
        out = pool.map(big, range(4))
        assert [float(a[-1]) for a in out] == [0.0, 1.0, 2.0, 3.0]
        assert memfd_mappings("suitkaise-wire") == 4  # the results are the shared memory, not copies of it
        kept = out[2]
        del out
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 1 and float(kept[0]) == 2.0
        del kept
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 0 and open_fds() == fds


def test_nothing_left_after_many_calls(start_method: str) -> None:
    arrays = [np.full(SHM // 8, float(i)) for i in range(4)]
    with Pool(2) as pool:
        pool.map(plus_one, arrays)
        gc.collect()
        fds = open_fds()
        for _ in range(15):
            out = pool.map(plus_one, arrays)
            assert [float(a[0]) for a in out] == [1.0, 2.0, 3.0, 4.0]
            del out
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 0 and open_fds() == fds


def test_a_discarded_result_leaves_nothing(start_method: str) -> None:
    with Pool(1) as pool:
        assert pool.map(abs, [-1]) == [1]
        gc.collect()
        fds = open_fds()
        with pytest.raises(ResultTimeoutError):
            pool.map.timeout(0.2)(slow_big, [7])
        time.sleep(1.5)  # the late result arrives (or its worker was stopped)
        assert pool.map(abs, [-2]) == [2]  # one worker: read after the late one
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 0 and open_fds() <= fds


def test_a_worker_killed_while_sending_leaves_nothing(start_method: str) -> None:
    with Pool(1) as pool:
        assert pool.map(abs, [-1]) == [1]
        gc.collect()
        fds = open_fds()
        with pytest.raises(WorkerCrashedError):
            pool.map(die_while_sending, [0])
        assert [float(a[0]) for a in pool.map(big, [5])] == [5.0]  # the pool goes on
        gc.collect()
        assert memfd_mappings("suitkaise-wire") == 0 and open_fds() <= fds
