"""Share across real processes (plain multiprocessing.Process, every start method)."""

from __future__ import annotations

import multiprocessing
import pickle
from typing import Any

import pytest

from sk_testkit import run_processes
from suitkaise import cucumber
from suitkaise.share import Share

TIMEOUT = 90


class Bag:
    def __init__(self) -> None:
        self.total = 0
        self.items: list[int] = []
        self.meta: dict[str, int] = {"n": 0}

    def add(self, n: int) -> int:
        self.total += n
        return self.total


def _increment(share: Share, n: int) -> None:
    for _ in range(n):
        share.counter += 1


def test_counter_8x10000_is_exact(start_method: str) -> None:
    with Share() as share:
        share.counter = 0
        run_processes(_increment, [(share, 10_000)] * 8)
        assert share.counter == 80_000


def _add_then_read(share: Share, q: Any, n: int) -> None:
    got = []
    for _ in range(n):
        share.counter += 1
        got.append(share.counter)  # fresh: at least this process's own count so far
    q.put(got)


def test_reads_after_concurrent_adds_are_fresh_and_monotonic(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.counter = 0
        run_processes(_add_then_read, [(share, q, 50)] * 4)
        runs = [q.get(timeout=TIMEOUT) for _ in range(4)]
        for got in runs:
            # never older than this process's own last completed write, never decreasing
            assert all(v >= i + 1 for i, v in enumerate(got)), got
            assert got == sorted(got) and got[-1] <= 200
        assert share.counter == 200


def _mutate_everything(share: Share, n: int) -> None:
    for i in range(n):
        share.lst.append(i)
        share.d["k"] += 1
        share.bag.add(1)
        share.bag.items.append(i)
        share.bag.meta["n"] += 1
        share.total += 0.5


def test_nested_mutations_and_methods_are_never_lost(start_method: str) -> None:
    with Share() as share:
        share.lst = []
        share.d = {"k": 0}
        share.bag = Bag()
        share.total = 0.0
        run_processes(_mutate_everything, [(share, 100)] * 4)
        assert len(share.lst) == 400 and sorted(share.lst) == sorted(list(range(100)) * 4)
        assert share.d["k"] == 400
        assert share.bag.total == 400 and len(share.bag.items) == 400
        assert share.bag.meta == {"n": 400}
        assert share.total == 200.0


def _create_attrs(share: Share) -> None:
    share.made_in_child = {"pid": multiprocessing.current_process().pid}
    share.child_obj = Bag()
    share.child_obj.add(7)


def test_attributes_created_in_child_outlive_it(start_method: str) -> None:
    with Share() as share:
        run_processes(_create_attrs, [(share,)])
        assert isinstance(share.made_in_child["pid"], int)
        assert share.child_obj.total == 7
        share.child_obj.add(1)
        assert share.child_obj.total == 8


def _ping_pong(share: Share, ev_write: Any, ev_read: Any, rounds: int) -> None:
    # read-after-write across processes: each read sees the write that preceded it
    for i in range(rounds):
        assert ev_write.wait(TIMEOUT)
        ev_write.clear()
        assert share.value == i, (share.value, i)
        assert share.bag.items == list(range(i + 1))
        share.ack = i
        ev_read.set()


def test_reads_see_every_earlier_write(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    ev_write, ev_read = ctx.Event(), ctx.Event()
    with Share() as share:
        share.bag = Bag()
        p = ctx.Process(target=_ping_pong, args=(share, ev_write, ev_read, 30))
        p.start()
        try:
            for i in range(30):
                share.value = i
                share.bag.items.append(i)
                ev_write.set()
                assert ev_read.wait(TIMEOUT)
                ev_read.clear()
                assert share.ack == i
        finally:
            p.join(TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join()
        assert p.exitcode == 0


def _writer(share: Share, n: int) -> None:
    for i in range(n):
        share.pair = (i, -i, str(i) * 50)
        share.blob = bytes([i % 256]) * 20_000


def _reader(share: Share, n: int, q: Any) -> None:
    bad = 0
    for _ in range(n):
        a, b, c = share.pair
        if a != -b or c != str(a) * 50:
            bad += 1
        blob = share.blob
        if blob.count(blob[0]) != len(blob):
            bad += 1
    q.put(bad)


def test_mixed_readers_and_writers_never_see_torn_values(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.pair = (0, 0, "0" * 50)
        share.blob = bytes(20_000)
        procs = [ctx.Process(target=_writer, args=(share, 400)) for _ in range(2)]
        procs += [ctx.Process(target=_reader, args=(share, 400, q)) for _ in range(2)]
        for p in procs:
            p.start()
        bad = [q.get(timeout=TIMEOUT) for _ in range(2)]
        for p in procs:
            p.join(TIMEOUT)
        assert bad == [0, 0]
        assert all(p.exitcode == 0 for p in procs)


def _via_cucumber(data: bytes, q: Any) -> None:
    share = cucumber.deserialize(data)
    share.counter += 5
    share.lst.append("child")
    q.put(pickle.dumps((share.counter, type(share.counter).__name__)))


def test_share_travels_through_cucumber(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.counter = 1
        share.lst = []
        run_processes(_via_cucumber, [(cucumber.serialize(share), q)])
        assert pickle.loads(q.get(timeout=TIMEOUT)) == (6, "int")
        assert share.counter == 6 and share.lst == ["child"]


def _return_real(share: Share, q: Any) -> None:
    q.put(share.counter)  # must pickle: a real int, not a proxy
    q.put(share.lst)  # a proxy pickles as a real copy


def test_values_read_in_workers_are_real(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.counter = 41
        share.lst = [1, 2]
        run_processes(_return_real, [(share, q)])
        v, lst = q.get(timeout=TIMEOUT), q.get(timeout=TIMEOUT)
        assert type(v) is int and v == 41
        assert type(lst) is list and lst == [1, 2]


def _timer_worker(share: Share, n: int) -> None:
    for i in range(n):
        share.timer.add_time(0.01 * (i + 1))


def test_sktimer_through_share(start_method: str) -> None:
    timing = pytest.importorskip("suitkaise.timing")
    sktimer = getattr(timing, "Sktimer", None)
    if sktimer is None or not hasattr(sktimer, "_shared_meta"):
        pytest.skip("suitkaise.timing.Sktimer with Share hooks is not available yet")
    with Share() as share:
        share.timer = sktimer()
        run_processes(_timer_worker, [(share, 10)] * 4)
        assert share.timer.num_times == 40
        assert abs(share.timer.mean - 0.055) < 1e-9
        with pytest.raises(TypeError, match="cannot be used through Share"):
            share.timer.start()
