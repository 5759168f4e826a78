"""The robust cross-process lock, its fcntl fallback, and the fast read/``+=`` paths."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any

import pytest

from sk_testkit import run_fresh
from suitkaise.share import Proxy, Share, _lock, _store

TIMEOUT = 60


class Acc:
    def __init__(self) -> None:
        self.total = 0
        self.items: list[int] = []

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def shadow(self) -> None:
        self.add = 7  # type: ignore[method-assign]  # an instance attribute hides the method


def _grab_lock_and_wait(name: str, ev: Any) -> None:
    st = _store.get_store(name)
    st.acquire()  # hold the process lock and never release it
    ev.set()
    signal.pause()


def _count(share: Share, n: int) -> None:
    for _ in range(n):
        share.counter += 1


@pytest.mark.skipif(not _lock.robust_available(), reason="no robust pthread mutexes here")
def test_robust_mutex_owner_death_is_recovered(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    with Share() as share:
        share.counter = 0
        st = _store.get_store(share._sk_name)
        assert st.lock_kind == _lock.KIND_ROBUST
        ev = ctx.Event()
        p = ctx.Process(target=_grab_lock_and_wait, args=(share._sk_name, ev))
        p.start()
        assert ev.wait(TIMEOUT)
        assert st.tlock.acquire(timeout=TIMEOUT)
        try:
            assert not st.try_lock_briefly()  # really held by the child
        finally:
            st.tlock.release()
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        before = st.recovered
        share.counter += 1  # EOWNERDEAD -> pthread_mutex_consistent -> carries on
        assert share.counter == 1
        assert st.recovered == before + 1
        # and the lock is healthy afterwards, for other processes too
        ps = [ctx.Process(target=_count, args=(share, 200)) for _ in range(2)]
        for q in ps:
            q.start()
        for q in ps:
            q.join(TIMEOUT)
            assert q.exitcode == 0
        assert share.counter == 401


def test_fcntl_fallback_counts_and_survives_a_kill() -> None:
    code = r"""
import multiprocessing as mp, os, signal
os.environ["SK_SHARE_LOCK"] = "fcntl"
from suitkaise.share import Share, _store, _lock

def hold(name, ev):
    st = _store.get_store(name)
    st.acquire()
    ev.set()
    signal.pause()

def work(share):
    for _ in range(300):
        share.counter += 1

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    with Share() as share:
        share.counter = 0
        assert _store.get_store(share._sk_name).lock_kind == _lock.KIND_FCNTL
        ev = ctx.Event()
        p = ctx.Process(target=hold, args=(share._sk_name, ev))
        p.start()
        assert ev.wait(60)
        os.kill(p.pid, signal.SIGKILL)
        p.join(60)
        ps = [ctx.Process(target=work, args=(share,)) for _ in range(3)]
        for q in ps: q.start()
        for q in ps: q.join(60)
        assert share.counter == 900, share.counter
    print("ok")
