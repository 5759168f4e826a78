"""Single-process semantics of Share through its public API."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import warnings

import pytest

from suitkaise import cucumber
from suitkaise.share import Proxy, Share, ShareError


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self.items: list[int] = []
        self.meta: dict[str, int] = {}

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    def take(self) -> int:
        return self.items.pop()

    def total(self) -> int:
        return sum(self.items)

    def explode(self) -> None:
        self.value = -999
        self.items.append(-1)
        raise RuntimeError("boom")


class FakeTimer:
    """Duck-typed stand-in for Sktimer's Share hooks."""

    _shared_meta = {
        "methods": {"add_time": {"writes": ["times"]}, "percentile": {"reads": ["times"]}},
        "properties": {"num_times": {"reads": ["times"]}},
    }
    _share_blocked_methods = {"start": "FakeTimer.start() cannot be used through Share; use add_time"}
    _share_method_aliases = {"tick": "_tick_fast"}

    def __init__(self) -> None:
        self.times: list[float] = []

    def add_time(self, t: float) -> None:
        self.times.append(t)

    def percentile(self, p: float) -> float:
        return sorted(self.times)[int(p / 100 * (len(self.times) - 1))]

    @property
    def num_times(self) -> int:
        return len(self.times)

    def start(self) -> None:  # pragma: no cover - must be blocked
        raise AssertionError("should be blocked")

    def tick(self) -> str:  # pragma: no cover - alias must win
        return "slow"

    def _tick_fast(self) -> str:
        return "fast"


class Forbidden:
    _share_disallowed = "Forbidden objects cannot live in a Share"


@pytest.fixture
def share():
    s = Share()
    yield s
    s.stop()


def test_primitives_are_real_values(share: Share) -> None:
    share.i, share.f, share.s, share.b, share.t = 3, 2.5, "hé", b"\x00", (1, "a")
    assert type(share.i) is int and share.i == 3
    assert type(share.f) is float and isinstance(share.s, str)
    assert share.b == b"\x00" and share.t == (1, "a")
    assert json.loads(json.dumps({"i": share.i, "s": share.s})) == {"i": 3, "s": "hé"}
    assert pickle.loads(pickle.dumps(share.i)) == 3
    assert cucumber.deserialize(cucumber.serialize(share.t)) == (1, "a")
    share.flag = True
    assert share.flag is True


def test_none_is_a_value(share: Share) -> None:
    share.x = 5
    share.x = None
    assert share.x is None
    share.y = None
    assert "y" in repr(share)


def test_missing_and_delete(share: Share) -> None:
    with pytest.raises(AttributeError, match="Share has no attribute 'x'"):
        share.x  # noqa: B018
    share.x = 1
    del share.x
    with pytest.raises(AttributeError, match="Share has no attribute 'x'"):
        share.x  # noqa: B018
    with pytest.raises(AttributeError, match="Share has no attribute 'nope'"):
        del share.nope


