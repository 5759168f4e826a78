"""numpy values in a Share: arrays reach numpy in one read, scalars read back as themselves."""

from __future__ import annotations

import json
import multiprocessing
from typing import Any

import numpy as np
import pytest

from suitkaise.share import Proxy, Share


def test_numpy_reads_a_stored_array_whole_in_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Proxy without __array__ looked like a sequence to numpy, which read it element by
    # element, each one a Share read: np.asarray of 10^6 floats took 4.7 s (a copy: 0.05 s).
    from suitkaise.share import _proxy

    reads = []
    real = _proxy._view

    def counting(share: Any, path: Any, fn: Any) -> Any:
        reads.append(path)
        return real(share, path, fn)

    monkeypatch.setattr(_proxy, "_view", counting)
    with Share() as share:
        for value in (np.arange(100_000.0), np.arange(12).reshape(3, 4), [1, 2, 3], [[1.5], [2.5]]):
            share.arr = value
            reads.clear()
            got = np.asarray(share.arr)
            assert len(reads) == 1, f"{len(reads)} reads for np.asarray of a {type(value).__name__}"
            assert type(got) is np.ndarray and np.array_equal(got, np.asarray(value))
        share.arr = np.arange(10.0)
        assert np.mean(share.arr) == 4.5 and np.asarray(share.arr, dtype=np.int32).dtype == np.int32
        mine = np.asarray(share.arr)
        mine[0] = 99.0  # a copy of its own: the stored array is unchanged
        assert share.arr[0] == 0.0
        with pytest.raises(ValueError, match="only as a copy"):
            np.asarray(share.arr, copy=False)


def _add_row(share: Share, i: int) -> None:
    with share.lock():
        share.arr = np.append(np.asarray(share.arr), float(i))


def test_np_asarray_in_other_processes_sees_every_update(start_method: str) -> None:
    ctx = multiprocessing.get_context(start_method)
    with Share() as share:
        share.arr = np.zeros(0)
        procs = [ctx.Process(target=_add_row, args=(share, i)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert sorted(np.asarray(share.arr).tolist()) == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("value", [
    np.float64(1.5), np.float32(2.5), np.int64(-7), np.int8(3), np.uint16(9), np.bool_(True),
    np.complex128(1 + 2j), np.str_("text"), np.bytes_(b"raw"), np.datetime64("2026-12-08"),
    np.timedelta64(5, "s"),
])
def test_a_numpy_scalar_reads_back_as_itself(value: Any) -> None:
    # immutable like a Python number: the read gives the value, not a Proxy
    with Share() as share:
        share.x = value
        for _ in range(3):  # the first read, then the cached fast path
            got = share.x
            assert type(got) is type(value) and got == value
        share.arr = np.array([value])
        assert type(share.arr[0]) is type(value)
    if isinstance(value, np.floating):
        assert json.dumps(float(value)) == json.dumps(float(got))


def test_a_structured_numpy_scalar_stays_live() -> None:
    # np.void (a structured record) may be a view whose fields can be set: not a plain value
    with Share() as share:
        share.rec = np.zeros(1, dtype=[("a", "i4")])[0]
        assert type(share.rec) is Proxy