"""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sk-share-test-") as d:
        script = os.path.join(d, "main.py")
        with open(script, "w") as f:
            f.write(code)
        proc = run_fresh(f"import runpy; runpy.run_path({script!r}, run_name='__main__')", timeout=120)
    assert proc.stdout.decode().split() == ["ok"]


def test_method_and_chain_reads_are_exact() -> None:
    with Share() as share:
        share.obj = Acc()
        assert share.obj.add(2) == 2  # LOAD_METHOD: one locked call, real result
        assert share.obj.total == 2  # LOAD_ATTR chain: the real value
        m = share.obj.add  # a stored method object, called later
        assert m(3) == 5
        obj = share.obj  # the value escapes: a Proxy
        assert type(obj) is Proxy and obj.total == 5
        share.s = "abc"
        assert share.s.upper() == "ABC" and share.s == "abc"
        share.n = 10
        assert share.n.bit_length() == 4 and share.n.real == 10
        assert type(share.n) is int
        with pytest.raises(AttributeError, match="Share has no attribute 'missing'"):
            share.missing.foo()
        share.obj.items.append(1)
        assert share.obj.items == [1]
        share.obj.shadow()  # now `add` is data in the instance dict
        assert share.obj.add == 7
        with pytest.raises(TypeError):
            share.obj.add(1)  # same error as calling 7(1)


def test_fast_aug_path_edge_cases() -> None:
    with Share() as share:
        share.c = 0
        share.c += 1
        share.c += 2**70  # leaves the small-int range: still exact
        assert share.c == 1 + 2**70
        share.c -= 2**70
        share.c += 0.5  # int -> float
        assert share.c == 1.5 and type(share.c) is float
        share.flag = True
        share.flag += 1  # bool + int -> int
        assert share.flag == 2 and type(share.flag) is int
        share.t = "a"
        with pytest.raises(TypeError):
            share.t += 1  # nothing is written when the operator fails
        assert share.t == "a"
        share.lst = [1]
        share.lst += [2]  # mutable values take the general (transactional) path
        assert share.lst == [1, 2]
        share.big = bytes(2_000_000)
        for _ in range(3):
            share.c += 1  # the region fills up: the fast path hands over to compaction
        assert share.c == 4.5 and len(share.big) == 2_000_000


def _read_i(share: Share, out: Any) -> None:
    out.put((share.i, share.j))


def test_fast_aug_signed_values_in_place_and_at_the_int64_edges(start_method: str) -> None:
    # the in-place path decodes the stored word as a signed 64-bit value: negative values,
    # and results just inside / outside the int64 range (outside: the general path)
    with Share() as share:
        st = share.__dict__["_sk_store"]
        share.i = -5
        with st.locked():
            rec = st.head("i")
        share.i += 3
        share.i -= 10
        share.i *= 2
        with st.locked():
            assert st.head("i") == rec  # updated in place, not a new record
        assert share.i == -24
        share.j = -(2**63) + 1
        share.j -= 1  # exactly the smallest int64: still in place
        assert share.j == -(2**63)
        share.j -= 1  # below it: an ordinary record, exact
        assert share.j == -(2**63) - 1
        share.j = 2**63 - 2
        share.j += 1
        assert share.j == 2**63 - 1
        share.j += 1
        assert share.j == 2**63
        share.j -= 1
        share.i -= 2**62
        ctx = multiprocessing.get_context(start_method)
        out = ctx.Queue()
        p = ctx.Process(target=_read_i, args=(share, out))
        p.start()
        got = out.get(timeout=TIMEOUT)
        p.join(TIMEOUT)
        assert got == (-24 - 2**62, 2**63 - 1)


def test_stop_closes_the_mapping_the_fast_lock_points_into() -> None:
    share = Share()
    share.c = 0
    share.c += 1
    st = share.__dict__["_sk_store"]
    assert st.fast_lock is not None or st.lock_kind != _lock.KIND_ROBUST
    share.stop()
    assert st.hdr.closed and st.mm.closed  # nothing kept the header page exported


# -- `share.x += <int constant>`: the read applies the update (Store.add_i64) ------------------


def _bump(o: Any) -> None:
    o.x += 1  # one call site, used with a plain object and with a Share


def _add_and_other(share: Share, n: int, other: bool) -> None:
    for _ in range(n):
        share.c += 1
        if other:
            share.d -= 1  # commits in between: the next `share.c += 1` re-reads the slot


def test_direct_add_is_taken_and_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = _store.Store.add_i64

    def counting(self: _store.Store, name: str, amount: int) -> Any:
        calls.append((name, amount))
        return real(self, name, amount)

    monkeypatch.setattr(_store.Store, "add_i64", counting)
    with Share() as share:
        share.c = 0
        share.c  # noqa: B018 - cached: the next reads take the fast path
        for _ in range(6):
            share.c += 5
            share.c -= 2
        assert share.c == 18
        # the first pass classifies each statement (the operator proxy applies it); then
        # the read applies it and the store-back is a no-op. (3.12+ reports a warm read at
        # its inline cache, a second offset classified once more: a pass or two later.)
        assert calls[-6:] == [("c", 5), ("c", -2)] * 3
        if sys.version_info < (3, 12):
            assert len(calls) == 10  # every pass after the first
        taken = len(calls)
        k = 4
        share.c += k  # an operand that is not a constant: the operator proxy, as before
        assert share.c == 22 and len(calls) == taken
        share.c = 100  # a new record: the next add finds it (the epoch moved)
        share.c += 1
        assert share.c == 101
        share.x = 1
        _bump(share)
        _bump(share)
        plain = type("Plain", (), {})()
        plain.x = 1
        _bump(plain)
        assert share.x == 3 and plain.x == 2


def test_direct_add_falls_back_without_changing_anything() -> None:
    with Share() as share:
        for start, want in ((0, 1), (0.5, 1.5), (2**63 - 1, 2**63), ("s", None), ([1], None)):
            share.c = start
            share.c  # noqa: B018
            if want is None:
                with pytest.raises(TypeError):
                    share.c += 1  # same error as Python's, nothing written
                assert share.c == start
            else:
                share.c += 1  # not a 64-bit int (or leaves the range): the general path
                assert share.c == want and type(share.c) is type(want)
        with pytest.raises(AttributeError, match="reserved"):
            share.is_running += 1  # a Share member: an ordinary (refused) store
        share.n = 0
        share.n  # noqa: B018
        with share.lock():
            share.n += 1  # inside a block: staged with the block's writes
            share.n += 1
            assert share.n == 2
        assert share.n == 2

        class Sub(Share):
            pass

        with Sub() as sub:
            sub.n = 0
            sub.n  # noqa: B018
            sub.n += 1
            sub.n += 1
            assert sub.n == 2


def test_direct_add_from_threads_and_a_lock_block_is_exact() -> None:
    import threading

    with Share() as share:
        share.c = 0
        share.c  # noqa: B018
        n = 3000

        def work() -> None:
            for _ in range(n):
                share.c += 1

        def block() -> None:
            for _ in range(200):
                with share.lock():
                    v = share.c
                    share.c = v + 1  # other threads' adds wait for the block
                    assert share.c == v + 1

        threads = [threading.Thread(target=work) for _ in range(3)] + [threading.Thread(target=block)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert share.c == 3 * n + 200


def test_direct_add_across_processes_with_other_commits_is_exact(start_method: str) -> None:
    ctx = multiprocessing.get_context(start_method)
    n = 1500
    with Share() as share:
        share.c = 0
        share.d = 0
        procs = [ctx.Process(target=_add_and_other, args=(share, n, i % 2 == 1)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(TIMEOUT)
            assert p.exitcode == 0
        assert share.c == 4 * n
        assert share.d == -2 * n


# -- Ctrl-C (a signal's exception) never leaves a process holding the lock -----------------


def _wait_for_lock_then_write(share: Share, ready: Any, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ready.set()
    t0 = time.monotonic()
    try:
        with share.lock():
            out.put(("entered", 0.0))
            return
    except KeyboardInterrupt:
        out.put(("interrupted", time.monotonic() - t0))
    share.after = 1  # the lock must be free of this process now
    out.put(("wrote", 0.0))


@pytest.mark.skipif(not _lock.robust_available(), reason="no robust pthread mutexes here")
def test_ctrl_c_while_waiting_for_the_lock_arrives_at_once_and_leaves_it_free(start_method: str) -> None:
    # before: the KeyboardInterrupt came only when the holder let go, and was raised as the
    # lock call returned: the interrupted process then held the lock for good (all hung)
    ctx = multiprocessing.get_context()
    with Share() as share:
        share.after = 0
        ready, out = ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_wait_for_lock_then_write, args=(share, ready, out))
        with share.lock():
            p.start()
            assert ready.wait(TIMEOUT)
            time.sleep(0.3)  # the child is asleep in the lock call by now
            os.kill(p.pid, signal.SIGINT)
            kind, waited = out.get(timeout=TIMEOUT)
            assert kind == "interrupted"
            assert waited < 2.0, "the interrupt waited for the holder"
        assert out.get(timeout=TIMEOUT) == ("wrote", 0.0)
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert share.after == 1


def _add_until_told(share: Share, ready: Any, done: Any) -> None:
    inside = [False]

    def interrupt(signum: int, frame: Any) -> None:
        if inside[0]:  # (only where it is caught: the loop's own lines must not die of it)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    ready.set()
    while not done.is_set():
        try:
            inside[0] = True
            for _ in range(100):
                share.n += 1
                share.acc.add(1)
            inside[0] = False
        except KeyboardInterrupt:
            inside[0] = False


def _hold_for(st: Any, seconds: float) -> None:
    """Hold the store's process mutex for ``seconds``; fail (not hang) if it never comes free."""
    with st.tlock:
        deadline = time.monotonic() + 20
        while not st.try_lock_briefly():
            assert time.monotonic() < deadline, "another process kept the Share's lock"
            time.sleep(0.0005)
        try:
            time.sleep(seconds)
        finally:
            st.unlock_process()