def test_every_augmented_operator(share: Share) -> None:
    share.n = 100
    share.n += 5
    share.n -= 3
    share.n *= 2
    share.n //= 4
    share.n %= 40
    share.n **= 2
    share.n <<= 2
    share.n >>= 1
    share.n |= 1
    share.n &= 0xFF
    share.n ^= 0x0F
    expected = 100
    expected = ((((((((((expected + 5 - 3) * 2) // 4) % 40) ** 2) << 2) >> 1) | 1) & 0xFF) ^ 0x0F)
    assert share.n == expected
    share.f = 1.0
    share.f /= 4
    assert share.f == 0.25
    share.s = "a"
    share.s += "b"
    assert share.s == "ab"
    share.l = [1]
    share.l += [2, 3]
    assert share.l == [1, 2, 3]
    share.st = {1}
    share.st |= {2}
    assert share.st == {1, 2}


def test_aug_on_missing_attribute_raises(share: Share) -> None:
    with pytest.raises(AttributeError, match="Share has no attribute 'ghost'"):
        share.ghost += 1


def test_containers_and_nested_mutations(share: Share) -> None:
    share.l = [1, 2]
    share.l.append(3)
    assert share.l == [1, 2, 3] and len(share.l) == 3 and 2 in share.l
    assert list(share.l) == [1, 2, 3] and share.l[1:] == [2, 3]
    assert share.l.pop() == 3  # writer methods return their real result
    share.d = {"k": 1, "inner": {"z": [1]}}
    share.d["k"] += 10
    share.d["inner"]["z"].append(2)
    share.d["new"] = 5
    del share.d["new"]
    assert share.d == {"k": 11, "inner": {"z": [1, 2]}}
    assert share.d.get("k") == 11 and sorted(share.d.keys()) == ["inner", "k"]
    assert share.d.setdefault("q", 9) == 9 and share.d["q"] == 9
    c = share.d.copy()
    assert type(c) is dict


def test_copy_semantics(share: Share) -> None:
    local = [1, 2]
    share.l = local
    local.append(3)
    assert share.l == [1, 2]
    snap = pickle.loads(pickle.dumps(share.l))
    assert type(snap) is list and snap == [1, 2]
    share.m = share.l  # a proxy assigned is a copy of its value
    share.m.append(9)
    assert share.l == [1, 2] and share.m == [1, 2, 9]


def test_user_objects_methods_and_nested(share: Share) -> None:
    share.c = Counter()
    assert isinstance(share.c, Proxy)
    assert share.c.add(5) == 5
    assert share.c.add(2) == 7
    share.c.items.append(4)
    share.c.items.append(6)
    share.c.meta["a"] = 1
    share.c.meta["a"] += 1
    share.c.value += 100
    assert share.c.value == 107
    assert share.c.total() == 10
    assert share.c.take() == 6
    assert share.c.items == [4] and share.c.meta == {"a": 2}
    share.c.value = 1
    assert share.c.value == 1
    assert "Counter" in repr(share.c) or "Proxy" in repr(share.c)


def test_failing_method_changes_nothing(share: Share) -> None:
    share.c = Counter()
    share.c.add(3)
    with pytest.raises(RuntimeError, match="boom"):
        share.c.explode()
    assert share.c.value == 3 and share.c.items == []


def test_fake_timer_hooks(share: Share) -> None:
    share.timer = FakeTimer()
    for t in (0.3, 0.1, 0.2):
        share.timer.add_time(t)
    assert share.timer.num_times == 3
    assert share.timer.percentile(50) == 0.2
    with pytest.raises(TypeError, match=r"FakeTimer.start\(\) cannot be used through Share"):
        share.timer.start()
    assert share.timer.tick() == "fast"


def test_refused_values_leave_state_untouched(share: Share) -> None:
    share.x = 1
    share.l = [1]
    with pytest.raises(ValueError, match=r"multiprocessing\.\* objects"):
        share.x = multiprocessing.get_context().Queue()
    with pytest.raises(ValueError, match=r"multiprocessing\.\* objects"):
        share.l.append(multiprocessing.get_context().Event())
    with pytest.raises(TypeError, match="Forbidden objects cannot live"):
        share.x = Forbidden()
    with pytest.raises(TypeError, match=r"cannot store share\.x"):
        share.x = _Unpicklable()
    assert share.x == 1 and share.l == [1]
    for name in ("start", "stop", "clear", "is_running", "has_error", "reconnect_all", "exit"):
        with pytest.raises(AttributeError, match="reserved"):
            setattr(share, name, 1)
    assert share.x == 1


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("I refuse to be pickled")


def test_repr_clear_and_context_manager() -> None:
    with Share() as s:
        s.counter = 0
        s.name = "x"
        assert repr(s) == "Share(status=running, objects=['counter', 'name'])"
        s.clear()
        with pytest.raises(AttributeError):
            s.counter  # noqa: B018
        assert repr(s) == "Share(status=running, objects=[])"
        assert s.is_running and not s.has_error
    assert not s.is_running


def test_stop_queues_writes_until_start() -> None:
    s = Share()
    try:
        s.counter = 1
        s.l = [1]
        assert s.stop() is True
        assert s.stop() is True  # already stopped
        assert not s.is_running
        with pytest.warns(RuntimeWarning, match="Share is stopped. Changes are queued"):
            s.counter += 1
        with pytest.warns(RuntimeWarning, match="Share is stopped"):
            s.l.append(2)
        with pytest.warns(RuntimeWarning, match="Share is stopped"):
            s.other = "queued"
        assert s.counter == 1  # not applied yet
        s.start()
        assert s.is_running
        assert s.counter == 2 and s.l == [1, 2] and s.other == "queued"
    finally:
        s.stop()


def test_stop_names_a_timeout_that_is_not_a_number() -> None:
    s = Share()
    try:
        s.n = 1
        with pytest.raises(TypeError, match=r"^Share.stop\(timeout\) must be a number of seconds, got 'x'$"):
            s.stop(timeout="x")
        assert s.is_running and s.n == 1  # nothing was stopped
    finally:
        s.stop()


def test_auto_start_false() -> None:
    s = Share(auto_start=False)
    assert not s.is_running
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s.x = 1
    assert any("Share is stopped" in str(x.message) for x in w)
    s.start()
    try:
        assert s.x == 1
    finally:
        s.stop()


def test_reconnect_all_returns_objects(share: Share) -> None:
    share.a = 1
    share.c = Counter()
    out = share.reconnect_all()
    assert out["a"] == 1 and isinstance(out["c"], Counter)


def test_large_values_grow_the_store(share: Share) -> None:
    for i in range(6):
        share.blob = bytes([i]) * (3 << 20)
        share.small = i
    assert share.blob == bytes([5]) * (3 << 20) and share.small == 5


def test_serialized_share_in_same_process_is_bound(share: Share) -> None:
    share.x = 1
    other = cucumber.deserialize(cucumber.serialize(share))
    other.x += 1
    assert share.x == 2
    other2 = pickle.loads(pickle.dumps(share))
    assert other2.x == 2
    other2.stop()  # a non-owner only detaches itself
    assert share.x == 2 and share.is_running


def test_closed_share_raises_clear_error() -> None:
    s = Share()
    s.x = 1
    client = pickle.loads(pickle.dumps(s))
    assert client.x == 1
    s.stop()
    del s
    import gc

    gc.collect()
    # the owner stopped and was collected: the client cannot reach it any more
    with pytest.raises(ShareError):
        client.x  # noqa: B018


@pytest.mark.parametrize("bad", ["no", 0, None, 1])
def test_auto_start_takes_a_bool_only(bad: object) -> None:
    with pytest.raises(TypeError, match=r"Share\(auto_start=\.\.\.\) takes True or False"):
        Share(auto_start=bad)  # type: ignore[arg-type]
