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

import functools
import os
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, Self, TypeVar, overload

from suitkaise.processing._context import check_context
from suitkaise.processing._modifiers import (
    check_timeout,
    refuse_combination,
    run_in_background,
    run_in_executor,
)
from suitkaise.processing._pool_call import Call, Progress
from suitkaise.processing._pool_core import Core
from suitkaise.processing._pool_life import make_spec
from suitkaise.processing._pool_local import LocalRun

if TYPE_CHECKING:
    from suitkaise.processing._skprocess import Skprocess

__all__ = ["Pool", "ResultIterator"]

T = TypeVar("T")
R = TypeVar("R")


class _Runner(Protocol):
    """One call in progress: the local ``LocalRun`` or a backend's (e.g. Dask's)."""

    def __next__(self) -> Any: ...
    def collect(self) -> list[Any]: ...
    def close(self) -> None: ...


class ResultIterator(Iterator[R], Generic[R]):
    """What ``imap``/``unordered_imap`` return: an iterator you may ``close()`` early."""

    def __init__(self, run: _Runner) -> None:
        self._run = run

    def __iter__(self) -> ResultIterator[R]:
        return self

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

    def _start(self, fn: Any, iterable: Any, progress: Progress) -> _Runner:
        pool = self._owner._pool()
        if progress is None:
            progress = pool._progress_default
        return pool._start(Call(self._name, fn, iterable, star=self._owner._star, ordered=self._ordered,
                                eager=self._eager, timeout=self._timeout, progress=progress))

    def _collect(self, fn: Any, iterable: Any, progress: Progress) -> list[Any]:
        return self._start(fn, iterable, progress).collect()

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


class _ListMethod(_PoolMethod):
    """``pool.map`` / ``pool.unordered_map``: a list of results."""

    __slots__ = ()

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None) -> list[Any]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None) -> list[R]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None) -> list[R]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *, progress: Progress = None) -> list[Any]:
        return self._collect(fn_or_process, iterable, progress)


class _IterMethod(_PoolMethod):
    """``pool.imap`` / ``pool.unordered_imap``: an iterator over the results."""

    __slots__ = ()

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None) -> ResultIterator[Any]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None) -> ResultIterator[R]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None) -> ResultIterator[R]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *, progress: Progress = None) -> ResultIterator[Any]:
        return ResultIterator(self._start(fn_or_process, iterable, progress))


class _BackgroundMethod(_PoolMethod):
    """``.background()``: calling returns a ``Future`` of the list of results."""

    __slots__ = ()
    _suffix = ".background()"

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None) -> Future[list[Any]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None) -> Future[list[R]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None) -> Future[list[R]]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *, progress: Progress = None) -> Future[list[Any]]:
        return run_in_background(functools.partial(self._collect, fn_or_process, iterable, progress), self._name)

    def asynced(self) -> NoReturn:
        refuse_combination(self._name)


class _AsyncMethod(_PoolMethod):
    """``.asynced()``: calling returns a coroutine of the list of results."""

    __slots__ = ()
    _suffix = ".asynced()"

    @overload
    def __call__(self, fn_or_process: type[Skprocess], iterable: Iterable[Any], *,
                 progress: Progress = None) -> Coroutine[Any, Any, list[Any]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[[T], R], iterable: Iterable[T], *,
                 progress: Progress = None) -> Coroutine[Any, Any, list[R]]: ...
    @overload
    def __call__(self, fn_or_process: Callable[..., R], iterable: Iterable[Any], *,
                 progress: Progress = None) -> Coroutine[Any, Any, list[R]]: ...
    def __call__(self, fn_or_process: Any, iterable: Iterable[Any], *,
                 progress: Progress = None) -> Coroutine[Any, Any, list[Any]]:
        return run_in_executor(functools.partial(self._collect, fn_or_process, iterable, progress))

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

    Workers start on first use and are restarted on demand, so the pool stays
    usable after ``close()``, ``terminate()``, a crashed worker or a timeout.

    ``context=`` chooses the start method of this pool's workers: ``"fork"``,
    ``"spawn"``, ``"forkserver"`` or a ``multiprocessing.get_context(...)``
    object, without changing the global default (``None``, the default,
    follows ``multiprocessing.set_start_method`` when workers start).

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
        context: str | BaseContext | None = None,
        initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (),
        on_exit: Callable[[], Any] | None = None, auth: dict[str, Any] | None = None, nested: bool = False,
    ) -> None:
        self._workers_given = workers
        self._context = check_context(context, "Pool(context=...)")
        if backend is not None and context is not None:
            raise ValueError("Pool(context=...) chooses how local workers start; a backend= cluster starts its own")
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
        self._core = Core(workers, self._context, self._life)
        self._finalizer = weakref.finalize(self, Core.dispose, self._core)

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

    def _current_core(self) -> Core:
        if self._core.pid != os.getpid():
            # used in a forked child: the workers belong to the parent; start afresh
            self._core = Core(self._workers, self._context, self._life)
            self._finalizer = weakref.finalize(self, Core.dispose, self._core)
        return self._core

    def _start(self, call: Call) -> _Runner:
        if self._backend is not None:
            return self._backend.start(call, self._workers_given)
        return LocalRun(self._current_core(), self._workers, call)

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
        if self._backend is not None:
            return (Pool, (self._workers_given,), {"_progress_default": progress, "_backend": self._backend})
        return (Pool, (self._workers,), {"_progress_default": progress, "_life": self._life})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._progress_default = state.get("_progress_default", False)
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

