"""The plain-data fast path: builtin atoms and containers go through the C pickler alone.

It must be invisible: the same bytes as the full (cloudpickle + handlers) pickler for
plain data, and anything else -- wherever it sits in the payload -- still goes the
full way (functions by value, cucumber's handlers, buffers to the callback once).
"""

from __future__ import annotations

import io
import pickle
import threading
from collections import OrderedDict, defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suitkaise.cucumber import deserialize, serialize
from suitkaise.cucumber._pickler import PROTOCOL, CucumberPickler

_atoms = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.binary(max_size=20),
)
_plain = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=5),
        st.frozensets(st.integers(), max_size=5),
    ),
    max_leaves=30,
)


def _full(obj: Any) -> bytes:
    f = io.BytesIO()
    CucumberPickler(f, PROTOCOL).dump(obj)
    return f.getvalue()


@settings(max_examples=200, deadline=None)
@given(_plain)
def test_plain_data_gives_the_full_picklers_exact_bytes(obj: Any) -> None:
    data = serialize(obj)
    assert data == _full(obj)
    assert deserialize(data) == obj


@pytest.mark.parametrize(
    "make",
    [
        lambda: list(range(50_000)),  # several 64 KiB frames
        lambda: bytearray(b"a" * 200_000),  # written straight from the object
        lambda: [b"b" * 100_000, bytearray(b"c" * 70_000), "d" * 90_000],
        lambda: {"small": 1},
    ],
)
def test_payloads_written_in_pieces_are_one_exact_bytes_object(make: Any) -> None:
    # The C pickler hands the plain pickler's sink a payload in several write() calls
    # (frames; big bytes and bytearrays as the objects themselves): joined, they are the
    # full pickler's bytes, and a later call starts clean.
    obj = make()
    data = serialize(obj)
    assert type(data) is bytes and data == _full(obj)
    assert deserialize(data) == obj
    assert serialize({"after": 2}) == _full({"after": 2})


def test_shared_references_and_cycles_survive() -> None:
    inner = [1, 2]
    obj: list[Any] = [inner, inner]
    obj.append(obj)
    back = deserialize(serialize(obj))
    assert back[0] is back[1]
    assert back[2] is back


@pytest.mark.parametrize(
    "make",
    [
        lambda: {"f": lambda x: x + 1},  # a lambda deep inside a dict: by value, not by name
        lambda: [1, 2, {"lock": threading.Lock()}],  # a handler's type at the end
        lambda: OrderedDict(a=1),  # a builtin container's subclass
        lambda: defaultdict(list, a=[1]),
        lambda: (1, 2, range(5)),
    ],
)
def test_anything_else_anywhere_goes_the_full_way(make: Any) -> None:
    obj = make()
    back = deserialize(serialize(obj))
    assert type(back) is type(obj)
    if isinstance(obj, dict) and "f" in obj:
        assert back["f"](1) == 2
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            pickle.dumps(obj)  # what the C pickler alone would have done
    elif isinstance(obj, list):
        assert back[2]["lock"].acquire(blocking=False)
    else:
        assert back == obj


def test_a_buffer_in_plain_containers_reaches_the_callback_once() -> None:
    raw = bytearray(b"x" * 100_000)
    obj = [1, {"b": pickle.PickleBuffer(raw)}, "tail"]
    seen: list[pickle.PickleBuffer] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        seen.append(buf)
        return False

    data = serialize(obj, buffer_callback=out_of_band)
    assert len(seen) == 1
    back = deserialize(data, buffers=seen)
    assert bytes(back[1]["b"]) == bytes(raw)
    assert back[0] == 1 and back[2] == "tail"


def test_deep_plain_data_still_serializes() -> None:
    obj: list[Any] = []
    cur = obj
    for _ in range(50_000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    back = deserialize(serialize(obj))
    depth = 0
    while back:
        back = back[0]
        depth += 1
    assert depth == 50_000


def test_threads_serializing_at_once_get_their_own_bytes() -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(2000):
                obj = {"k": k, "i": i, "v": [k] * (i % 7)}
                assert deserialize(serialize(obj)) == obj
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
