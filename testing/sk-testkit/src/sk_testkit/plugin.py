"""pytest plugin shared by every suitkaise test suite.

- ``start_method``: a fixture parametrized over fork, spawn and forkserver that
  makes that method the process-wide default for the test
  (``--start-methods=fork,spawn`` narrows the set).
- Leak checks after every test: child processes the test started, new
  ``/dev/shm`` segments and new ``sk-``/``suitkaise`` files in the temp dir must
  be gone (after a short grace period); otherwise the test fails and the
  leftovers are removed so that one leak does not fail every later test.
- ``postgres_server`` / ``redis_server``: real servers on loopback, session-wide,
  skipped with the reason when they cannot be started, and stopped by a watchdog
  when pytest dies before their teardown (``watchdog.py``).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator

import psutil
import pytest

from sk_testkit.servers import PostgresServer, RedisServer, ServerUnavailable

ALL_START_METHODS = ("fork", "spawn", "forkserver")
_server_pids: set[int] = set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--start-methods",
        default=",".join(ALL_START_METHODS),
        help="comma-separated start methods for tests that use the start_method fixture",
    )
    parser.addoption("--no-leak-check", action="store_true", help="disable the per-test leak check")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_leak_check: skip the leak check for this test")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "start_method" in metafunc.fixturenames:
        methods = [m for m in metafunc.config.getoption("--start-methods").split(",") if m]
        metafunc.parametrize("start_method", methods, indirect=True)


@pytest.fixture
def start_method(request: pytest.FixtureRequest) -> Iterator[str]:
    """Make ``request.param`` the default multiprocessing start method for one test."""
    method = request.param
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(method, force=True)
    try:
        yield method
    finally:
        multiprocessing.set_start_method(previous, force=True)


# -- leak checks -------------------------------------------------------------

def _is_infrastructure(proc: psutil.Process) -> bool:
    """Long-lived helpers multiprocessing starts once per interpreter, and the servers'
    watchdogs."""
    if proc.pid in _server_pids:
        return True
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "resource_tracker" in cmd or "forkserver" in cmd or "sk_testkit.watchdog" in cmd


def _children() -> dict[int, psutil.Process]:
    out: dict[int, psutil.Process] = {}
    try:
        for p in psutil.Process().children(recursive=True):
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                continue
            if not _is_infrastructure(p):
                out[p.pid] = p
    except psutil.NoSuchProcess:
        pass
    return out


# Segments other software on the machine creates and owns (database servers,
# other process-pool libraries, multiprocessing's own unlinked semaphores).
_FOREIGN_SHM = ("sem.mp-", "PostgreSQL.", "sem.loky-", "loky-", "joblib_")
# Our segments embed their creator's pid: sk-share-<pid>-<random>.
_CREATOR_PID = re.compile(r"^sk-[a-z]+-(\d+)-")


def _belongs_to_another_session(name: str) -> bool:
    """A live creator outside this process tree: another test session's segment."""
    match = _CREATOR_PID.match(name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid() or not psutil.pid_exists(pid):
        return False
    try:
        ours = {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        ours = set()
    return pid not in ours


def _shm() -> set[str]:
    try:
        return {n for n in os.listdir("/dev/shm") if not n.startswith(_FOREIGN_SHM)}
    except FileNotFoundError:
        return set()


def _tmp() -> set[str]:
    try:
        return {
            n for n in os.listdir(tempfile.gettempdir())
            if n.startswith(("sk-", "suitkaise", "cucumber"))
        }
    except FileNotFoundError:
        return set()


@pytest.fixture(autouse=True)
def _sk_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.config.getoption("--no-leak-check") or request.node.get_closest_marker("no_leak_check"):
        yield
        return
    procs_before = set(_children())
    shm_before = _shm()
    tmp_before = _tmp()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        multiprocessing.active_children()  # reap finished multiprocessing children
        procs = {pid: p for pid, p in _children().items() if pid not in procs_before}
        shm = {n for n in _shm() - shm_before if not _belongs_to_another_session(n)}
        tmp = _tmp() - tmp_before
        if not (procs or shm or tmp) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems = []
    if procs:
        desc = []
        for pid, p in procs.items():
            try:
                desc.append(f"{pid} {' '.join(p.cmdline())[:120]}")
            except psutil.Error:
                desc.append(str(pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        problems.append("processes outlived the test: " + "; ".join(desc))
    if shm:
        for name in shm:
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass
        problems.append(f"shared-memory segments leaked: {sorted(shm)}")
    if tmp:
        problems.append(f"temporary files leaked: {sorted(tmp)}")
    if problems:
        pytest.fail("leak check: " + " | ".join(problems), pytrace=False)


# -- real servers --------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on loopback (psycopg2 DSN in ``.dsn``)."""
    server = PostgresServer()
    try:
        server.start()
    except ServerUnavailable as e:
        server.stop()
        pytest.skip(f"PostgreSQL unavailable: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on loopback with a password (``.host``, ``.port``, ``.password``)."""
    server = RedisServer()
    try:
        server.start()
    except ServerUnavailable as e:
        server.stop()
        pytest.skip(f"redis unavailable: {e}")
    if server.pid:
        _server_pids.add(server.pid)
    try:
        yield server
    finally:
        server.stop()
