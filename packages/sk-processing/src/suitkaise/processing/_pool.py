"""``Pool``: map a function (or an ``Skprocess`` class) over items in worker processes.

::

    pool.map(fn, items)            this module: the four map methods and their modifiers
      └─ Call(...) ─► Pool._start ─► LocalRun (_pool_local) or _DaskRun (_dask),
                                     both on CallBase (_pool_call)
    caller ──items──► [serialize chunk] ──► manager thread ──socket──► worker 1..N
           ◄─results─ [decode, raise]   ◄── (sentinels watched) ◄──────┘

See ``_pool_call`` for the caller's side of one call (chunking, bounded
read-ahead, ordering, timeouts, errors, progress), ``_pool_core`` for the
manager thread, ``_pool_worker`` for the worker loop and ``_chunk`` for the
code that runs a chunk of items (shared with the Dask workers).

Decisions (where we differ from suitkaise 0.4.14):

- ``.timeout(s)`` on ``map``/``unordered_map`` bounds the **whole call**; on
  ``imap``/``unordered_imap`` it bounds **each wait for the next result**.
  Expiry raises ``ResultTimeoutError`` (a ``TimeoutError``); the workers busy
  with that call are killed and replaced, so a stuck task cannot poison the pool.
- A task's exception is re-raised with its own type and the worker's
  traceback as ``__cause__`` (``RemoteTraceback``); 0.4.14 raised ``RuntimeError``.
- A worker that dies hard raises ``ProcessError`` naming the item, never hangs.
- ``imap``/``unordered_imap`` read the input lazily with bounded read-ahead.

Typing: the map methods are objects with overloaded ``__call__`` so a type
checker sees ``pool.map(f, xs)`` as ``list[R]`` when ``f`` returns ``R``
(``imap``: ``ResultIterator[R]``; ``.background()``: ``Future[list[R]]``;
``.asynced()``: a coroutine of ``list[R]``; an ``Skprocess`` class: ``Any`` items).
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import os
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future
from multiprocessing.context import BaseContext
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    NamedTuple,
    NoReturn,
    ParamSpec,
    Protocol,
    Self,
    TypeAlias,
    TypeVar,
    cast,
    overload,
)

from suitkaise.processing._context import check_context
from suitkaise.processing._modifiers import (
    check_timeout,
    refuse_combination,
    run_in_background,
    run_in_executor,
)
from suitkaise.processing._pool_call import Call, Progress, check_item_options
from suitkaise.processing._pool_core import Core
from suitkaise.processing._pool_life import make_spec
from suitkaise.processing._pool_local import LocalRun
from suitkaise.processing._pool_submit import Submitter, TaskFuture

if TYPE_CHECKING:
    from suitkaise.processing._skprocess import Skprocess

__all__ = ["Pool", "ResultIterator"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
Errors: TypeAlias = Literal["raise", "return", "skip"]


class _Default:
    def __repr__(self) -> str:
        return "<the pool's>"


_DEFAULT: Any = _Default()  # a map keyword left to the Pool's setting


class _Runner(Protocol):
    """One call in progress: the local ``LocalRun`` or a backend's (e.g. Dask's)."""

    def __iter__(self) -> Iterator[Any]: ...
    def __next__(self) -> Any: ...
    def collect(self) -> list[Any]: ...
    def close(self) -> None: ...


class ResultIterator(Iterator[R], Generic[R]):
    """What ``imap``/``unordered_imap`` return: an iterator you may ``close()`` early."""

    def __init__(self, run: _Runner) -> None:
        self._run = run

    def __iter__(self) -> Iterator[R]:
        # the run's own iterator: a for loop steps it directly, with no call of ours per result
        return iter(self._run)

    def __next__(self) -> R:
        return next(self._run)

    def close(self) -> None:
        self._run.close()

    def __enter__(self) -> ResultIterator[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PoolMethod:
    """``pool.map`` & co: call it for results; ``.timeout(s)``, ``.background()``, ``.asynced()``."""

    __slots__ = ("_eager", "_name", "_ordered", "_owner", "_timeout")
    _suffix = ""

    def __init__(self, owner: _Mapper, name: str, *, ordered: bool, eager: bool, timeout: float | None = None) -> None:
        self._owner = owner
        self._name = name
        self._ordered = ordered
        self._eager = eager
        self._timeout = timeout

    def _start(self, fn: Any, iterable: Any, progress: Progress, options: _Options) -> _Runner:
        pool = self._owner._pool()
        if progress is None:
            progress = pool._progress_default
        where = f"Pool.{self._name}"
        item_timeout = pool._item_timeout if options.item_timeout is _DEFAULT else options.item_timeout
        retries = pool._retries if options.retries is _DEFAULT else options.retries
        check_item_options(where, chunksize=options.chunksize, item_timeout=item_timeout, errors=options.errors,
                           retries=retries)
        return pool._start(Call(self._name, fn, iterable, star=self._owner._star, ordered=self._ordered,
                                eager=self._eager, timeout=self._timeout, progress=progress,
                                chunksize=options.chunksize, item_timeout=item_timeout, errors=options.errors,
                                retries=retries))

    def _options(self, extra: tuple[Any, ...], unknown: dict[str, Any], chunksize: int | None, item_timeout: Any,
                 errors: Errors, retries: Any) -> _Options:
        if extra or unknown:
            refuse_arguments(f"Pool.{self._name}", extra, unknown)
        return _Options(chunksize, item_timeout, errors, retries)

    def _collect(self, fn: Any, iterable: Any, progress: Progress, options: _Options) -> list[Any]:
        return self._start(fn, iterable, progress, options).collect()

    def _as(self, cls: type[_M], timeout: float | None) -> _M:
        return cls(self._owner, self._name, ordered=self._ordered, eager=self._eager, timeout=timeout)

    def timeout(self, seconds: float) -> Self:
        """``map``: give up when the whole call takes longer; ``imap``: when the next result does."""
        return self._as(type(self), check_timeout(self._name, seconds))

    def background(self) -> _BackgroundMethod:
        """Run on a background thread; calling returns a Future whose result is a list."""
        return self._as(_BackgroundMethod, self._timeout)

    def asynced(self) -> _AsyncMethod:
        """Calling returns a coroutine whose result is a list (the work runs off the event loop)."""
        return self._as(_AsyncMethod, self._timeout)

    def __repr__(self) -> str:
        timeout = "" if self._timeout is None else f".timeout({self._timeout})"
        return f"<{self._name}{timeout}{self._suffix}>"


_M = TypeVar("_M", bound=_PoolMethod)

_MAP_OPTIONS = ("progress", "chunksize", "item_timeout", "errors", "retries")
_HINTS = {
    "timeout": "a time limit on the whole call is a modifier: pool.{m}.timeout(3)(fn, items); "
               "on each item: item_timeout=3",
    "chunk_size": "did you mean chunksize=?",
    "chunks": "did you mean chunksize=?",
    "processes": "the number of workers is the Pool's: Pool(processes)",
    "callback": "for a callback per result use pool.submit(fn, item).add_done_callback(cb), "
                "or iterate pool.imap(fn, items)",
    "error_callback": "for a callback per failure use pool.submit(fn, item).add_error_callback(cb)",
}


def refuse_arguments(where: str, extra: tuple[Any, ...], unknown: dict[str, Any]) -> NoReturn:
    """The TypeError for arguments a map method does not take, saying what it does take."""
    method = where.removeprefix("Pool.")
    if len(extra) == 1 and type(extra[0]) is int:
        raise TypeError(f"{where}(fn, items, {extra[0]}): the chunk size is a keyword here: chunksize={extra[0]}")
    if extra:
        raise TypeError(f"{where}(fn, items) takes one iterable of items, got {1 + len(extra)}: for a "
                        f"function of several arguments, zip them: pool.star().{method}(fn, zip(a, b))")
    name = next(iter(unknown))
    hint = _HINTS.get(name, "").format(m=method)
    if not hint:
        close = difflib.get_close_matches(name, _MAP_OPTIONS, n=1)
        hint = f"did you mean {close[0]}=?" if close else ""
    options = ", ".join(f"{o}=" for o in _MAP_OPTIONS)
    raise TypeError(f"{where}() got an unexpected keyword argument {name!r} ({hint + '; ' if hint else ''}"
                    f"its options are {options})")


class _Options(NamedTuple):
    """The per-call item options of a map method (``_DEFAULT``: the pool's)."""

    chunksize: int | None
    item_timeout: Any
    errors: str
    retries: Any


class _ListMethod(_PoolMethod):
    """``pool.map`` / ``pool.unordered_map``: a list of results."""

    __slots__ = ()

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> list[Any]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> list[R]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> list[R]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *extra: Any, progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT,
                 **unknown: Any) -> list[Any]:
        options = self._options(extra, unknown, chunksize, item_timeout, errors, retries)
        return self._collect(fn_or_process, iterable, progress, options)


