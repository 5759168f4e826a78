"""Lifecycle plumbing of Share handles: owner liveness, the resource tracker, cleanup at
exit, and what a forked child does with the handles it inherited.

::

    Share() ── owner ── weakref.finalize ──► owner_cleanup: mark the store closed,
                                             unlink /dev/shm/sk-share-* (and its
                                             -pending file, _pending.py), untrack them
    owner SIGKILLed ──► multiprocessing's resource tracker unlinks what the owner had
                        registered: the store while it runs, its -pending file while it is
                        stopped (track_pending / untrack_pending)
    fork ──► child: every inherited handle becomes a client (no finalizer, no server)
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from . import _net, _pending, _remote, _store
from ._store import FLAG_CLOSED, FLAG_STOPPED, S_FLAGS

HANDLES: weakref.WeakSet[Any] = weakref.WeakSet()  # every Share handle of this process


def owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tracker(action: str, name: str) -> None:
    """Register/unregister the store file with multiprocessing's resource tracker."""
    if _store.SHM_DIR != "/dev/shm":
        return
    try:
        from multiprocessing import resource_tracker

        getattr(resource_tracker, action)("/" + name, "shared_memory")
    except Exception:  # the tracker is a safety net only
        pass


# stores whose -pending file this process (their owner) registered with the tracker
_PENDING_TRACKED: set[str] = set()


def track_pending(name: str) -> None:
    """Owner, stopping the Share (before the store leaves its path, so before any other
    process can make the file): a SIGKILLed owner leaves no -pending file behind."""
    if name not in _PENDING_TRACKED:
        _PENDING_TRACKED.add(name)
        tracker("register", _pending.file_name(name))


def untrack_pending(name: str) -> None:
    """Owner, once the -pending file is gone (start() took it; exit removed it)."""
    if name in _PENDING_TRACKED:
        _PENDING_TRACKED.discard(name)
        tracker("unregister", _pending.file_name(name))


def unlink(name: str) -> None:
    try:
        os.unlink(_store.path_of(name))
    except FileNotFoundError:
        return
    tracker("unregister", name)


def owner_cleanup(name: str, pid: int) -> None:
    """Owner exit / garbage collection: mark the store closed, unlink it, untrack it."""
    if os.getpid() != pid:
        return
    _remote.stop_server(name)
    st = _store._REGISTRY.get(name)
    if st is not None and not st.closed:
        try:
            with st.tlock:
                if not st.closed and st.depth == 0 and st.try_lock_briefly():
                    st.depth = 1
                    try:
                        st.commit({}, flags=st.slot()[S_FLAGS] | FLAG_STOPPED | FLAG_CLOSED)
                    finally:
                        st.depth = 0
                        try:
                            st.unlock_process()
                        except BaseException as e:  # (OSError, or a signal's as it began)
                            st.plock.drop_if_mine()
                            if not isinstance(e, OSError):
                                raise
        except Exception:
            pass
    unlink(name)
    _pending.discard(name)
    untrack_pending(name)
    if st is not None:
        _store.forget_store(st)
        st.close()


def forget(name: str) -> None:
    """Drop this process's attachment to store ``name`` (the file stays for others)."""
    st = _store._REGISTRY.get(name)
    if st is not None:
        _store.forget_store(st)
        st.close()


def _after_fork_in_child() -> None:
    # a forked child holds copies of the parent's handles: they become clients
    _remote.after_fork_in_child()
    _PENDING_TRACKED.clear()  # the parent's registrations: this process owns none of them
    for h in list(HANDLES):
        d = h.__dict__
        if d.get("_sk_owner"):
            d["_sk_owner"] = False
            fin = d.get("_sk_finalizer")
            if fin is not None:
                fin.detach()
            d["_sk_finalizer"] = None
        if d.get("_sk_net") is not None and _net.forced_tcp():
            d["_sk_store"] = None  # SK_SHARE_TRANSPORT=tcp: use the server, not the inherited map


os.register_at_fork(after_in_child=_after_fork_in_child)
