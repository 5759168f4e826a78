"""multiprocessing objects: queues, events, shared memory, manager proxies.

Processes and channels involved::

    sender process                         receiver process
    ──────────────                         ────────────────
    mp.Queue ──drain+restore──► items ───► new mp.Queue (same items, same order)
    SharedMemory "psm_x" ─────► name ────► SharedMemory("psm_x") ─┐
          └──────────── the same /dev/shm segment ─────────────────┘
    mgr.dict() ──_getvalue()──► snapshot ─► plain dict (manager not contacted again)

=================================  =====================================================
type                               comes back as
=================================  =====================================================
``multiprocessing.Queue``,         a NEW queue of the same kind and maxsize holding a
``JoinableQueue``, ``SimpleQueue`` snapshot of the items: the sender drains the queue and
                                   puts every item back in order (the original keeps
                                   its items; a consumer reading at that very moment
                                   may see them after items put concurrently). More
                                   than 10 000 items is refused (after restoring them).
``multiprocessing.Event``          a new event, set if the original was set
``SharedMemory``/``ShareableList`` re-attached by name: the same segment, so the
                                   receiver sees (and writes) the same bytes. The
                                   receiver does NOT register the segment with its
                                   resource tracker: the creator owns it (closes and
                                   unlinks it); the receiver only ``close()``-s its
                                   view. A segment that no longer exists raises
                                   ``FileNotFoundError`` naming it.
manager proxies (``mgr.dict()``,   a snapshot of the referent (``proxy._getvalue()``):
``mgr.list()``, ``mgr.Value``...)  a plain ``dict``/``list``/... that no longer talks
                                   to the manager
``multiprocessing.Manager()``      refused (``TypeError``): the manager object owns a
                                   server process in the sender
=================================  =====================================================

While multiprocessing itself is pickling a process object for a spawn/forkserver
child (``Process(args=(queue,))``), these objects are shared *by inheritance*
as multiprocessing intends: cucumber then steps aside and lets their own
reducers run.
"""

from __future__ import annotations

import threading
from typing import Any

from suitkaise.cucumber._registry import register

__all__: list[str] = []

QUEUE_CAP = 10_000


def _spawning() -> bool:
    from multiprocessing.context import get_spawning_popen

    return get_spawning_popen() is not None


# -- queues --------------------------------------------------------------------------------


@register("multiprocessing.queues.Queue", "multiprocessing.queues.JoinableQueue")
def _reduce_mp_queue(q: Any) -> Any:
    import queue

    if _spawning():
        return NotImplemented
    items: list[Any] = []
    try:
        while len(items) <= QUEUE_CAP and _unread(q):
            try:
                # An item put by this process may be in flight: taken off the feeder
                # thread's buffer but not yet written to the pipe. _unread() counts it,
                # so wait for it rather than miss it.
                items.append(q.get(timeout=5.0))
            except queue.Empty:
                break  # another process took it meanwhile
    finally:
        for item in items:
            q.put(item)
    if len(items) > QUEUE_CAP:
        raise TypeError(
            f"cannot serialize a multiprocessing queue holding more than {QUEUE_CAP:,} items "
            "(its items were put back). Send the queue to child processes when you start them "
            "(multiprocessing shares it by inheritance), or send the items in batches."
        )
    joinable = _is_joinable(q)
    return (_rebuild_mp_queue, (joinable, q._maxsize, items))


def _unread(q: Any) -> bool:
    """True while ``q`` holds an item some process put and none has taken yet.

    The queue's semaphore counts items from ``put()`` to ``get()``, wherever they
    are (feeder buffer, in flight, pipe). Where ``qsize()`` is not implemented
    (macOS), fall back to the pipe and this process's feeder buffer.
    """
    try:
        return bool(q.qsize() > 0)
    except NotImplementedError:
        with q._notempty:
            pending = bool(q._buffer)
        return pending or bool(q._poll())


def _is_joinable(q: Any) -> bool:
    from multiprocessing.queues import JoinableQueue

    return isinstance(q, JoinableQueue)


