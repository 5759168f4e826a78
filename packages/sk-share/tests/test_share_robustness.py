"""Crashes, kills, shutdown and leaks."""

from __future__ import annotations

import marshal
import multiprocessing
import os
import pickle
import random
import signal
import struct
import time
from typing import Any

import pytest

from sk_testkit import run_fresh
from suitkaise.share import Share, ShareError

TIMEOUT = 60


class Hanger:
    def __init__(self) -> None:
        self.value = 0

    def hang_after(self, ev: Any) -> None:
        # runs under the Share lock in the calling process; we get SIGKILLed here
        self.value = 123456
        ev.set()
        time.sleep(600)

    def add(self, n: int) -> int:
        self.value += n
        return self.value


def _hang(share: Share, ev: Any) -> None:
    share.obj.hang_after(ev)


def _after_kill(share: Share, q: Any) -> None:
    share.counter += 1
    share.obj.add(1)
    q.put(share.counter)


def test_sigkill_while_holding_the_lock(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    ev = ctx.Event()
    q = ctx.Queue()
    with Share() as share:
        share.obj = Hanger()
        share.counter = 0
        p = ctx.Process(target=_hang, args=(share, ev))
        p.start()
        assert ev.wait(TIMEOUT), "child never entered the method"
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL
        # the kernel released the lock; the half-done method left no trace
        assert share.obj.value == 0
        share.counter += 1
        other = ctx.Process(target=_after_kill, args=(share, q))
        other.start()
        assert q.get(timeout=TIMEOUT) == 2
        other.join(TIMEOUT)
        assert other.exitcode == 0
        assert share.obj.value == 1 and share.counter == 2


def test_a_single_name_commit_is_published_by_one_aligned_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # The table word that publishes a one-name commit must be one 8-byte store: a
    # little-endian struct.pack_into writes it byte by byte, and a writer killed between two
    # bytes would leave an offset that points nowhere.
    from suitkaise.share import _store
    from suitkaise.share._codec import K_PLAIN

    offsets: list[int] = []

    class Spy(struct.Struct):
        def pack_into(self, buf: Any, off: int, *v: Any) -> None:
            offsets.append(off)
            super().pack_into(buf, off, *v)

    with Share() as share:
        share.x = "a"
        share.y = [1]
        st = share._sk_store
        monkeypatch.setattr(_store, "WORD", Spy("<Q"))
        with st.locked():
            s = st.slot()
            st.commit1("y", K_PLAIN, marshal.dumps([2]))
            st.commit_delta("y", K_PLAIN, marshal.dumps([("c", (), "append", (3,), {})]))
        table = range(s[_store.S_TOFF], s[_store.S_TOFF] + _store.ESIZE * s[_store.S_TN])
        assert [o for o in offsets if o in table] == []
        assert share.y == [2, 3]


def _big_writer(share: Share, ev: Any) -> None:
    i = 0
    while True:
        share.blob = bytes([i % 251]) * 300_000
        share.lst.append(i)
        share.n += 1
        i += 1
        if i == 3:
            ev.set()


def test_sigkill_mid_write_never_tears_values(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    rng = random.Random(1234)
    with Share() as share:
        share.blob = bytes(300_000)
        share.lst = []
        share.n = 0
        for _ in range(4):
            ev = ctx.Event()
            p = ctx.Process(target=_big_writer, args=(share, ev))
            p.start()
            assert ev.wait(TIMEOUT)
            time.sleep(rng.uniform(0.0, 0.05))  # land the kill at a random point of a write
            os.kill(p.pid, signal.SIGKILL)
            p.join(TIMEOUT)
            blob = share.blob
            assert len(blob) == 300_000 and blob.count(blob[0]) == len(blob)
            lst = share.lst
            assert lst == sorted(lst) or len(set(lst)) <= len(lst)
        before = share.n
        share.n += 1
        assert share.n == before + 1


def test_fresh_interpreter_leaves_nothing_and_prints_no_warning() -> None:
    code = r"""
import multiprocessing as mp, os
from suitkaise.share import Share

def work(share):
    for _ in range(50):
        share.counter += 1
    share.child = [1, 2, 3]

if __name__ == "__main__":
    for method in ("spawn", "fork", "forkserver"):
        ctx = mp.get_context(method)
        share = Share()
        share.counter = 0
        ps = [ctx.Process(target=work, args=(share,)) for _ in range(2)]
        for p in ps: p.start()
        for p in ps: p.join()
        assert share.counter == 100, share.counter
        print(share._sk_name)
        if method == "fork":
            share.stop()   # one stopped explicitly, the others left to interpreter exit
"""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sk-share-test-") as d:
        script = os.path.join(d, "main.py")
        with open(script, "w") as f:
            f.write(code)
        proc = run_fresh(f"import runpy; runpy.run_path({script!r}, run_name='__main__')")
    names = proc.stdout.decode().split()
    assert len(names) == 3
    stderr = proc.stderr.decode()
    assert "resource_tracker" not in stderr and "leaked" not in stderr, stderr
    assert stderr.strip() == "", stderr
    for n in names:
        assert not os.path.exists(os.path.join("/dev/shm", n)), n


def test_client_of_closed_share_fails_fast() -> None:
    code = r"""
import pickle, sys
from suitkaise.share import Share
s = Share()
s.x = 41
sys.stdout.buffer.write(pickle.dumps(s))
"""
    proc = run_fresh(code)
    client = pickle.loads(proc.stdout)  # the owner interpreter has exited
    t = time.monotonic()
    with pytest.raises(ShareError, match=r"gone|closed"):
        client.x  # noqa: B018
    with pytest.raises(ShareError):
        client.x = 1
    assert time.monotonic() - t < 10
    assert client.has_error
    assert not client.is_running


def _owner(q: Any, ev: Any) -> None:
    s = Share()
    s.counter = 10
    q.put(pickle.dumps(s))
    ev.wait(TIMEOUT)


def test_owner_sigkilled_others_keep_working(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    q, ev = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_owner, args=(q, ev))
    p.start()
    share = pickle.loads(q.get(timeout=TIMEOUT))
    share.counter += 1  # attach while the owner is alive
    os.kill(p.pid, signal.SIGKILL)
    p.join(TIMEOUT)
    share.counter += 1
    assert share.counter == 12  # no server to lose: the store is still consistent
    assert share.stop() is True  # frees the orphaned store (its owner is dead)
    assert not os.path.exists(os.path.join("/dev/shm", share._sk_name))
