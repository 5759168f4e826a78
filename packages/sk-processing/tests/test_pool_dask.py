"""Pool on a real ``dask.distributed`` LocalCluster (worker processes on loopback).

The same calls as on local processes: the four map variants, ``star()``, the
modifiers, lambdas and closures, ``Skprocess`` items, per-item errors with the
remote traceback, timeouts, ``terminate()``, and worker loss (a killed worker
makes Dask rerun the task; a task that kills every worker it runs on ends in a
``ProcessError`` naming the item). No ``start_method`` fixture: the Pool starts
no process here, Dask starts its workers itself (its own ``spawn`` setting).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the Dask backend needs sk-processing[dask]")

import dask  # noqa: E402

from suitkaise.cucumber import deserialize, serialize  # noqa: E402
from suitkaise.processing import (  # noqa: E402
    DaskBackend,
    Pool,
    ProcessError,
    ResultTimeoutError,
    RunError,
    Skprocess,
)
from suitkaise.processing._errors import RemoteTraceback  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def _cluster(**config: Any) -> Any:
    with dask.config.set(config):
        return distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    c = _cluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    cl = distributed.Client(cluster, set_as_default=False)
    try:
        yield cl
    finally:
        cl.close()


@pytest.fixture
def pool(client: Any) -> Iterator[Pool]:
    p = Pool(backend=DaskBackend(client))
    try:
        yield p
    finally:
        p.close()


class ProcessItem(Skprocess):
    def __init__(self, item: int) -> None:
        self.item = item
        self.process_config.runs = 2
        self.total = 0

    def __run__(self) -> None:
        self.total += self.item * 10

    def __result__(self) -> tuple[int, int]:
        return (self.total, os.getpid())


class Summer(Skprocess):
    def __init__(self, a: int, b: int = 100) -> None:
        self.a, self.b = a, b
        self.process_config.runs = 1

    def __run__(self) -> None:
        self.value = self.a + self.b

    def __result__(self) -> int:
        return self.value


class Failing(Skprocess):
    def __init__(self, n: int) -> None:
        self.n = n
        self.process_config.runs = 1

    def __run__(self) -> None:
        if self.n == 2:
            raise ValueError(f"boom {self.n}")


class Unsendable:
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Unsendable refuses to be serialized")


class Unpicklable(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.thing = Unsendable()


def test_four_variants_with_lambdas_and_closures(pool: Pool) -> None:
    k = 7
    assert pool.map(lambda x: x * k, range(50)) == [x * 7 for x in range(50)]
    assert list(pool.imap(lambda x: x + k, range(50))) == [x + 7 for x in range(50)]
    assert sorted(pool.unordered_map(lambda x: -x, range(50))) == sorted(-x for x in range(50))
    assert sorted(pool.unordered_imap(lambda x: x * x, iter(range(50)))) == [x * x for x in range(50)]
    # many chunks, and values that come from the workers (not from the caller)
    pids = set(pool.map(lambda _x: os.getpid(), range(200)))
    assert os.getpid() not in pids
    assert pool.map(abs, []) == []


def test_star_unpacks_only_tuples(pool: Pool) -> None:
    assert pool.star().map(pow, [(2, 3), (3, 2)]) == [8, 9]
    assert pool.star().map(lambda *a: a, [(1, 2), [3, 4], 5]) == [(1, 2), ([3, 4],), (5,)]
    assert list(pool.star().imap(max, [(1, 9), (8, 2)])) == [9, 8]


def test_skprocess_classes_as_items(pool: Pool) -> None:
    out = pool.map(ProcessItem, [1, 2, 3])
    assert [v for v, _pid in out] == [20, 40, 60]
    assert all(pid != os.getpid() for _v, pid in out)
    assert pool.star().map(Summer, [(1, 2), (3,), 5]) == [3, 103, 105]
    with pytest.raises(RunError) as info:
        pool.map(Failing, [1, 2, 3])
    assert isinstance(info.value.original_error, ValueError)
    assert "boom 2" in str(info.value.original_error)


def test_errors_keep_type_and_remote_traceback(pool: Pool) -> None:
    def check(x: int) -> int:
        if x == 13:
            raise KeyError(f"no such thing: {x}")
        return x

    with pytest.raises(KeyError, match="no such thing: 13") as info:
        pool.map(check, range(40))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in check" in cause.tb and "KeyError" in cause.tb
    # imap yields what came before the failing item, then raises
    got: list[int] = []
    with pytest.raises(KeyError):
        for v in pool.imap(check, range(40)):
            got.append(v)
    assert got == list(range(13))
    # the pool stays usable
    assert pool.map(check, [1, 2]) == [1, 2]


def test_untravelable_error_and_system_exit(pool: Pool) -> None:
    def bad(x: int) -> int:
        raise Unpicklable(f"cannot come back {x}")

    with pytest.raises(ProcessError, match=r"item 0 \(0\) raised .*Unpicklable: cannot come back 0") as info:
        pool.map(bad, [0])
    assert "could not be sent" in str(info.value)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in bad" in info.value.__cause__.tb

    def leave(x: int) -> None:
        raise SystemExit(x)

    with pytest.raises(ProcessError, match="SystemExit") as info2:
        pool.map(leave, [4])
    assert isinstance(info2.value.original_error, SystemExit)


def test_unserializable_result_names_the_item(pool: Pool) -> None:
    def make(x: int) -> object:
        return Unsendable() if x == 3 else x

    with pytest.raises(Exception, match="item 3") as info:
        pool.map(make, range(5))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    got: list[object] = []
    with pytest.raises(Exception, match="item 3"):
        for v in pool.imap(make, range(5)):
            got.append(v)
    assert got == [0, 1, 2]


def test_unserializable_item_names_the_item(pool: Pool) -> None:
    class Local:
        def __reduce__(self) -> Any:
            raise TypeError("refuses to travel")

    with pytest.raises(Exception) as info:
        pool.map(abs, [1, Local()])
    assert any("item 1" in note for note in getattr(info.value, "__notes__", []))


def test_imap_is_lazy_with_bounded_read_ahead(pool: Pool) -> None:
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled = i + 1
            yield i

    it = pool.imap(lambda x: x * 2, source())
    first = [next(it) for _ in range(100)]
    it.close()
    assert first == [x * 2 for x in range(100)]
    assert pulled < 100_000  # bounded: the input is infinite
    # slow items: read-ahead stays a few chunks per worker
    pulled = 0
    it2 = pool.imap(lambda x: time.sleep(0.05) or x, source())
    assert [next(it2) for _ in range(3)] == [0, 1, 2]
    it2.close()
    assert pulled <= 40


def test_timeouts_raise_result_timeout_error(pool: Pool) -> None:
    with pytest.raises(ResultTimeoutError) as info:
        pool.map.timeout(0.3)(lambda x: time.sleep(1.0) or x, range(2))
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(ResultTimeoutError):
        list(pool.imap.timeout(0.3)(lambda x: time.sleep(1.0) or x, range(2)))
    # within the limit: results as usual (waits for the cancelled tasks to free the workers)
    assert pool.map.timeout(60)(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]
    assert list(pool.unordered_imap.timeout(60)(abs, [-1])) == [1]


def test_background_asynced_and_chaining(pool: Pool) -> None:
    fut = pool.map.background()(lambda x: x * 3, range(10))
    assert isinstance(fut, Future)
    assert fut.result(timeout=60) == [x * 3 for x in range(10)]
    fut2 = pool.star().imap.timeout(60).background()(pow, [(2, 2), (2, 5)])
    assert fut2.result(timeout=60) == [4, 32]

    async def main() -> tuple[list[int], list[int]]:
        a = await pool.unordered_map.asynced()(abs, [-1, -2])
        b = await pool.imap.asynced().timeout(60)(lambda x: x - 1, range(3))
        return a, b

    a, b = asyncio.run(main())
    assert sorted(a) == [1, 2] and b == [-1, 0, 1]
    with pytest.raises(TypeError):
        pool.map.background().asynced()


def test_progress_callback(pool: Pool) -> None:
    seen: list[tuple[int, int | None]] = []
    assert pool.map(abs, range(30), progress=lambda d, t: seen.append((d, t))) == list(range(30))
    assert seen and seen[-1] == (30, 30)


def _bump_served_share(share: Any, n: int) -> int:
    share.counter += n
    return n


def test_served_share_in_items_is_updated_atomically(pool: Pool) -> None:
    from suitkaise.share import Share

    with Share() as share:
        share.counter = 0
        share.serve()
        assert pool.star().map(_bump_served_share, [(share, 1)] * 40) == [1] * 40
        assert share.counter == 40


def test_backend_forms_and_reprs(cluster: Any, client: Any) -> None:
    address = cluster.scheduler_address
    for p in (Pool(backend=address), Pool(backend=cluster), Pool(3, backend=client)):
        try:
            assert address in repr(p)
            assert p.map(lambda x: x + 1, [1, 2]) == [2, 3]
        finally:
            p.close()
    assert Pool(3, backend=client).workers == 3
    assert Pool(backend=client).workers == 2
    with pytest.raises(TypeError, match="DaskBackend"):
        Pool(backend=42)
    with pytest.raises(ValueError, match="no default Dask client"):
        DaskBackend()
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0, backend=client)


def test_pool_travels_as_configuration(client: Any) -> None:
    original = Pool(backend=client)
    copy = deserialize(serialize(original))
    try:
        assert isinstance(copy, Pool) and repr(copy) == repr(original)
        assert copy.map(lambda x: x * 2, [4]) == [8]
    finally:
        copy.close()


def test_terminate_fails_calls_in_progress(client: Any) -> None:
    pool = Pool(backend=client)
    event_name = f"sk-test-started-{os.getpid()}-{time.monotonic_ns()}"

    def slow(x: int) -> int:
        distributed.Event(event_name).set()  # tell the test a task is running
        time.sleep(0.5)
        return x

    started = time.monotonic()
    fut = pool.map.background()(slow, range(40))
    assert distributed.Event(event_name, client=client).wait(timeout=60)
    pool.terminate()
    with pytest.raises(ProcessError, match="terminate"):
        fut.result(timeout=60)
    assert time.monotonic() - started < 30
    assert pool.map(abs, [-3]) == [3]  # usable afterwards


def test_a_malformed_address_is_refused_at_construction_and_exit_does_not_stall() -> None:
    # before: accepted; the first call raised Dask's own error and left a half-built Client
    # whose __del__ held the interpreter's exit for 60 s
    from sk_testkit import run_fresh

    for bad in ("dusk", "tcp://host-without-port", "foo://x:1"):
        with pytest.raises(ValueError, match=f"DaskBackend: {bad!r} is not a Dask scheduler address"):
            Pool(2, backend=bad)
    t0 = time.monotonic()
    proc = run_fresh(
        "from suitkaise.processing import Pool\n"
        "try:\n"
        "    Pool(2, backend='dusk').map(abs, [-1])\n"
        "except ValueError:\n"
        "    pass\n",
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 30
    assert b"Client.__del__" not in proc.stderr


def test_import_does_not_import_dask() -> None:
    from sk_testkit import run_fresh

    proc = run_fresh(
        "import sys, suitkaise.processing as p\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules\n"
        "assert 'DaskBackend' in p.__all__\n"
        "p.DaskBackend\n"
        "assert 'distributed' not in sys.modules\n"
    )
    assert proc.returncode == 0


# -- worker loss: each test gets its own cluster (workers are replaced) -----------


@pytest.fixture
def fragile_client() -> Iterator[Any]:
    # allowed-failures=1: a task is rerun once after a worker dies, then KilledWorker
    c = _cluster(**{"distributed.scheduler.allowed-failures": 1})
    cl = distributed.Client(c, set_as_default=False)
    try:
        yield cl
    finally:
        cl.close()
        c.close()


def test_worker_loss_reruns_then_raises(fragile_client: Any, tmp_path: Path) -> None:
    pool = Pool(backend=fragile_client)
    marker = tmp_path / "killed-once"

    def dies_once(x: int) -> int:
        if x == 3 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-task
        return x * 10

    # Dask reruns the lost task on another worker: the call still succeeds
    assert pool.map(dies_once, range(8)) == [x * 10 for x in range(8)]
    assert marker.exists()

    def always_dies(x: int) -> int:
        if x == 2:
            os._exit(3)
        return x

    # Dask blames every task that was on the dying worker (queued ones too) once its allowed
    # failures are used up: under load that can be item 1 or 3, queued behind item 2
    with pytest.raises(ProcessError, match=r"item [0-3] \([0-3]\).*KilledWorker") as info:
        pool.map(always_dies, range(4))
    assert type(info.value.__cause__).__name__ == "KilledWorker"
    # the cluster replaced its workers: the pool is still usable
    fragile_client.wait_for_workers(2, timeout=60)
    assert pool.map(lambda x: x - 1, [1, 2]) == [0, 1]


def test_errors_return_and_skip_and_chunksize_on_dask(pool: Pool) -> None:
    def check(x: int) -> int:
        if x % 4 == 1:
            raise ValueError(f"bad {x}")
        return x

    returned = pool.map(check, range(12), errors="return", chunksize=5)
    assert [r if not isinstance(r, BaseException) else str(r) for r in returned] == [
        f"bad {x}" if x % 4 == 1 else x for x in range(12)
    ]
    assert isinstance(returned[1].__cause__, RemoteTraceback)
    assert sorted(pool.unordered_map(check, range(12), errors="skip")) == [x for x in range(12) if x % 4 != 1]
    assert list(pool.imap(check, range(12), errors="skip", chunksize=1)) == [x for x in range(12) if x % 4 != 1]


@pytest.mark.parametrize("method", ["imap", "unordered_imap"])
def test_a_failing_input_yields_every_result_before_it_then_its_error_on_dask(pool: Pool, method: str) -> None:
    """As on the local backend: starting the call does not raise the input's error, every
    item read before it is yielded, then its error is raised."""

    def items(n: int) -> Iterator[int]:
        yield from range(n)
        raise LookupError(f"input broke at {n}")

    for n in (0, 5, 1500):
        results = getattr(pool, method)(lambda x: x * 2, items(n))
        seen: list[int] = []
        with pytest.raises(LookupError, match=f"input broke at {n}"):
            for value in results:
                seen.append(value)
        assert (seen if method == "imap" else sorted(seen)) == [x * 2 for x in range(n)]
    assert pool.map(lambda x: x - 1, [1, 2]) == [0, 1]


def test_submit_on_dask(pool: Pool) -> None:
    future = pool.submit(lambda a, b=0: a * 10 + b, 4, b=2)
    assert future.result(timeout=60) == 42
    assert pool.apply(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0).result(timeout=60)


def test_local_only_controls_are_refused_on_dask(client: Any) -> None:
    with pytest.raises(ValueError, match="item_timeout=, retries="):
        Pool(backend=client).map(abs, [1], item_timeout=1)
    with pytest.raises(ValueError, match="item_timeout=, retries="):
        Pool(backend=client, retries=2).map(abs, [1])
    with pytest.raises(ValueError, match="max_memory_per_worker"):
        Pool(backend=client, max_memory_per_worker="1GB").submit(abs, 1)