def _rebuild_mp_queue(joinable: bool, maxsize: int, items: list[Any]) -> Any:
    import multiprocessing

    ctx = multiprocessing.get_context()
    q = ctx.JoinableQueue(maxsize) if joinable else ctx.Queue(maxsize)
    for item in items:
        q.put(item)
    return q


@register("multiprocessing.queues.SimpleQueue")
def _reduce_mp_simple_queue(q: Any) -> Any:
    if _spawning():
        return NotImplemented
    items: list[Any] = []
    try:
        while not q.empty() and len(items) <= QUEUE_CAP:
            items.append(q.get())
    finally:
        for item in items:
            q.put(item)
    if len(items) > QUEUE_CAP:
        raise TypeError(
            f"cannot serialize a multiprocessing SimpleQueue holding more than {QUEUE_CAP:,} items"
        )
    return (_rebuild_mp_simple_queue, (items,))


def _rebuild_mp_simple_queue(items: list[Any]) -> Any:
    import multiprocessing

    q = multiprocessing.get_context().SimpleQueue()
    for item in items:
        q.put(item)
    return q


# -- events ----------------------------------------------------------------------------------


@register("multiprocessing.synchronize.Event")
def _reduce_mp_event(event: Any) -> Any:
    if _spawning():
        return NotImplemented
    return (_rebuild_mp_event, (event.is_set(),))


def _rebuild_mp_event(is_set: bool) -> Any:
    import multiprocessing

    event = multiprocessing.get_context().Event()
    if is_set:
        event.set()
    return event


# -- shared memory ------------------------------------------------------------------------------

_attach_lock = threading.Lock()


@register("multiprocessing.shared_memory.SharedMemory")
def _reduce_shared_memory(shm: Any) -> Any:
    return (_attach_shared_memory, (shm.name,))


def _attach_shared_memory(name: str) -> Any:
    from multiprocessing.shared_memory import SharedMemory

    return _untracked(lambda: SharedMemory(name=name), name)


@register("multiprocessing.shared_memory.ShareableList")
def _reduce_shareable_list(sl: Any) -> Any:
    return (_attach_shareable_list, (sl.shm.name,))


def _attach_shareable_list(name: str) -> Any:
    from multiprocessing.shared_memory import ShareableList

    return _untracked(lambda: ShareableList(name=name), name)


def _untracked(attach: Any, name: str) -> Any:
    """Attach without registering the segment with this process's resource tracker.

    On 3.11 every attach registers the segment, and the tracker then unlinks it
    (with a "leaked shared_memory" warning) when this process's tracker exits,
    destroying a segment the creator still uses. Only the registration of this
    one name is suppressed; other threads creating segments meanwhile are
    registered as usual.
    """
    from multiprocessing import resource_tracker

    with _attach_lock:
        original = resource_tracker.register

        def register_others(rname: Any, rtype: str) -> None:
            if rtype == "shared_memory" and str(rname).lstrip("/") == name.lstrip("/"):
                return
            original(rname, rtype)

        resource_tracker.register = register_others  # type: ignore[assignment]
        try:
            return attach()
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                exc.errno,
                f"shared memory segment {name!r} does not exist here: it was unlinked by its "
                "owner, or this process runs on another machine",
                name,
            ) from exc
        finally:
            resource_tracker.register = original


# -- managers -------------------------------------------------------------------------------------


@register("multiprocessing.managers.BaseProxy")
def _reduce_manager_proxy(proxy: Any) -> Any:
    if _spawning():
        return NotImplemented
    return (_snapshot, (proxy._getvalue(),))


def _snapshot(value: Any) -> Any:
    return value


@register("multiprocessing.managers.BaseManager")
def _reduce_manager(manager: Any) -> Any:
    raise TypeError(
        f"cannot serialize {type(manager).__name__}: a multiprocessing manager owns a server "
        "process in this process and cannot be copied into another one. Send the proxies you "
        "need instead (mgr.dict(), mgr.list(), ...: they travel as snapshots), or send the "
        "manager's address and authkey and connect with BaseManager(address, authkey).connect()."
    )
