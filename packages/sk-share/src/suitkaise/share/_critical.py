"""``with share.lock():`` - a critical section across threads and processes.

::

    __enter__: Store.acquire (thread RLock + robust process mutex, reentrant)
               Store.txn = Txn(block=True)  ◄── every operation of this thread joins it
               Store.eq = NO_EPOCH      ◄── no fast read (cached copy) matches in the block
    __exit__:  no exception: one commit of everything the block staged; else: nothing
               Store.eq = Store.ew      (the commit bumped the epoch first)
               Store.release  (a holder killed inside the block: the kernel releases the
               robust mutex, nothing of the block was committed)
"""

from __future__ import annotations

from typing import Any

from . import _defer, _ops
from ._base import ShareError
from ._base import oga as _oga
from ._store import FLAG_CLOSED, FLAG_STOPPED, NO_EPOCH, S_FLAGS, Store, StoreGone
from ._txn import Txn


class Critical:
    """``with share.lock():`` - holds the store's lock (thread RLock + robust process mutex)
    for the block and collects its writes into one transaction (``Store.txn``)."""

    __slots__ = ("deferral", "outer", "share", "st")

    def __init__(self, share: Any) -> None:
        self.share = share
        self.st: Store | None = None
        self.outer = False
        self.deferral: _defer.Deferral | None = None

    def __enter__(self) -> Any:
        share = self.share
        d = _oga(share, "__dict__")
        for _ in range(100):
            st = _ops.attached(share)
            if st is None:
                if d["_sk_remote"] is not None:
                    raise ShareError(
                        f"share.lock() is not available over TCP (Share {d['_sk_name']!r} is "
                        "reached through its owner's server from this process); use += or a "
                        "method of a stored object for atomic updates."
                    )
                raise ShareError(
                    f"share.lock() needs a running Share: {d['_sk_name']!r} is stopped "
                    "(call share.start() in the process that created it)."
                )
            try:
                st.acquire()
            except StoreGone:
                d["_sk_store"] = None
                continue
            try:
                flags = st.slot()[S_FLAGS]
                if flags & (FLAG_STOPPED | FLAG_CLOSED):
                    raise ShareError(f"share.lock() needs a running Share: {d['_sk_name']!r} is stopped or closed.")
                if st.txn is None:
                    if d["_sk_queue"]:
                        _ops.replay(share)
                    self.outer = True
                    st.txn = Txn(st, block=True)
                    # the fast read paths must not skip the block: none matches until it ends
                    # (O(1): the epoch source is swapped, no cached entry is touched)
                    st.eq = NO_EPOCH
                    # Ctrl-C as __exit__ begins would skip it: keep such signals until it ends
                    _defer.start(self)
            except BaseException:
                if self.deferral is not None:
                    self.deferral.restore()
                    self.deferral = None
                if self.outer:
                    self.outer = False
                    st.txn = None
                    st.eq = st.ew
                depth = st.depth - 1
                try:
                    st.release()
                except BaseException:  # see Store.settle
                    st.settle(depth)
                    raise
                raise
            self.st = st
            return share
        raise ShareError(f"Share {d['_sk_name']!r}: the store kept changing under this process")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        st = self.st
        assert st is not None
        self.st = None
        try:
            if self.outer:
                txn: Txn = st.txn
                st.txn = None
                if exc_type is not None:
                    txn.rollback()
                elif txn.changes or txn.cleared:
                    try:
                        seq = st.commit(txn.changes, clear=txn.cleared)
                    except BaseException:
                        txn.rollback()
                        raise
                    txn.committed(seq)
        finally:
            if self.outer:
                # after the commit bumped the epoch (or the rollback dropped what the block
                # mutated): a cached copy the fast reads match again is a committed value
                st.eq = st.ew
            st.release_block(self)


_defer.EXITS.add(Critical.__exit__.__code__)
