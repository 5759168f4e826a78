"""Stop/start edge cases: a process whose copy of the data is out of date.

* A process that saw the owner start the Share again, but found the new store stopped
  again before it could map it, keeps its old mapping: its data is older than the owner's
  snapshot, so no value of it reaches the caller (a read raises ``ShareError``), but the
  writes that need no data - ``d[k] += 2``, ``o.n += 1``, ``lst.append(v)``, ``d[k] = v`` -
  are queued for ``start()`` and land exactly once.
"""

from __future__ import annotations

import multiprocessing
import warnings
from typing import Any

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

