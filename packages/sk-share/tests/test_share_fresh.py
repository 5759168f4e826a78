"""Reads are never stale: a read returns at least the last write that completed before it
started, whoever wrote it (another thread, another process) and whatever this thread did
just before (``share.x += 1`` included).

::

    this process                           helper process (commands over a Pipe)
    share.x += 1   (own write)
    ──── "set 100" ─────────────────────►  share.x = 100
    ◄─── "done" ─────────────────────────  (write completed)
    share.x  ──► must be 100, never 1
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from suitkaise.share import Share

TIMEOUT = 60


def step(share: Share, first: bool) -> Any:
    # the reproduction: the `+=` and the read run in two calls of one function
    if first:
        share.x += 1
        return None
    return share.x


def _set(share: Share, value: int) -> None:
    share.x = value


def test_read_after_own_aug_in_a_finished_frame_sees_another_process(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share() as share:
        share.x = 0
        step(share, True)
        p = ctx.Process(target=_set, args=(share, 100))
        p.start()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert step(share, False) == 100


def test_read_after_own_aug_sees_another_thread() -> None:
    with Share() as share:
        share.x = 0
        step(share, True)
        t = threading.Thread(target=_set, args=(share, 100))
        t.start()
        t.join(TIMEOUT)
        assert step(share, False) == 100


def _helper(share: Share, conn: Any) -> None:
    # applies the writes it is told to, then says "done" (the write has completed)
    while True:
        cmd = conn.recv()
        if cmd is None:
            return
        kind, value = cmd
        if kind == "set":
            share.x = value
        else:
            share.x += value
        conn.send("done")


def _same_frame(share: Share, conn: Any, k: int, other: tuple[str, int]) -> Any:
    # own `+=`, then another process writes, then a read in the very same frame
    share.x += k
    conn.send(other)
    assert conn.recv() == "done"
    return share.x


_OPS = st.one_of(
    st.tuples(st.just("own_aug"), st.integers(-5, 5)),
    st.tuples(st.just("own_set"), st.integers(-1000, 1000)),
    st.tuples(st.just("other_set"), st.integers(-1000, 1000)),
    st.tuples(st.just("other_aug"), st.integers(-5, 5)),
    st.tuples(st.just("read"), st.just(0)),
    st.tuples(st.just("aug_other_read"), st.integers(-5, 5)),
)


def test_every_read_sees_the_last_completed_write(start_method: str) -> None:
    """Property: any interleaving of own and other-process writes and reads; every read
    equals the model (the value after the last completed write)."""
    ctx = multiprocessing.get_context()
    with Share() as share:
        share.x = 0
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=_helper, args=(share, theirs))
        p.start()
        try:

            @settings(max_examples=40, deadline=None)
            @given(st.lists(_OPS, max_size=12))
            def prop(ops: list[tuple[str, int]]) -> None:
                share.x = 0
                model = 0
                for kind, v in ops:
                    if kind == "own_aug":
                        step(share, True) if v == 1 else _own_aug(share, v)
                        model += v
                    elif kind == "own_set":
                        share.x = v
                        model = v
                    elif kind in ("other_set", "other_aug"):
                        mine.send(("set" if kind == "other_set" else "aug", v))
                        assert mine.recv() == "done"
                        model = v if kind == "other_set" else model + v
                    elif kind == "read":
                        assert step(share, False) == model
                    else:
                        other = model + v + 7
                        assert _same_frame(share, mine, v, ("set", other)) == other
                        model = other

            prop()
        finally:
            mine.send(None)
            p.join(TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join()
        assert p.exitcode == 0


def _own_aug(share: Share, v: int) -> None:
    share.x += v