@pytest.mark.skipif(not _lock.robust_available(), reason="no robust pthread mutexes here")
def test_ctrl_c_in_a_tight_update_loop_never_keeps_the_lock(start_method: str) -> None:
    # before: an interrupt raised as the fast path's trylock returned left the lock held
    # (the trial's reproducer hung 3 of 3 times); then one raised as the wait for a busy
    # lock ended (about 1 run in 5 of this test kept it)
    ctx = multiprocessing.get_context()
    with Share() as share:
        share.n = 0
        share.acc = Acc()
        st = _store.get_store(share._sk_name)
        ready, done = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_add_until_told, args=(share, ready, done))
        p.start()
        try:
            assert ready.wait(TIMEOUT)
            for _ in range(100):
                _hold_for(st, 0.002)  # the child waits (spins, then sleeps) for it
                os.kill(p.pid, signal.SIGINT)  # and is interrupted as it gets it, or after
                time.sleep(0.003)
            for _ in range(20):  # the child, still looping, must keep letting go of the lock
                _hold_for(st, 0.0)
                time.sleep(0.01)
        finally:
            done.set()
            p.join(TIMEOUT)
            if p.exitcode is None:
                p.kill()
                p.join()
        assert p.exitcode == 0
        assert st.recovered == 0
        assert abs(share.n - share.acc.total) <= 100  # (an interrupt may fall between the two)


