"""Undeclared method calls write what they changed (``_methods.py``), and never lose a change.

``share.o.m()`` on a simple object whose class declares nothing: the attributes ``m`` names
are compared before and after the call and only those that changed are written (a delta);
when ``self`` escapes, or a changed value is shared with another part of the object, the
whole object is written as before.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from store_probe import slot, written

from sk_testkit import run_processes
from suitkaise.share import Share
from suitkaise.share._store import S_SEQ


def _grow(obj: Any) -> None:
    obj.items.append(-1)


class Big:
    """No declaration anywhere."""

    def __init__(self, n: int) -> None:
        self.total = 0
        self.items = list(range(n))
        self.cur = {"n": 0}

    def bump(self, k: int = 1) -> int:
        self.total += k
        return self.total

    def bump_twice(self) -> None:  # through another method of self
        self._inc()
        self._inc()

    def _inc(self) -> None:
        self.total += 1

    def peek(self) -> int:
        return self.total

    def size(self) -> int:
        return len(self.items)

    def push(self, x: int) -> None:
        self.items.append(x)

    def count(self) -> None:
        self.cur["n"] += 1

    def rename(self) -> None:
        self.label = f"n={self.total}"

    def drop(self) -> None:
        del self.cur

    def escape(self) -> None:  # self passed on: only the whole object can tell
        _grow(self)


class Aliased:
    """``cur`` is the last item of ``items``: one dict reachable by two attributes."""

    def __init__(self) -> None:
        self.items = [{"n": 0}]
        self.cur = self.items[-1]

    def inc(self) -> None:
        self.cur["n"] += 1


class Sub(Big):
    def bump(self, k: int = 1) -> int:
        return super().bump(k) + 0




# -- what the bytecode says a method touches ---------------------------------------------------


def test_attributes_of_names_what_the_method_can_touch() -> None:
    from suitkaise.share._methods import attributes_of

    assert attributes_of(Big, "bump") == ({"total"}, set())
    assert attributes_of(Big, "bump_twice") == ({"total"}, {"_inc"})  # through self._inc()
    assert attributes_of(Big, "push") == ({"items"}, set())
    assert attributes_of(Big, "rename") == ({"label", "total"}, set())
    assert attributes_of(Big, "drop") == ({"cur"}, set())
    assert attributes_of(Big, "escape") is None  # self passed to a function
    assert attributes_of(Sub, "bump") is None  # super() reaches self through the frame


def test_an_instance_attribute_shadowing_a_called_method_writes_the_whole_object() -> None:
    from suitkaise.share._ops import _before_call

    o = Big(3)
    assert _before_call(o, "bump_twice") is not None
    o._inc = print  # type: ignore[method-assign]  # self._inc() would run this instead
    assert _before_call(o, "bump_twice") is None
    assert _before_call(o, "bump") is not None


# -- cost: a changed small attribute is written, not the whole object ----------------------------


def test_undeclared_method_writes_what_changed_not_the_whole_object() -> None:
    with Share() as share:
        for method in ("bump", "bump_twice", "count", "rename"):
            share.v = Big(10)
            small = written(share, getattr(share.v, method))
            share.v = Big(100_000)
            big = written(share, getattr(share.v, method))
            assert big <= 2 * small + 64, (method, small, big)


def test_undeclared_read_only_method_commits_nothing() -> None:
    with Share() as share:
        share.v = Big(100_000)
        share.v.bump()
        seq = slot(share)[S_SEQ]
        assert share.v.peek() == 1
        assert share.v.size() == 100_000
        assert slot(share)[S_SEQ] == seq


# -- correctness: every change reaches the other processes ------------------------------------------

CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("bump", (5,)), ("push", (7,)), ("count", ()), ("bump_twice", ()), ("rename", ()),
    ("escape", ()), ("push", (8,)), ("count", ()), ("drop", ()), ("bump", (1,)), ("rename", ()),
]


def _state(o: Any) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in vars(o).items()}


def _call_all(share: Share, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    for name, args in calls:
        getattr(share.v, name)(*args)


def test_other_processes_see_every_change_of_undeclared_methods(start_method: str) -> None:
    expected = Big(1000)
    with Share() as share:
        share.v = Big(1000)
        for i in range(len(CALLS)):
            # the parent holds a cached copy; the child's calls reach it as deltas
            assert _state(copy.copy(share.v)) == _state(expected), i
            run_processes(_call_all, [(share, CALLS[i : i + 1])])
            name, args = CALLS[i]
            getattr(expected, name)(*args)
        assert _state(copy.copy(share.v)) == _state(expected)


def test_a_change_to_a_value_shared_by_two_attributes_is_not_lost(start_method: str) -> None:
    with Share() as share:
        share.v = Aliased()
        assert share.v.items[0]["n"] == 0  # cached here
        run_processes(_call_all, [(share, [("inc", ()), ("inc", ())])])
        got = copy.copy(share.v)
        assert got.cur["n"] == 2 and got.items[0]["n"] == 2
        assert got.cur is got.items[-1]
        share.v.inc()  # and in this process, on its caught-up copy
        assert share.v.items[0]["n"] == 3


# -- property: whatever the methods do, a fresh decode equals the writer's object -----------------


class Many:
    """Methods that rebind, mutate in place, delete, alias and escape, in any order."""

    def __init__(self) -> None:
        self.n = 0
        self.items: list[Any] = [1, 2]
        self.meta: dict[str, Any] = {"k": [0]}
        self.t = (1, "a")

    def inc(self, k: int) -> None:
        self.n += k

    def append(self, k: int) -> None:
        self.items.append(k)

    def nested(self, k: int) -> None:
        self.meta["k"].append(k)

    def rebind(self, k: int) -> None:
        self.items = [k] * 3

    def alias(self, k: int) -> None:  # two attributes share one list from now on
        self.meta["shared"] = self.items

    def through_alias(self, k: int) -> None:  # changes items without naming it
        if "shared" in self.meta:
            self.meta["shared"].append(k)

    def drop(self, k: int) -> None:
        if hasattr(self, "extra"):
            del self.extra
        else:
            self.extra = {"k": k}

    def tuple_(self, k: int) -> None:
        self.t = (k, [k])

    def read(self, k: int) -> int:
        return len(self.items) + self.n

    def escape(self, k: int) -> None:
        _grow(self)


MANY = [m for m in vars(Many) if not m.startswith("_")]


@given(hst.lists(hst.tuples(hst.sampled_from(MANY), hst.integers(-5, 5)), max_size=25))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_sequence_of_method_calls_is_seen_whole_by_a_fresh_reader(calls: list[tuple[str, int]]) -> None:
    expected = Many()
    with Share() as share:
        share.v = Many()
        for name, k in calls:
            assert getattr(share.v, name)(k) == getattr(expected, name)(k)
            share._sk_store.cache.clear()  # a process without a copy: base + every delta
            got = copy.copy(share.v)
            assert _state(got) == _state(expected), (name, k)
            if "shared" in expected.meta:  # the sharing itself survives too
                assert (got.meta["shared"] is got.items) == (expected.meta["shared"] is expected.items)


# -- a mutable attribute that is not plain data is compared by what cucumber keeps --------------


class Tagged(bytearray):
    """A bytearray subclass with attributes of its own: marshal sees only its bytes."""


class Buffers:
    def __init__(self) -> None:
        self.buf = Tagged(b"abc")
        self.buf.tag = "old"
        self.arr = np.arange(6)
        self.items: list[Any] = [b"ab", 1]
        self.many: list[Any] = [b"ab", *range(2000)]  # past the length marshal compares

    def retag(self) -> None:
        self.buf.tag = "new"

    def reshape(self) -> None:
        self.arr.shape = (2, 3)

    def retype(self) -> None:
        self.arr.dtype = np.float64

    def swap(self) -> None:
        self.items[0] = bytearray(self.items[0])

    def swap_many(self) -> None:
        self.many[0] = bytearray(self.many[0])


def _seen(value: Any) -> Any:
    return (type(value), bytes(value) if isinstance(value, (bytes, bytearray)) else value,
            getattr(value, "__dict__", None))


@pytest.mark.parametrize("method", ["retag", "reshape", "retype", "swap", "swap_many"])
def test_a_change_marshal_cannot_see_is_not_lost(method: str) -> None:
    # Before, every attribute was compared by marshal.dumps, which writes any buffer as its
    # raw bytes: an array's new shape or dtype, a bytearray subclass's attributes and a bytes
    # -> bytearray swap in a list compared equal, and the change was never written.
    expected = Buffers()
    getattr(expected, method)()
    with Share() as share:
        share.v = Buffers()
        getattr(share.v, method)()
        share._sk_store.cache.clear()  # a process without a copy
        got = copy.copy(share.v)
    assert _seen(got.buf) == _seen(expected.buf)
    assert got.arr.shape == expected.arr.shape and got.arr.dtype == expected.arr.dtype
    assert np.array_equal(got.arr, expected.arr)
    assert [_seen(v) for v in got.items] == [_seen(v) for v in expected.items]
    assert [_seen(v) for v in got.many] == [_seen(v) for v in expected.many]


# -- a dataclass with defaults: its class attributes are defaults an instance shadows -------------


@dataclasses.dataclass
class Ledger:
    total: int = 0
    label: str = "ledger"
    items: list[int] = dataclasses.field(default_factory=list)
    kind: ClassVar[tuple[str, ...]] = ("a", "b")

    def add(self, k: int) -> int:
        self.total += k
        return self.total

    def relabel(self) -> None:
        self.label = self.label + "!"

    def push(self, x: int) -> None:
        self.items.append(x)

    def kinds(self) -> int:
        return len(self.kind) + self.total


def test_a_dataclass_with_defaults_writes_what_changed() -> None:
    from suitkaise.share._methods import attributes_of

    # Before, any attribute that also existed on the class (a dataclass field's default)
    # sent every call down the whole-object path: O(size) for `self.total += k`.
    assert attributes_of(Ledger, "add") is not None
    assert attributes_of(Ledger, "kinds") is not None
    with Share() as share:
        share.v = Ledger(items=list(range(10)))
        small = written(share, lambda: share.v.add(1))
        share.v = Ledger(items=list(range(100_000)))
        big = written(share, lambda: share.v.add(1))
        assert big <= 2 * small + 64, (small, big)
        expected = Ledger(items=list(range(100_000)))
        for _ in range(20):
            expected.add(1)
        for name, args in [("add", (2,)), ("relabel", ()), ("push", (5,)), ("kinds", ()), ("add", (3,))]:
            assert getattr(share.v, name)(*args) == getattr(expected, name)(*args)
        share._sk_store.cache.clear()  # a process without a copy
        assert copy.copy(share.v) == expected


class MutableDefault:
    shared: ClassVar[list[int]] = []  # one list for every instance: not a default to shadow

    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> None:
        self.n += 1
        self.shared.append(self.n)


def test_a_mutable_class_attribute_keeps_the_whole_object_path() -> None:
    from suitkaise.share._methods import attributes_of

    assert attributes_of(MutableDefault, "bump") is None
