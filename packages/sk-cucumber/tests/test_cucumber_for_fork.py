"""``serialize(obj, for_fork=True)``: ``__main__`` classes and functions go by name.

A child forked from this process has the very same objects under those names, so the
bytes name them instead of carrying them (by value, with a fingerprint). Anything that
is not reachable under its name in ``__main__`` still travels by value.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from suitkaise.cucumber import deserialize, serialize


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A stand-in ``__main__`` holding a class and a function defined "in the script"."""
    main = types.ModuleType("__main__")
    main.__file__ = __file__
    exec(
        "class Job:\n"
        "    def __init__(self, n):\n"
        "        self.n = n\n"
        "    def twice(self):\n"
        "        return 2 * self.n\n"
        "def triple(x):\n"
        "    return 3 * x\n",
        main.__dict__,
    )
    monkeypatch.setitem(sys.modules, "__main__", main)
    yield main


def _globals_named(data: bytes) -> set[str]:
    """The ``"module name"`` pairs the payload refers to by name (STACK_GLOBAL operands)."""
    import pickletools

    memo: list[Any] = []
    pushed: list[Any] = []  # string operands pushed so far (None for anything else)
    names = set()
    for op, arg, _pos in pickletools.genops(data):
        if op.name == "MEMOIZE":
            memo.append(pushed[-1] if pushed else None)
        elif op.name in ("BINGET", "LONG_BINGET"):
            pushed.append(memo[arg])
        elif op.name == "STACK_GLOBAL":
            names.add(f"{pushed[-2]} {pushed[-1]}")
            pushed.append(None)
        else:
            pushed.append(arg if isinstance(arg, str) else None)
    return names


def test_main_class_and_function_go_by_name(main_module: types.ModuleType) -> None:
    job = main_module.Job(7)
    obj = {"job": job, "fn": main_module.triple}
    full = serialize(obj)
    forked = serialize(obj, for_fork=True)
    assert len(forked) < len(full) / 2
    assert {"__main__ Job", "__main__ triple"} <= _globals_named(forked)
    back = deserialize(forked)
    assert type(back["job"]) is main_module.Job  # the very class, not a rebuilt copy
    assert back["job"].twice() == 14
    assert back["fn"] is main_module.triple


def test_a_fork_child_rebuilds_them(main_module: types.ModuleType) -> None:
    data = serialize([main_module.Job(5), main_module.triple], for_fork=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            job, fn = deserialize(data)
            ok = type(job) is sys.modules["__main__"].Job and job.twice() == 10 and fn(2) == 6
            os.write(w, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 10) == b"ok"
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def test_what_is_not_under_its_name_still_travels_by_value(main_module: types.ModuleType) -> None:
    job_cls = main_module.Job
    main_module.Job = None  # the name now means something else: the class must travel
    data = serialize(job_cls(3), for_fork=True)
    assert "__main__ Job" not in _globals_named(data)
    assert deserialize(data).twice() == 6

    def local(x: int) -> int:
        return x + 1

    local.__module__ = "__main__"
    assert deserialize(serialize(local, for_fork=True))(1) == 2


def test_without_for_fork_main_classes_keep_travelling_by_value(main_module: types.ModuleType) -> None:
    data = serialize(main_module.Job(1))
    assert "__main__ Job" not in _globals_named(data)
    assert deserialize(data).twice() == 2


def test_for_fork_does_not_stick_to_the_reused_pickler(main_module: types.ModuleType) -> None:
    # for_fork runs on the thread's reusable pickler: the next plain call, also after a
    # for_fork call that failed, must send __main__ classes by value again.
    class Refuses:
        def __reduce__(self) -> Any:
            raise ValueError("not today")

    job = main_module.Job(4)
    assert "__main__ Job" in _globals_named(serialize(job, for_fork=True))
    assert "__main__ Job" not in _globals_named(serialize(job))
    with pytest.raises(ValueError, match="not today"):
        serialize([job, Refuses()], for_fork=True)
    data = serialize(job)
    assert "__main__ Job" not in _globals_named(data)
    assert deserialize(data).twice() == 8
    assert deserialize(serialize(job, for_fork=True)).twice() == 8
