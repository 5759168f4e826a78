"""``Pool(context=...)`` and ``process_config.context``: a start method for one Pool or
one Skprocess, without touching multiprocessing's global default (issue 12.2, 14.4)."""

from __future__ import annotations

import multiprocessing

import pytest
import skprocess_support as support
from skprocess_support import ReportsStart, forked_from_this_parent

from suitkaise.processing import Pool

pytestmark = pytest.mark.timeout(120)

OTHER = {"fork": "spawn", "spawn": "fork", "forkserver": "fork"}


@pytest.fixture
def marked() -> object:
    support.RUNTIME_MARK["set"] = True
    yield
    support.RUNTIME_MARK["set"] = False


@pytest.mark.parametrize("as_object", [False, True])
def test_pool_context_overrides_the_default_for_this_pool_only(start_method: str, marked: object,
                                                               as_object: bool) -> None:
    chosen = OTHER[start_method]
    context = multiprocessing.get_context(chosen) if as_object else chosen
    with Pool(2, context=context) as pool:
        assert pool.map(forked_from_this_parent, range(4)) == [chosen == "fork"] * 4
    with Pool(2) as pool:  # the default is untouched
        assert pool.map(forked_from_this_parent, range(4)) == [start_method == "fork"] * 4
    assert multiprocessing.get_start_method() == start_method


def test_skprocess_context_overrides_the_default(start_method: str, marked: object) -> None:
    chosen = OTHER[start_method]
    assert ReportsStart(chosen).run.timeout(60)() is (chosen == "fork")
    assert ReportsStart(None).run.timeout(60)() is (start_method == "fork")
    assert multiprocessing.get_start_method() == start_method


@pytest.mark.parametrize(("context", "error", "match"), [
    ("threads", ValueError, r"Pool\(context=\.\.\.\) must be one of \["),
    (3, TypeError, r"Pool\(context=\.\.\.\) must be a start method name"),
])
def test_pool_context_is_validated(context: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Pool(1, context=context)  # type: ignore[arg-type]


def test_pool_context_with_a_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="a backend= cluster starts its own"):
        Pool(1, context="spawn", backend="tcp://127.0.0.1:1")


@pytest.mark.parametrize(("context", "error"), [("threads", ValueError), (3, TypeError)])
def test_skprocess_context_is_validated(context: object, error: type) -> None:
    proc = ReportsStart(None)
    proc.process_config.context = context  # type: ignore[assignment]
    with pytest.raises(error, match=r"ReportsStart\.process_config\.context must"):
        proc.start()
