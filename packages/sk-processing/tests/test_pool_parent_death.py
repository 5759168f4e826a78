"""No Pool worker outlives its parent (issue 10, item 9).

The parent is SIGKILLed while one worker runs a task that holds the GIL in a
long C call (its reader thread cannot run to notice the EOF) and the others
are idle (under fork they used to inherit the parent's ends of their earlier
siblings' sockets, so the EOF never came). Every worker must be gone within 1 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sk_testkit import alive, kill_and_wait

pytestmark = pytest.mark.timeout(120)

_PARENT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from suitkaise.processing import Pool

    def mark(path):
        with open(os.path.join(path, str(os.getpid())), "w"):
            pass
        if os.path.basename(path) == "busy":
            sum(range(10**12))  # minutes in C with the GIL held
        else:
            time.sleep(0.01)

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        idle, busy = sys.argv[2], sys.argv[3]
        other = Pool(workers=1)          # another pool's sockets, inherited under fork
        other.map(mark, [idle])
        pool = Pool(workers=3)
        pool.map(mark, [idle] * 30)      # every worker started and used
        pool.map.background()(mark, [busy])
        print("ready", flush=True)
        time.sleep(600)
    """
)


def test_workers_die_within_a_second_of_their_parent(start_method: str, tmp_path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    idle, busy = tmp_path / "idle", tmp_path / "busy"
    idle.mkdir()
    busy.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    parent = subprocess.Popen(
        [sys.executable, str(script), start_method, str(idle), str(busy)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    workers: set[int] = set()
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip() == b"ready", parent.stderr.read() if parent.stderr else b""
        deadline = time.monotonic() + 60
        while not os.listdir(busy):
            assert time.monotonic() < deadline, "the busy task never started"
            time.sleep(0.02)
        time.sleep(0.2)  # well inside the C call
        workers = {int(n) for d in (idle, busy) for n in os.listdir(d)}
        assert len(workers) == 4  # three in the pool, one in the other pool
        assert all(alive(pid) for pid in workers)
        survivors, waited = kill_and_wait(parent, workers)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(30)
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.stdout.close()  # type: ignore[union-attr]
        parent.stderr.close()  # type: ignore[union-attr]
    assert not survivors, f"workers {survivors} outlived their SIGKILLed parent"
    assert waited < 1.0, f"the workers took {waited:.2f}s to follow their parent"
