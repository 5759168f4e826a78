"""``DaskBackend``: run a ``Pool``'s calls on a ``dask.distributed`` cluster.

::

    caller thread                         Dask scheduler              Dask workers (any machine)
    ─────────────                         ──────────────              ──────────────────────────
    _DaskRun: cucumber(fn) once ────────► (small: inside each task;
              (scattered when large)       large: scattered once)
              cucumber(chunk of items) ─► client.map / submit ──────► _dask_chunk(token, fn, ...)
                                                                       fn decoded once per worker
                                                                       and call (token cache),
                                                                       items run one by one
    done callbacks ─► condition ◄──────── task finished ◄──────────── cucumber((results, error,
    gather(batch), decode, raise                                        elapsed)) as bytes

Everything user-defined travels as cucumber bytes, so lambdas, closures,
``Skprocess`` classes and exceptions (with the worker's traceback) behave as
they do with local processes; Dask only ever sees bytes and one importable
function, ``_dask_chunk``. Items go in chunks (one Dask task per chunk, not
per item): the rules are those of the local ``Pool`` (``map``: ``len / (4 x
workers)``; ``imap``: adaptive, about 20 ms of work per chunk, with bounded
read-ahead). A worker that dies is Dask's business first: the scheduler reruns
the task elsewhere; once its ``allowed-failures`` are exhausted, Dask's
``KilledWorker`` becomes a ``ProcessError`` naming the items.

``distributed`` is imported only when a ``DaskBackend`` is built, so importing
``suitkaise.processing`` (or this module) never imports Dask.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING, Any

from suitkaise.cucumber import deserialize, serialize
from suitkaise.processing import _pool_life
from suitkaise.processing._chunk import (
    FLAG_KEEP_GOING,
    PROGRESS_SLOTS,
    FnJob,
    encode_outcome,
    run_chunk,
)
from suitkaise.processing._errors import ProcessError, short_repr
from suitkaise.processing._pool_call import Call, CallBase, open_input

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["DaskBackend"]

_TARGET_CHUNK_SECONDS = 0.02  # imap chunks aim at this much work (a Dask task costs ~1 ms)
_SCATTER_MIN = 64 * 1024  # functions larger than this are scattered once instead of riding in every task
_FN_CACHE_SIZE = 16

_INSTALL_HINT = 'the Dask backend needs the "distributed" package: pip install "sk-processing[dask]"'


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} ({e})") from e
    return distributed


# ---------------------------------------------------------------------------
# Worker side (runs inside a Dask worker; imported there by reference)
# ---------------------------------------------------------------------------

_fn_cache: OrderedDict[str, FnJob] = OrderedDict()
_fn_lock = threading.Lock()


def _load_job(token: str, fn_data: bytes, flags: int) -> FnJob:
    """The call's function, decoded once per worker process (LRU by call token)."""
    with _fn_lock:
        job = _fn_cache.get(token)
        if job is not None:
            _fn_cache.move_to_end(token)
            return job
    job = FnJob(deserialize(fn_data), flags)
    with _fn_lock:
        _fn_cache[token] = job
        while len(_fn_cache) > _FN_CACHE_SIZE:
            _fn_cache.popitem(last=False)
    return job


def _dask_chunk(token: str, fn_data: bytes, flags: int, start: int, payload: bytes) -> bytes:
    """One Dask task: run a chunk of items; ``cucumber((results, error, elapsed))``.

    The same chunk runner as the local workers' (``_chunk.run_chunk``): a task's own
    failure never raises, it travels back as an ``ErrorRecord``, so the results
    before it are kept.
    """
    _pool_life.enter_dask_worker()
    t0 = time.perf_counter()
    outcome = run_chunk(lambda: (_load_job(token, fn_data, flags), deserialize(payload)), start,
                        [0] * PROGRESS_SLOTS)
    elapsed = time.perf_counter() - t0
    data, _ = encode_outcome(outcome, start, lambda results, error, failures: serialize((results, error, failures, elapsed)),
                             keep_going=bool(flags & FLAG_KEEP_GOING))
    return data


# ---------------------------------------------------------------------------
# Caller side
# ---------------------------------------------------------------------------


def _notify(ref: weakref.ref[_DaskRun], seq: int, _future: Any) -> None:
    run = ref()
    if run is not None:
        run._on_done(seq)


