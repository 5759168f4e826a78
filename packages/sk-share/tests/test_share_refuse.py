"""What the how-to page says Share refuses, it refuses; writes to a stopped Share warn.

* ``os.pipe()`` handles wrapped as file objects (``io.FileIO``, ``os.fdopen``: buffered or
  text), anywhere in the value and through any write path, raise a ``ValueError`` naming
  the attribute path, and the Share is left exactly as it was.
* Writing to a stopped Share (attribute, ``+=``, reassignment, ``del``, through a proxy)
  emits a ``RuntimeWarning`` saying the change is queued until ``start()``, and ``start()``
  applies it.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from suitkaise.share import Share, ShareError

TIMEOUT = 60


class Holder:
    def __init__(self) -> None:
        self.f: Any = None


def _wrappers() -> dict[str, Callable[[int, int], Any]]:
    return {
        "FileIO-read": lambda r, w: io.FileIO(r, "r", closefd=False),
        "FileIO-write": lambda r, w: io.FileIO(w, "w", closefd=False),
        "fdopen-rb": lambda r, w: os.fdopen(r, "rb", closefd=False),
        "fdopen-wb-unbuffered": lambda r, w: os.fdopen(w, "wb", buffering=0, closefd=False),
        "fdopen-text": lambda r, w: os.fdopen(w, "w", closefd=False),
    }


_PLACES: dict[str, tuple[Callable[[Share, Any], None], str]] = {
    "attribute": (lambda s, f: setattr(s, "f", f), "share.f"),
    "in-a-dict": (lambda s, f: setattr(s, "g", {"x": [1, f]}), "share.g['x'][1]"),
    "in-an-object": (lambda s, f: setattr(s, "h", _holding(f)), "share.h.f"),
    "proxy-append": (lambda s, f: s.lst.append(f), "share.lst[2]"),
    "proxy-setitem": (lambda s, f: s.d.__setitem__("k", f), "share.d['k']"),
    "proxy-setattr": (lambda s, f: setattr(s.obj, "f", f), "share.obj.f"),
    "reassign": (lambda s, f: _reassign(s, f), "share.lst[2]"),
}


def _holding(f: Any) -> Holder:
    h = Holder()
    h.f = f
    return h


def _reassign(share: Share, f: Any) -> None:
    share.lst = share.lst + [f]  # noqa: RUF005 - the form under test


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


def _state(share: Share) -> dict[str, Any]:
    return share.reconnect_all()


@pytest.mark.parametrize("place", list(_PLACES))
@pytest.mark.parametrize("wrapper", list(_wrappers()))
def test_pipe_backed_files_are_refused_naming_the_attribute(
    pipe: tuple[int, int], wrapper: str, place: str,
) -> None:
    f = _wrappers()[wrapper](*pipe)
    assign, where = _PLACES[place]
    with Share() as share:
        share.lst, share.d, share.obj = [0, 1], {"a": 1}, Holder()
        before = {k: v for k, v in _state(share).items() if k != "obj"}
        with pytest.raises(ValueError, match=r"os\.pipe\(\) handles") as info:
            assign(share, f)
        msg = str(info.value)
        assert where in msg and f"fd {f.fileno()}" in msg and "left unchanged" in msg
        after = _state(share)
        assert after.pop("obj").f is None
        assert after == before
    f.close()


def test_regular_files_are_not_mistaken_for_pipes(tmp_path: Any) -> None:
    from suitkaise.share import _codec

    path = tmp_path / "data.bin"
    path.write_bytes(b"x")
    with open(path, "rb") as f:
        _codec.check_storable({"f": f}, "share.f")  # no pipe: not refused by this check


def _assign_pipe_in_child(share: Share, q: Any) -> None:
    r, w = os.pipe()
    try:
        share.f = os.fdopen(w, "wb", closefd=False)
    except ValueError as e:
        q.put(str(e))
    else:
        q.put("accepted")
    finally:
        os.close(r)
        os.close(w)


def test_a_child_process_is_refused_too(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.f = "untouched"
        p = ctx.Process(target=_assign_pipe_in_child, args=(share, q))
        p.start()
        msg = q.get(timeout=TIMEOUT)
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert "os.pipe" in msg and "share.f" in msg
        assert share.f == "untouched"


# -- writes to a stopped Share ---------------------------------------------------------------


def _w_set(s: Share) -> None:
    s.counter = 10


def _w_aug(s: Share) -> None:
    s.counter += 1


def _w_reassign(s: Share) -> None:
    s.counter = s.counter + 1


def _w_del(s: Share) -> None:
    del s.gone


def _w_append(s: Share) -> None:
    s.lst.append(2)


def _w_setitem(s: Share) -> None:
    s.d["k"] = 2


def _w_item_aug(s: Share) -> None:
    s.d["n"] += 1


def _w_proxy_setattr(s: Share) -> None:
    s.obj.f = "set"


_WRITES = {
    "set": (_w_set, lambda s: s.counter == 10),
    "aug": (_w_aug, lambda s: s.counter == 2),
    "reassign": (_w_reassign, lambda s: s.counter == 2),
    "del": (_w_del, lambda s: "gone" not in dir(s)),
    "append": (_w_append, lambda s: s.lst == [1, 2]),
    "setitem": (_w_setitem, lambda s: "k" in s.d and s.d["k"] == 2),
    "item-aug": (_w_item_aug, lambda s: s.d["n"] == 1),
    "proxy-setattr": (_w_proxy_setattr, lambda s: s.obj.f == "set"),
}


@pytest.mark.parametrize("form", list(_WRITES))
def test_writing_to_a_stopped_share_warns_and_queues(form: str) -> None:
    write, applied = _WRITES[form]
    share = Share()
    try:
        share.counter, share.lst, share.d, share.obj, share.gone = 1, [1], {"n": 0}, Holder(), 0
        share.stop()
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            write(share)
        runtime = [w for w in got if w.category is RuntimeWarning]
        assert len(runtime) == 1, [str(w.message) for w in got]
        assert "queued" in str(runtime[0].message) and "start()" in str(runtime[0].message)
        assert runtime[0].filename == __file__  # points at the user's line
        assert not applied(share)
        share.start()
        assert applied(share)
    finally:
        share.stop()


def _write_while_stopped(share: Share, q: Any, ev: Any) -> None:
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        share.c = 5
    q.put([(w.category.__name__, str(w.message)) for w in got])
    assert ev.wait(TIMEOUT)
    q.put(share.c)  # after start(): the queued write was applied


def test_a_child_writing_to_a_stopped_share_warns_and_queues(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q, ev = ctx.Queue(), ctx.Event()
    share = Share()
    try:
        share.c = 0
        share.stop()
        p = ctx.Process(target=_write_while_stopped, args=(share, q, ev))
        p.start()
        got = q.get(timeout=TIMEOUT)
        assert [c for c, _ in got] == ["RuntimeWarning"] and "queued" in got[0][1]
        share.start()
        ev.set()
        assert q.get(timeout=TIMEOUT) == 5
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert share.c == 5
    finally:
        share.stop()


def test_with_on_a_stored_lock_points_to_share_lock() -> None:
    import threading

    with Share() as share:
        share.lk = threading.Lock()
        with pytest.raises(TypeError, match=r"share\.lk is stored in a Share.*with share\.lock\(\):"):
            with share.lk:
                pass


def _write_while_stopped_then_exit(share: Share, attached: Any, stopped: Any) -> None:
    share.lst  # noqa: B018 - attach while the Share runs
    attached.set()
    assert stopped.wait(TIMEOUT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        share.c = 5
        share.n += 1
        share.lst.append("child")
        del share.gone


def test_writes_a_child_queued_while_stopped_survive_its_exit(start_method: str) -> None:
    """The child exits before the owner starts the Share again: its queued writes are applied
    by start() all the same (they wait in the Share's pending file, not in the child)."""
    ctx = multiprocessing.get_context()
    attached, stopped = ctx.Event(), ctx.Event()
    share = Share()
    try:
        share.c, share.n, share.lst, share.gone = 0, 1, ["owner"], True
        p = ctx.Process(target=_write_while_stopped_then_exit, args=(share, attached, stopped))
        p.start()
        assert attached.wait(TIMEOUT)
        share.stop()
        stopped.set()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        share.start()
        assert (share.c, share.n, share.lst) == (5, 2, ["owner", "child"])
        assert "gone" not in dir(share)
    finally:
        share.stop()


def _owner_that_stops_and_exits(q: Any) -> None:
    share = Share()
    share.c = 1
    q.put(share)
    share.stop()
    q.put("stopped")


def test_a_write_after_the_owner_stopped_and_exited_raises(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    p = ctx.Process(target=_owner_that_stops_and_exits, args=(q,))
    p.start()
    share = q.get(timeout=TIMEOUT)
    assert q.get(timeout=TIMEOUT) == "stopped"
    p.join(TIMEOUT)
    with pytest.raises(ShareError, match=r"is gone: its owner process|cannot take effect"):
        share.c = 2


class _Unsendable:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses to be pickled")


@pytest.mark.parametrize(
    ("stmt", "where"),
    [
        ("s.lst.append(bad)", "share.lst.append(<arg 0>)"),
        ("s.lst.insert(0, bad)", "share.lst.insert(<arg 1>)"),
        ("s.d.update({'a': bad})", "share.d.update(<arg 0>)['a']"),
        ("s.d['k'] = bad", "share.d['k']"),
        ("s.obj.f = bad", "share.obj.f"),
    ],
)
@pytest.mark.parametrize("bad_kind", ["mp-queue", "unpicklable"])
def test_a_refused_value_written_through_a_method_or_item_is_named_by_its_path(
    stmt: str, where: str, bad_kind: str
) -> None:
    import re

    bad = multiprocessing.get_context("spawn").Queue() if bad_kind == "mp-queue" else _Unsendable()
    if bad_kind == "unpicklable":  # cucumber's own note names root['a'] inside the argument
        where = where.removesuffix("['a']")
    with Share() as s:
        s.lst, s.d, s.obj = [1], {"x": 1}, Holder()
        with pytest.raises((ValueError, TypeError), match=re.escape(where)):
            exec(stmt, {"s": s, "bad": bad})
        assert (s.lst, s.d, s.obj.f) == ([1], {"x": 1}, None)  # left unchanged
    if bad_kind == "mp-queue":
        bad.close()
        bad.join_thread()


def _count_across_restarts(share: Share, n: int, started: Any, tag: int) -> None:
    share.n  # noqa: B018 - attach while the Share runs
    started.set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ("queued" while stopped)
        for i in range(n):
            share.n += 1
            share.m += 2
            share.d["k"] += 2  # (needs a copy of the data in this process to find `d`)
            share.lst.append((tag, i))


def test_no_write_is_lost_while_the_owner_stops_and_starts_the_share(start_method: str) -> None:
    """Two children update the Share while its owner stops and starts it again and again:
    writes made while stopped wait in the pending file (a `+=` needs no copy of the data in
    the child: the owner's start() applies it), writes made while it starts wait for it;
    every one lands exactly once. Nested updates (`d[k] += 2`, `lst.append(v)`) too: a child
    that lost the race to map a new store before the owner stopped it again keeps its old
    mapping, enough to queue them."""
    import time

    ctx = multiprocessing.get_context()
    n = 300
    share = Share()
    try:
        share.n, share.m, share.d, share.lst = 0, 0, {"k": 0}, []
        started = [ctx.Event() for _ in range(2)]
        procs = [ctx.Process(target=_count_across_restarts, args=(share, n, ev, tag))
                 for tag, ev in enumerate(started)]
        for p in procs:
            p.start()
        for ev in started:
            assert ev.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            share.stop()
            time.sleep(0.002)
            share.start()
            time.sleep(0.002)
        for p in procs:
            p.join(TIMEOUT)
            assert p.exitcode == 0
        assert share.n == 2 * n
        assert share.m == 4 * n
        assert share.d == {"k": 4 * n}
        lst = share.lst
        assert sorted(lst) == [(tag, i) for tag in range(2) for i in range(n)]  # each once
        assert [i for tag, i in lst if tag == 0] == list(range(n))  # in each child's order
    finally:
        share.stop()


def test_a_pending_record_cut_short_or_unloadable_costs_only_itself() -> None:
    from suitkaise.share import _pending
    from suitkaise.share._store import path_of

    share = Share()
    try:
        share.a, share.b = 0, 0
        share.stop()
        name = share._sk_name
        assert _pending.append(name, ("set", "a", (0, b"\x00", None)))  # (a malformed value: refused)
        assert _pending.append(name, ("del", "b"))
        with open(path_of(name + "-pending"), "ab") as f:
            f.write((5).to_bytes(8, "little") + b"junk!")  # 5 bytes of no cucumber payload
            f.write((1000).to_bytes(8, "little") + b"cut")  # a writer killed mid-write
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            share.start()
        assert "b" not in dir(share)  # the good record was applied
        assert share.a == 0
        assert len([w for w in got if "queued while the Share was stopped failed" in str(w.message)]) == 2
        assert not os.path.exists(path_of(name + "-pending"))
    finally:
        share.stop()


def _blind_writes(share: Share) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        share.c += 5  # this process never saw the data: the owner's start() applies it
        share.new = "child"


def test_a_process_that_never_saw_the_data_can_still_queue_blind_writes() -> None:
    ctx = multiprocessing.get_context("spawn")
    share = Share()
    try:
        share.c = 1
        share.stop()
        p = ctx.Process(target=_blind_writes, args=(share,))
        p.start()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        share.start()
        assert (share.c, share.new) == (6, "child")
    finally:
        share.stop()
