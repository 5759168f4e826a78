"""Pool errors: the task's own exception type with the remote traceback, odd exceptions,
unserializable items/results, crashed workers (crash matrix), and the pool staying usable."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from suitkaise.processing import Pool, ProcessError
from suitkaise.processing._errors import RemoteTraceback

pytestmark = pytest.mark.timeout(120)


def square(x: int) -> int:
    return x * x


def boom_at(x: int) -> int:
    if x in (3, 7):
        raise ValueError(f"bad {x}")
    return x


class OddError(Exception):
    """Pickles, but cannot be rebuilt: __init__ needs two arguments, args holds one."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def raise_odd(x: int) -> int:
    raise OddError(x, "odd failure")


class HoldsUnsendable(Exception):
    def __init__(self) -> None:
        super().__init__("holds something")
        self.thing = Unsendable()


def raise_unsendable(x: int) -> int:
    raise HoldsUnsendable()


def call_exit(x: int) -> int:
    raise SystemExit(4)


class Unsendable:
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Unsendable refuses to be serialized")


def return_unsendable(x: int) -> object:
    return Unsendable() if x == 2 else x


def crash(how: str) -> int:
    if how == "segfault":
        ctypes.string_at(0)
    elif how == "exit":
        os._exit(3)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "oom":
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (512 * 1024 * 1024, hard))
        blob = bytearray(2 * 1024 * 1024 * 1024)
        return len(blob)
    return 0


def test_task_error_keeps_type_and_remote_traceback(start_method: str) -> None:
    with Pool(2) as pool:
        with pytest.raises(ValueError, match="bad 3") as info:
            pool.map(boom_at, range(10))
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "Traceback" in str(cause) and "boom_at" in str(cause) and "bad 3" in str(cause)
        # the pool stays usable
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
        # imap yields everything before the failing item, then raises
        seen = []
        with pytest.raises(ValueError, match="bad 3"):
            for value in pool.imap(boom_at, range(10)):
                seen.append(value)
        assert seen == [0, 1, 2]
        # unordered variants raise too
        with pytest.raises(ValueError, match="bad"):
            pool.unordered_map(boom_at, range(10))
        with pytest.raises(ValueError, match="bad"):
            list(pool.unordered_imap(boom_at, range(10)))
        assert sorted(pool.unordered_map(square, range(4))) == [0, 1, 4, 9]


def test_odd_and_unsendable_exceptions_surface_clearly(start_method: str) -> None:
    with Pool(1) as pool:
        # cucumber rebuilds exceptions whatever their __init__ signature
        with pytest.raises(OddError, match="5: odd failure") as odd:
            pool.map(raise_odd, [5])
        assert isinstance(odd.value.__cause__, RemoteTraceback)
        # an exception that cannot travel at all: a ProcessError that says what happened
        with pytest.raises(ProcessError) as info:
            pool.map(raise_unsendable, [5])
        text = str(info.value)
        assert "item 0" in text and "HoldsUnsendable" in text and "holds something" in text
        assert "could not be sent" in text
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "raise_unsendable" in str(info.value.__cause__)
        assert pool.map(square, [3]) == [9]


class ResultRefusal(Exception):
    """The user's own exception, raised by a result's ``__reduce__``."""


class RefusesToTravel:
    def __reduce__(self) -> tuple[object, ...]:
        raise ResultRefusal("this result stays here")


def return_refusing(x: int) -> object:
    return RefusesToTravel() if x == 3 else x


def test_result_whose_reduce_raises_is_the_users_own_exception(start_method: str) -> None:
    # As with pickle and cucumber.serialize: the user's exception itself, not a
    # SerializationError; cucumber's path and the Pool's item as notes.
    with Pool(2) as pool:
        with pytest.raises(ResultRefusal, match="this result stays here") as info:
            pool.map(return_refusing, range(6))
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "cucumber: raised while serializing" in notes
        assert "item 3 (RefusesToTravel)" in notes and "send it back to the caller" in notes
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "in __reduce__" in info.value.__cause__.tb
        got: list[object] = []
        with pytest.raises(ResultRefusal):
            for value in pool.imap(return_refusing, range(6)):
                got.append(value)
        assert got == [0, 1, 2]  # the results before it still arrive
        assert pool.map(square, [3]) == [9]


def test_system_exit_in_task_is_a_process_error(start_method: str) -> None:
    with Pool(1) as pool:
        with pytest.raises(ProcessError, match="SystemExit"):
            pool.map(call_exit, [1])
        assert pool.map(square, [3]) == [9]


