"""Runaway recursion ends in SerializationError (never a crash, never unbounded memory),
deep data still round-trips, and nothing changes the recursion limit other threads see.

Crash-class reproductions run in a fresh interpreter: a segfault there fails the test
through the exit status instead of taking pytest down with it.
"""

from __future__ import annotations

import pickle
import sys
import textwrap
import threading
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sk_testkit import run_fresh
from suitkaise import cucumber
from suitkaise.cucumber import SerializationError, deserialize, serialize

# Caps the child's address space, so a regression shows up as a failed test rather than
# a machine that swaps; reports the error, the elapsed time and the peak memory.
_CHILD = textwrap.dedent(
    """
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    from suitkaise import cucumber
    {setup}
    t0 = time.monotonic()
    try:
        cucumber.serialize(obj)
        outcome = "no error"
    except cucumber.SerializationError as e:
        outcome = "SerializationError " + " ".join(str(e).split())
    except BaseException as e:
        outcome = f"{{type(e).__name__}}: {{e}}"
    # VmHWM: this process image's own peak (ru_maxrss also counts the parent's, across exec)
    with open("/proc/self/status") as status:
        peak_mb = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) // 1024
    print(outcome)
    print(f"{{time.monotonic() - t0:.1f}} {{peak_mb}} {{sys.getrecursionlimit()}}")
    """
)


def _run_child(setup: str, timeout: float = 120.0) -> tuple[str, float, int, int]:
    out = run_fresh(_CHILD.format(setup=textwrap.dedent(setup)), timeout=timeout).stdout.decode()
    outcome, figures = out.strip().rsplit("\n", 1)
    seconds, peak_mb, limit = figures.split()
    return outcome, float(seconds), int(peak_mb), int(limit)


def test_getattribute_that_recurses_forever_raises_instead_of_crashing() -> None:
    # Before: exit status -11 (segfault), the deep retry raised the recursion limit to millions.
    outcome, seconds, _, limit = _run_child(
        """
        class A:
            __getattribute__ = lambda self, n: getattr(self, n)
        obj = A()
        """
    )
    assert outcome.startswith("SerializationError"), outcome
    assert "runaway recursion" in outcome and "A" in outcome
    assert seconds < 30 and limit == 1000


def test_runaway_recursion_inside_deep_data_raises_too() -> None:
    # The fast pickler overflows on the nesting, the retry then meets the user's recursion.
    outcome, _, _, limit = _run_child(
        """
        class A:
            __getattribute__ = lambda self, n: getattr(self, n)
        obj = cur = []
        for _ in range(5000):
            cur.append([]); cur = cur[0]
        cur.append(A())
        """
    )
    assert outcome.startswith("SerializationError") and "runaway recursion" in outcome, outcome
    assert limit == 1000


def test_reduce_that_nests_forever_stops_in_bounded_time_and_memory() -> None:
    # Before: 1.8 GB after 15 s and still growing.
    outcome, seconds, peak_mb, _ = _run_child(
        """
        class B:
            def __reduce__(self):
                return (B, (), {"child": B()})
        obj = B()
        """,
        timeout=240,
    )
    assert outcome.startswith("SerializationError"), outcome
    assert "nest inside each other" in outcome and "B -> dict -> B" in outcome
    assert peak_mb < 1024 and seconds < 120, f"peak {peak_mb} MB after {seconds} s"


def test_recursion_limit_seen_by_other_threads_never_changes() -> None:
    # Before: sys.setrecursionlimit(stack_bytes // 512) for the whole process during the retry.
    deep: list[Any] = []
    cur = deep
    for _ in range(100_000):
        cur.append([])
        cur = cur[0]
    seen: set[int] = set()
    done = threading.Event()
    result: list[bytes] = []

    def work() -> None:
        try:
            result.append(serialize(deep))
        finally:
            done.set()

    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        seen.add(sys.getrecursionlimit())
        time.sleep(0.001)
    worker.join()
    seen.add(sys.getrecursionlimit())
    assert seen == {1000}
    assert len(result) == 1


class Link:
    def __init__(self, nxt: Link | None, i: int) -> None:
        self.nxt = nxt
        self.i = i


