"""multiprocessing objects: queues, events, shared memory, manager proxies.

Processes and channels involved::

    sender process                         receiver process
    ──────────────                         ────────────────
    SharedMemory "psm_x" ─────► name ────► SharedMemory("psm_x") ─┐
          └──────────── the same /dev/shm segment ─────────────────┘
    mgr.dict() ──_getvalue()──► snapshot ─► plain dict (manager not contacted again)

=================================  =====================================================
type                               comes back as
=================================  =====================================================
``Queue``, ``JoinableQueue``,      refused (``TypeError``) except while a process is
``SimpleQueue``, ``Lock``,         being started (an Skprocess's attributes at
``RLock``, ``Semaphore``,          ``start()``): then the child gets the very object
``BoundedSemaphore``,              (``.._handoff``), as ``multiprocessing.Process(args=)``
``Condition``, ``Event``,          gives it. A copy would be a different queue, lock or
``Barrier``, ``Value``, ``Array``, memory: what one side puts, sets or writes would
``RawValue``, ``RawArray``         silently never reach the other.
``SharedMemory``/``ShareableList`` re-attached by name: the same segment, so the
                                   receiver sees (and writes) the same bytes. The
                                   receiver does NOT register the segment with its
                                   resource tracker: the creator owns it (closes and
                                   unlinks it); the receiver only ``close()``-s its
                                   view. A segment that no longer exists raises
                                   ``FileNotFoundError`` naming it.
manager proxies (``mgr.dict()``,   a snapshot of the referent (``proxy._getvalue()``):
``mgr.list()``, ``mgr.Value``...)  a plain ``dict``/``list``/... that no longer talks
                                   to the manager; handed to a process being started,
                                   the proxy itself (it connects to the manager)
``multiprocessing.Manager()``      refused (``TypeError``): the manager object owns a
                                   server process in the sender
=================================  =====================================================
"""

from __future__ import annotations

import threading
from typing import Any, NoReturn

from suitkaise.cucumber._handoff import MP, OWN, handoff
from suitkaise.cucumber._registry import register

__all__: list[str] = []

# -- queues, locks, events, shared values: shared only with a process being started -----------


_FRIENDLY = {"SynchronizedArray": "Array", "SynchronizedString": "Array", "BufferWrapper": "RawValue/RawArray"}


@register(
    "multiprocessing.queues.Queue",
    "multiprocessing.queues.SimpleQueue",
    "multiprocessing.synchronize.SemLock",
    "multiprocessing.synchronize.Condition",
    "multiprocessing.synchronize.Event",
    "multiprocessing.synchronize.Barrier",
    "multiprocessing.sharedctypes.SynchronizedBase",
    "multiprocessing.heap.BufferWrapper",
)
def _reduce_shared(obj: Any) -> Any:
    """Handed to a process being started (``.._handoff``), refused anywhere else."""
    rv = handoff(obj, OWN)
    if rv is not None:
        return rv
    _refuse(type(obj).__name__)


@register("multiprocessing.heap.Arena")
def _reduce_arena(arena: Any) -> Any:
    rv = handoff(arena, MP)  # (reached inside a Value's state only while spawning)
    if rv is not None:
        return rv
    _refuse("RawValue/RawArray")


@register("_ctypes._SimpleCData", "_ctypes.Array")
def _reduce_ctypes(obj: Any) -> Any:
    """A ctypes object in multiprocessing's shared heap (``RawValue``/``RawArray``, the
    value under a ``Value``/``Array``) is shared like the others; any other one travels as
    ctypes pickles it."""
    if getattr(obj, "_wrapper", None) is None:
        return NotImplemented
    rv = handoff(obj, MP)
    if rv is not None:
        return rv
    _refuse("RawValue/RawArray")


def _refuse(name: str) -> NoReturn:
    what = _FRIENDLY.get(name, "Value" if name.startswith("Synchronized") else name)
    raise TypeError(
        f"cannot serialize a multiprocessing {what} here: it is shared by processes through the "
        "OS, and a copy would be a different object (what one side puts, sets or writes would "
        "never reach the other). It can only be shared with a process as that process starts: "
        "make it an argument or attribute of the Skprocess (shared at start(), as with "
        "multiprocessing.Process(args=...)), or one of a Pool's initargs (shared with each worker "
        "as it starts). To exchange data with a running process or a Pool worker, use a "
        "suitkaise Share, a Pipe, or Skprocess.tell()/listen()."
    )


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
    rv = handoff(proxy, OWN)  # a process being started connects to the manager itself
    if rv is not None:
        return rv
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