class _DaskRun(CallBase):
    """The caller's side of one call on Dask: same interface as the local ``_Run``."""

    _target_chunk_seconds = _TARGET_CHUNK_SECONDS

    def __init__(self, backend: DaskBackend, workers: int | None, call: Call) -> None:
        source = open_input(call)
        self._backend = backend
        self._client = backend._get_client()
        self._ordered = call.ordered
        try:
            fn_data = serialize(call.fn)
        except Exception as e:
            e.add_note(f"Pool.{call.name}: {short_repr(call.fn)} could not be serialized to send it to the Dask workers")
            raise
        super().__init__(call, source, backend._threads(self._client, call.name) if workers is None else workers)
        self._flags = call.flags
        self._token = uuid.uuid4().hex
        self._fn_arg: Any = fn_data
        if len(fn_data) > _SCATTER_MIN:
            self._fn_arg = self._client.scatter(fn_data, hash=False)
        self._cond = threading.Condition()
        self._futures: dict[int, Future[bytes]] = {}
        self._chunks: dict[int, tuple[int, list[Any]]] = {}
        self._done_ordered: set[int] = set()
        self._done_fifo: deque[int] = deque()
        self._fatal: BaseException | None = None
        self._items_measured = 0
        self._busy = 0.0
        backend._runs.add(self)
        try:
            self._top_up()
        except BaseException:
            self._finish()
            raise

    # -- feeding ---------------------------------------------------------------

    def _item_time(self) -> float | None:
        return self._busy / self._items_measured if self._items_measured else None

    def _top_up(self) -> None:
        seqs: list[int] = []
        starts: list[int] = []
        payloads: list[bytes] = []
        while (items := self._read_chunk()) is not None:
            try:
                payloads.append(serialize(items))
            except Exception as e:
                self._explain_serialization(items, e, serialize, "a Dask worker")
                raise
            self._chunks[self._seq] = (self._next_start, items)
            seqs.append(self._seq)
            starts.append(self._next_start)
            self._seq += 1
            self._next_start += len(items)
            self._items_submitted += len(items)
        if seqs:
            self._submit(seqs, starts, payloads)

    def _submit(self, seqs: list[int], starts: list[int], payloads: list[bytes]) -> None:
        client = self._client
        keys = [f"sk-pool-{self._name}-{self._token}-{s}" for s in seqs]
        n = len(seqs)
        if n == 1:
            futures = [client.submit(_dask_chunk, self._token, self._fn_arg, self._flags, starts[0], payloads[0],
                                     key=keys[0], pure=False)]
        else:
            futures = client.map(_dask_chunk, [self._token] * n, [self._fn_arg] * n, [self._flags] * n, starts,
                                 payloads, key=keys, pure=False)
        ref = weakref.ref(self)
        with self._cond:
            for seq, fut in zip(seqs, futures, strict=True):
                self._futures[seq] = fut
        for seq, fut in zip(seqs, futures, strict=True):
            fut.add_done_callback(partial(_notify, ref, seq))

    def _on_done(self, seq: int) -> None:
        with self._cond:
            if seq in self._futures:
                if self._ordered:
                    self._done_ordered.add(seq)
                else:
                    self._done_fifo.append(seq)
                self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """Make the caller raise ``error`` (``Pool.terminate()``)."""
        with self._cond:
            if self._fatal is None:
                self._fatal = error
            self._cond.notify_all()

    # -- consuming -------------------------------------------------------------

    def _finish_on_error(self, error: BaseException) -> None:
        self._finish()  # errors, timeouts, Ctrl-C: cancel what is left of this call

    def _take(self) -> list[Any] | None:
        seqs = self._wait()
        if seqs is None:
            self._finish()
            return None
        values = self._fetch(seqs)
        if self._pending_error is None and self._source is None and not self._futures:
            self._finish()
        return values

    def _wait(self) -> list[int] | None:
        """Chunks ready to be consumed (in consumption order), ``None`` at the end."""
        deadline = self._deadline
        if self._per_item and self._timeout is not None:
            deadline = time.monotonic() + self._timeout
        with self._cond:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._ordered:
                    if self._consumed_seq in self._done_ordered:
                        seqs = []
                        seq = self._consumed_seq
                        while seq in self._done_ordered:
                            self._done_ordered.discard(seq)
                            seqs.append(seq)
                            seq += 1
                        return seqs
                elif self._done_fifo:
                    seqs = list(self._done_fifo)
                    self._done_fifo.clear()
                    return seqs
                if self._source is None and not self._futures:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
        raise self._timeout_error(
            "its Dask tasks were cancelled (a task that is already running finishes on its "
            "worker: Dask cannot interrupt it)"
        )

    def _fetch(self, seqs: list[int]) -> list[Any]:
        """Gather the finished chunks ``seqs`` in one round trip; decode them in order."""
        ok: list[int] = []
        failed: int | None = None
        for seq in seqs:
            # A finished chunk whose result lived on a worker that has since died goes back
            # to "pending" while Dask recomputes it elsewhere: gather() waits for that, so
            # only an error or a cancellation is a failure here.
            if self._futures[seq].status in ("error", "cancelled"):
                failed = seq
                break
            ok.append(seq)
        datas: list[Any] = []
        if ok:
            try:
                datas = self._client.gather([self._futures[s] for s in ok])
            except BaseException as e:
                # a worker holding a result died and Dask could not recompute it
                raise self._dask_error(ok[0], e) from e
        values: list[Any] = []
        for seq, data in zip(ok, datas, strict=True):
            self._consume(seq)
            values.extend(self._decode(seq, data))
            if self._pending_error is not None:
                return values
        if failed is not None:
            fut = self._futures[failed]
            try:
                exc = fut.exception(timeout=10) if fut.status == "error" else None
            except BaseException as e:  # cancelled
                exc = e
            self._consume(failed)
            self._pending_error = self._dask_error(failed, exc)
        return values

    def _consume(self, seq: int) -> None:
        with self._cond:
            self._futures.pop(seq, None)
        if self._ordered:
            self._consumed_seq = seq + 1

    def _decode(self, seq: int, data: bytes) -> list[Any]:
        start, items = self._chunks.pop(seq)
        try:
            values, error, failures, elapsed = deserialize(data)
        except Exception as e:
            raise ProcessError(
                f"Pool.{self._name}: the results of items {start}..{start + len(items) - 1} "
                f"could not be deserialized in the caller: {type(e).__name__}: {e}"
            ) from e
        n = len(values)
        self._busy += elapsed
        self._items_measured += n + (1 if error is not None else 0)
        self._items_consumed += n + (1 if error is not None else 0)
        if n:
            self._progress.update(self._items_consumed, n)
        if error is not None:
            self._pending_error = self._rebuild_error(start, items, error, "caller")
        return self._settle(start, items, list(values), failures, "caller")

    def _dask_error(self, seq: int, exc: BaseException | None) -> ProcessError:
        """Dask's own failure of a chunk (``KilledWorker``, cancellation, ...) as a ``ProcessError``."""
        start, items = self._chunks.get(seq, (0, []))
        if len(items) == 1:
            what = f"item {start} ({short_repr(items[0])})"
        elif items:
            what = f"one of items {start}..{start + len(items) - 1} (first: {short_repr(items[0])})"
        else:
            what = "an item"
        kind = type(exc).__name__ if exc is not None else "cancelled"
        if kind == "KilledWorker":
            why = (
                "the Dask workers running it died every time it was tried (KilledWorker: Dask's "
                "'distributed.scheduler.allowed-failures' retries are exhausted): a crash in native code, "
                "os._exit(), the out-of-memory killer or `kill -9`"
            )
        elif kind in ("CancelledError", "cancelled", "FutureCancelledError"):
            why = "its Dask task was cancelled (the client or the cluster shut down, or the key was cancelled)"
        else:
            why = f"Dask could not run it: {kind}: {exc}"
        err = ProcessError(f"Pool.{self._name}: {what} failed on the cluster: {why}")
        if exc is not None:
            err.__cause__ = exc
        return err

    def _finish(self) -> None:
        with self._cond:
            pending = list(self._futures.values())
            self._futures.clear()
            self._done_ordered.clear()
            self._done_fifo.clear()
        if self._done and not pending:
            return
        self._done = True
        self._source = None
        self._progress.close()
        scattered = self._fn_arg if not isinstance(self._fn_arg, bytes) else None
        if pending or scattered is not None:
            with contextlib.suppress(Exception):
                self._client.cancel([*pending, *([scattered] if scattered is not None else [])])
        self._fn_arg = b""
        self._backend._runs.discard(self)

    def close(self) -> None:
        """Stop early: the rest of the input is not read, pending tasks are cancelled."""
        self._stop_iterating()
        self._finish()


