"""What a type checker sees in user code: checked by mypy in the ``type`` tox env.

Not a test module (pytest does not collect it) and never run: every line is a
claim about static types (``assert_type``). If ``@modifiable`` or the Pool's map
methods ever erase types again (``(*args, **kwargs) -> Any``), ``assert_type``
fails, and the ``type: ignore`` comments become unused (``warn_unused_ignores``).
"""

from __future__ import annotations

from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, assert_type

from suitkaise import Pool as MetaPool
from suitkaise.processing import Pool, Skprocess, TaskFuture
from suitkaise.processing._pool import ResultIterator


def square(x: int) -> int:
    return x * x


def name_of(x: int) -> str:
    return f"#{x}"


def add(a: int, b: int) -> int:
    return a + b


class Counter(Skprocess):
    def __init__(self, n: int) -> None:
        self.n = n

    def __result__(self) -> int:
        return self.n


def pool_calls(pool: Pool, xs: list[int]) -> None:
    assert_type(pool.map(square, xs), list[int])
    assert_type(pool.map(name_of, range(3)), list[str])
    assert_type(pool.unordered_map(square, xs), list[int])
    assert_type(pool.imap(square, xs), ResultIterator[int])
    assert_type(pool.unordered_imap(name_of, iter(xs)), ResultIterator[str])
    for value in pool.imap(name_of, xs):
        assert_type(value, str)
    # modifiers: .timeout() keeps the signature, .background() -> Future, .asynced() -> coroutine
    assert_type(pool.map.timeout(5)(square, xs), list[int])
    assert_type(pool.imap.timeout(5)(square, xs), ResultIterator[int])
    assert_type(pool.map.background()(square, xs), Future[list[int]])
    assert_type(pool.map.timeout(5).background()(square, xs), Future[list[int]])
    assert_type(pool.map.background().timeout(5)(square, xs), Future[list[int]])
    assert_type(pool.imap.background()(name_of, xs), Future[list[str]])
    coro = assert_type(pool.map.asynced()(square, xs), Coroutine[Any, Any, list[int]])
    coro.close()  # (an un-awaited coroutine is closed, as users would)
    coro = assert_type(pool.unordered_imap.asynced().timeout(1)(square, xs), Coroutine[Any, Any, list[int]])
    coro.close()
    # star(): tuple items unpacked as arguments
    assert_type(pool.star().map(add, [(1, 2), (3, 4)]), list[int])
    # an Skprocess class: each item's __result__ (not typed through the class)
    assert_type(pool.map(Counter, xs), list[Any])
    pool.map(square, xs, progress="yes")  # type: ignore[call-overload]
    # item options keep the types; errors= is one of three words
    assert_type(pool.map(square, xs, chunksize=10, item_timeout=5.0, errors="return", retries=2), list[int])
    pool.map(square, xs, errors="ignore")  # type: ignore[call-overload]
    # submit/apply: typed by the function's signature (ParamSpec)
    assert_type(pool.submit(add, 1, 2), TaskFuture[int])
    assert_type(pool.submit.timeout(3)(name_of, 4), TaskFuture[str])
    assert_type(pool.apply(add, 1, b=2), int)
    pool.submit(add, "x", 2)  # type: ignore[arg-type]
    sub = assert_type(pool.submit.asynced()(square, 3), Coroutine[Any, Any, int])
    sub.close()
    pool.map.background().asynced()  # (refused at run time: NoReturn: nothing after it is checked)


def meta_pool(pool: MetaPool, xs: list[int]) -> None:
    assert_type(pool.map(square, xs), list[int])


async def awaited(pool: Pool, xs: list[int]) -> None:
    assert_type(await pool.map.asynced()(square, xs), list[int])


def process_calls(p: Counter) -> None:
    assert_type(p.run(), Any)
    assert_type(p.wait(1.0), bool)
    assert_type(p.wait.timeout(2)(), bool)
    assert_type(p.wait.background()(0.5), Future[bool])
    assert_type(p.wait.timeout(2).background()(), Future[bool])
    result = assert_type(p.result.asynced()(), Coroutine[Any, Any, Any])
    result.close()
    assert_type(p.listen.timeout(1)(0.5), Any)
    p.wait("soon")  # type: ignore[arg-type]
    p.result(42)  # type: ignore[call-arg]


def config_typos(p: Counter) -> None:
    # the runtime check must stay invisible to type checkers: a visible __setattr__ would
    # make them accept any name (and these ignores unused)
    p.process_config.run = 3  # type: ignore[attr-defined]
    p.process_config.timeouts.rnu = 1  # type: ignore[attr-defined]
    p.process_config.runs = 3
    p.process_config.timeouts.run = 1.5
