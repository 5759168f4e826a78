"""The lean method-call path (``_calls.py``): one locked step, no transaction object.

``share.o.m()`` on a user object runs ``m`` on the cached copy under the lock and commits
what it changed as one delta record; what the path does not take, and every case where it
cannot vouch for a delta (the method raised, the log is full, a nested operation committed
during the call, the method was replaced on the class), ends as the general path would.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

from sk_testkit import run_processes
from suitkaise.share import Share, _ops


class Acc:
    """No declaration: ``add`` is read from its bytecode."""

    def __init__(self) -> None:
        self.total = 0
        self.label = ""

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def fail_after(self, n: int) -> None:
        self.total += n
        raise ValueError("after the change")


class Declared:
    _shared_meta = {"methods": {"inc": {"writes": ["n"]}, "peek": {"reads": ["n"]}}}

    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n

    def peek(self) -> int:
        return self.n


class Holder:
    def __init__(self) -> None:
        self.inner = Acc()
        self.by_key = {"k": Acc()}


def _fresh(share: Share, name: str) -> Any:
    """``name`` decoded from the store (this process's cached copy dropped first)."""
    share._sk_store.cache.clear()
    return getattr(share, name)


def test_a_method_call_runs_without_a_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    with Share() as share:
        share.acc = Acc()
        share.dec = Declared()
        share.box = Holder()

        def no_transaction(*a: Any, **k: Any) -> Any:
            raise AssertionError("the general path ran")

        monkeypatch.setattr(_ops, "run", no_transaction)
        got = []
        for _ in range(120):  # past the log limit: the whole value is written in between
            # (calls outside `assert`: pytest's rewriting makes `share.acc` a plain read)
            got.append((share.acc.add(1), share.dec.inc(), share.dec.peek(), share.box.inner.add(2),
                        share.box.by_key["k"].add(3)))
        monkeypatch.undo()
        assert got == [(i, i, i, 2 * i, 3 * i) for i in range(1, 121)]
        assert _fresh(share, "acc").total == 120
        assert _fresh(share, "dec").n == 120
        box = _fresh(share, "box")
        assert box.inner.total == 240 and box.by_key["k"].total == 360


def test_a_method_that_raises_commits_nothing_and_drops_the_changed_copy() -> None:
    with Share() as share:
        share.acc = Acc()
        share.acc.add(1)
        with pytest.raises(ValueError, match="after the change"):
            share.acc.fail_after(5)
        assert share.acc.total == 1  # this process's half-changed copy was not kept
        assert _fresh(share, "acc").total == 1


def test_a_method_replaced_on_the_class_is_read_again() -> None:
    class Local:
        def __init__(self) -> None:
            self.total = 0

        def add(self, n: int) -> None:
            self.total += n

    def add_and_note(self: Any, n: int) -> None:
        self.total += n
        self.note = n  # an attribute the first add never named

    with Share() as share:
        share.o = Local()
        share.o.add(1)  # planned for the first function
        Local.add = add_and_note  # type: ignore[method-assign]
        share.o.add(2)
        o = _fresh(share, "o")
        assert (o.total, o.note) == (3, 2)


def _helper_class() -> type:
    class WithHelper:
        def __init__(self) -> None:
            self.count = 0
            self.items: list[int] = []

        def add(self, x: int) -> None:
            self._helper(x)

        def _helper(self, x: int) -> None:
            self.count += 1

    return WithHelper


def _helper_v2(self: Any, x: int) -> None:
    self.count += 1
    self.items.append(x)  # an attribute the first helper never named


@pytest.mark.parametrize("how", ["assign", "code", "mock"])
def test_a_helper_replaced_after_the_first_call_loses_no_write(how: str) -> None:
    """A method's plan covers the methods it calls on self: replacing one of them (or the
    code of the method itself, as IPython's autoreload does) after the first call must not
    leave the new attributes out of the commit (before: written to the local copy only)."""
    from unittest import mock

    cls = _helper_class()
    with Share() as share:
        share.o = cls()
        share.o.add(1)  # planned with the first helper
        if how == "assign":
            cls._helper = _helper_v2  # type: ignore[attr-defined]
        elif how == "code":
            cls.add.__code__ = _helper_v2.__code__  # type: ignore[attr-defined]
        else:
            patcher = mock.patch.object(cls, "_helper", _helper_v2)
            patcher.start()
        try:
            share.o.add(2)
            share.o.add(3)
            o = _fresh(share, "o")
            assert (o.items, o.count) == ([2, 3], 3)
        finally:
            if how == "mock":
                patcher.stop()
        share.o.add(4)  # (mock: the first helper again)
        o = _fresh(share, "o")
        assert (o.items, o.count) == ([2, 3] if how == "mock" else [2, 3, 4], 4)


NESTED: Share | None = None


class UsesTheShare:
    """A method that runs another operation of the same Share while its own call holds the
    lock (the nested operation commits first; the call then writes the whole object)."""

    def __init__(self) -> None:
        self.total = 0

    def add_and_count(self) -> None:
        assert NESTED is not None
        NESTED.counter += 1
        NESTED.log.append(self.total)
        self.total += 1


def test_a_nested_operation_during_a_call_loses_nothing() -> None:
    global NESTED
    with Share() as share:
        NESTED = share
        try:
            share.o = UsesTheShare()
            share.counter = 0
            share.log = []
            for _ in range(3):
                share.o.add_and_count()
            assert share.counter == 3 and share.log == [0, 1, 2]
            assert _fresh(share, "o").total == 3
        finally:
            NESTED = None


def _call_many(share: Share, n: int) -> None:
    for _ in range(n):
        share.acc.add(1)
        share.dec.inc()
        share.box.inner.add(1)


def test_processes_calling_methods_lose_nothing(start_method: str) -> None:
    with Share() as share:
        share.acc = Acc()
        share.dec = Declared()
        share.box = Holder()
        share.acc.add(0)  # the parent's cached copy: caught up below
        run_processes(_call_many, [(share, 150)] * 3)
        after = share.acc.add(1), share.dec.peek()
        assert after == (451, 450)
        assert share.box.inner.total == 450
        assert _fresh(share, "acc").total == 451


def test_the_log_full_rewrite_builds_no_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ~50th call on a small object finds the log full and writes the whole value:
    one ``commit1`` (~6 us), not a transaction (~17 us; before, each rewrite built one)."""
    from suitkaise.share import _calls

    with Share() as share:
        share.acc = Acc()
        share.acc.add(0)

        def no_transaction(*a: Any, **k: Any) -> Any:
            raise AssertionError("a transaction was built")

        monkeypatch.setattr(_calls, "Txn", no_transaction)
        got = [share.acc.add(1) for _ in range(160)]  # several rewrites
        monkeypatch.undo()
        assert got == list(range(1, 161))
        assert _fresh(share, "acc").total == 160  # (the stored bytes: the last rewrite + deltas)



def test_a_small_object_is_rewritten_whole_every_50_calls_or_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method call's delta log may pass half the value by 4 KiB (``_calls._SLACK``; 1 KiB
    made every ~13th call on a small object a whole rewrite, which each other process
    calling on it then decoded in full): 150 calls, 2 or 3 rewrites; the value is exact."""
    from suitkaise.share import _calls

    rewrites = []
    real = _calls._write_whole
    monkeypatch.setattr(_calls, "_write_whole", lambda *a, **k: rewrites.append(1) or real(*a, **k))
    with Share() as share:
        share.acc = Acc()
        got = [share.acc.add(1) for _ in range(150)]
        assert got == list(range(1, 151))
        assert 2 <= len(rewrites) <= 3
        assert _fresh(share, "acc").total == 150


class Other:
    """What another process puts in place of an ``Acc`` (same method name, other effect)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def add(self, n: int) -> int:
        self.seen.append(n)
        return -len(self.seen)


def _calls_then_replace(share: Share, calls: int, replace: bool) -> None:
    for _ in range(calls):
        share.acc.add(1)
    if replace:
        share.acc = Other()


@pytest.mark.parametrize("calls", [1, 5, 80])
def test_a_copy_catches_up_with_another_process(start_method: str, calls: int) -> None:
    """This process's cached copy after another process's calls: one delta replayed (the
    two-process case), several, or a whole value written since (the log was full); then
    the other process replaces the object by one of another class, seen at once, through
    a Proxy obtained before as well."""
    with Share() as share:
        share.acc = Acc()
        assert share.acc.add(1) == 1  # cached here
        held = share.acc  # a Proxy: it names the attribute, not the object it held then
        run_processes(_calls_then_replace, [(share, calls, False)])
        assert share.acc.add(1) == calls + 2
        assert held.add(1) == calls + 3
        run_processes(_calls_then_replace, [(share, calls, True)])
        assert share.acc.add(7) == -1  # Other.add on the other process's new object
        assert held.add(8) == -2
        assert _fresh(share, "acc").seen == [7, 8]


def _add_and_record(share: Share, i: int, n: int) -> None:
    got = [share.acc.add(1) for _ in range(n)]
    setattr(share, f"got{i}", got)


@pytest.mark.parametrize("procs", [2, 4])
def test_concurrent_calls_are_serialized_exactly(start_method: str, procs: int) -> None:
    """Processes calling one method in turn (each call replays the others' deltas, every
    ~50th rewrites the whole value): each call returns the total just after it, so the
    returns of all of them are exactly 1..N - none lost, none computed on a stale copy."""
    n = 120
    with Share() as share:
        share.acc = Acc()
        run_processes(_add_and_record, [(share, i, n) for i in range(procs)])
        got = [v for i in range(procs) for v in getattr(share, f"got{i}")]
        assert sorted(got) == list(range(1, procs * n + 1))
        for i in range(procs):  # each process saw its own calls in order
            mine = getattr(share, f"got{i}")
            assert mine == sorted(mine)
        assert share.acc.total == procs * n
        assert _fresh(share, "acc").total == procs * n


def _commit_whole(st: Any, name: str, value: Any) -> None:
    """One commit of ``name``'s whole value through the store handle ``st``."""
    from suitkaise.share._txn import encode_for

    kind, data, _ = encode_for(value, name)
    with st.locked():
        st.commit({name: (kind, data)})


@pytest.mark.parametrize(
    "between",
    ["call", "call_other_name", "whole_value", "new_name", "two_new_names", "i64", "bump_only", "two_calls"],
)
def test_a_call_after_one_commit_of_another_handle_sees_it(monkeypatch: pytest.MonkeyPatch, between: str) -> None:
    """Two handles on one store calling in turn (as two processes do): after this handle's
    call, exactly one commit of the other (its own call: one delta on this handle's record,
    the shortcut ``Store.next_head`` takes) or something else (a call on another name, the
    whole value, a name added - a slot flip, an in-place ``+=``, a writer killed just after
    its epoch bump, two commits): the next call here starts from what the other wrote."""
    from suitkaise.share import _calls
    from suitkaise.share._store import EPOCH_Q, Store

    with Share() as share:
        share.acc = Acc()
        share.other = Acc()
        share.n = 0
        st1 = share._sk_store
        st2 = Store.attach(share._sk_name)
        took = []
        real = Store.next_head

        def spy(self: Store, name: str) -> Any:
            got = real(self, name)
            took.append(got is not None)
            return got

        monkeypatch.setattr(Store, "next_head", spy)
        try:
            expected = 0
            for i in range(60):  # past several log limits
                expected += 1
                assert _calls.call(st1, ("acc",), "add", (1,), {}) == expected
                if between == "call":
                    expected += 1
                    assert _calls.call(st2, ("acc",), "add", (1,), {}) == expected
                elif between == "call_other_name":
                    _calls.call(st2, ("other",), "add", (1,), {})
                elif between == "whole_value" and i % 7 == 3:
                    replaced = Acc()
                    expected = replaced.total = 1000 * i
                    _commit_whole(st2, "acc", replaced)
                elif between == "new_name" and i % 7 == 3:
                    _commit_whole(st2, f"x{i}", i)
                elif between == "two_new_names" and i % 7 == 3:  # two slot flips: the same slot
                    _commit_whole(st2, f"x{i}", i)
                    _commit_whole(st2, f"x{i + 1}", i + 1)
                elif between == "i64":
                    assert st2.add_i64("n", 1) == i + 1
                elif between == "bump_only":
                    with st2.locked():
                        st2.q[EPOCH_Q] += 1  # a writer killed right after its first store
                elif between == "two_calls":
                    expected += 2
                    _calls.call(st2, ("acc",), "add", (1,), {})
                    assert _calls.call(st2, ("acc",), "add", (1,), {}) == expected
            monkeypatch.undo()
            if between in ("call", "call_other_name", "i64", "bump_only"):
                assert True in took  # (the shortcut was exercised)
            assert _fresh(share, "acc").total == expected
            assert _calls.call(st2, ("acc",), "add", (0,), {}) == expected
            # what the other handle wrote is intact too (a record written over, a version
            # published in the wrong slot would show here)
            share._sk_store.cache.clear()
            assert share.other.total == (60 if between == "call_other_name" else 0)
            assert share.n == (60 if between == "i64" else 0)
            with st1.locked():
                xs = [k for k in st1.names() if k.startswith("x")]
            added = {k: getattr(share, k) for k in xs}
            want = {f"x{i}": i for i in range(60) if i % 7 == 3} if "new_name" in between else {}
            if between == "two_new_names":
                want.update({f"x{i + 1}": i + 1 for i in range(60) if i % 7 == 3})
            assert added == want
            st3 = Store.attach(share._sk_name)  # a handle that decodes everything afresh
            try:
                with st3.locked():
                    assert sorted(st3.items()) == sorted(st1.items())
                    assert st3.slot() == st1.slot()
            finally:
                st3.close()
        finally:
            st2.close()


def _add_until_killed(share: Share, done: Any, ev: Any) -> None:
    share.acc.add(0)
    ev.set()
    while True:
        share.acc.add(1)
        done.value += 1  # (after the call: the calls committed are done.value or one more)


def test_calls_in_turn_with_a_process_killed_mid_call_lose_nothing(start_method: str) -> None:
    """This process and another call ``acc.add(1)`` (when they run in turn, each call here
    replays the other's delta: ``Store.next_head``) until the other is SIGKILLed at a random
    instant - inside a call, its commit or its lock wait: the total is this process's calls
    plus the other's, whichever side of its last commit the kill landed, and the copy here,
    the stored bytes and a fresh handle agree."""
    import random
    import signal
    import threading
    import time

    from suitkaise.share._store import Store

    ctx = multiprocessing.get_context()
    rng = random.Random(97)
    with Share() as share:
        share.acc = Acc()
        mine = 0
        for _ in range(4):
            done, ev = ctx.Value("q", 0, lock=False), ctx.Event()
            p = ctx.Process(target=_add_until_killed, args=(share, done, ev))
            p.start()
            assert ev.wait(60)
            killer = threading.Timer(rng.uniform(0.005, 0.05), os.kill, (p.pid, signal.SIGKILL))
            killer.start()
            while p.exitcode is None:
                share.acc.add(1)
                mine += 1
                if mine % 64 == 0:
                    time.sleep(0)  # (let the timer thread run)
            killer.join()
            p.join(60)
            assert p.exitcode == -signal.SIGKILL
            before = share.acc.total
            assert before - mine - done.value in (0, 1)
            mine = before  # the other's calls counted in
            assert share.acc.add(1) == mine + 1
            mine += 1
            assert _fresh(share, "acc").total == mine
            st = Store.attach(share._sk_name)
            try:
                with st.locked():
                    assert st.items() == share._sk_store.items()
            finally:
                st.close()
