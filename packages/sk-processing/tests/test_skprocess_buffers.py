"""Skprocess: numpy arrays and bytes/bytearray/memoryview of every size through tell, listen and result.

Sizes straddle the out-of-band threshold of ``suitkaise.pipe.wire`` (64 KiB):
a hypothesis property over 0, 1, 10, 1000, 65535, 65536 and 10**6 bytes, and
2*10**7 bytes as explicit cases. The child echoes each message it listens to
and returns all of them from ``__result__``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sk_testkit import BUFFER_KINDS, make_buffer
from suitkaise.processing import Skprocess

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
    return bool(a == b)


class BufferEcho(Skprocess):
    """Listens to one message per run, tells it back, returns every message."""

    def __init__(self, runs: int) -> None:
        self.process_config.runs = runs
        self.got: list[Any] = []

    def __run__(self) -> None:
        msg = self.listen(timeout=60)
        self.got.append(msg)
        self.tell(msg)

    def __result__(self) -> list[Any]:
        return self.got


def _round_trip(objs: list[Any]) -> None:
    proc = BufferEcho(len(objs))
    proc.start()
    try:
        for obj in objs:
            proc.tell(obj)
            assert same(obj, proc.listen(timeout=60)), "tell -> listen"
        assert proc.wait(timeout=120)
        result = proc.result()
        assert len(result) == len(objs)
        assert all(same(a, b) for a, b in zip(objs, result, strict=True)), "__result__"
    finally:
        proc.kill()
        proc.wait(timeout=30)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(st.tuples(st.sampled_from(BUFFER_KINDS), st.sampled_from(SIZES), st.integers(0, 250)),
                      min_size=1, max_size=5))
def test_tell_listen_result(start_method: str, specs: list[Any]) -> None:
    _round_trip([make_buffer(k, n, s) for k, n, s in specs])


def test_huge(start_method: str) -> None:
    _round_trip([make_buffer(kind, HUGE, i) for i, kind in enumerate(BUFFER_KINDS)])
