"""A result whose own ``__reduce__`` raises reaches the caller as the user's exception,
on the local backend and on a Dask cluster alike (one chunk runner, ``_chunk.py``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from suitkaise.processing import Pool
from suitkaise.processing._errors import RemoteTraceback

pytestmark = pytest.mark.timeout(180)


class ResultRefusal(Exception):
    """The user's own exception, raised by a result's ``__reduce__``."""


class RefusesToTravel:
    def __reduce__(self) -> tuple[object, ...]:
        raise ResultRefusal("this result stays here")


def return_refusing(x: int) -> object:
    return RefusesToTravel() if x == 3 else x


def _check(pool: Pool) -> None:
    with pytest.raises(ResultRefusal, match="this result stays here") as info:
        pool.map(return_refusing, range(6))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "cucumber: raised while serializing" in notes
    assert "item 3 (RefusesToTravel)" in notes
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in __reduce__" in info.value.__cause__.tb
    assert pool.map(abs, [-3]) == [3]


def test_local_pool(start_method: str) -> None:
    with Pool(2) as pool:
        _check(pool)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    c = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    try:
        yield c
    finally:
        c.close()


def test_dask_pool(cluster: Any) -> None:
    with Pool(backend=cluster) as pool:
        _check(pool)
