"""The store gives memory back after a peak: a compaction into a region sized for the live
data, and the pages outside it returned to the system (``Store._give_back``)."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkaise.share import Share, _store
from suitkaise.share._store import MIN_REGION, SHRINK_FROM, path_of

TIMEOUT = 60
MB = 1 << 20


def _allocated(share: Share) -> int:
    """Bytes of memory the store file holds (a hole holds none)."""
    return os.stat(path_of(share._sk_name)).st_blocks * 512


def _active(share: Share) -> int:
    st = _store.get_store(share._sk_name)
    with st.locked():
        return st.slot()[_store.S_ASIZE]


def test_deleting_many_names_gives_the_memory_back() -> None:
    # before: 20 MB stayed allocated after every name was deleted (the store never shrank)
    with Share() as share:
        share.keep = {"a": 1}
        for i in range(2500):
            setattr(share, f"k{i}", os.urandom(8192))
        peak = _allocated(share)
        assert peak >= 20 * MB
        for i in range(2500):
            delattr(share, f"k{i}")
        assert _allocated(share) <= 3 * MB, (peak, _allocated(share))
        assert _active(share) < SHRINK_FROM
        assert share.keep == {"a": 1}
        for i in range(300):  # and it grows again as before
            setattr(share, f"j{i}", bytes([i % 256]) * 8192)
        assert share.j299 == bytes([299 % 256]) * 8192


@pytest.mark.parametrize("how", ["replace", "delete", "replace with None"])
@pytest.mark.parametrize("size", [MIN_REGION, 6 * MIN_REGION, 40 * MIN_REGION])
def test_a_big_value_replaced_or_deleted_gives_its_memory_back(how: str, size: int) -> None:
    # before: the region a big value grew stayed allocated after it was replaced or deleted
    with Share() as share:
        share.small = [1, 2, 3]
        share.big = b"x" * size
        peak = _allocated(share)
        assert peak >= size
        if how == "replace":
            share.big = b"y"
        elif how == "delete":
            del share.big
        else:
            share.big = None
        after = _allocated(share)
        assert after <= 3 * MB, (size, peak, after)
        assert share.small == [1, 2, 3]
        assert (share.big if how != "delete" else None) in (b"y", None)


@pytest.mark.parametrize("big", [2 * MB, 8 * MB])
def test_a_region_still_over_a_quarter_live_is_not_moved(big: int) -> None:
    # replacing a value when the rest is still over a quarter of the region (the 9 MB left
    # of 11 or 17 MB): no compaction, which the next writes would only undo
    with Share() as share:
        share.mid = b"m" * (9 * MB)
        share.big = b"x" * big
        region = _active(share)
        assert region >= SHRINK_FROM
        share.big = b"y"
        assert _active(share) == region
        assert share.mid == b"m" * (9 * MB) and share.big == b"y"


def _reader(share: Share, rounds: int, q: Any) -> None:
    bad = 0
    for _ in range(rounds):
        keep = share.keep
        if keep != {"a": list(range(100))}:
            bad += 1
        share.hits += 1
    q.put(bad)


def test_other_processes_read_and_write_right_through_growth_and_shrinking(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share() as share:
        share.keep = {"a": list(range(100))}
        share.hits = 0
        q = ctx.Queue()
        p = ctx.Process(target=_reader, args=(share, 3000, q))
        p.start()
        try:
            for _ in range(3):
                for i in range(600):
                    setattr(share, f"k{i}", os.urandom(16384))
                for i in range(600):
                    delattr(share, f"k{i}")
                share.big = b"z" * (24 * MB)
                share.big = 0
            assert q.get(timeout=TIMEOUT) == 0
        finally:
            p.join(TIMEOUT)
        assert p.exitcode == 0
        assert share.hits == 3000
        assert _allocated(share) <= 3 * MB


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(
    st.tuples(st.sampled_from(["put", "del", "append"]), st.integers(0, 5),
              st.sampled_from([0, 1, 100, 65536, MB, 5 * MB])),
    max_size=25,
))
def test_the_data_survives_any_mix_of_growth_and_shrinking(ops: list[tuple[str, int, int]]) -> None:
    model: dict[str, Any] = {}
    with Share() as share:
        for op, k, size in ops:
            name = f"v{k}"
            if op == "put":
                model[name] = bytes([k]) * size
                setattr(share, name, model[name])
            elif op == "del" and name in model:
                del model[name]
                delattr(share, name)
            elif op == "append":
                if not isinstance(model.get(name), list):
                    model[name] = []
                    setattr(share, name, [])
                model[name].append(size)
                getattr(share, name).append(size)
        for name, value in model.items():
            assert getattr(share, name) == value
        live = sum(len(v) if isinstance(v, bytes) else 64 for v in model.values())
        # what it holds is bounded by the live data (twice, the room to grow) plus the
        # last value it made room for, whatever came before
        assert _allocated(share) <= 4 * live + 2 * max([0, *(size for _, _, size in ops)]) + 4 * MB


def _read_fresh(share: Share, q: Any) -> None:
    q.put((dict(share.d), share.acc.total))  # no cached copy: base + every delta, read here


def _read_in_another_process(share: Share) -> Any:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    p = ctx.Process(target=_read_fresh, args=(share, q))
    p.start()
    try:
        return q.get(timeout=TIMEOUT)
    finally:
        p.join(TIMEOUT)


class _Acc:
    def __init__(self) -> None:
        self.total = 0
        self.log: list[int] = []

    def add(self, n: int) -> None:
        self.total += n
        self.log.append(n)


@pytest.mark.parametrize("pad", [3000, 50_000, 300_000])
def test_a_delta_that_fills_the_region_goes_on_the_moved_head(start_method: str, pad: int) -> None:
    # before: a delta whose commit found the region full compacted it, then linked the
    # delta to where the head *was*: after the next compaction (or, now, at once: the old
    # region's pages go back) the chain ran into other data ("corrupt Share entry")
    with Share() as share:
        share.d = {i: 0 for i in range(200)}
        share.acc = _Acc()
        expect = dict.fromkeys(range(200), 0)
        for i in range(3000):
            share.d[i % 200] = i  # a delta on the dict
            expect[i % 200] = i
            share.acc.add(1)  # a delta on an object
            if i % 7 == 0:
                share.pad = os.urandom(pad)  # fills the region: some deltas find it full
        got = _read_in_another_process(share)
        assert got == (expect, 3000)
        assert dict(share.d) == expect


def _free_bytes(share: Share) -> int:
    st = _store.get_store(share._sk_name)
    with st.locked():
        s = st.slot()
        return s[_store.S_AOFF] + s[_store.S_ASIZE] - s[_store.S_BUMP]


@pytest.mark.parametrize("kind", ["dict item", "method"])
def test_a_delta_that_finds_the_region_full_links_to_the_moved_head(start_method: str, kind: str) -> None:
    # the exact case: the region has less room than the next delta needs, so its commit
    # compacts first. Before: the delta pointed at the head's old place (read back as
    # "corrupt Share entry (unknown kind 0)" once those pages were given back)
    with Share() as share:
        share.d = {i: 0 for i in range(200)}
        share.acc = _Acc()
        share.d[1] = 1  # each now has a delta on its full value
        share.acc.add(1)
        share.pad = b""
        share.pad = b"p" * (_free_bytes(share) - _store.RSIZE - 16)  # leaves < one delta
        assert _free_bytes(share) < 64
        if kind == "dict item":
            share.d[2] = 2
        else:
            share.acc.add(1)
        got = _read_in_another_process(share)
        expect = dict.fromkeys(range(200), 0)
        expect[1] = 1
        if kind == "dict item":
            expect[2] = 2
        assert got == (expect, 1 if kind == "dict item" else 2)


def test_a_compaction_that_fails_for_want_of_space_gives_its_region_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # /dev/shm fills up while a growing write reserves its new region: the write fails and
    # changes nothing, and the pages already reserved for the region (unpublished) go back
    # at once instead of staying allocated until a later compaction happens to reuse them.
    real = _store._reserve
    failing = {"on": False}

    def reserve_then_fail(fd: int, off: int, size: int) -> None:
        real(fd, off, size)  # what a partial posix_fallocate may leave allocated
        if failing["on"]:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(_store, "_reserve", reserve_then_fail)
    with Share() as share:
        share.keep = b"k" * 1000
        before = _allocated(share)
        failing["on"] = True
        with pytest.raises(OSError, match="No space left"):
            share.big = os.urandom(8 * 2**20)
        assert _allocated(share) < before + 2**20, "the failed region's pages stayed allocated"
        assert "big" not in dir(share) and share.keep == b"k" * 1000
        failing["on"] = False
        share.big = b"b" * (8 * 2**20)  # the next growth works, and reads are exact
        assert share.big == b"b" * (8 * 2**20) and share.keep == b"k" * 1000