class _IterMethod(_PoolMethod):
    """``pool.imap`` / ``pool.unordered_imap``: an iterator over the results."""

    __slots__ = ()

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> ResultIterator[Any]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> ResultIterator[R]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> ResultIterator[R]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *extra: Any, progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT, **unknown: Any) -> ResultIterator[Any]:
        options = self._options(extra, unknown, chunksize, item_timeout, errors, retries)
        return ResultIterator(self._start(fn_or_process, iterable, progress, options))


class _BackgroundMethod(_PoolMethod):
    """``.background()``: calling returns a ``Future`` of the list of results."""

    __slots__ = ()
    _suffix = ".background()"

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> Future[list[Any]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> Future[list[R]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> Future[list[R]]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *extra: Any, progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT, **unknown: Any) -> Future[list[Any]]:
        options = self._options(extra, unknown, chunksize, item_timeout, errors, retries)
        return run_in_background(functools.partial(self._collect, fn_or_process, iterable, progress, options),
                                 self._name)

    def asynced(self) -> NoReturn:
        refuse_combination(self._name)


class _AsyncMethod(_PoolMethod):
    """``.asynced()``: calling returns a coroutine of the list of results."""

    __slots__ = ()
    _suffix = ".asynced()"

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> Coroutine[Any, Any, list[Any]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> Coroutine[Any, Any, list[R]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise", retries: Any = _DEFAULT) -> Coroutine[Any, Any, list[R]]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *extra: Any,
                 progress: Progress = None, chunksize: int | None = None,
                 item_timeout: Any = _DEFAULT, errors: Errors = "raise",
                 retries: Any = _DEFAULT, **unknown: Any) -> Coroutine[Any, Any, list[Any]]:
        options = self._options(extra, unknown, chunksize, item_timeout, errors, retries)
        return run_in_executor(functools.partial(self._collect, fn_or_process, iterable, progress, options))

    def background(self) -> NoReturn:
        refuse_combination(self._name)


class _Mapper:
    """The four map methods, shared by ``Pool`` and ``pool.star()``."""

    _star = False

    def _pool(self) -> Pool:
        raise NotImplementedError

    @property
    def map(self) -> _ListMethod:
        """Apply ``fn_or_process`` to every item; the list of results in input order.

        ``.timeout(s)`` bounds the whole call.
        """
        return _ListMethod(self, "map", ordered=True, eager=True)

    @property
    def unordered_map(self) -> _ListMethod:
        """Like ``map``, but the list is in completion order."""
        return _ListMethod(self, "unordered_map", ordered=False, eager=True)

    @property
    def imap(self) -> _IterMethod:
        """Iterator over results in input order; input read lazily. ``.timeout(s)`` is per result."""
        return _IterMethod(self, "imap", ordered=True, eager=False)

    @property
    def unordered_imap(self) -> _IterMethod:
        """Iterator over results in completion order; input read lazily. ``.timeout(s)`` is per result."""
        return _IterMethod(self, "unordered_imap", ordered=False, eager=False)


class _Submit:
    """``pool.submit``: call it to run one task, a ``TaskFuture`` back; ``.timeout(s)`` kills the
    task's worker after ``s`` seconds; ``.asynced()`` returns a coroutine of the result."""

    __slots__ = ("_pool", "_timeout")

    def __init__(self, pool: Pool, timeout: Any = _DEFAULT) -> None:
        self._pool = pool
        self._timeout = timeout

    def __call__(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        return self._pool._submit(fn, args, kwargs, self._timeout)

    def timeout(self, seconds: float) -> _Submit:
        """The task's time limit: past it, its worker is killed and replaced and the
        future fails with ``ItemTimeoutError``; the pool goes on."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
            raise ValueError(f"Pool.submit.timeout() needs a number of seconds > 0, got {seconds!r}")
        return _Submit(self._pool, float(seconds))

    def asynced(self) -> _AsyncSubmit:
        """Calling returns a coroutine of the task's result (cancelling it cancels the task)."""
        return _AsyncSubmit(self._pool, self._timeout)

    def __repr__(self) -> str:
        return "<submit>" if self._timeout is _DEFAULT else f"<submit.timeout({self._timeout})>"


class _AsyncSubmit:
    """``pool.submit.asynced()``: calling returns a coroutine of the task's result."""

    __slots__ = ("_pool", "_timeout")

    def __init__(self, pool: Pool, timeout: Any) -> None:
        self._pool = pool
        self._timeout = timeout

    def __call__(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return _await_task(self._pool, fn, args, kwargs, self._timeout)

    def __repr__(self) -> str:
        return "<submit.asynced()>"


async def _await_task(pool: Pool, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: Any) -> R:
    return await asyncio.wrap_future(pool._submit(fn, args, kwargs, timeout))


class _StarView(_Mapper):
    """``pool.star()``: the same methods, with tuple items unpacked as arguments."""

    _star = True

    def __init__(self, pool: Pool) -> None:
        self.__pool = pool

    def _pool(self) -> Pool:
        return self.__pool

    def __repr__(self) -> str:
        return f"{self.__pool!r}.star()"


class Pool(_Mapper):
    """A pool of long-lived worker processes.

    ``Pool(workers=None, *, progress=False, context=None)``: ``workers`` defaults to the
    number of CPUs. ``progress=True`` shows a tqdm bar (install
    ``sk-processing[progress]``; silent when stderr is not a terminal);
    ``progress=callable`` is called as ``callable(done, total)`` in the calling
    thread (``total`` is ``None`` for inputs without ``len``). Every map method
    also takes ``progress=`` to override the pool's default for one call.

    Workers start when work waits for them (a call with one item starts one
    worker, a larger one fills the pool) and are restarted on demand, so the pool
    stays usable after ``close()``, ``terminate()``, a crashed worker or a timeout.

    ``context=`` chooses the start method of this pool's workers: ``"fork"``,
    ``"spawn"``, ``"forkserver"`` or a ``multiprocessing.get_context(...)``
    object, without changing the global default (``None``, the default,
    follows ``multiprocessing.set_start_method`` when workers start).

    Per item (each map method also takes them, for one call): ``item_timeout=``
    seconds, past which the item's worker is killed and replaced and the item fails
    with ``ItemTimeoutError``; ``retries=`` re-runs an item whose worker crashed on a
    fresh worker, then quarantines it (``WorkerCrashedError``) while the rest finish.
    Per worker: ``max_tasks_per_worker=`` items, ``max_memory_per_worker=`` bytes of
    RSS (an int, or a string such as ``"2GB"``), checked after each item; past them the
    worker is replaced, and the rest of its chunk runs on another one.

    A worker's life: ``initializer(*initargs)`` runs once in each worker before its
    first item (replacements too); an initializer that raises fails the call with a
    ``ProcessError`` naming it (its traceback as ``__cause__``) instead of restarting
    workers forever. ``on_exit()`` runs in each worker when it stops gracefully
    (``close()``, an idle pool garbage-collected); if it raises, a warning record is
    logged in the parent. In a task, ``worker_id()`` and ``worker_state()`` give the
    worker's slot and a dict that lives as long as the worker. Live resources (a
    database connection, ...) in items, star-arguments or the function's closure
    are reconnected once per worker and reused; ``auth=`` is passed to that
    reconnect (keyed like ``reconnect_all``'s: ``{"psycopg2.Connection": {"*": pw}}``).
    ``logging`` records from workers reach the parent's handlers (with
    ``record.worker_id``). ``nested=True`` lets tasks start their own ``Skprocess``
    or ``Pool`` (they die with the pool's process, as the workers do).

    ``backend=`` runs the same calls on a cluster instead of local processes:
    a ``DaskBackend``, or directly a ``distributed.Client``, a scheduler
    address (``"tcp://host:8786"``) or a Dask cluster object (install
    ``sk-processing[dask]``). ``workers`` then defaults to the cluster's
    thread count, read at each call.
    """

    _backend: Any = None

    def __init__(
        self, workers: int | None = None, *, progress: Progress = False, backend: Any = None,
        context: str | BaseContext | None = None, item_timeout: float | None = None, retries: int = 0,
        max_tasks_per_worker: int | None = None, max_memory_per_worker: int | str | None = None,
        initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (),
        on_exit: Callable[[], Any] | None = None, auth: dict[str, Any] | None = None, nested: bool = False,
    ) -> None:
        self._workers_given = workers
        self._context = check_context(context, "Pool(context=...)")
        if backend is not None and context is not None:
            raise ValueError("Pool(context=...) chooses how local workers start; a backend= cluster starts its own")
        check_item_options("Pool(...)", item_timeout=item_timeout, retries=retries)
        self._item_timeout = None if item_timeout is None else float(item_timeout)
        self._retries = retries
        self._limits = (_check_max_tasks(max_tasks_per_worker), parse_memory(max_memory_per_worker))
        self._life = make_spec(initializer, initargs, on_exit, auth, nested)
        if backend is not None and self._life is not None:
            raise ValueError(
                "Pool(initializer=, on_exit=, auth=, nested=) configure local workers; a backend= cluster "
                "runs its own (worker_id() and worker_state() work there too)"
            )
        if backend is not None:
            from suitkaise.processing._dask import DaskBackend

            self._backend = DaskBackend.wrap(backend)
        if workers is None:
            workers = os.cpu_count() or 1
        elif isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"Pool(workers=...) must be an int or None, got {type(workers).__name__} {workers!r}")
        elif workers < 1:
            raise ValueError(f"Pool(workers=...) must be at least 1, got {workers}")
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise TypeError(
                "Pool(progress=...) must be True/False or a callable(done, total), "
                f"got {type(progress).__name__}"
            )
        self._workers = workers
        self._progress_default = progress
        self._core = self._new_core()

    @property
    def workers(self) -> int:
        """Number of worker processes (with a cluster backend: its worker threads, unless given)."""
        if self._backend is not None and self._workers_given is None:
            return int(self._backend.total_threads())
        return self._workers

    def _pool(self) -> Pool:
        return self

    def star(self) -> _StarView:
        """The map methods with tuple items unpacked: ``fn(*item)`` (other items are passed whole)."""
        return _StarView(self)

    def _new_core(self) -> Core:
        core = Core(self._workers, self._context, self._life, max_items=self._limits[0], max_rss=self._limits[1])
        self._submitter = Submitter(core)
        self._finalizer = weakref.finalize(self, _dispose, core, self._submitter)
        return core

    def _current_core(self) -> Core:
        if self._core.pid != os.getpid():
            # used in a forked child: the workers belong to the parent; start afresh
            self._core = self._new_core()
        return self._core

    def _start(self, call: Call) -> _Runner:
        if self._backend is not None:
            self._refuse_on_backend(call.name, call.item_timeout, call.retries)
            return self._backend.start(call, self._workers_given)
        return LocalRun(self._current_core(), self._workers, call)

    def _refuse_on_backend(self, name: str, item_timeout: float | None, retries: int) -> None:
        if item_timeout is not None or retries or self._limits != (None, None):
            raise ValueError(
                f"Pool.{name}: item_timeout=, retries=, max_tasks_per_worker= and max_memory_per_worker= act on "
                "local worker processes; with a backend= cluster, use Dask's own controls (e.g. the workers' "
                "--memory-limit, client.submit(retries=...))"
            )

    @property
    def submit(self) -> _Submit:
        """Run ``fn(*args, **kwargs)`` on a worker; a ``TaskFuture`` (a ``concurrent.futures.Future``) back.

        ``future.cancel()`` also stops a running task (its worker is replaced);
        ``concurrent.futures.as_completed``/``wait`` work on the futures;
        ``pool.submit.timeout(s)(fn, ...)`` bounds the task, ``pool.submit.asynced()(fn, ...)``
        is awaitable. A task that raises, times out or crashes its worker fails alone.
        """
        return _Submit(self)

    def apply(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` on a worker, waiting for its result (``submit(...).result()``)."""
        return self._submit(fn, args, kwargs, _DEFAULT).result()

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: Any) -> TaskFuture[R]:
        item_timeout = self._item_timeout if timeout is _DEFAULT else timeout
        if self._backend is not None:
            self._refuse_on_backend("submit", item_timeout, self._retries)
            call = Call("submit", fn, [(args, kwargs)], star=False, ordered=True, eager=True, timeout=None,
                        progress=False, kwargs=True)
            future = run_in_background(lambda: self._start(call).collect()[0], "Pool.submit", TaskFuture)
            return cast("TaskFuture[R]", future)
        self._current_core()  # after a fork: a fresh core and submitter
        return self._submitter.submit(fn, args, kwargs, item_timeout, self._retries)

    def close(self) -> None:
        """Wait for the work already submitted, then stop the workers (they restart on demand)."""
        if self._backend is not None:
            self._backend.close()
            return
        self._current_core().close()

    def terminate(self) -> None:
        """Kill the workers now; calls in progress raise ``ProcessError``."""
        if self._backend is not None:
            self._backend.terminate()
            return
        self._current_core().terminate()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

    def __reduce__(self) -> tuple[Any, ...]:
        # Only the configuration travels: the copy is a new, working pool.
        progress = self._progress_default if isinstance(self._progress_default, bool) else False
        state = {"_progress_default": progress, "_item_timeout": self._item_timeout, "_retries": self._retries}
        if self._backend is not None:
            return (Pool, (self._workers_given,), {**state, "_backend": self._backend})
        max_tasks, max_rss = self._limits
        return (_rebuild_pool, (self._workers, max_tasks, max_rss), {**state, "_life": self._life})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._progress_default = state.get("_progress_default", False)
        self._item_timeout = state.get("_item_timeout")
        self._retries = state.get("_retries", 0)
        if state.get("_backend") is not None:
            self._backend = state["_backend"]
        if state.get("_life") is not None:  # initializer & co travel with the configuration
            self._life = state["_life"]
            self._core.life = self._life

    def __repr__(self) -> str:
        if self._backend is not None:
            workers = "" if self._workers_given is None else f"workers={self._workers_given}, "
            return f"Pool({workers}backend={self._backend!r})"
        return f"Pool(workers={self._workers})"



def _rebuild_pool(workers: int, max_tasks: int | None, max_rss: int | None) -> Pool:
    return Pool(workers, max_tasks_per_worker=max_tasks, max_memory_per_worker=max_rss)


def _dispose(core: Core, submitter: Submitter) -> None:
    submitter.close()
    core.dispose()


def _check_max_tasks(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Pool(max_tasks_per_worker=...) must be a positive int or None, got {value!r}")
    return value


_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_memory(value: Any) -> int | None:
    """``max_memory_per_worker``: bytes from an int or a string such as ``"512MB"`` or ``"2GiB"``."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGIB")
        unit = text[len(number):]
        try:
            amount = float(number)
        except ValueError:
            amount = -1.0
        if unit in _UNITS and amount > 0:
            return int(amount * _UNITS[unit])
    elif not isinstance(value, bool) and isinstance(value, int) and value > 0:
        return value
    raise ValueError(
        f"Pool(max_memory_per_worker=...) must be a number of bytes or a size such as '512MB' or '2GiB', got {value!r}"
    )
