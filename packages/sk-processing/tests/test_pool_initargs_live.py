"""Live objects in a Pool's initargs (or initializer closure) reach every worker shared.

The ``multiprocessing.Pool`` idiom: hand each worker a queue (for logs, progress), a lock,
an event or a shared value through ``initializer=``/``initargs=``. Every worker, the
replacements of crashed or recycled ones included, gets the very object under fork and
the same OS resource under spawn/forkserver (``_forkpayload.LiveArgs``). These used to be
refused when the Pool was built: cucumber refuses them anywhere but at a process's start.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

from suitkaise.processing import Pool, ProcessError, worker_id, worker_state

pytestmark = pytest.mark.timeout(180)


def keep(**objs: Any) -> None:
    worker_state().update(objs)


def keep_queue(queue: Any) -> None:
    keep(queue=queue)


def put_item(x: int) -> int:
    worker_state()["queue"].put((x, os.getpid(), worker_id()))
    return x


class SlowToPickle:
    """Its queue's feeder thread is still pickling it when the worker's item is done."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __reduce__(self) -> Any:
        time.sleep(1.5)
        return (SlowToPickle, (self.x,))


def put_slow_item(x: int) -> int:
    worker_state()["queue"].put(SlowToPickle(x))
    return x


def crash_once_then_put(flag: str, x: int) -> int:
    try:  # exactly one worker wins the flag, and dies: its replacement must get the queue
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return put_item(x)
    os._exit(3)


def keep_lock_and_value(lock: Any, value: Any) -> None:
    keep(lock=lock, value=value)


def add_one_slowly(_: int) -> None:
    state = worker_state()
    with state["lock"]:  # a read-modify-write only a shared lock keeps whole
        seen = state["value"].value
        time.sleep(0.002)
        state["value"].value = seen + 1


def keep_event(event: Any) -> None:
    keep(event=event)


def event_is_set(_: int) -> bool:
    return bool(worker_state()["event"].is_set())


def initializer_holding(queue: Any) -> Any:
    def init() -> None:  # a closure: the queue travels in its cell
        keep(queue=queue)

    return init


def _drain(queue: Any, n: int) -> list[Any]:
    try:
        return sorted(queue.get(timeout=30) for _ in range(n))
    finally:
        queue.close()
        queue.join_thread()


def test_workers_put_into_a_queue_the_parent_reads(start_method: str) -> None:
    queue = multiprocessing.Queue()
    # recycled after 3 items: replacements get the same queue
    with Pool(2, initializer=keep_queue, initargs=(queue,), max_tasks_per_worker=3) as pool:
        assert pool.map(put_item, range(20)) == list(range(20))
    got = _drain(queue, 20)
    assert [x for x, _, _ in got] == list(range(20))  # every item, from every worker
    assert len({pid for _, pid, _ in got}) >= 7  # 20 items, 3 per worker: all of them put


def test_what_a_recycled_worker_put_last_is_not_lost(start_method: str) -> None:
    queue = multiprocessing.Queue()
    # each worker exits right after its item, its put still in the feeder thread: the parent
    # kills a worker that has not exited a second after closing its socket
    with Pool(2, initializer=keep_queue, initargs=(queue,), max_tasks_per_worker=1) as pool:
        assert pool.map(put_slow_item, range(3)) == [0, 1, 2]
    assert sorted(item.x for item in _drain_unsorted(queue, 3)) == [0, 1, 2]


def _drain_unsorted(queue: Any, n: int) -> list[Any]:
    try:
        return [queue.get(timeout=30) for _ in range(n)]
    finally:
        queue.close()
        queue.join_thread()


def test_a_worker_replacing_a_crashed_one_gets_the_queue(start_method: str, tmp_path: Path) -> None:
    queue = multiprocessing.Queue()
    flag = str(tmp_path / "crashed")
    with Pool(2, initializer=keep_queue, initargs=(queue,)) as pool:
        with pytest.raises(ProcessError, match="exited with code 3"):
            pool.star().map(crash_once_then_put, [(flag, x) for x in range(4)])
        assert pool.star().map(crash_once_then_put, [(flag, x) for x in range(10, 30)]) == list(range(10, 30))
    try:  # the failed call's items that ran before the crash may be there too
        second: list[int] = []
        while len(second) < 20:
            x = queue.get(timeout=30)[0]
            if x >= 10:
                second.append(x)
    finally:
        queue.close()
        queue.join_thread()
    assert sorted(second) == list(range(10, 30))


def test_a_lock_in_initargs_excludes_across_workers(start_method: str) -> None:
    lock = multiprocessing.Lock()
    value = multiprocessing.RawValue("i", 0)  # no lock of its own: only the shared one guards it
    with Pool(2, initializer=keep_lock_and_value, initargs=(lock, value)) as pool:
        pool.map(add_one_slowly, range(60))
    assert value.value == 60  # a copied lock per worker would lose updates


def test_an_event_the_parent_sets_is_seen_by_the_workers(start_method: str) -> None:
    event = multiprocessing.Event()
    with Pool(2, initializer=keep_event, initargs=(event,)) as pool:
        assert set(pool.map(event_is_set, range(4))) == {False}
        event.set()  # after the workers started: only a shared event can tell them
        assert set(pool.map(event_is_set, range(4))) == {True}


def test_an_initializer_closure_holding_a_queue(start_method: str) -> None:
    queue = multiprocessing.Queue()
    with Pool(2, initializer=initializer_holding(queue)) as pool:
        pool.map(put_item, range(10))
    assert [x for x, _, _ in _drain(queue, 10)] == list(range(10))
