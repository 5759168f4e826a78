"""Stop/start edge cases: a process whose copy of the data is out of date, the pending file
of an owner killed while stopped.

* A process that saw the owner start the Share again, but found the new store stopped
  again before it could map it, keeps its old mapping: its data is older than the owner's
  snapshot, so no value of it reaches the caller (a read raises ``ShareError``), but the
  writes that need no data - ``d[k] += 2``, ``o.n += 1``, ``lst.append(v)``, ``d[k] = v`` -
  are queued for ``start()`` and land exactly once.
* The ``-pending`` file of a Share whose owner is SIGKILLed while stopped is removed the way
  the store file of a SIGKILLed owner is: by the resource tracker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import warnings
from typing import Any

import pytest

from sk_testkit import run_fresh
from suitkaise.share import Share, ShareError

TIMEOUT = 60


class Counter:
    def __init__(self) -> None:
        self.n = 0


def _writes_through_a_stale_mapping(share: Share, conn: Any) -> None:
    from suitkaise.share import _store

    share.n  # noqa: B018 - map the store while it runs
    conn.send("mapped")
    assert conn.recv() == "restarted"  # the owner stopped and started it again
    real = _store.Store.attach.__func__  # type: ignore[attr-defined]
    first = [True]

    def attach(cls: type, name: str) -> Any:
        if first[0]:  # the owner stops the new store before this process maps it
            first[0] = False
            conn.send("mapping")
            assert conn.recv() == "stopped"
        return real(cls, name)

    _store.Store.attach = classmethod(attach)  # type: ignore[method-assign,assignment]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ("queued" while stopped)
        for stmt in ('share.d["k"] += 2', "share.lst.append(7)", "share.o.n += 1",
                     'share.d["new"] = 1', "share.n += 1", "share.n"):
            try:
                exec(stmt)
                out.append((stmt, "ok"))
            except ShareError:
                out.append((stmt, "ShareError"))
            except Exception as e:
                out.append((stmt, repr(e)))
    conn.send(out)


def test_a_process_that_missed_a_restart_queues_writes_and_reads_nothing_stale(start_method: str) -> None:
    ctx = multiprocessing.get_context()
    share = Share()
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_writes_through_a_stale_mapping, args=(share, child))
    try:
        share.n, share.d, share.lst, share.o = 0, {"k": 0}, [], Counter()
        p.start()
        assert parent.poll(TIMEOUT) and parent.recv() == "mapped"
        share.stop()
        share.start()
        share.n = 10  # (the child's old copy says 0: it must never see it)
        parent.send("restarted")
        assert parent.poll(TIMEOUT) and parent.recv() == "mapping"
        share.stop()
        parent.send("stopped")
        assert parent.poll(TIMEOUT)
        got = dict(parent.recv())
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert got == {
            'share.d["k"] += 2': "ok", "share.lst.append(7)": "ok", "share.o.n += 1": "ok",
            'share.d["new"] = 1': "ok", "share.n += 1": "ok",
            "share.n": "ShareError",  # its copy is out of date: no value, not a stale one
        }
        share.start()
        assert (share.n, share.d, share.lst, share.o.n) == (11, {"k": 2, "new": 1}, [7], 1)
    finally:
        if p.is_alive():
            p.kill()
            p.join(TIMEOUT)
        share.stop()


_KILLED_WHILE_STOPPED = r"""
import multiprocessing as mp, os, pickle, signal, sys, warnings
from suitkaise.share import Share

def owner(q, ev):
    s = Share()
    s.x = 0
    s.stop()
    q.put(pickle.dumps(s))
    ev.wait(60)

def writer(blob):
    warnings.simplefilter("ignore", RuntimeWarning)
    share = pickle.loads(blob)
    share.x += 1  # queued in the -pending file for the owner's start()

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    q, ev = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=owner, args=(q, ev))
    p.start()
    blob = q.get(timeout=60)
    w = ctx.Process(target=writer, args=(blob,))
    w.start()
    w.join(60)
    assert w.exitcode == 0, w.exitcode
    name = pickle.loads(blob)._sk_name
    assert os.path.exists("/dev/shm/" + name + "-pending")
    os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    print(name)
"""


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="the resource tracker cleans /dev/shm only")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_the_pending_file_of_an_owner_killed_while_stopped_is_removed(method: str, tmp_path: Any) -> None:
    """Nobody calls stop() after the owner died: the resource tracker removes the -pending
    file once the processes that used it have ended, as it removes a killed owner's store."""
    import time

    script = tmp_path / "main.py"
    script.write_text(_KILLED_WHILE_STOPPED)
    proc = run_fresh(
        f"import runpy, sys; sys.argv = ['main.py', {method!r}]; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    name = proc.stdout.decode().split()[-1]
    left = [os.path.join("/dev/shm", n) for n in (name, name + "-pending")]
    deadline = time.monotonic() + 10  # (the tracker ends just after the processes)
    while any(os.path.exists(f) for f in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not [f for f in left if os.path.exists(f)]
    finally:
        for f in left:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
