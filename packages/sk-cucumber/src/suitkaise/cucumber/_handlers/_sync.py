"""Thread synchronisation primitives and in-process queues.

None of these can be copied as they are: a lock's state lives in the
interpreter that created it, and waiting threads cannot follow it. What
travels is the *observable state*, rebuilt on a fresh object:

=======================================  =============================================
type                                     comes back as
=======================================  =============================================
``threading.Lock``                       new lock, acquired if the original was locked
``threading.RLock``                      new RLock, acquired (same recursion count) by
                                         the thread that deserializes, if it was held
``Semaphore`` / ``BoundedSemaphore``     same current value (bounded: same bound too)
``Condition``                            new condition over the (rebuilt) same lock
``Event``                                new event, set if the original was set
``Barrier``                              same parties/action/timeout; broken if broken
``threading.local``                      the *current thread's* attributes
``queue.Queue``/``LifoQueue``/           same type and maxsize, items copied without
``PriorityQueue``/``SimpleQueue``        taking them out of the original
=======================================  =============================================

Ownership is never transferred: threads waiting on the original are not
waiting on the copy, and an acquired RLock is owned by whichever thread calls
``deserialize``.
"""

from __future__ import annotations

from typing import Any

from suitkaise.cucumber._registry import register

__all__: list[str] = []


# -- locks ---------------------------------------------------------------------------


@register("_thread.lock")
def _reduce_lock(lock: Any) -> Any:
    return (_rebuild_lock, (lock.locked(),))


def _rebuild_lock(locked: bool) -> Any:
    import threading

    lock = threading.Lock()
    if locked:
        lock.acquire()
    return lock


@register("_thread.RLock", "threading._RLock")
def _reduce_rlock(rlock: Any) -> Any:
    # The C RLock has no public "count"; _is_owned/_release_save/_acquire_restore are
    # the (stable since 3.2) hooks threading.Condition itself uses.
    if rlock._is_owned():
        state = rlock._release_save()
        rlock._acquire_restore(state)
        count = state[0]
    elif rlock.acquire(blocking=False):
        rlock.release()
        count = 0
    else:  # held by another thread
        count = 1
    return (_rebuild_rlock, (type(rlock).__module__ == "threading", count))


def _rebuild_rlock(python_impl: bool, count: int) -> Any:
    import threading

    rlock = threading._PyRLock() if python_impl else threading.RLock()  # type: ignore[attr-defined]
    for _ in range(count):
        rlock.acquire()
    return rlock


# -- semaphores, conditions, events, barriers -------------------------------------------


@register("threading.Semaphore")
def _reduce_semaphore(sem: Any) -> Any:
    # _value is read under the semaphore's own condition so it is consistent.
    with sem._cond:
        value = sem._value
    bound = getattr(sem, "_initial_value", None) if _is_bounded(sem) else None
    return (_rebuild_semaphore, (type(sem), value, bound), _extra_state(sem, _SEM_FIELDS))


_SEM_FIELDS = frozenset({"_cond", "_value", "_initial_value"})


def _is_bounded(sem: Any) -> bool:
    import threading

    return isinstance(sem, threading.BoundedSemaphore)


def _rebuild_semaphore(cls: Any, value: int, bound: int | None) -> Any:
    import threading

    sem = cls.__new__(cls)
    if bound is not None:
        threading.BoundedSemaphore.__init__(sem, bound)
        sem._value = value  # acquired down to the current value
    else:
        threading.Semaphore.__init__(sem, value)
    return sem


@register("threading.Condition")
def _reduce_condition(cond: Any) -> Any:
    # The lock travels as an object of its own so that a lock shared with other
    # objects in the payload stays shared (pickle's memo).
    return (_rebuild_condition, (type(cond), cond._lock), _extra_state(cond, _COND_FIELDS))


_COND_FIELDS = frozenset(
    {"_lock", "acquire", "release", "_release_save", "_acquire_restore", "_is_owned", "_waiters"}
)


