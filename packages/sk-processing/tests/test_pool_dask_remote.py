"""The cluster path needs only the network.

Two Dask workers are started as separate ``python -m distributed.cli.dask_worker``
processes (not forked from this interpreter), each with its own working and
temporary directory and, where the machine allows ``unshare --mount``, its own
empty ``/dev/shm`` (a private tmpfs). Nothing but the scheduler's TCP address
connects them to the caller: functions, items, results and errors all travel
over the network as cucumber bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the Dask backend needs sk-processing[dask]")

from suitkaise.processing import Pool  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def _can_unshare() -> str | None:
    """``None`` when a private /dev/shm can be mounted, else why not."""
    if shutil.which("unshare") is None:
        return "the `unshare` command is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=16m sk-test-shm /dev/shm"],
        capture_output=True, text=True, timeout=30,
    )
    if probe.returncode != 0:
        return f"`unshare --mount` + tmpfs mount not permitted here: {probe.stderr.strip() or probe.returncode}"
    return None


@pytest.fixture
def scheduler() -> Iterator[str]:
    """A scheduler in this process (no worker of its own) on loopback TCP."""
    cluster = distributed.LocalCluster(
        n_workers=0, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL,
        host="127.0.0.1", protocol="tcp",
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _start_workers(address: str, root: Path, private_shm: bool) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(2):
        home = root / f"worker{i}"
        (home / "tmp").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_CURRENT_TEST")}
        env["TMPDIR"] = str(home / "tmp")
        cmd = [
            sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny", "--nthreads", "1",
            "--local-directory", str(home), "--name", f"remote-{i}", "--no-dashboard",
        ]
        if private_shm:
            script = 'mount -t tmpfs -o size=64m sk-test-shm /dev/shm && exec "$@"'
            cmd = ["unshare", "--mount", "sh", "-c", script, "sh", *cmd]
        log = open(home / "worker.log", "wb")  # closed below: the child keeps its copy
        procs.append(subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=20)


@pytest.mark.parametrize("private_shm", [False, True], ids=["own-tmpdir", "own-tmpdir-and-dev-shm"])
def test_separate_dask_worker_processes(scheduler: str, tmp_path: Path, private_shm: bool) -> None:
    if private_shm and (why := _can_unshare()) is not None:
        pytest.skip(f"cannot give each worker its own /dev/shm: {why}")
    procs = _start_workers(scheduler, tmp_path, private_shm)
    client = distributed.Client(scheduler, set_as_default=False)
    try:
        try:
            client.wait_for_workers(2, timeout=90)
        except TimeoutError:
            logs = "\n".join((tmp_path / f"worker{i}" / "worker.log").read_text()[-2000:] for i in range(2))
            pytest.fail(f"the dask worker processes did not join the scheduler:\n{logs}")
        here_shm = os.stat("/dev/shm").st_dev
        secret = {"offset": 1000}

        def probe(x: int) -> dict[str, Any]:  # a closure: travels by value
            return {
                "value": x + secret["offset"],
                "pid": os.getpid(),
                "tmp": tempfile.gettempdir(),
                "cwd": os.getcwd(),
                "shm_dev": os.stat("/dev/shm").st_dev,
                "shm": sorted(os.listdir("/dev/shm")),
            }

        # the address string is all the Pool is given
        with Pool(backend=scheduler) as pool:
            out = pool.map(probe, range(40))
            assert [o["value"] for o in out] == [x + 1000 for x in range(40)]
            worker_pids = {p.pid for p in procs}
            assert {o["pid"] for o in out} <= worker_pids  # ran in the separate processes
            for o in out:
                home = Path(o["cwd"])
                assert home.parent == tmp_path
                assert o["tmp"] == str(home / "tmp")
                if private_shm:
                    assert o["shm_dev"] != here_shm, "the worker should see its own /dev/shm"
                    assert o["shm"] == [], f"the worker's /dev/shm should be empty: {o['shm']}"

            def check(x: int) -> int:
                if x == 3:
                    raise LookupError(f"remote {x}")
                return x

            with pytest.raises(LookupError, match="remote 3") as info:
                list(pool.imap(check, range(6)))
            assert "in check" in str(info.value.__cause__)
            assert sorted(pool.star().unordered_map(lambda a, b: a * b, [(2, 3), (4, 5)])) == [6, 20]
    finally:
        client.close()
        _stop(procs)
