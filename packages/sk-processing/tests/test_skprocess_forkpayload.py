"""Under fork an instance of atoms is not serialized: the child runs the one it inherited
(``_forkpayload.fork_payload``); anything a cucumber copy could differ from still travels."""

from __future__ import annotations

from typing import Any

import pytest
from skprocess_support import SHARED_ITEMS, Counter, HoldsSharedList

from suitkaise.cucumber import register_handler
from suitkaise.processing import Skprocess
from suitkaise.processing._config import ProcessConfig
from suitkaise.processing._forkpayload import fork_payload

pytestmark = pytest.mark.timeout(120)


def test_an_instance_of_atoms_is_its_own_payload() -> None:
    proc = Counter(3)
    proc.label, proc.ratio, proc.blob, proc.nothing = "x", 0.5, b"\0", None
    proc.process_config.join_in = 2.5
    proc.process_config.timeouts.run = 1.0
    assert fork_payload(proc) is proc


def _with_setstate() -> Skprocess:
    class WithSetstate(Counter):
        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

    return WithSetstate(1)


def _with_handler() -> Skprocess:
    class WithHandler(Counter):  # (the registry keeps its name: one entry for the session)
        pass

    register_handler(WithHandler, lambda obj: None)
    return WithHandler(1)


def _with_copyreg(monkeypatch: pytest.MonkeyPatch) -> Skprocess:
    import copyreg

    class WithCopyreg(Counter):
        pass

    monkeypatch.setitem(copyreg.dispatch_table, WithCopyreg, lambda obj: (WithCopyreg, (1,)))
    return WithCopyreg(1)


class _Config(ProcessConfig):
    pass


def _case(name: str, monkeypatch: pytest.MonkeyPatch) -> Skprocess:
    proc = Counter(3)
    if name == "list":
        proc.items = [1]
    elif name == "float subclass":
        proc.value = type("F", (float,), {})(1.0)
    elif name == "timers":  # a restart: the parent's timers are set by then
        from suitkaise.processing import ProcessTimers

        proc.__dict__["timers"] = ProcessTimers()
    elif name == "config subclass":
        proc.__dict__["process_config"] = _Config(runs=3)
    elif name == "config extra":
        proc.process_config.__dict__["note"] = ["x"]  # (setting it is an AttributeError: not a field)
    elif name == "context object":
        import multiprocessing

        proc.process_config.context = multiprocessing.get_context("fork")  # type: ignore[assignment]
    elif name == "setstate":
        return _with_setstate()
    elif name == "handler":
        return _with_handler()
    elif name == "copyreg":
        return _with_copyreg(monkeypatch)
    return proc


@pytest.mark.parametrize("name", ["list", "float subclass", "timers", "config subclass", "config extra",
                                  "context object", "setstate", "handler", "copyreg"])
def test_anything_a_copy_could_differ_from_is_serialized(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(fork_payload(_case(name, monkeypatch)), bytes)


def test_the_child_works_on_a_copy_of_a_shared_list(start_method: str) -> None:
    aliased, items, shared = HoldsSharedList().run()
    assert (aliased, items, shared) == (False, [1, 2, 3], [1, 2])
    assert SHARED_ITEMS == [1, 2]


def test_an_instance_of_atoms_runs_and_reports_back(start_method: str) -> None:
    proc = Counter(5)
    proc.label = "kept"
    assert proc.run() == 5
    assert proc.current_run == 5 and proc.timers is not None and proc.timers.run.num_times == 5
    assert proc.counter == 0 and proc.label == "kept"  # the parent's own attributes stay
    assert proc.run() == 5  # a second start from the same instance
