"""``get``/``values``/``items`` through a Share take one locked step, on a dict (its
elements live) and on a user object with methods of those names (run as any method).

::

    share.o.get(k) ─► cached copy current? ── yes: a dict: read here (no lock);
                                    │               else: the call's one locked step
                                    └──── no: the call's one locked step, which makes the
                                              dict read itself when it finds a dict
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sk_testkit import run_processes
from suitkaise.share import Share, _calls, _ops

CALLS = {  # each as written in user code (`f(share.o)` would read share.o first)
    "get": lambda s: s.o.get("a"),
    "values": lambda s: s.o.values(),
    "items": lambda s: s.o.items(),
}


class Shelf:
    """A user object with a dict's read method names."""

    def __init__(self) -> None:
        self.data: dict[str, list[int]] = {"a": [1]}
        self.reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def values(self) -> list[Any]:
        return list(self.data.values())

    def items(self) -> list[Any]:
        return list(self.data.items())


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The locked steps taken: ``run`` (a transaction) and ``_calls._locked`` (a lean call)."""
    got: list[str] = []
    run, locked = _ops.run, _calls._locked

    def counted_run(*a: Any, **k: Any) -> Any:
        got.append("run")
        return run(*a, **k)

    def counted_locked(*a: Any, **k: Any) -> Any:
        got.append("lean")
        return locked(*a, **k)

    monkeypatch.setattr(_ops, "run", counted_run)
    monkeypatch.setattr(_calls, "_locked", counted_locked)
    return got


@pytest.mark.parametrize("call", ["get", "values", "items"])
def test_a_user_objects_own_read_method_is_one_locked_step(steps: list[str], call: str) -> None:
    with Share() as share:
        share.o, share.n = Shelf(), 0
        for _ in range(3):
            share.n += 1  # a commit since the cached copy of o was checked
            steps.clear()
            got = CALLS[call](share)
            assert len(steps) == 1, steps
            assert copy.copy(got) == {"get": [1], "values": [[1]], "items": [("a", [1])]}[call]


@pytest.mark.parametrize("call", ["get", "values", "items"])
def test_a_dicts_read_is_one_locked_step_or_none(steps: list[str], call: str) -> None:
    with Share() as share:
        share.o, share.n = {"a": [1]}, 0
        share.n += 1
        steps.clear()
        got = CALLS[call](share)
        assert len(steps) == 1, steps
        steps.clear()
        assert copy.copy(CALLS[call](share)) == copy.copy(got)
        assert steps == []  # the cached copy is current: read without the lock


def _make_it_a_dict(share: Share) -> None:
    share.o = {"a": [1], "b": {"x": 1}}


@pytest.mark.parametrize("in_block", [False, True])
def test_what_was_a_user_object_in_the_cache_and_is_a_dict_now_reads_live(start_method: str, in_block: bool) -> None:
    with Share() as share:
        share.o = Shelf()
        assert share.o.get("a") == [1]  # cached here: not a dict
        run_processes(_make_it_a_dict, [(share,)])  # another process stores a dict instead
        if in_block:
            with share.lock():
                share.o.get("a").append(2)
                for v in share.o.values():
                    if type(copy.copy(v)) is dict:
                        v["y"] = 2
        else:
            share.o.get("a").append(2)  # the dict's element, live
            for v in share.o.values():
                if type(copy.copy(v)) is dict:
                    v["y"] = 2
        assert share.o == {"a": [1, 2], "b": {"x": 1, "y": 2}}