def _rebuild_condition(cls: Any, lock: Any) -> Any:
    import threading

    cond = cls.__new__(cls)
    threading.Condition.__init__(cond, lock)
    return cond


@register("threading.Event")
def _reduce_event(event: Any) -> Any:
    return (_rebuild_event, (type(event), event.is_set()), _extra_state(event, _EVENT_FIELDS))


_EVENT_FIELDS = frozenset({"_cond", "_flag"})


def _rebuild_event(cls: Any, is_set: bool) -> Any:
    import threading

    event = cls.__new__(cls)
    threading.Event.__init__(event)
    if is_set:
        event.set()
    return event


@register("threading.Barrier")
def _reduce_barrier(barrier: Any) -> Any:
    return (
        _rebuild_barrier,
        (type(barrier), barrier.parties, barrier._action, barrier._timeout, barrier.broken),
        _extra_state(barrier, _BARRIER_FIELDS),
    )


_BARRIER_FIELDS = frozenset({"_cond", "_action", "_timeout", "_parties", "_state", "_count"})


def _rebuild_barrier(cls: Any, parties: int, action: Any, timeout: Any, broken: bool) -> Any:
    import threading

    barrier = cls.__new__(cls)
    threading.Barrier.__init__(barrier, parties, action, timeout)
    if broken:
        barrier.abort()
    return barrier


# -- thread-local data ----------------------------------------------------------------


@register("_thread._local", "_threading_local.local")
def _reduce_local(local: Any) -> Any:
    # Only the calling thread's attributes are visible, so only those travel.
    return (_rebuild_local, (type(local),), dict(local.__dict__))


def _rebuild_local(cls: Any) -> Any:
    return cls.__new__(cls)


# -- queue module ---------------------------------------------------------------------

_QUEUE_FIELDS = frozenset(
    {"maxsize", "mutex", "not_empty", "not_full", "all_tasks_done", "unfinished_tasks", "queue"}
)


@register("queue.Queue")
def _reduce_queue(q: Any) -> Any:
    # Copy under the queue's mutex: consistent, and the original keeps its items.
    # PriorityQueue's list is a heap; replaying it with _put keeps the heap order.
    with q.mutex:
        items = list(q.queue)
        unfinished = q.unfinished_tasks
    return (_rebuild_queue, (type(q), q.maxsize, items, unfinished), _extra_state(q, _QUEUE_FIELDS))


def _rebuild_queue(cls: Any, maxsize: int, items: list[Any], unfinished: int) -> Any:
    import queue

    q = cls.__new__(cls)
    queue.Queue.__init__(q, maxsize)  # calls the subclass's _init (LIFO/priority storage)
    for item in items:
        q._put(item)
    q.unfinished_tasks = unfinished
    return q


@register("_queue.SimpleQueue")
def _reduce_simple_queue(q: Any) -> Any:
    # The C SimpleQueue cannot be read without taking items out: drain and put back
    # in the same order. Another thread using the queue at this very moment may see
    # its items reordered relative to the ones it puts concurrently.
    import queue

    items: list[Any] = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            break
    for item in items:
        q.put_nowait(item)
    return (_rebuild_simple_queue, (type(q), items))


@register("queue._PySimpleQueue")
def _reduce_py_simple_queue(q: Any) -> Any:
    return (_rebuild_simple_queue, (type(q), list(q._queue)))


def _rebuild_simple_queue(cls: Any, items: list[Any]) -> Any:
    q = cls()
    for item in items:
        q.put_nowait(item)
    return q


# -- helpers ----------------------------------------------------------------------------


def _extra_state(obj: Any, known: frozenset[str]) -> dict[str, Any] | None:
    """Attributes a subclass added on top of the stdlib fields (they travel as state)."""
    d = getattr(obj, "__dict__", None)
    if not d:
        return None
    extra = {k: v for k, v in d.items() if k not in known}
    return extra or None