def test_deep_object_chain_of_100_000_round_trips_in_a_fresh_interpreter() -> None:
    head = None
    for i in range(100_000):
        head = Link(head, i)
    data = serialize(head)
    code = textwrap.dedent(
        """
        import sys
        from suitkaise import cucumber
        r = cucumber.deserialize(sys.stdin.buffer.read())
        n = 0
        expected = 99_999
        while r is not None:
            assert r.i == expected, (r.i, expected)
            expected -= 1
            r = r.nxt
            n += 1
        print(n)
        """
    )
    assert run_fresh(code, stdin=data, timeout=120).stdout.decode().strip() == "100000"


# Nestings of mixed containers, around the C pickler's limit and far past it.
_DEPTHS = st.sampled_from([0, 1, 2, 498, 499, 500, 999, 1000, 1001, 3000, 20_000])
_KINDS = st.lists(st.sampled_from(["list", "tuple", "dict", "set-of-frozen", "obj"]), min_size=1, max_size=4)


def _nest(depth: int, kinds: list[str]) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        kind = kinds[i % len(kinds)]
        if kind == "list":
            value = [value]
        elif kind == "tuple":
            value = (value, i)
        elif kind == "dict":
            value = {"down": value, i: None}
        elif kind == "set-of-frozen":
            try:
                value = frozenset([value])
            except TypeError:  # unhashable (holds a list): a list level instead
                value = [value]
        else:
            value = Link(value, i)  # type: ignore[arg-type]
    return value


def _unnest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        if isinstance(value, list):
            value = value[0]
        elif isinstance(value, tuple):
            value = value[0]
        elif isinstance(value, dict):
            value = value["down"]
        elif isinstance(value, frozenset):
            (value,) = value
        else:
            value = value.nxt
    return value


@settings(max_examples=25, deadline=None)
@given(depth=_DEPTHS, kinds=_KINDS)
def test_deep_data_round_trips_at_every_depth(depth: int, kinds: list[str]) -> None:
    value = _nest(depth, kinds)
    assert _unnest(deserialize(serialize(value)), depth) == "bottom"


def test_deep_payload_is_plain_pickle() -> None:
    value = _nest(5000, ["list", "dict", "obj"])
    assert _unnest(pickle.loads(serialize(value)), 5000) == "bottom"


def test_shared_and_cyclic_references_survive_the_deep_path() -> None:
    shared = {"x": 1}
    root: list[Any] = []
    cur = root
    for _ in range(5000):
        nxt: list[Any] = []
        cur.extend([shared, nxt])
        cur = nxt
    cur.extend([shared, root])  # and a cycle back to the top
    r = deserialize(serialize(root))
    node = r
    for _ in range(5000):
        assert node[0] is r[0]
        node = node[1]
    assert node[0] is r[0] and node[1] is r


def test_class_inside_its_own_skeleton_arguments_survives_the_deep_path() -> None:
    # B's skeleton names its base A, whose method names B: B comes back while its own
    # arguments are being saved, which pickle resolves through its memo (the C pickler
    # did; the deep path refused it as a runaway reduce).
    class A:
        def make(self) -> Any:
            return B()

    class B(A):
        pass

    root: list[Any] = [B()]
    for _ in range(5000):
        root = [root]
    r = deserialize(serialize(root))
    for _ in range(5000):
        r = r[0]
    rebuilt = type(r[0])
    assert type(rebuilt().make()) is rebuilt and rebuilt.__bases__[0].__name__ == "A"


def test_deep_inspection_view_and_json() -> None:
    value = _nest(20_000, ["list", "tuple"])
    text = cucumber.to_json(value, indent=None)  # (indented, deep JSON is quadratic in size)
    assert text.count('"__cucumber_type__"') == 20_000


def test_a_failure_deep_inside_is_located_quickly() -> None:
    # Before: the path search pickled the remaining subtree again at every level (quadratic).
    import select

    root: list[Any] = []
    cur = root
    for _ in range(50_000):
        cur.append([])
        cur = cur[0]
    poller = select.epoll()
    cur.append({"poller": poller})
    t0 = time.monotonic()
    try:
        serialize(root)
    except SerializationError as e:
        err = e
    else:  # pragma: no cover
        raise AssertionError("no error")
    finally:
        poller.close()
    assert time.monotonic() - t0 < 60
    assert err.type_name == "select.epoll"
    assert err.path.startswith("root[0][0][0][0]...(") and err.path.endswith("[0][0]['poller']")