def _futex_holder(st: Any) -> int:
    """The thread id in the robust mutex's futex word (0: free)."""
    import ctypes

    return ctypes.c_uint32.from_buffer(st.plock._buf).value & _lock._TID_MASK


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Make ``owner.name`` raise KeyboardInterrupt once, as it returns: what a signal
    arriving during the call does (Python runs the handler as the next call returns)."""
    real = getattr(owner, name)
    fired: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not fired and threading.current_thread() is threading.main_thread():
            fired.append(1)
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return fired


def _interrupt_before(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Make ``owner.name`` raise KeyboardInterrupt once, at its first line (a signal landing
    as the call begins: Python checks for one there)."""
    real = getattr(owner, name)
    fired: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not fired and threading.current_thread() is threading.main_thread():
            fired.append(1)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return fired


class _InterruptedRLock:
    """A store's thread lock whose first ``acquire`` in the main thread raises
    KeyboardInterrupt once it has taken the lock (a signal arriving during the call)."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.fired: list[int] = []

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        got = self.lock.acquire(*args, **kwargs)
        if got and not self.fired and threading.current_thread() is threading.main_thread():
            self.fired.append(1)
            raise KeyboardInterrupt
        return bool(got)

    def release(self) -> None:
        self.lock.release()

    def _is_owned(self) -> bool:
        return bool(self.lock._is_owned())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _busy_for_a_moment(st: Any) -> Any:
    """Another thread holds the mutex for 50 ms: this thread's next lock call finds it busy
    and waits (the path where the wait's end can be interrupted)."""
    held = threading.Event()

    def hold() -> None:
        st.plock.acquire()
        held.set()
        time.sleep(0.05)
        st.plock.release()

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    return t


def _inc(share: Share) -> None:
    share.n += 1  # Store.add_i64


def _cat(share: Share) -> None:
    share.s += "x"  # Store.aug


def _call(share: Share) -> None:
    share.acc.add(1)  # _calls.call


def _set_item(share: Share) -> None:
    share.d["k"] = 1  # the general path (_ops.run)


_UPDATES = {"int +=": _inc, "str +=": _cat, "method": _call, "d[k] =": _set_item}


@pytest.mark.skipif(not _lock.robust_available(), reason="no robust pthread mutexes here")
@pytest.mark.parametrize(("where", "update"), [
    *(("a busy lock's wait ends", u) for u in sorted(_UPDATES)),  # RobustMutex.acquire returns
    ("the thread lock is let go", "int +="),  # add_i64's wait: its `with tlock` ends
    *(("the thread lock is taken", u) for u in ("str +=", "method", "d[k] =")),  # its acquire returns
    ("release begins", "d[k] ="),  # Store.release, before it does anything
    ("the mutex's release begins", "d[k] ="),  # inside Store.release (the fast paths unlock in C)
])
def test_an_interrupt_at_each_step_of_taking_and_releasing_never_keeps_the_lock(
    monkeypatch: pytest.MonkeyPatch, where: str, update: str,
) -> None:
    # before: every case left this thread holding the mutex (so every other process hung on
    # its next operation), or a count on the thread lock
    with Share() as share:
        share.n, share.s, share.acc, share.d = 0, "", Acc(), {}
        st = _store.get_store(share._sk_name)
        if where == "a busy lock's wait ends":
            fired = _interrupt_after(monkeypatch, _lock.RobustMutex, "acquire")
        elif where == "the thread lock is let go":
            fired = _interrupt_after(monkeypatch, _store.Store, "_wait_for_add")
        elif where == "the thread lock is taken":
            st.tlock = _InterruptedRLock(st.tlock)
            fired = st.tlock.fired
        elif where == "release begins":
            fired = _interrupt_before(monkeypatch, _store.Store, "release")
        else:
            fired = _interrupt_before(monkeypatch, _lock.RobustMutex, "release")
        t = _busy_for_a_moment(st)
        try:
            _UPDATES[update](share)
        except KeyboardInterrupt:
            pass
        t.join(TIMEOUT)
        monkeypatch.undo()
        if isinstance(st.tlock, _InterruptedRLock):
            st.tlock = st.tlock.lock
        assert _futex_holder(st) == 0, f"interrupted as {where}: {update} kept the process lock"
        assert st.depth == 0 and st.txn is None
        assert st.tlock.acquire(blocking=False)  # and the thread lock (no leaked count)
        st.tlock.release()
        assert not st.tlock._is_owned()  # type: ignore[attr-defined]
        assert fired, f"the update never reached {where}"
        # whatever the update did, it did it once or not at all
        assert share.n in (0, 1) and share.s in ("", "x") and share.acc.total in (0, 1)
        _UPDATES[update](share)  # and the next one works
        assert share.n + len(share.s) + share.acc.total + len(share.d) >= 1


@pytest.mark.skipif(not _lock.robust_available(), reason="no robust pthread mutexes here")
@pytest.mark.parametrize("where", ["release begins", "the mutex's release begins"])
def test_an_interrupt_as_a_lock_block_ends_never_keeps_the_lock(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    # before: the block's __exit__ called Store.release unguarded (the mutex stayed held)
    with Share() as share:
        share.n = 0
        st = _store.get_store(share._sk_name)
        with pytest.raises(KeyboardInterrupt):
            with share.lock():
                share.n += 5
                if where == "release begins":  # (armed last: the += releases a nested hold)
                    _interrupt_before(monkeypatch, _store.Store, "release")
                else:
                    _interrupt_before(monkeypatch, _lock.RobustMutex, "release")
        monkeypatch.undo()
        assert _futex_holder(st) == 0 and st.depth == 0 and st.txn is None
        assert share.n == 5  # committed before the release was interrupted
        with share.lock():
            share.n += 1
        assert share.n == 6


def _ping(pid: int, seconds: float) -> None:
    import random

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(random.uniform(0, 0.002))
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return


def _take_the_lock(share: Share, q: Any) -> None:
    with share.lock():
        q.put("took it")


@pytest.mark.skipif(not _lock.robust_available(), reason="no robust pthread mutexes here")
def test_ctrl_c_while_looping_over_lock_blocks_never_keeps_the_lock(start_method: str) -> None:
    # before (a new-user trial, 4 of 4 runs): an interrupt landing as a block's __exit__
    # began skipped it: the block's lock and transaction stayed held for good (every other
    # process hung, this one's later writes were lost, m and m2 drifted apart)
    ctx = multiprocessing.get_context()
    armed = [False]

    def interrupt(signum: int, frame: Any) -> None:
        if armed[0]:  # only inside the loop below
            armed[0] = False
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, interrupt)
    try:
        with Share() as share:
            share.m, share.m2 = 0, 0
            st = _store.get_store(share._sk_name)
            pinger = ctx.Process(target=_ping, args=(os.getpid(), 2.0))
            pinger.start()
            caught, left_open = 0, []
            try:
                while pinger.is_alive():
                    try:
                        armed[0] = True
                        while pinger.is_alive():
                            with share.lock():
                                share.m += 1
                                share.m2 += 1
                        armed[0] = False
                    except KeyboardInterrupt:
                        armed[0] = False
                        caught += 1
                        if st.txn is not None or st.depth:
                            left_open.append(caught)
                            break
            finally:
                armed[0] = False
                pinger.kill()
                pinger.join(TIMEOUT)
            assert not left_open, f"a block stayed open after interrupt {left_open[0]}"
            assert caught > 50  # (the test did interrupt the loop)
            assert signal.getsignal(signal.SIGINT) is interrupt  # the block's stand-in is gone
            assert share.m == share.m2  # every block all or nothing
            q = ctx.Queue()
            p = ctx.Process(target=_take_the_lock, args=(share, q))
            p.start()
            try:
                assert q.get(timeout=20) == "took it"
            finally:
                p.join(TIMEOUT)
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_signal_landing_in_a_blocks_exit_waits_for_it_and_elsewhere_does_not() -> None:
    from suitkaise.share import _defer

    def in_exit() -> Any:
        return sys._getframe()

    seen: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(frame.f_code.co_name)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    _defer.EXITS.add(in_exit.__code__)
    try:
        d = _defer.defer()
        assert d is not None
        d.install()
        stand_in = signal.getsignal(signal.SIGINT)
        assert stand_in != handler
        assert _defer.defer() is None  # a nested block leaves it to the outer one
        stand_in(signal.SIGINT, in_exit())  # lands in an __exit__: kept
        assert seen == []
        with pytest.raises(KeyboardInterrupt):
            stand_in(signal.SIGINT, sys._getframe())  # anywhere else: handled at once
        assert seen == ["test_a_signal_landing_in_a_blocks_exit_waits_for_it_and_elsewhere_does_not"]
        with pytest.raises(KeyboardInterrupt):
            d.end()  # the kept one, once the block has ended
        assert seen[-1] == "in_exit"
        assert signal.getsignal(signal.SIGINT) is handler
        # a restore a signal cut short leaves a stand-in that only passes signals on; the
        # next block unwraps it instead of taking it for an outer block's
        d = _defer.defer()
        assert d is not None
        d.install()
        d.active = False
        d.pending.clear()
        with pytest.raises(KeyboardInterrupt):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, in_exit())  # (not kept: inactive)
        d2 = _defer.defer()
        assert d2 is not None and (signal.SIGINT, handler) in d2.saved
        d.restore()
    finally:
        _defer.EXITS.discard(in_exit.__code__)
        signal.signal(signal.SIGINT, old)