def test_unserializable_result_and_item(start_method: str) -> None:
    with Pool(2) as pool:
        with pytest.raises(Exception, match="item 2") as info:
            pool.map(return_unsendable, range(4))
        # the user's own __reduce__ raised: its exception, with the Pool's explanation as a note
        assert "could not be serialized" in "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])
        with pytest.raises(Exception) as info2:
            pool.map(square, [1, 2, Unsendable(), 4])
        notes = " ".join(getattr(info2.value, "__notes__", []))
        assert "item 2" in notes and "Unsendable" in notes
        assert pool.map(square, [5]) == [25]


def test_errors_in_the_input_iterator_propagate(start_method: str) -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("input broke")

    with Pool(2) as pool:
        with pytest.raises(KeyError, match="input broke"):
            pool.map(square, items())
        with pytest.raises(KeyError, match="input broke"):
            list(pool.imap(square, items()))
        assert pool.map(square, [2]) == [4]


CRASHES = {
    "segfault": r"item 5 \('segfault'\).*SIGSEGV",
    "exit": r"item 5 \('exit'\).*exited with code 3",
    "sigkill": r"item 5 \('sigkill'\).*SIGKILL",
}


@pytest.mark.parametrize("how", sorted(CRASHES))
def test_worker_crash_names_item_and_cause(start_method: str, how: str) -> None:
    items = ["ok"] * 5 + [how] + ["ok"] * 20
    with Pool(2) as pool:
        with pytest.raises(ProcessError, match=CRASHES[how]):
            pool.map(crash, items)
        with pytest.raises(ProcessError, match=CRASHES[how]):
            list(pool.imap(crash, items))
        # the dead worker is replaced; the pool keeps working
        assert pool.map(square, range(20)) == [x * x for x in range(20)]


def test_out_of_memory_in_a_task(start_method: str) -> None:
    with Pool(2) as pool:
        with pytest.raises((MemoryError, ProcessError)):
            pool.map(crash, ["ok", "oom", "ok"])
        # the worker that hit the limit is retired and replaced
        assert pool.map(square, range(30)) == [x * x for x in range(30)]
        assert pool.map(crash, ["ok"] * 10) == [0] * 10


_NO_GUARD = textwrap.dedent(
    """
    import multiprocessing, sys
    from suitkaise.processing import Pool, ProcessError

    multiprocessing.set_start_method(sys.argv[1], force=True)
    # a spawn/forkserver child imports this file as __mp_main__
    if sys.argv[2] == "raise" and __name__ != "__main__":
        raise ValueError("this script cannot be imported in a child")


    def square(x):
        return x * x


    print("MAIN" if __name__ == "__main__" else "CHILD", flush=True)
    try:
        print("RESULT", Pool(2).map.timeout(60)(square, range(4)), flush=True)
    except ProcessError as e:
        print("ERROR", e, flush=True)
    """
)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("how", ["no-guard", "raise"])
def test_bootstrap_failure_names_the_main_module_import(method: str, how: str, tmp_path) -> None:
    """Issue 14.3: a worker that dies while re-importing a script without the __main__
    guard (or one that raises when imported) is reported as exactly that, and no
    internal thread traceback reaches stderr."""
    script = tmp_path / "noguard.py"
    script.write_text(_NO_GUARD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run(
        [sys.executable, str(script), method, how],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120,
    )
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, (done.stdout, done.stderr)
    message = errors[0]
    assert "the worker process (pid " in message
    assert "raised while importing the main module 'noguard.py'" in message
    assert 'if __name__ == "__main__":' in message
    assert f"{method!r} start method" in message
    assert "exited with code 1" in message
    assert "os._exit" not in message
    assert "Exception in thread" not in done.stderr
    assert "internal error" not in done.stderr
    if how == "no-guard":
        # the child's own Pool call is refused in its thread, with the reason
        assert "Pool.map was called while this process, a child started by multiprocessing" in done.stderr
    assert done.stdout.count("MAIN") == 1


def start_inner_pool(x: int) -> int:
    return sum(Pool(1).map(abs, [x]))


def start_inner_skprocess(x: int) -> int:
    from skprocess_support import Forever

    Forever().start()
    return x


@pytest.mark.parametrize("task", [start_inner_pool, start_inner_skprocess])
def test_a_task_starting_processes_gets_a_clear_error(start_method: str, task: Any) -> None:
    """Workers are daemonic: the task's own call says so and what to do (it used to be
    'internal error in the manager thread: AssertionError(...)' for a Pool)."""
    with Pool(1) as pool:
        with pytest.raises(RuntimeError, match=r"inside a daemonic process .*Skprocess classes as items"):
            pool.map(task, [1])
        assert pool.map(square, [3]) == [9]  # the pool goes on


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda p, fn: p.map(fn, [1], timeout=3), ["Pool.map()", "'timeout'", "pool.map.timeout(3)", "item_timeout=3"]),
        (lambda p, fn: p.imap(fn, [1], chunk_size=2), ["Pool.imap()", "'chunk_size'", "chunksize="]),
        (lambda p, fn: p.unordered_imap(fn, [1], retry=1), ["'retry'", "did you mean retries="]),
        (lambda p, fn: p.map.background()(fn, [1], bogus=1), ["'bogus'", "its options are progress="]),
        (lambda p, fn: p.star().map.asynced()(fn, [(1,)], nope=1), ["'nope'"]),
        (lambda p, fn: p.map(fn, [1], 10), ["Pool.map(fn, items, 10)", "chunksize=10"]),
        (lambda p, fn: p.unordered_map(fn, [1], [2]), ["takes one iterable", "pool.star().unordered_map(fn, zip(a, b))"]),
    ],
)
def test_an_argument_a_map_method_does_not_take_is_named_with_what_it_takes(call: Any, says: list[str]) -> None:
    # Before, Python's own TypeError named an internal class: "_ListMethod.__call__() got an
    # unexpected keyword argument 'timeout'".
    with Pool(1) as pool:
        with pytest.raises(TypeError) as info:
            call(pool, abs)
        message = str(info.value)
        assert "_ListMethod" not in message and "__call__" not in message
        for part in says:
            assert part in message
        assert pool.map(abs, [-1, 2]) == [1, 2]  # the pool is unharmed


