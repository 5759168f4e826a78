"""Who gets a connection to a served Share: idle and slow peers cannot lock clients out, and a
client that is turned away is told why.

::

    test process (owner) ── share.serve() ──► Server: pending handshakes (budget 32, oldest
         │                                     dropped first, 5 s in total each)
         ├── N raw sockets that never answer ──┘ authenticated connections (max_connections)
         └── children (fork / spawn / forkserver) with SK_SHARE_TRANSPORT=tcp: real clients
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from suitkaise.share import Share, ShareError, _net, _share

TIMEOUT = 90
LOGGER = "suitkaise.share.net"


def _server(share: Share) -> _net.Server:
    return _share._SERVERS[share._sk_name]


@pytest.fixture
def tcp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SK_SHARE_TRANSPORT", "tcp")
    yield


def _wait(cond: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _drop_connection(handle: Share) -> None:
    """Close this process's connection to the handle's server: the next operation reconnects."""
    rem = handle.__dict__["_sk_remote"]
    if rem is not None:
        rem.client.close()


def _client_loop(share: Share, go: Any, q: Any) -> None:
    """For each size the parent sets up: a fresh connection, 50 increments, the time taken."""
    os.environ["SK_SHARE_TRANSPORT"] = "tcp"  # a forkserver started earlier lacks the fixture's
    while go.get(timeout=TIMEOUT):
        t0 = time.monotonic()
        try:
            for _ in range(50):
                share.counter += 1
            out = ("ok", share._sk_transport(), time.monotonic() - t0)
        except BaseException as e:  # reported by the test
            out = ("err", f"{type(e).__name__}: {e}", time.monotonic() - t0)
        _drop_connection(share)  # the next size finds the server without our connection
        q.put(out)


# The default budgets: 32 pending handshakes, 64 authenticated connections. Sizes around
# both, and far beyond them (the 70, and 200).
IDLE_SIZES = [0, 1, 31, 32, 33, 64, 65, 70, 200]


def test_idle_connections_do_not_lock_out_a_client(start_method: str, tcp_env: None) -> None:
    ctx = multiprocessing.get_context()
    go, q = ctx.Queue(), ctx.Queue()
    share = Share()
    share.counter = 0
    addr = share.serve()
    srv = _server(share)
    p = ctx.Process(target=_client_loop, args=(share, go, q))
    p.start()
    socks: list[socket.socket] = []
    try:
        for idle in IDLE_SIZES:
            before = dict(srv.stats)
            socks = [socket.create_connection(addr, timeout=TIMEOUT) for _ in range(idle)]
            _wait(lambda: sum(srv.stats[k] - before[k] for k in ("connections", "refused")) >= idle,  # noqa: B023
                  "the server to accept (or turn away) the idle sockets")
            go.put(True)
            status, detail, took = q.get(timeout=TIMEOUT)
            assert status == "ok", (idle, detail)
            assert detail == "tcp"
            # it did not wait for idle peers to time out (5 s): it took a free place at once
            assert took < _net.HANDSHAKE_TIMEOUT, (idle, took)
            # at least the surplus over the pending budget was dropped, never more peers than
            # were pending (timing decides which of them were still pending when we came)
            evicted = srv.stats["evicted"] - before["evicted"]
            assert max(0, idle + 1 - srv.max_pending) <= evicted <= idle + 3, (idle, evicted)
            # and this process too, while the idle sockets are still open
            remote = pickle.loads(pickle.dumps(share))
            remote.counter += 1
            _drop_connection(remote)
            for s in socks:
                s.close()
            _wait(lambda: srv.stats["refused"] - before["refused"] >= idle,  # noqa: B023
                  "the server to see the idle sockets closed")
        assert share.counter == 51 * len(IDLE_SIZES)
    finally:
        go.put(False)
        p.join(TIMEOUT)
        if p.is_alive():
            p.kill()
            p.join()
        for s in socks:
            s.close()
        share.stop()


def test_a_flood_of_new_idle_connections_does_not_lock_out_a_client(tcp_env: None) -> None:
    """Idle sockets keep arriving while the client connects: it may lose its place in the
    pending queue, and then tries again."""
    share = Share()
    stop = threading.Event()
    opened: list[socket.socket] = []

    def flood() -> None:
        while not stop.is_set() and len(opened) < 3000:
            try:
                opened.append(socket.create_connection(addr, timeout=TIMEOUT))
            except OSError:
                time.sleep(0.01)
            time.sleep(0.002)

    try:
        share.counter = 0
        addr = share.serve()
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        _wait(lambda: _server(share).stats["evicted"] > 0, "the pending budget to overflow")
        remote = pickle.loads(pickle.dumps(share))
        for _ in range(20):
            _drop_connection(remote)  # a fresh connection each time
            remote.counter += 1
        assert share.counter == 20
    finally:
        stop.set()
        t.join(TIMEOUT)
        for s in opened:
            s.close()
        share.stop()


def _hold(share: Share, ready: Any, release: Any, q: Any) -> None:
    os.environ["SK_SHARE_TRANSPORT"] = "tcp"
    share.counter += 1  # takes a connection, and keeps it until the process exits
    ready.set()
    release.wait(TIMEOUT)
    q.put("done")


def test_busy_server_tells_the_client(start_method: str, tcp_env: None) -> None:
    ctx = multiprocessing.get_context()
    share = Share()
    release = ctx.Event()
    procs = []
    try:
        share.counter = 0
        share.serve(max_connections=2)
        q = ctx.Queue()
        for _ in range(2):
            ready = ctx.Event()
            p = ctx.Process(target=_hold, args=(share, ready, release, q))
            p.start()
            procs.append(p)
            assert ready.wait(TIMEOUT)
        remote = pickle.loads(pickle.dumps(share))
        with pytest.raises(ShareError, match=r"busy: all 2 of its connections are in use.*max_connections"):
            remote.counter += 1
        assert share.counter == 2
        release.set()
        for p in procs:
            p.join(TIMEOUT)
        _wait(lambda: not _server(share)._conns, "the holders' connections to close")
        remote.counter += 1  # a place is free again
        assert share.counter == 3
    finally:
        release.set()
        for p in procs:
            p.join(TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join()
        share.stop()


def test_last_slot_taken_during_the_handshake_is_a_busy_answer() -> None:
    """Two handshakes pending when one slot is left: the second is told (with a MAC'd status),
    not cut off."""
    key = secrets.token_bytes(32)
    srv = _net.Server("t", "127.0.0.1", 0, key, lambda req: req, max_connections=1)
    a = socket.create_connection(srv.address, timeout=TIMEOUT)
    b = socket.create_connection(srv.address, timeout=TIMEOUT)
    try:
        for s in (a, b):  # both greeted: both are pending handshakes
            s.recv(1, socket.MSG_PEEK)
        a, _, _ = _net.client_handshake(a, key, TIMEOUT)
        with pytest.raises(_net.NetError, match="busy: all its connections are in use"):
            _net.client_handshake(b, key, TIMEOUT)
        assert srv.stats["busy"] == 1
    finally:
        a.close()
        b.close()
        srv.stop()


def test_handshake_deadline_is_for_the_whole_handshake(caplog: pytest.LogCaptureFixture) -> None:
    """A peer trickling its answer one byte at a time is dropped at the deadline, not kept
    alive by each byte."""
    caplog.set_level(logging.WARNING, LOGGER)
    srv = _net.Server("t", "127.0.0.1", 0, secrets.token_bytes(32), lambda req: req,
                      handshake_timeout=1.0)
    s = socket.create_connection(srv.address, timeout=TIMEOUT)
    try:
        s.recv(len(_net.PROTO) + _net.NONCE)
        t0 = time.monotonic()
        closed_after = None
        for _ in range(_net.NONCE + _net.DIGEST - 1):
            try:
                s.sendall(b"x")
            except OSError:
                closed_after = time.monotonic() - t0
                break
            time.sleep(0.1)
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed_after = time.monotonic() - t0
                break
            finally:
                s.setblocking(True)
        assert closed_after is not None and closed_after < 3.0, closed_after
        _wait(lambda: any("timed out" in r.getMessage() for r in caplog.records), "the log record")
    finally:
        s.close()
        srv.stop()


def test_dropped_pending_handshake_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    srv = _net.Server("t", "127.0.0.1", 0, secrets.token_bytes(32), lambda req: req, max_pending=2)
    socks = [socket.create_connection(srv.address, timeout=TIMEOUT) for _ in range(3)]
    try:
        _wait(lambda: srv.stats["evicted"] == 1, "the oldest pending handshake to be dropped")
        assert socks[0].recv(64) and socks[0].recv(64) == b""  # greeted, then closed
        _wait(lambda: any("to make room for a newer connection" in r.getMessage()
                          for r in caplog.records), "the log record")
        c = _net.Client(srv.address, srv.key, _net.DEFAULT_MAX_FRAME)
        assert c.request(("echo", 1)) == ("echo", 1)
        c.close()
    finally:
        for s in socks:
            s.close()
        srv.stop()


# -- what a client is told when the other end is not a working Share server ------------------


class FakeServer(threading.Thread):
    """Accepts connections on loopback and treats each with ``behave(conn)``."""

    def __init__(self, behave: Any) -> None:
        super().__init__(daemon=True)
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.address = self.lsock.getsockname()[:2]
        self.behave = behave
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self.stop = threading.Event()
        self.lsock.settimeout(0.05)  # close() does not interrupt a blocking accept()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            self.behave(conn)

    def close(self) -> None:
        self.stop.set()
        self.join(TIMEOUT)
        self.lsock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize(
    ("behave", "message", "attempts"),
    [
        (lambda c: None, r"no complete greeting from 127\.0\.0\.1:\d+ in time: it is not a Share "
                         r"server, or it is overloaded", 1),
        (lambda c: c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
         r"is not a Share server \(it greeted with b'HTTP/1\.1'\)", 1),
        (lambda c: c.sendall(b"SKSHNET1" + bytes(32)),
         r"speaks another version of the protocol \(b'SKSHNET1'.*same suitkaise version", 1),
        (lambda c: c.close(), r"closed the connection before its greeting.*shutting down, or "
                              r"overloaded with pending connections.*\(3 attempts\)", 3),
    ],
    ids=["silent", "other-protocol", "older-version", "closes"],
)
def test_client_error_says_what_the_server_did(
    monkeypatch: pytest.MonkeyPatch, behave: Any, message: str, attempts: int,
) -> None:
    monkeypatch.setattr(_net, "HANDSHAKE_TIMEOUT", 0.5)
    fake = FakeServer(behave)
    fake.start()
    try:
        c = _net.Client(fake.address, secrets.token_bytes(32), _net.DEFAULT_MAX_FRAME)
        with pytest.raises(_net.NetError, match=message):
            c.request(("running",))
        assert fake.accepted == attempts
    finally:
        fake.close()


OUT_OF_DESCRIPTORS = r"""
import os, pickle, resource, socket, time
os.environ["SK_SHARE_TRANSPORT"] = "tcp"
from suitkaise.share import Share, _share

share = Share()
share.counter = 0
addr = share.serve()
remote = pickle.loads(pickle.dumps(share))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 20, hard))
fill = []
try:
    while True:
        fill.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
os.close(fill.pop())
c = socket.create_connection(addr)  # the server's accept() now fails: no descriptor left
srv = _share._SERVERS[share._sk_name]
time.sleep(0.3)
for fd in fill:
    os.close(fd)
c.close()
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
t0 = time.monotonic()
remote.counter += 1
print(srv.stats.get("accept_errors", 0) > 0, srv._thread.is_alive(), share.counter, time.monotonic() - t0)
share.stop()
"""


def test_server_survives_running_out_of_descriptors() -> None:
    """A flood can exhaust the owner's file descriptors: accept() fails (EMFILE) until some are
    free again, and the server then serves as before (its accept thread used to die)."""
    from sk_testkit.interpreter import run_fresh

    out = run_fresh(OUT_OF_DESCRIPTORS, timeout=120).stdout.decode().split()
    saw_error, alive, counter, took = out[0] == "True", out[1] == "True", int(out[2]), float(out[3])
    assert saw_error and alive and counter == 1, out
    assert took < _net.HANDSHAKE_TIMEOUT, took
