"""Stop a test server when the pytest process that started it dies without tearing it down.

::

    pytest ──starts──► server (redis-server, or a postgres that pg_ctl daemonized)
       │
       └──starts──► watchdog (own session: a kill of pytest's process group spares it)
                      waits on a pidfd of pytest; when pytest is gone (SIGKILL, SIGTERM,
                      a crash: its fixtures' teardown never ran), it runs the server's stop
                      command, kills the server's pid, removes the server's directory, exits.

A normal teardown ends the watchdog first and then stops the server itself.
Run as ``python -m sk_testkit.watchdog SPEC_JSON``; SPEC holds ``watch`` (the pid to
outlive), ``stop`` (an argv to run, or null), ``kill`` (a pid to SIGTERM, then SIGKILL,
or null) and ``remove`` (a directory, or null).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Any


def start(*, stop: list[str] | None = None, kill: int | None = None, remove: str | None = None) -> subprocess.Popen[bytes]:
    """Start a watchdog for this process; end it (``kill`` + ``wait``) before a normal teardown."""
    spec = json.dumps({"watch": os.getpid(), "stop": stop, "kill": kill, "remove": remove})
    return subprocess.Popen(
        [sys.executable, "-m", "sk_testkit.watchdog", spec],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (old kernel): poll for the reparenting
        while os.getppid() == pid:
            time.sleep(0.5)
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def main(spec: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for pytest
    _wait_for_exit(spec["watch"])
    if spec["stop"]:
        try:
            subprocess.run(spec["stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass
    if spec["kill"]:
        _kill(spec["kill"])
    if spec["remove"]:
        shutil.rmtree(spec["remove"], ignore_errors=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
