"""Share used from dask.distributed workers (optional: skipped without ``distributed``).

::

    test process: Share owner + share.serve() (127.0.0.1) + dask scheduler + Client
        │  client.submit(_bump, share, n)  (the Share travels pickled, key inside)
        ▼
    LocalCluster worker processes (same host: shared memory, or TCP when forced)
    separate `dask worker` processes, each in `unshare --mount` with an empty private
    tmpfs on /dev/shm and its own temp dir: the store file is invisible -> TCP only
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from suitkaise.share import Share, _share

distributed = pytest.importorskip("distributed")

TIMEOUT = 120
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _bump(share: Share, n: int) -> dict[str, Any]:
    for _ in range(n):
        share.counter += 1
    name = share.__dict__["_sk_name"]
    return {
        "transport": share._sk_transport(),
        "store_visible": os.path.exists(os.path.join("/dev/shm", name)),
        "pid": os.getpid(),
        "counter_is_int": isinstance(share.counter, int),
    }


@pytest.mark.parametrize("transport", ["auto", "tcp"])
def test_local_cluster_tasks_increment(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if transport == "tcp":
        monkeypatch.setenv("SK_SHARE_TRANSPORT", "tcp")  # inherited by the worker processes
    with Share() as share:
        share.counter = 0
        share.serve()
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:
            futures = [client.submit(_bump, share, 50, pure=False) for _ in range(8)]
            results = client.gather(futures)
        assert share.counter == 400
        assert all(r["counter_is_int"] for r in results)
        expected = "tcp" if transport == "tcp" else "shm"  # same host: shared memory
        assert {r["transport"] for r in results} == {expected}
        assert len({r["pid"] for r in results}) >= 1


def _private_shm_prefix() -> tuple[list[str] | None, str]:
    """The command prefix that gives a process a private, empty /dev/shm, or why not."""
    if not sys.platform.startswith("linux"):
        return None, "needs Linux mount namespaces"
    if shutil.which("unshare") is None:
        return None, "the `unshare` command (util-linux) is not installed"
    script = 'mount -t tmpfs sk-test-shm /dev/shm && exec "$0" "$@"'
    errors = []
    for flags in (["--mount"], ["--mount", "--map-root-user"]):
        cmd = ["unshare", *flags, "sh", "-c", script]
        probe = subprocess.run(
            [*cmd, "sh", "-c", 'test -z "$(ls -A /dev/shm)"'],
            capture_output=True, text=True, timeout=30,
        )
        if probe.returncode == 0:
            return cmd, ""
        errors.append(f"`unshare {' '.join(flags)}` + tmpfs mount failed: {probe.stderr.strip() or probe.returncode}")
    return None, "; ".join(errors)


@pytest.fixture
def workers_without_shm(tmp_path: Any) -> Iterator[tuple[Any, str]]:
    prefix, why = _private_shm_prefix()
    if prefix is None:
        pytest.skip(f"cannot give dask workers a private /dev/shm here: {why}")
    with distributed.LocalCluster(
        n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=40,
    ) as cluster:
        procs = []
        try:
            for i in range(2):
                wdir = tmp_path / f"worker{i}"
                wdir.mkdir()
                env = dict(os.environ)
                env.pop("SK_SHARE_TRANSPORT", None)  # the TCP path must be taken on its own
                env["TMPDIR"] = str(wdir)
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (TESTS_DIR, env.get("PYTHONPATH", "")) if p
                )
                cmd = [
                    *prefix, sys.executable, "-m", "distributed.cli.dask_worker",
                    cluster.scheduler_address, "--nthreads", "1", "--no-nanny",
                    "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(wdir),
                    "--name", f"private-shm-{i}",
                ]
                procs.append(subprocess.Popen(
                    cmd, env=env, cwd=str(wdir),
                    stdout=subprocess.DEVNULL, stderr=open(wdir / "log.txt", "wb"),
                ))
            with distributed.Client(cluster) as client:
                client.wait_for_workers(2, timeout=TIMEOUT)
                yield client, str(tmp_path)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(TIMEOUT / 4)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                if p.stderr is not None:
                    p.stderr.close()


def test_separate_dask_workers_with_private_shm_use_tcp(
    workers_without_shm: tuple[Any, str],
) -> None:
    client, _tmp = workers_without_shm
    with Share() as share:
        share.counter = 0
        share.serve()
        srv = _share._SERVERS[share.__dict__["_sk_name"]]
        before = srv.stats["requests"]
        workers = list(client.scheduler_info()["workers"])
        assert len(workers) == 2
        futures = [
            client.submit(_bump, share, 100, workers=[w], pure=False, allow_other_workers=False)
            for w in workers for _ in range(2)
        ]
        results = client.gather(futures)
        assert share.counter == 400
        assert {r["transport"] for r in results} == {"tcp"}
        assert not any(r["store_visible"] for r in results)  # they cannot see our /dev/shm
        assert len({r["pid"] for r in results}) == 2
        assert srv.stats["requests"] - before >= 400


def test_separate_worker_without_serve_gets_a_clear_error(
    workers_without_shm: tuple[Any, str],
) -> None:
    client, _tmp = workers_without_shm
    with Share() as share:
        share.counter = 0
        future = client.submit(_bump, share, 1, pure=False)
        with pytest.raises(Exception, match=r"call share\.serve\(\)"):
            future.result(timeout=TIMEOUT)
        assert share.counter == 0
