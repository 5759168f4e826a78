"""What a Share's store writes, read from its header: for tests that check an update's cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from suitkaise.share import Share
from suitkaise.share._store import S_BUMP, S_SEQ, SEL_OFF, SLOT, SLOT_OFF


def slot(share: Share) -> tuple[int, ...]:
    """The store's current header slot (sequence number, bump pointer, ...)."""
    st = share._sk_store
    return SLOT.unpack_from(st.hdr, SLOT_OFF[st.hdr[SEL_OFF]])


def written(share: Share, fn: Callable[[], Any], rounds: int = 20) -> int:
    """Median bytes the store's bump pointer advances per ``fn()`` (a region compaction
    in between would move it backwards: those samples are skipped)."""
    got = []
    for _ in range(rounds):
        before = slot(share)
        fn()
        after = slot(share)
        if after[S_BUMP] >= before[S_BUMP] and after[S_SEQ] == before[S_SEQ] + 1:
            got.append(after[S_BUMP] - before[S_BUMP])
    assert got, "every sample crossed a compaction"
    return sorted(got)[len(got) // 2]
