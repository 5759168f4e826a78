"""Pipe: numpy arrays and bytes/bytearray/memoryview of every size, across real processes.

Sizes straddle the out-of-band threshold of ``suitkaise.pipe.wire`` (64 KiB):
a hypothesis property over 0, 1, 10, 1000, 65535, 65536 and 10**6 bytes, and
2*10**7 bytes as explicit cases; each object goes to a child and comes back,
top-level and nested in a container.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sk_testkit import BUFFER_KINDS, make_buffer
from suitkaise.pipe import wire

pytestmark = pytest.mark.timeout(300)

SIZES = [0, 1, 10, 1000, 65535, 65536, 10**6]
HUGE = 2 * 10**7


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, memoryview):
        return a.format == b.format and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(st.tuples(st.sampled_from(BUFFER_KINDS), st.sampled_from(SIZES), st.integers(0, 250)),
                   min_size=1, max_size=5),
    nested=st.booleans(),
)
def test_round_trip(echo: Any, specs: list[Any], nested: bool) -> None:
    objs = [make_buffer(k, n, s) for k, n, s in specs]
    if nested:
        echo.send(objs)
        assert same(objs, echo.recv())
    else:
        for obj in objs:  # one at a time: the echo blocks while we do not read
            echo.send(obj)
            assert same(obj, echo.recv())


@pytest.mark.parametrize("kind", BUFFER_KINDS)
def test_huge(echo: Any, kind: str) -> None:
    obj = make_buffer(kind, HUGE, 5)
    echo.send(obj)
    assert same(obj, echo.recv())
    echo.send([obj, make_buffer("ndarray", 10, 1)])
    back = echo.recv()
    assert same(obj, back[0]) and same(make_buffer("ndarray", 10, 1), back[1])


@pytest.mark.parametrize("n", [0, 1, 65535, 65536, 10**6])
def test_buffer_rule(n: int) -> None:
    """``wire.dumps`` keeps buffers under ``OOB_MIN`` in-band and sends the rest out-of-band."""
    arr = make_buffer("ndarray", n, 0)
    data, buffers = wire.dumps([arr, arr.copy()])
    assert [b.nbytes for b in buffers] == ([n, n] if n >= wire.OOB_MIN else [])
    back = wire.loads(data, [bytearray(b) for b in buffers])
    assert same(back, [arr, arr])
