"""Adding and deleting names: a new name, a deleted name and a commit that mixes new names
with updates cost O(changes), in the writer and in every reader.

The cost tests count what the store does (bytes its bump pointer advances, bytes of the names
blob a reader decodes), not time: adding or deleting a name in a Share of 5 000 must cost
about what it costs in a Share of 10.
"""

from __future__ import annotations

import marshal
import multiprocessing
import os
import random
import signal
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from store_probe import slot

from suitkaise.share import Share, _store

TIMEOUT = 60


class _Decoded:
    """``marshal`` for ``_store``, counting the bytes ``loads`` decodes."""

    def __init__(self) -> None:
        self.n = 0
        self.dumps = marshal.dumps

    def loads(self, data: Any) -> Any:
        self.n += len(data)
        return marshal.loads(data)


def _median_bump(share: Share, commit: Any, rounds: int = 21) -> int:
    """Median bytes the store's bump pointer advances per ``commit(i)`` (one commit each;
    commits that compacted the region, which moves it elsewhere, are skipped)."""
    got = []
    for i in range(rounds):
        before = slot(share)
        commit(i)
        after = slot(share)
        if after[_store.S_AOFF] == before[_store.S_AOFF] and after[_store.S_SEQ] == before[_store.S_SEQ] + 1:
            got.append(after[_store.S_BUMP] - before[_store.S_BUMP])
    assert len(got) > rounds // 2, "most samples crossed a compaction"
    return sorted(got)[len(got) // 2]


def _bytes_per_add(share: Share, prefix: str) -> int:
    """Median bytes per new name ``prefix<i>``."""
    return _median_bump(share, lambda i: setattr(share, f"{prefix}{i}", i))


# -- cost: bytes written and decoded per new name -------------------------------------------


def test_adding_a_name_writes_o1_bytes_whatever_the_count() -> None:
    with Share() as share:
        for i in range(10):
            setattr(share, f"x{i}", i)
        small = _bytes_per_add(share, "new")
        for i in range(5_000):
            setattr(share, f"y{i}", i)
        big = _bytes_per_add(share, "newer")
        # the old layout rewrote the names blob and the table of every name: ~80 KB here
        assert big <= small + 64 and big < 512, (small, big)
        s = slot(share)
        share.one_more = 1  # the table and the blob were not moved: the words went in place
        t = slot(share)
        assert (t[_store.S_TOFF], t[_store.S_NOFF], t[_store.S_NBASE]) == (
            s[_store.S_TOFF], s[_store.S_NOFF], s[_store.S_NBASE])
        assert (t[_store.S_TN], t[_store.S_NVER]) == (s[_store.S_TN] + 1, t[_store.S_SEQ])
        assert share.y4999 == 4999 and share.one_more == 1 and share.x3 == 3


def _decoded_per_change(monkeypatch: pytest.MonkeyPatch, share: Share, change: Any, check: Any) -> list[int]:
    """Bytes of the names blob another attachment of the store (its own caches) decodes to
    see each of 200 ``change(i)``, checked by ``check(names, reader, i)`` under its lock."""
    for i in range(3_000):
        setattr(share, f"y{i}", i)
    reader = _store.Store.attach(share._sk_name)
    try:
        with reader.locked():
            assert len(reader.names()) == 3_000
        spy = _Decoded()
        monkeypatch.setattr(_store, "marshal", spy)
        per_change = []
        for i in range(200):
            change(i)
            before = spy.n
            with reader.locked():
                check(reader.names(), reader, i)
            per_change.append(spy.n - before)
        return per_change
    finally:
        reader.close()


def test_a_reader_decodes_only_the_names_added_since_it_last_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(names: dict[str, int], reader: Any, i: int) -> None:
        assert names[f"z{i}"] == 3_000 + i

    with Share() as share:
        per_add = _decoded_per_change(monkeypatch, share, lambda i: setattr(share, f"z{i}", i), check)
        # the old layout decoded the whole blob (~30 KB) after every add
        assert sorted(per_add)[100] < 64, per_add
        assert sum(per_add) < 200 * 64 + 3 * 50_000, sum(per_add)  # + the few regrowths


def test_a_compaction_keeps_the_names_a_reader_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    with Share() as share:
        for i in range(3_000):
            setattr(share, f"y{i}", i)
        reader = _store.Store.attach(share._sk_name)
        try:
            with reader.locked():
                reader.names()
            spy = _Decoded()
            monkeypatch.setattr(_store, "marshal", spy)
            region = slot(share)[_store.S_AOFF]
            for i in range(100):  # big values of one name until the region is compacted
                share.big = bytes([i]) * 200_000
                if slot(share)[_store.S_AOFF] != region:
                    break
            assert slot(share)[_store.S_AOFF] != region, "no compaction"
            share.y7 = "seven"
            with reader.locked():
                names = reader.names()
                assert len(names) == 3_001 and reader.value("y7") is not None
            assert spy.n < 256, spy.n  # the new piece ("big"), not the 3 000 names again
            assert share.y7 == "seven" and share.y2999 == 2999
        finally:
            reader.close()


def _read_after_each_change(share: Share, conn: Any, kind: str) -> None:
    """The child of ``_decoded_in_a_reader_process``: after each add (``kind`` "add": reads
    ``z<i>``) or delete ("delete": ``y<i>`` is gone, ``y<i+1>`` still there), the bytes of the
    names blob it decoded to see it."""
    spy = _Decoded()
    _store.marshal = spy  # type: ignore[assignment]  # this child's module only
    per_change = []
    assert share.y2999 == 2999  # (the names decoded once, before the first change)
    while True:
        i = conn.recv()
        if i is None:
            break
        before = spy.n
        if kind == "add":
            assert getattr(share, f"z{i}") == i
        else:
            assert not hasattr(share, f"y{i}") and getattr(share, f"y{i + 1}") == i + 1
        per_change.append(spy.n - before)
        conn.send(i)
    conn.send(per_change)


def _decoded_in_a_reader_process(kind: str, change: Any) -> list[int]:
    """Bytes a reader process decodes per ``change(share, i)`` of 200, in lockstep, on a
    Share of 3 000 names."""
    ctx = multiprocessing.get_context()
    here, there = ctx.Pipe()
    with Share() as share:
        for i in range(3_000):
            setattr(share, f"y{i}", i)
        p = ctx.Process(target=_read_after_each_change, args=(share, there, kind))
        p.start()
        try:
            for i in range(200):
                change(share, i)
                here.send(i)  # lockstep: the child reads it before the next change
                assert here.poll(TIMEOUT) and here.recv() == i
            here.send(None)
            assert here.poll(TIMEOUT)
            per_change: list[int] = here.recv()
        finally:
            p.join(TIMEOUT)
            if p.is_alive():  # pragma: no cover - a failure above
                p.kill()
                p.join()
        assert p.exitcode == 0
    assert len(per_change) == 200
    return per_change


def test_a_reader_process_reading_after_each_add_decodes_o1_bytes(start_method: str) -> None:
    per_add = _decoded_in_a_reader_process("add", lambda share, i: setattr(share, f"z{i}", i))
    assert sorted(per_add)[100] < 64, per_add


def _bytes_per_delete(share: Share, prefix: str, rounds: int = 21) -> int:
    """Median bytes per ``del share.<name>`` (of names ``prefix<i>`` added first)."""
    for i in range(rounds):
        setattr(share, f"{prefix}{i}", i)
    return _median_bump(share, lambda i: delattr(share, f"{prefix}{i}"), rounds)


def test_deleting_a_name_writes_o1_bytes_whatever_the_count() -> None:
    with Share() as share:
        for i in range(10):
            setattr(share, f"x{i}", i)
        small = _bytes_per_delete(share, "gone")
        for i in range(5_000):
            setattr(share, f"y{i}", i)
        big = _bytes_per_delete(share, "later")
        # the old code rebuilt the names blob and the table of every name: ~60 KB here
        assert big <= small + 64 and big < 512, (small, big)
        s = slot(share)
        del share.y17  # one piece past the blob's end, published by the slot: nothing moved
        t = slot(share)
        assert (t[_store.S_TOFF], t[_store.S_NOFF], t[_store.S_NBASE], t[_store.S_TN]) == (
            s[_store.S_TOFF], s[_store.S_NOFF], s[_store.S_NBASE], s[_store.S_TN])
        assert t[_store.S_NVER] == t[_store.S_SEQ]
        assert not hasattr(share, "y17") and share.y4999 == 4999 and share.x3 == 3
        share.y17 = "back"  # re-added: a new entry
        assert share.y17 == "back" and slot(share)[_store.S_TN] == s[_store.S_TN] + 1


def test_a_commit_of_new_names_and_updates_writes_o_changes_bytes() -> None:
    def mixed(share: Share, base: int) -> int:
        def commit(i: int) -> None:
            with share.lock():
                share.x1 = -(base + i)
                share.x2 = base + i
                setattr(share, f"m{base + i}", base + i)

        return _median_bump(share, commit)

    with Share() as share:
        for i in range(10):
            setattr(share, f"x{i}", i)
        small = mixed(share, 0)
        for i in range(5_000):
            setattr(share, f"y{i}", i)
        big = mixed(share, 100)
        # the old code rebuilt the names blob and the table of every name: ~60 KB here
        assert 0 < big <= small + 64 and big < 1024, (small, big)
        assert (share.x1, share.x2, share.m120, share.x0, share.y4999) == (-120, 120, 120, 0, 4999)
        assert list(share.reconnect_all())[:3] == ["x0", "x1", "x2"]  # an update keeps a name's place


def test_a_reader_decodes_only_the_names_deleted_since_it_last_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(names: dict[str, int], reader: Any, i: int) -> None:
        assert f"y{i}" not in names and len(names) == 2_999 - i
        assert reader.value(f"y{i + 1}") is not None

    with Share() as share:
        per_delete = _decoded_per_change(monkeypatch, share, lambda i: delattr(share, f"y{i}"), check)
        # the old code gave the blob a new base: every delete decoded every name (~30 KB)
        assert sorted(per_delete)[100] < 64, per_delete
        assert sum(per_delete) < 200 * 64 + 3 * 50_000, sum(per_delete)


def test_deleting_most_names_drops_the_dead_entries_now_and_then() -> None:
    with Share() as share:
        for i in range(2_000):
            setattr(share, f"y{i}", i)
        bases = set()
        for i in range(1_990):
            delattr(share, f"y{i}")
            s = slot(share)
            bases.add(s[_store.S_NBASE])
            assert s[_store.S_TN] <= 2 * (2_000 - i - 1) + 65  # dead entries stay bounded
        # a new base each time the dead outnumber the live: about log2(2 000) rebuilds
        assert 3 <= len(bases) <= 16, len(bases)
        assert share.reconnect_all() == {f"y{i}": i for i in range(1_990, 2_000)}


def test_a_reader_process_reading_after_each_delete_decodes_o1_bytes(start_method: str) -> None:
    per_delete = _decoded_in_a_reader_process("delete", lambda share, i: delattr(share, f"y{i}"))
    assert sorted(per_delete)[100] < 64, per_delete


# -- property: adds, deletes, updates and clear from two processes equal a dict model -------

_STEP = hst.one_of(
    hst.tuples(hst.just("set"), hst.integers(0, 30), hst.integers(-9, 9)),
    hst.tuples(hst.just("del"), hst.integers(0, 30), hst.just(0)),
    hst.tuples(hst.just("bulk"), hst.integers(0, 400), hst.integers(1, 150)),  # many new names, one at a time
    hst.tuples(hst.just("block"), hst.integers(0, 400), hst.integers(1, 20)),  # several in one commit
    hst.tuples(hst.just("clear"), hst.just(0), hst.just(0)),
    hst.tuples(hst.just("unbulk"), hst.integers(0, 400), hst.integers(1, 300)),  # many deletes, one at a time
    hst.tuples(hst.just("mixed"), hst.integers(0, 400), hst.integers(1, 20)),  # adds, updates, deletes in one commit
)


def _apply(share: Share, op: str, k: int, v: int) -> None:
    if op == "set":
        setattr(share, f"n{k}", v)
    elif op == "del":
        if hasattr(share, f"n{k}"):
            delattr(share, f"n{k}")
    elif op == "bulk":
        for j in range(k, k + v):
            setattr(share, f"b{j}", j)
    elif op == "block":
        with share.lock():
            for j in range(k, k + v):
                setattr(share, f"c{j}", -j)
    elif op == "unbulk":
        for j in range(k, k + v):
            if hasattr(share, f"b{j}"):
                delattr(share, f"b{j}")
    elif op == "mixed":
        with share.lock():
            for j in range(k, k + v):
                setattr(share, f"b{j}", -j)  # new or existing
                if hasattr(share, f"c{j}"):
                    delattr(share, f"c{j}")
            share.n0 = k
    else:
        share.clear()


def _apply_model(model: dict[str, int], op: str, k: int, v: int) -> None:
    if op == "set":
        model[f"n{k}"] = v
    elif op == "del":
        model.pop(f"n{k}", None)
    elif op == "bulk":
        model.update({f"b{j}": j for j in range(k, k + v)})
    elif op == "block":
        model.update({f"c{j}": -j for j in range(k, k + v)})
    elif op == "unbulk":
        for j in range(k, k + v):
            model.pop(f"b{j}", None)
    elif op == "mixed":
        for j in range(k, k + v):
            model[f"b{j}"] = -j
            model.pop(f"c{j}", None)
        model["n0"] = k
    else:
        model.clear()


def _serve_steps(share: Share, conn: Any) -> None:
    while True:
        step = conn.recv()
        if step is None:
            break
        if step != "look":
            _apply(share, *step)
        conn.send(share.reconnect_all())


@settings(max_examples=16, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=hst.lists(hst.tuples(hst.booleans(), _STEP), min_size=1, max_size=20))
def test_adds_deletes_updates_and_clear_from_two_processes_match_a_dict_model(
    start_method: str, steps: list[tuple[bool, tuple[str, int, int]]],
) -> None:
    ctx = multiprocessing.get_context()
    here, there = ctx.Pipe()
    model: dict[str, int] = {}
    with Share() as share:
        p = ctx.Process(target=_serve_steps, args=(share, there))
        p.start()
        try:
            for in_child, step in steps:
                if not in_child:
                    _apply(share, *step)
                here.send(step if in_child else "look")  # the child applies it, or only looks
                assert here.poll(TIMEOUT)
                seen_there = here.recv()
                _apply_model(model, *step)
                assert seen_there == model
                assert share.reconnect_all() == model
                assert list(seen_there) == list(model)  # the same order too (dict semantics)
            here.send(None)
        finally:
            p.join(TIMEOUT)
            if p.is_alive():  # pragma: no cover - a failure above
                p.kill()
                p.join()
        assert p.exitcode == 0


# -- crashes: a writer SIGKILLed while adding names --------------------------------------------


def _name_adder(share: Share, start: int, ev: Any) -> None:
    i = start
    while True:
        setattr(share, f"a{i}", i)
        i += 1
        if i == start + 30:
            ev.set()


def test_sigkill_while_adding_names_leaves_old_or_new(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    rng = random.Random(2468)
    with Share() as share:
        share.keep = "k"
        added = 0
        for _ in range(5):
            ev = ctx.Event()
            p = ctx.Process(target=_name_adder, args=(share, added, ev))
            p.start()
            assert ev.wait(TIMEOUT)
            time.sleep(rng.uniform(0.0, 0.3))  # land the kill at a random point of an add
            os.kill(p.pid, signal.SIGKILL)
            p.join(TIMEOUT)
            assert p.exitcode == -signal.SIGKILL
            # the names added so far are a0 .. a(n-1), each holding its number, and nothing else
            seen = share.reconnect_all()
            assert seen.pop("keep") == "k"
            n = len(seen)
            assert n >= added + 30
            assert seen == {f"a{i}": i for i in range(n)}, sorted(set(seen) ^ {f"a{i}" for i in range(n)})[:5]
            added = n
            # the store takes more names and deletions after the kill
            share.after = added
            assert share.after == added
            del share.after
        assert share.reconnect_all() == {"keep": "k", **{f"a{i}": i for i in range(added)}}


def _name_deleter(share: Share, start: int, n: int, ev: Any) -> None:
    """Slides a window of ``n`` names: deletes its oldest name, then adds one past its end."""
    i = start
    while True:
        delattr(share, f"a{i}")
        setattr(share, f"a{i + n}", i + n)
        i += 1
        if i == start + 30:
            ev.set()


def test_sigkill_while_deleting_names_leaves_old_or_new(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    rng = random.Random(1357)
    n = 300
    with Share() as share:
        share.keep = "k"
        for i in range(n):
            setattr(share, f"a{i}", i)
        lo = 0
        for _ in range(5):
            ev = ctx.Event()
            p = ctx.Process(target=_name_deleter, args=(share, lo, n, ev))
            p.start()
            assert ev.wait(TIMEOUT)
            time.sleep(rng.uniform(0.0, 0.3))  # land the kill at a random point of a delete
            os.kill(p.pid, signal.SIGKILL)
            p.join(TIMEOUT)
            assert p.exitcode == -signal.SIGKILL
            # a window a(lo) .. a(hi-1), each holding its number: n names, or n-1 between a
            # delete and its add; dead entries dropped by rebuilds on the way (~every 180)
            seen = share.reconnect_all()
            assert seen.pop("keep") == "k"
            new_lo = min(int(k[1:]) for k in seen)
            assert new_lo >= lo + 30
            hi = new_lo + len(seen)
            assert len(seen) in (n, n - 1), len(seen)
            assert seen == {f"a{i}": i for i in range(new_lo, hi)}, sorted(set(seen) ^ {f"a{i}" for i in range(new_lo, hi)})[:5]
            if len(seen) == n - 1:
                setattr(share, f"a{hi}", hi)  # finish the killed step
            lo = new_lo
            share.after = lo  # the store takes more names and deletions after the kill
            assert share.after == lo
            del share.after
        assert share.reconnect_all() == {"keep": "k", **{f"a{i}": i for i in range(lo, lo + n)}}
