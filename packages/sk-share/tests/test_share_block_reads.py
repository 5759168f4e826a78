"""Reads inside and after ``with share.lock():`` are never stale, whatever this process had
cached before the block, and entering a block does not cost O(names cached).

::

    names before the block:  cached and known current | cached at an older epoch |
                             cached at an older version (another process wrote it) |
                             never read here (another process wrote it) | absent
    in the block:            assign | += | append | a new list | del | (nothing), read through
                             the hot read, the general read and a proxy view
    after it:                committed (the block ended) or unchanged (it raised)
"""

from __future__ import annotations

import copy
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from sk_testkit import run_processes
from suitkaise.share import Share

TIMEOUT = 60
STATES = ("current", "old_epoch", "old_version", "uncached", "absent")
WRITES = ("assign", "aug", "append", "replace", "delete", "none")


def _fresh_reader() -> Callable[[Share, str], Any]:
    """A read instruction run for the first time: the general read of ``__getattribute__``."""
    ns: dict[str, Any] = {}
    exec("def rd(s, n):\n    return getattr(s, n)\n", ns)
    return ns["rd"]  # type: ignore[no-any-return]


def _hot_reader() -> Callable[[Share, str], Any]:
    """A read instruction already classified as a plain read: the hot read."""
    rd = _fresh_reader()
    with Share() as warm:
        warm.w = 1
        for _ in range(3):
            assert rd(warm, "w") == 1
    return rd


def _plain(v: Any) -> Any:
    return copy.copy(v)  # a proxy's value (through _ops.view), an immutable as it is


def _reads(share: Share, name: str, hot: Callable[[Share, str], Any]) -> list[Any]:
    """``name`` read through each read path (a name that is absent reads as ``KeyError``)."""
    out = []
    for rd in (hot, _fresh_reader()):
        try:
            out.append(_plain(rd(share, name)))
        except AttributeError:
            out.append(KeyError)
    return out


def _name(state: str, write: str) -> str:
    return f"{state}_{write}"


def _initial(write: str) -> Any:
    return [1] if write in ("append", "replace") else 1


def _set_from_child(share: Share, names: list[str]) -> None:
    for n in names:
        setattr(share, n, _initial(n.rsplit("_", 1)[1]))


def _bump_from_child(share: Share, names: list[str]) -> None:
    for n in names:
        v = getattr(share, n)
        setattr(share, n, [*v, 0] if isinstance(_plain(v), list) else v + 100)


def _prepare(share: Share) -> dict[str, Any]:
    """Every (state, write) name set up in its state; returns the committed values."""
    names = {_name(s, w): _initial(w) for s in STATES for w in WRITES if s != "absent"}
    mine = [n for n in names if not n.startswith(("uncached", "old_version"))]
    for n in mine:
        setattr(share, n, names[n])
    # written by another process: this one has no cached copy of them
    run_processes(_set_from_child, [(share, [n for n in names if n not in mine])])
    for n in names:
        if not n.startswith("uncached"):
            _plain(getattr(share, n))  # cached (and checked) here
    # another process writes them again: the cached copies here are an older version
    old = [n for n in names if n.startswith("old_version")]
    run_processes(_bump_from_child, [(share, old)])
    for n in old:
        names[n] = [1, 0] if isinstance(names[n], list) else 101
    share.other = 0  # a commit after every name was checked: old_epoch entries are behind
    for n in names:
        if n.startswith("current"):
            _plain(getattr(share, n))  # checked at the latest epoch
    return names


def _write(share: Share, name: str, write: str, before: Any) -> Any:
    """Apply ``write`` to ``name`` in the block; the value it must read as afterwards."""
    if write == "assign":
        setattr(share, name, 7)
        return 7
    if write == "aug":
        if before is KeyError:
            setattr(share, name, 0)
            before = 0
        ns: dict[str, Any] = {}
        exec(f"def inc(s):\n    s.{name} += 5\n", ns)
        ns["inc"](share)
        return before + 5
    if write == "append":
        if before is KeyError:
            setattr(share, name, [])
            before = []
        getattr(share, name).append(9)
        return [*before, 9]
    if write == "replace":
        setattr(share, name, [5, 6])
        return [5, 6]
    if write == "delete":
        if before is not KeyError:
            delattr(share, name)
        return KeyError
    return before