class DaskBackend:
    """Run a ``Pool`` on a ``dask.distributed`` cluster: ``Pool(backend=DaskBackend(client))``.

    ``client`` may be a ``distributed.Client`` (yours: never closed by us), a
    scheduler address such as ``"tcp://10.0.0.5:8786"`` or a Dask cluster object
    (``LocalCluster``, ...): for those two the backend opens its own client on
    first use and closes it with ``Pool.close()``/``terminate()`` or when it is
    garbage collected. ``None`` means the current default client
    (``distributed.Client.current()``). ``Pool(backend=...)`` also accepts the
    client, address or cluster directly.

    ``wait_for_workers``: seconds a call waits for a cluster with no worker to
    get one before raising ``ProcessError`` (never an endless wait).
    """

    def __init__(self, client: Any = None, *, wait_for_workers: float = 60.0) -> None:
        distributed = _import_distributed()
        if isinstance(wait_for_workers, bool) or not isinstance(wait_for_workers, (int, float)) or wait_for_workers < 0:
            raise ValueError(f"DaskBackend(wait_for_workers=...) must be seconds >= 0, got {wait_for_workers!r}")
        self._wait_for_workers = float(wait_for_workers)
        self._address: str | None = None
        self._given: Client | None = None
        if client is None:
            try:
                client = distributed.Client.current()
            except ValueError:
                raise ValueError(
                    "DaskBackend(): no client given and no default Dask client exists; pass a "
                    "distributed.Client, a scheduler address ('tcp://host:8786') or a cluster"
                ) from None
        if isinstance(client, str):
            self._address = _checked_address(distributed, client)
        elif isinstance(client, distributed.Client):
            if client.asynchronous:
                raise TypeError("DaskBackend needs a synchronous distributed.Client (asynchronous=False)")
            self._given = client
        elif isinstance(client, distributed.deploy.Cluster):
            self._address = client.scheduler_address
        else:
            raise TypeError(
                "DaskBackend(client) needs a distributed.Client, a scheduler address string or a Dask "
                f"cluster, got {type(client).__name__} {short_repr(client)}"
            )
        self._lock = threading.Lock()
        self._owned: list[Client] = []  # the client we opened ourselves (at most one)
        self._runs: weakref.WeakSet[_DaskRun] = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, _close_owned, self._owned)

    @classmethod
    def wrap(cls, backend: Any) -> DaskBackend:
        """``Pool(backend=...)``'s argument as a backend (a DaskBackend is kept as is)."""
        return backend if isinstance(backend, DaskBackend) else cls(backend)

    @property
    def address(self) -> str:
        """The scheduler's address."""
        if self._given is not None:
            rpc = self._given.scheduler  # None only before the client connects
            return "<not connected>" if rpc is None else str(rpc.address)
        assert self._address is not None
        return self._address

    def _get_client(self) -> Client:
        if self._given is not None:
            return self._given
        with self._lock:
            if self._owned and self._owned[0].status not in ("closed", "closing"):
                return self._owned[0]
            distributed = _import_distributed()
            try:
                client = distributed.Client(self._address, set_as_default=False)
            except OSError as e:
                raise ProcessError(
                    f"Pool: cannot connect to the Dask scheduler at {self._address!r}: {e}"
                ) from e
            self._owned[:] = [client]
            return client

    def _threads(self, client: Client, name: str) -> int:
        """Total worker threads in the cluster (waits up to ``wait_for_workers`` for one)."""
        threads = sum(client.nthreads().values())
        if threads:
            return threads
        try:
            client.wait_for_workers(1, timeout=self._wait_for_workers)
        except TimeoutError:
            raise ProcessError(
                f"Pool.{name}: the Dask cluster at {self.address} has no workers "
                f"(waited {self._wait_for_workers:g}s; start some with `dask worker {self.address}`)"
            ) from None
        return max(1, sum(client.nthreads().values()))

    def total_threads(self) -> int:
        """Worker threads in the cluster right now (what ``Pool.workers`` reports)."""
        return sum(self._get_client().nthreads().values())

    def start(self, call: Call, workers: int | None) -> _DaskRun:
        """Start one call of a ``Pool`` map method (used by ``Pool``)."""
        return _DaskRun(self, workers, call)

    def close(self) -> None:
        """Wait for the tasks already submitted, then close the client we opened (if idle)."""
        runs = list(self._runs)
        futures = [f for r in runs for f in list(r._futures.values())]
        if futures:
            with contextlib.suppress(Exception):
                _import_distributed().wait(futures)
        if not any(not r._done for r in self._runs):
            _close_owned(self._owned)

    def terminate(self) -> None:
        """Cancel every call in progress (they raise ``ProcessError``) and close our own client."""
        for run in list(self._runs):
            run.fail(ProcessError(f"Pool.{run._name}: Pool.terminate() was called while this call was running"))
        _close_owned(self._owned)

    def __reduce__(self) -> tuple[Any, ...]:
        # travels as the scheduler address: the copy opens its own client
        return (DaskBackend, (self.address,), {"_wait_for_workers": self._wait_for_workers})

    def __repr__(self) -> str:
        return f"DaskBackend({self.address!r})"


def _checked_address(distributed: Any, address: str) -> str:
    """``address`` if it names a scheduler Dask can dial; else a ``ValueError`` now (Dask's
    own Client, given a malformed address, fails half-built and then stalls the interpreter's
    exit for a minute)."""
    try:
        scheme, loc = distributed.comm.parse_address(address)
        distributed.comm.registry.get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            distributed.comm.parse_host_port(loc)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"DaskBackend: {address!r} is not a Dask scheduler address ({e}); give one such as "
            "'tcp://10.0.0.5:8786', a distributed.Client or a cluster object"
        ) from None
    return address


def _close_owned(owned: list[Any]) -> None:
    while owned:
        client = owned.pop()
        with contextlib.suppress(Exception):
            client.close()