def _child_of_a_held_block(out: Any) -> None:
    from suitkaise.share import _defer

    inherited = signal.getsignal(signal.SIGINT)
    fresh = _defer.defer()  # what the child's own next block gets
    with Share() as own, own.lock():
        own.n = 1
        during = signal.getsignal(signal.SIGINT)
    out.put((
        isinstance(getattr(inherited, "__self__", None), _defer.Deferral),
        fresh is not None,
        during is not inherited,
        signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    ))


def test_a_child_forked_inside_a_held_block_defers_its_own_blocks_signals() -> None:
    # Process.start() under fork inside `with share.lock():` copies the block's installed
    # signal stand-in into the child. Left active there, the child's own blocks took it for an
    # outer block's and installed nothing, and a Ctrl-C landing as one of them ended was kept
    # by a stand-in whose end() never runs: lost.
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Share() as share, share.lock():
            share.x = 1
            p = ctx.Process(target=_child_of_a_held_block, args=(out,))
            p.start()
            got = out.get(timeout=60)
            p.join(60)
        assert p.exitcode == 0
        inherited_stand_in, fresh, own_stand_in, restored = got
        assert inherited_stand_in  # (the case this test is about)
        assert fresh, "the child's next block must get its own deferral"
        assert own_stand_in and restored
    finally:
        signal.signal(signal.SIGINT, old)