def test_reads_inside_a_block_see_its_writes_in_every_cache_state(start_method: str) -> None:
    hot = _hot_reader()
    with Share() as share:
        names = _prepare(share)
        for rd in (hot, _fresh_reader()):  # (the hot read takes this path outside a block)
            assert _plain(rd(share, "current_none")) == 1
        want: dict[str, Any] = {}
        with share.lock():
            for s in STATES:
                for w in WRITES:
                    n = _name(s, w)
                    got = _write(share, n, w, names.get(n, KeyError))
                    want[n] = got
                    assert _reads(share, n, hot) == [got, got], (n, "read inside the block after its write")
            for n, v in want.items():  # and every name again, after all the writes
                assert _reads(share, n, hot) == [v, v], (n, "read inside the block at its end")
        for n, v in want.items():
            assert _reads(share, n, hot) == [v, v], (n, "read after the block")
        committed = dict(want)
        with pytest.raises(RuntimeError):
            with share.lock():
                for n, b in committed.items():
                    w = n.rsplit("_", 1)[1]
                    if w == "none" or b is KeyError:
                        continue
                    got = _write(share, n, w, b)
                    assert _reads(share, n, hot) == [got, got], (n, "read inside the block that raises")
                raise RuntimeError("the block commits nothing")
        for n, v in committed.items():
            assert _reads(share, n, hot) == [v, v], (n, "read after the block that raised")


def test_reading_names_the_block_does_not_write() -> None:
    hot = _hot_reader()
    with Share() as share:
        share.a, share.lst = 1, [1]
        for _ in range(2):
            assert _reads(share, "a", hot) == [1, 1]
        with share.lock():
            assert _reads(share, "a", hot) == [1, 1]
            assert _reads(share, "lst", hot) == [[1], [1]]
            share.a = 2
            assert _reads(share, "a", hot) == [2, 2]
        assert _reads(share, "a", hot) == [2, 2] and _reads(share, "lst", hot) == [[1], [1]]
        with share.lock():  # a block that writes nothing: the cached copies stay usable
            assert _reads(share, "a", hot) == [2, 2]
        assert _reads(share, "a", hot) == [2, 2]


def test_another_thread_never_sees_the_block_s_uncommitted_changes() -> None:
    with Share() as share:
        share.lst, share.n = [1], 1
        assert copy.copy(share.lst) == [1] and share.n == 1  # both cached and current
        seen: list[Any] = []
        inside, done = threading.Event(), threading.Event()

        def reader() -> None:
            inside.wait(TIMEOUT)
            while not done.is_set():
                seen.append((copy.copy(share.lst), share.n))

        t = threading.Thread(target=reader)
        t.start()
        try:
            with pytest.raises(RuntimeError):
                with share.lock():
                    share.lst.append(999)  # the cached object itself is the block's working copy
                    share.n = 999
                    inside.set()
                    time.sleep(0.2)
                    raise RuntimeError("rolled back")
            time.sleep(0.05)
        finally:
            done.set()
            t.join(TIMEOUT)
        assert seen and all(v == ([1], 1) for v in seen), {repr(v) for v in seen}


def _read_into(share: Share, q: Any) -> None:
    q.put((copy.copy(share.lst), share.n))


def test_a_child_forked_inside_a_block_reads_what_was_committed(start_method: str) -> None:
    # under fork the child starts with this process's cache, in which the block's working
    # copy already holds the uncommitted append
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.lst, share.n = [1], 1
        assert copy.copy(share.lst) == [1] and share.n == 1
        p = None
        try:
            with pytest.raises(RuntimeError):
                with share.lock():
                    share.lst.append(999)
                    share.n = 999
                    p = ctx.Process(target=_read_into, args=(share, q))
                    p.start()  # its reads wait for the lock: they come after the rollback
                    raise RuntimeError("rolled back")
            assert q.get(timeout=TIMEOUT) == ([1], 1)
        finally:
            if p is not None:
                p.join(TIMEOUT)
        assert p.exitcode == 0
        assert (copy.copy(share.lst), share.n) == ([1], 1)


def test_entering_a_block_does_not_touch_every_cached_name() -> None:
    # O(1) block entry: a block of one update costs the same with 10 or 20 000 cached names
    def block_cost(share: Share) -> float:
        best = float("inf")
        for _ in range(5):
            t = time.process_time()  # (CPU time: other processes on the machine do not count)
            for _ in range(20):
                with share.lock():
                    share.x += 1
            best = min(best, (time.process_time() - t) / 20)
        return best

    with Share() as small, Share() as big:
        for share, n in ((small, 10), (big, 20_000)):
            with share.lock():
                for i in range(n):
                    setattr(share, f"n{i}", i)
                share.x = 0
            for i in range(n):
                getattr(share, f"n{i}")  # all cached
        ratios = []
        for _ in range(3):  # the best of a few tries: the machine may be busy
            ratios.append(block_cost(big) / block_cost(small))
            if ratios[-1] < 3:
                break
        assert min(ratios) < 3, ratios
