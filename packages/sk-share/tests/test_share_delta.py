"""Updates that cost what changed: delta records, in-place counters, one-record commits.

The cost tests count the bytes a commit adds to the store (its bump pointer), not time:
an update of one key of a 10^5-key dict must write about as much as one of a 10-key dict.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from store_probe import written

from sk_testkit import run_processes
from suitkaise.share import Share
from suitkaise.share._store import path_of

TIMEOUT = 60


class Acc:
    """A big object whose ``add`` declares the one attribute it changes."""

    _shared_meta = {"methods": {"add": {"writes": ["total"]}, "push": {"writes": ["items"]}}}

    def __init__(self, n: int) -> None:
        self.total = 0
        self.items = list(range(n))

    def add(self, k: int) -> int:
        self.total += k
        return self.total

    def push(self, x: int) -> None:
        self.items.append(x)


class Plain:
    """No declaration: a method call writes the whole object (and stays correct)."""

    def __init__(self) -> None:
        self.total = 0
        self.items: list[int] = []

    def add(self, k: int) -> int:
        self.total += k
        self.items.append(k)
        return self.total




# -- cost: bytes written per update, independent of the size -----------------------------------


@pytest.mark.parametrize(
    "setup, update",
    [
        (lambda n: {i: i for i in range(n)}, lambda s: s.v.__setitem__(3, 7)),
        (lambda n: {i: i for i in range(n + 25)}, lambda s: s.v.__delitem__(next(iter(s.v.keys())))),
        (lambda n: list(range(n)), lambda s: s.v.append(1)),
        (lambda n: Acc(n), lambda s: s.v.add(1)),
        (lambda n: Acc(n), lambda s: setattr(s.v, "total", 5)),
    ],
    ids=["d[k]=v", "del d[k]", "append", "declared method", "attribute set"],
)
def test_an_update_writes_what_changed_not_what_is_stored(setup: Any, update: Any) -> None:
    with Share() as share:
        share.v = setup(10)
        small = written(share, lambda: update(share))
        share.v = setup(100_000)
        big = written(share, lambda: update(share))
    assert big <= 2 * small + 64, (small, big)


def test_d_k_plus_equals_writes_what_changed() -> None:
    with Share() as share:
        share.d = {i: 0 for i in range(10)}

        def inc() -> None:
            share.d[3] += 1

        small = written(share, inc)
        share.d = {i: 0 for i in range(100_000)}
        big = written(share, inc)
        assert share.d[3] == 20
    assert big <= 2 * small + 64, (small, big)


def test_counter_plus_equals_is_in_place_and_names_do_not_matter() -> None:
    with Share() as share:
        share.n = 0
        assert written(share, lambda: _inc(share)) == 0
        # (2 000 names: each new name rebuilds the table, so adding n names costs O(n^2);
        # 10^4 took ~50 s alone and timed out on a loaded CI machine)
        for i in range(2_000):
            setattr(share, f"x{i}", i)
        share.s = "a"
        # one name of 2 000: an assignment writes one record, not the table of every name
        assert written(share, lambda: setattr(share, "s", "b")) < 256
        assert written(share, lambda: _inc(share)) == 0
        assert share.n == 40


def _inc(share: Share) -> None:
    share.n += 1


def test_file_stays_proportional_to_live_data_after_many_updates() -> None:
    with Share() as share:
        share.d = {i: i for i in range(1000)}
        share.lst = []
        share.n = 0
        for i in range(30_000):
            share.d[i % 1000] = i
            share.n += 1
            if i % 3 == 0:
                share.lst.append(i)
            if i % 1000 == 999:
                share.lst = []
        size = os.path.getsize(path_of(share._sk_name))
        assert share.n == 30_000 and share.d[5] == 29_005
    assert size <= 8 << 20, size  # a few MiB regions for ~20 KB of live data, not 30 000 writes


# -- semantics across processes ---------------------------------------------------------------


def _mutate(share: Share, q: Any) -> None:
    share.d["new"] = [1, 2]
    del share.d["gone"]
    share.d["n"] += 5
    share.d["new"].append(3)
    share.lst.append("x")
    share.lst.extend([4, 5])
    share.acc.add(2)
    share.acc.push(99)
    share.acc.total += 1
    share.plain.add(7)
    share.s.add(3)
    q.put((share.d, share.lst, share.acc.total, share.acc.items[-1], share.plain.items))


def test_deltas_reach_every_process_and_cached_copies_catch_up(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.d = {"gone": 1, "n": 1}
        share.lst = [0]
        share.acc = Acc(3)
        share.plain = Plain()
        share.s = {1, 2}
        # the parent caches every value first: it must apply the child's deltas on top
        assert share.d == {"gone": 1, "n": 1} and share.lst == [0] and share.acc.total == 0
        run_processes(_mutate, [(share, q)])
        child = q.get(timeout=TIMEOUT)
        assert child == ({"n": 6, "new": [1, 2, 3]}, [0, "x", 4, 5], 3, 99, [7])
        assert share.d == {"n": 6, "new": [1, 2, 3]}
        assert list(share.d) == ["n", "new"]  # order kept
        assert share.lst == [0, "x", 4, 5]
        assert share.acc.total == 3 and share.acc.items == [0, 1, 2, 99]
        assert share.plain.total == 7 and share.s == {1, 2, 3}


def test_snapshot_and_restart_carry_the_deltas() -> None:
    with Share() as share:
        share.d = {i: i for i in range(100)}
        share.d[5] = "five"
        del share.d[6]
        state = share.__serialize__()
        copy = Share.__deserialize__(state, fresh=True)
        try:
            assert copy.d[5] == "five" and 6 not in copy.d and len(copy.d) == 99
        finally:
            copy.stop()
        share.stop()
        share.start()
        assert share.d[5] == "five" and 6 not in share.d
        share.d[7] = "seven"
        assert share.d[7] == "seven" and len(share.d) == 99


def test_a_failed_update_changes_nothing() -> None:
    with Share() as share:
        share.lst = [1, 2]
        with pytest.raises(ValueError):
            share.lst.remove(42)
        with pytest.raises(IndexError):
            share.lst.pop(5)
        assert share.lst == [1, 2]
        share.lst.append(3)
        assert share.lst == [1, 2, 3]


def test_an_iterator_argument_is_not_replayed() -> None:
    with Share() as share:
        share.lst = []
        share.lst.extend(x for x in range(3))
        share.lst.extend(iter([3, 4]))
        assert share.lst == [0, 1, 2, 3, 4]


def test_lock_block_with_deltas_commits_together() -> None:
    with Share() as share:
        share.d = {"a": 0}
        share.lst = []
        with pytest.raises(RuntimeError):
            with share.lock():
                share.d["a"] = 1
                share.lst.append(1)
                raise RuntimeError("abort")
        assert share.d == {"a": 0} and share.lst == []
        with share.lock():
            share.d["a"] = 2
            share.lst.append(2)
        assert share.d == {"a": 2} and share.lst == [2]


# -- property: concurrent random updates equal a sequential model ----------------------------

_OPS = hst.lists(
    hst.one_of(
        hst.tuples(hst.just("set"), hst.integers(0, 7), hst.integers(-5, 5)),
        hst.tuples(hst.just("del"), hst.integers(0, 7), hst.just(0)),
        hst.tuples(hst.just("inc"), hst.integers(0, 3), hst.integers(1, 3)),
        hst.tuples(hst.just("append"), hst.just(0), hst.integers(0, 99)),
        hst.tuples(hst.just("add"), hst.just(0), hst.integers(1, 9)),
    ),
    max_size=40,
)


def _apply_ops(share: Share, p: int, ops: list[tuple[str, int, int]]) -> None:
    for op, k, v in ops:
        if op == "set":  # keys of this process only: sets and deletes do not race
            share.own[f"{p}-{k}"] = v
        elif op == "del":
            if f"{p}-{k}" in share.own:
                del share.own[f"{p}-{k}"]
        elif op == "inc":  # shared keys: += commutes
            share.counts[k] += v
        elif op == "append":
            share.log.append((p, v))
        else:
            share.acc.add(v)


def _model(per_proc: list[list[tuple[str, int, int]]]) -> tuple[dict[str, int], dict[int, int], int]:
    own: dict[str, int] = {}
    counts = dict.fromkeys(range(4), 0)
    total = 0
    for p, ops in enumerate(per_proc):
        for op, k, v in ops:
            if op == "set":
                own[f"{p}-{k}"] = v
            elif op == "del":
                own.pop(f"{p}-{k}", None)
            elif op == "inc":
                counts[k] += v
            elif op == "add":
                total += v
    return own, counts, total


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(per_proc=hst.lists(_OPS, min_size=3, max_size=3))
def test_random_concurrent_updates_match_a_sequential_model(per_proc: list[list[Any]]) -> None:
    with Share() as share:
        share.own = {}
        share.counts = dict.fromkeys(range(4), 0)
        share.log = []
        share.acc = Acc(1000)
        run_processes(_apply_ops, [(share, p, ops) for p, ops in enumerate(per_proc)])
        own, counts, total = _model(per_proc)
        assert share.own == own
        assert share.counts == counts
        assert share.acc.total == total
        log = share.log
        for p, ops in enumerate(per_proc):  # each process's appends, all, in its order
            assert [v for q, v in log if q == p] == [v for op, _, v in ops if op == "append"]
        assert len(log) == sum(op == "append" for ops in per_proc for op, _, _ in ops)


# -- crashes: a writer SIGKILLed in a delta commit or a compaction ---------------------------

KEYS = 40


def _delta_writer(share: Share, ev: Any) -> None:
    i = 0
    pad = "p" * 2000  # big values: the log fills fast, so full rewrites and compactions are frequent
    while True:
        share.d[i % KEYS] = (i, pad)
        share.lst.append(i)
        i += 1
        if i == 50:
            ev.set()


def _check_consistent(d: dict[int, Any], lst: list[int]) -> None:
    # the state after the first n writes, for some n: key k holds the last i < n with i % KEYS == k
    n = max(v[0] for v in d.values()) + 1
    for k, (i, pad) in d.items():
        last = max(j for j in range(n) if j % KEYS == k) if k < n else None
        assert i == last and len(pad) == 2000, (k, i, last, n)
    assert lst == list(range(len(lst)))
    assert len(lst) in (n - 1, n)  # killed between the two writes of an iteration, or not


def test_sigkill_during_delta_commits_and_compactions_leaves_old_or_new(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    rng = random.Random(4321)
    with Share() as share:
        share.d = {}
        share.lst = []
        for _ in range(5):
            ev = ctx.Event()
            p = ctx.Process(target=_delta_writer, args=(share, ev))
            p.start()
            assert ev.wait(TIMEOUT)
            time.sleep(rng.uniform(0.0, 0.2))
            os.kill(p.pid, signal.SIGKILL)
            p.join(TIMEOUT)
            assert p.exitcode == -signal.SIGKILL
            d, lst = share.d, share.lst
            _check_consistent(d, lst)
            share.d = {}  # the next writer starts again from i = 0
            share.lst = []
        share.d[1] = (1, "p" * 2000)
        assert share.d[1][0] == 1


class _Holder:
    def __init__(self) -> None:
        self.v = 0

    def hold(self, ev: Any) -> None:
        ev.set()  # runs under the Share's lock in the child, which is SIGKILLed here
        time.sleep(600)


def _hold(share: Share, ev: Any) -> None:
    share.h.hold(ev)


def test_plus_equals_first_after_a_holder_was_killed(start_method: str) -> None:
    # the += fast path takes the robust mutex itself: it must repair it (EOWNERDEAD)
    ctx = multiprocessing.get_context()
    ev = ctx.Event()
    with Share() as share:
        share.h = _Holder()
        share.n = 0
        p = ctx.Process(target=_hold, args=(share, ev))
        p.start()
        assert ev.wait(TIMEOUT)
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        share.n += 1  # the first operation after the kill
        share.n += 1
        assert share.n == 2 and share._sk_store.recovered == 1


def _grow(share: Share) -> None:
    share.blob = bytes(3 << 20)  # bigger than a region: the file grows, the table moves there


def test_plus_equals_after_another_process_grew_the_file(start_method: str) -> None:
    with Share() as share:
        share.n = 0
        share.n += 1  # this process's mapping and name index are warm
        size = len(share._sk_store.mm)
        run_processes(_grow, [(share,)])
        share.n += 1  # the table now lies beyond this process's mapping
        assert share.n == 2 and len(share._sk_store.mm) > size
        assert len(share.blob) == 3 << 20


class Temp:
    def __init__(self) -> None:
        self._c = 0.0
        self.f = 32.0
        self.log: list[str] = []

    @property
    def c(self) -> float:
        return self._c

    @c.setter
    def c(self, v: float) -> None:  # one assignment, two attributes
        self._c = v
        self.f = v * 9 / 5 + 32


class Logged:
    def __init__(self) -> None:
        object.__setattr__(self, "sets", 0)

    def __setattr__(self, k: str, v: Any) -> None:
        object.__setattr__(self, "sets", self.sets + 1)
        object.__setattr__(self, k, v)


def _set_through_code(share: Share) -> None:
    share.t.c = 100.0
    share.t.c += 10.0
    share.lg.x = 1


def test_attribute_set_through_a_property_or_setattr_writes_what_it_did(start_method: str) -> None:
    with Share() as share:
        share.t = Temp()
        share.lg = Logged()
        assert share.t.f == 32.0 and share.lg.sets == 0  # cached here first
        run_processes(_set_through_code, [(share,)])
        assert share.t.c == 110.0 and share.t.f == 230.0
        assert share.lg.x == 1 and share.lg.sets == 1