def _fail_at_3(x: int) -> int:
    if x == 3:
        raise ValueError("item 3 broke")
    return x


def _input_failing_at(n: int) -> Iterator[int]:
    """0..n-1, then ``LookupError`` (raised by the input itself, not by an item)."""
    yield from range(n)
    raise LookupError(f"input broke at {n}")


@pytest.mark.parametrize("method", ["imap", "unordered_imap"])
@pytest.mark.parametrize("n", [0, 1, 5, 1500, 20_000])
def test_a_failing_input_yields_every_result_before_it_then_its_error(start_method: str, method: str, n: int) -> None:
    """Like ``map()``: starting the call never raises the input's error (it read ahead and
    raised it from ``pool.imap(...)`` itself, outside the user's ``try``); every item read
    before it runs and is yielded (imap: in order), then the input's own exception is
    raised, its traceback reaching into the input (it lost all but one result before)."""
    with Pool(2) as pool:
        results = getattr(pool, method)(square, _input_failing_at(n))  # must not raise
        seen: list[int] = []
        with pytest.raises(LookupError, match=f"input broke at {n}") as info:
            for value in results:
                seen.append(value)
        expected = [i * i for i in range(n)]
        assert (seen if method == "imap" else sorted(seen)) == expected
        names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert "_input_failing_at" in names
        assert f"after {n} item(s)" in " ".join(info.value.__notes__)
        assert list(results) == []  # ended: nothing more, no second error
        assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]  # no worker left busy
        assert sorted(pool.unordered_imap(square, [3, 4])) == [9, 16]


@pytest.mark.parametrize("n", [0, 5, 1500])
def test_a_failing_input_of_map_raises_its_error_and_leaves_the_pool_usable(start_method: str, n: int) -> None:
    """The eager methods read the whole input first: its error is raised by the call."""
    with Pool(2) as pool:
        for method in ("map", "unordered_map"):
            with pytest.raises(LookupError, match=f"input broke at {n}"):
                getattr(pool, method)(square, _input_failing_at(n))
        assert pool.map(square, range(3)) == [0, 1, 4]


def test_an_item_error_before_the_input_failed_is_raised_first(start_method: str) -> None:
    """imap yields in order: an item that raised before the input broke is the first error."""
    with Pool(2) as pool:
        seen: list[int] = []
        with pytest.raises(ValueError, match="item 3 broke"):
            for value in pool.imap(_fail_at_3, _input_failing_at(5)):
                seen.append(value)
        assert seen == [0, 1, 2]
        assert pool.map(square, [3]) == [9]
