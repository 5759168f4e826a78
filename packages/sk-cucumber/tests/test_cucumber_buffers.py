"""``buffer_callback`` follows pickle's protocol-5 rule: a true return keeps a buffer in-band."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suitkaise.cucumber import deserialize, serialize

np = pytest.importorskip("numpy")


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([0, 1, 10, 1000, 65535, 65536, 200_000]), min_size=1, max_size=5),
    threshold=st.sampled_from([0, 1, 1000, 65536, 10**9]),
)
def test_callback_answer_decides_in_or_out_of_band(sizes: list[int], threshold: int) -> None:
    arrays = [np.arange(n, dtype=np.uint8) for n in sizes]
    out: list[pickle.PickleBuffer] = []
    seen: list[int] = []

    def cb(buf: pickle.PickleBuffer) -> bool:
        n = buf.raw().nbytes
        seen.append(n)
        if n < threshold:
            return True  # in-band, like pickle
        out.append(buf)
        return False

    data = serialize(arrays, buffer_callback=cb)
    assert seen == sizes  # each buffer reported once, in order
    assert [b.raw().nbytes for b in out] == [n for n in sizes if n >= threshold]
    # pickle's own behaviour with the same callback answers is the reference
    ref_out: list[pickle.PickleBuffer] = []
    pickle.dumps(arrays, protocol=5, buffer_callback=lambda b: b.raw().nbytes < threshold or ref_out.append(b))
    assert len(ref_out) == len(out)
    back = deserialize(data, buffers=[bytearray(b.raw()) for b in out])
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))


def test_in_band_buffers_need_no_buffers_argument() -> None:
    arr = np.arange(10)
    data = serialize([arr] * 3, buffer_callback=lambda b: True)
    assert all(np.array_equal(x, arr) for x in deserialize(data))


def test_deep_payload_reports_each_buffer_once() -> None:
    """The deep retry (large stack) must not report the same buffers a second time."""
    arr = np.arange(100_000, dtype=np.uint8)
    deep: Any = [arr]
    for _ in range(20_000):
        deep = [deep]
    got: list[pickle.PickleBuffer] = []
    data = serialize([arr, deep], buffer_callback=got.append)
    assert len(got) == 1
    back = deserialize(data, buffers=got)
    assert np.array_equal(back[0], arr)
