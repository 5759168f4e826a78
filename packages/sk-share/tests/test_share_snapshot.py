"""Share supports cucumber's custom protocol: ``share.__serialize__()`` is a snapshot that
``Share.__deserialize__`` rebuilds - bound to the same Share while it is alive, otherwise
(or with ``fresh=True``) a new Share holding the same data."""

from __future__ import annotations

import multiprocessing
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suitkaise import cucumber
from suitkaise.share import Share

TIMEOUT = 60


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Slotted:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v


def _fill(share: Share) -> None:
    share.n, share.f, share.s, share.none = 3, 2.5, "text", None
    share.lst, share.d, share.tags = [1, [2, 3]], {"k": (1, 2)}, {1, 2}
    share.p = Point(1, 2)  # stored as (class entry, state)
    share.sl = Slotted([1, 2])  # stored through cucumber


def _check(share: Share) -> None:
    assert (share.n, share.f, share.s, share.none) == (3, 2.5, "text", None)
    assert share.lst == [1, [2, 3]] and share.d == {"k": (1, 2)} and share.tags == {1, 2}
    assert share.p == Point(1, 2) and share.sl.v == [1, 2]


def test_fresh_rebuild_holds_the_same_data_and_is_independent() -> None:
    with Share() as share:
        _fill(share)
        state = share.__serialize__()
        assert state["format"] == "suitkaise.share/1"
        with Share.__deserialize__(state, fresh=True) as copy:
            _check(copy)
            copy.n += 1
            copy.lst.append(4)
            assert share.n == 3 and share.lst == [1, [2, 3]]
            share.s = "changed"
            assert copy.s == "text"


def test_snapshot_of_a_stopped_share_and_inside_a_lock_block() -> None:
    share = Share()
    try:
        _fill(share)
        with share.lock():
            share.n = 99
            inside = share.__serialize__()  # includes the block's own (uncommitted) write
        share.stop()
        stopped = share.__serialize__()
    finally:
        share.stop()
    with Share.__deserialize__(inside, fresh=True) as a, Share.__deserialize__(stopped, fresh=True) as b:
        assert a.n == 99 and b.n == 99
        b.n = 3
        _check(b)


def test_binds_to_the_live_share() -> None:
    with Share() as share:
        share.counter = 0
        other = Share.__deserialize__(share.__serialize__())
        other.counter += 5
        assert share.counter == 5
        again = cucumber.deserialize(cucumber.serialize(share))  # cucumber uses the pair
        again.counter += 1
        assert share.counter == 6


def _make_and_exit(q: Any) -> None:
    share = Share()
    _fill(share)
    q.put(cucumber.serialize(share.__serialize__()))
    share.stop()


def test_rebuilds_a_new_share_when_the_owner_is_gone(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    p = ctx.Process(target=_make_and_exit, args=(q,))
    p.start()
    state = cucumber.deserialize(q.get(timeout=TIMEOUT))
    p.join(TIMEOUT)
    assert p.exitcode == 0
    with pytest.warns(RuntimeWarning, match="rebuilt a new Share"):
        share = Share.__deserialize__(state)
    with share:
        _check(share)
        share.n += 1
        assert share.n == 4


def _child_updates(data: bytes) -> None:
    share = cucumber.deserialize(data)
    share.counter += 1
    share.lst.append("child")


def test_cucumber_transfer_to_a_child_binds_to_the_same_share(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share() as share:
        share.counter, share.lst = 0, []
        data = cucumber.serialize(share)
        share.counter = 10  # written after serialization: the child still sees the live state
        p = ctx.Process(target=_child_updates, args=(data,))
        p.start()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert share.counter == 11 and share.lst == ["child"]


@pytest.mark.parametrize(
    "bad",
    [None, {}, {"format": "other"}, {"format": "suitkaise.share/1", "ref": None, "entries": [1]},
     {"format": "suitkaise.share/1", "ref": None, "entries": {"x": (9, b"")}},
     {"format": "suitkaise.share/1", "ref": "nope", "entries": {}}],
)
def test_malformed_snapshots_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"Share snapshot"):
        Share.__deserialize__(bad)


_plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    | st.tuples(inner, inner),
    max_leaves=20,
)
_names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"start", "stop", "exit", "clear", "serve", "lock"}
)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(_names, _plain, max_size=6))
def test_round_trip_property(attrs: dict[str, Any]) -> None:
    with Share() as share:
        for k, v in attrs.items():
            setattr(share, k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            copy = Share.__deserialize__(share.__serialize__(), fresh=True)
        with copy:
            assert {k: _real(getattr(copy, k)) for k in attrs} == {k: _real(v) for k, v in attrs.items()}


def _real(v: Any) -> Any:
    return cucumber.deserialize(cucumber.serialize(v))
