"""Pool: numpy arrays and bytes/bytearray/memoryview of every size cross the wire intact.

Sizes straddle the out-of-band threshold of ``suitkaise.pipe.wire`` (64 KiB):
0, 1, 10, 1000, 65535, 65536, 10**6 bytes as a hypothesis property, and 2*10**7
bytes as explicit cases, as items (parent -> worker) and as results (worker ->
parent), through every map variant, with star() and with the modifiers. Regression: ``Pool().map(lambda a: a.sum(),
[np.arange(10)] * 4)`` raised "not enough out-of-band buffers" because
cucumber ignored the buffer_callback's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sk_testkit import BUFFER_KINDS, make_buffer
from suitkaise.processing import Pool

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


def echo(pair: tuple[int, Any]) -> tuple[int, Any]:
    return pair


def echo_star(i: int, payload: Any) -> tuple[int, Any]:
    return i, payload


def make_result(spec: tuple[int, str, int, int]) -> tuple[int, Any]:
    i, kind, n, seed = spec
    return i, make_buffer(kind, n, seed)


def _by_index(results: list[Any]) -> list[Any]:
    return sorted(results, key=lambda r: r[0])


VARIANTS: dict[str, Callable[[Pool, Any, list[Any]], list[Any]]] = {
    "map": lambda p, f, xs: p.map(f, xs),
    "imap": lambda p, f, xs: list(p.imap(f, xs)),
    "unordered_map": lambda p, f, xs: _by_index(p.unordered_map(f, xs)),
    "unordered_imap": lambda p, f, xs: _by_index(list(p.unordered_imap(f, xs))),
    "star.map": lambda p, f, xs: p.star().map(echo_star, xs),
    "star.imap": lambda p, f, xs: list(p.star().imap(echo_star, xs)),
    "star.unordered_map": lambda p, f, xs: _by_index(p.star().unordered_map(echo_star, xs)),
    "star.unordered_imap": lambda p, f, xs: _by_index(list(p.star().unordered_imap(echo_star, xs))),
    # the modifiers take the same path to the workers and back
    "map.timeout": lambda p, f, xs: p.map.timeout(120)(f, xs),
    "map.background": lambda p, f, xs: p.map.background()(f, xs).result(120),
    "unordered_map.asynced": lambda p, f, xs: _by_index(asyncio.run(p.unordered_map.asynced()(f, xs))),
    "imap.timeout": lambda p, f, xs: list(p.imap.timeout(120)(f, xs)),
}

payloads = st.lists(
    st.tuples(st.sampled_from(BUFFER_KINDS), st.sampled_from(SIZES), st.integers(0, 250)), min_size=1, max_size=6
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variant=st.sampled_from(sorted(VARIANTS)), specs=payloads)
def test_items_and_results_round_trip(start_method: str, pool2: Pool, variant: str, specs: list[Any]) -> None:
    items = [(i, make_buffer(k, n, s)) for i, (k, n, s) in enumerate(specs)]
    got = VARIANTS[variant](pool2, echo, items)
    assert [g[0] for g in got] == list(range(len(items)))
    for (_, want), (_, have) in zip(items, got, strict=True):
        assert same(want, have), (variant, type(want).__name__, len(bytes(want)) if not isinstance(want, np.ndarray) else want.nbytes)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=payloads)
def test_results_made_in_the_worker(start_method: str, pool2: Pool, specs: list[Any]) -> None:
    got = pool2.map(make_result, [(i, k, n, s) for i, (k, n, s) in enumerate(specs)])
    for i, (k, n, s) in enumerate(specs):
        assert got[i][0] == i and same(make_buffer(k, n, s), got[i][1])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_huge_payloads(start_method: str, pool2: Pool, variant: str) -> None:
    # two kinds per variant, rotating, so that every kind crosses every path once per start method
    k = sorted(VARIANTS).index(variant)
    items = [(i, make_buffer(BUFFER_KINDS[(k + i) % len(BUFFER_KINDS)], HUGE, i)) for i in range(2)]
    got = VARIANTS[variant](pool2, echo, items)
    assert len(got) == len(items)
    for (_, want), (_, have) in zip(items, got, strict=True):
        assert same(want, have)


def test_huge_results_made_in_the_worker(start_method: str, pool2: Pool) -> None:
    specs = [(i, kind, HUGE, i) for i, kind in enumerate(BUFFER_KINDS)]
    for (i, kind, n, seed), (j, have) in zip(specs, pool2.map(make_result, specs), strict=True):
        assert i == j and same(make_buffer(kind, n, seed), have)


def test_small_numpy_arrays_issue_repro(start_method: str) -> None:
    with Pool() as pool:
        assert pool.map(lambda a: a.sum(), [np.arange(10)] * 4) == [45] * 4


@pytest.fixture
def pool2(start_method: str) -> Any:
    with Pool(2) as pool:
        yield pool
