"""Share over TCP: real processes forced to the TCP path, semantics, and the security of the server.

::

    test process (owner) ── share.serve() ──► Server (127.0.0.1, ephemeral port)
         ▲    │                                   ▲          ▲
         │    └── /dev/shm/sk-share-*             │ HMAC'd   │ raw sockets (attacks)
         │                                        │ frames   │
    children with SK_SHARE_TRANSPORT=tcp ─────────┘          │
    (fork / spawn / forkserver)                   attack clients in the test process
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import multiprocessing
import os
import pickle
import secrets
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sk_testkit import run_processes
from suitkaise import cucumber
from suitkaise.share import Share, ShareError, _net, _share
from suitkaise.share._remote import drop_remote

TIMEOUT = 90
LOGGER = "suitkaise.share.net"


class Bag:
    def __init__(self) -> None:
        self.total = 0
        self.items: list[int] = []
        self.meta: dict[str, int] = {"n": 0}

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def boom(self) -> None:
        self.total = -1
        raise ValueError("boom from the owner")


def _server(share: Share) -> _net.Server:
    return _share._SERVERS[share._sk_name]


@pytest.fixture
def tcp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Children (and handles rebuilt here) reach served Shares over TCP."""
    monkeypatch.setenv("SK_SHARE_TRANSPORT", "tcp")
    yield


def _force_tcp() -> None:
    # a forkserver started earlier by another test did not inherit the fixture's variable
    os.environ["SK_SHARE_TRANSPORT"] = "tcp"


def _increment(share: Share, n: int, q: Any) -> None:
    _force_tcp()
    assert share._sk_transport() == "tcp", share._sk_transport()
    for _ in range(n):
        share.counter += 1
    q.put(share._sk_transport())


def test_two_processes_1000_increments_over_tcp(start_method: str, tcp_env: None) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.counter = 0
        share.serve()
        before = _server(share).stats["requests"]
        run_processes(_increment, [(share, 1000, q)] * 2)
        assert [q.get(timeout=TIMEOUT) for _ in range(2)] == ["tcp", "tcp"]
        assert share.counter == 2000
        assert _server(share).stats["requests"] - before >= 2000  # every += went through TCP


def _mutate(share: Share, q: Any) -> None:
    _force_tcp()
    out: dict[str, Any] = {"transport": share._sk_transport()}
    out["add"] = share.bag.add(5)  # method on the authoritative copy: real result
    share.bag.items.append(7)
    share.bag.meta["n"] += 2
    share.d["k"] += 1
    share.lst.append("x")
    share.child_made = {"from": "child"}
    share.counter += 10
    out["fetch"] = share.counter  # fetch-and-op read-back
    out["isinstance"] = isinstance(share.counter, int)
    out["len"] = len(share.lst)
    out["in"] = "x" in share.lst
    out["none"] = share.nothing
    try:
        share.bag.boom()
    except ValueError as e:
        out["boom"] = str(e)
    try:
        _ = share.missing
    except AttributeError as e:
        out["missing"] = str(e)
    del share.gone
    q.put(out)


def test_methods_and_nested_mutations_over_tcp(start_method: str, tcp_env: None) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.bag = Bag()
        share.d = {"k": 1}
        share.lst = []
        share.counter = 5
        share.nothing = None
        share.gone = 1
        share.serve()
        run_processes(_mutate, [(share, q)])
        out = q.get(timeout=TIMEOUT)
        assert out["transport"] == "tcp"
        assert out["add"] == 5
        assert out["fetch"] == 15 and out["isinstance"] is True
        assert out["len"] == 1 and out["in"] is True
        assert out["none"] is None
        assert out["boom"] == "boom from the owner"
        assert out["missing"] == "Share has no attribute 'missing'"
        assert share.bag.total == 5  # the failing method wrote nothing
        assert share.bag.items == [7] and share.bag.meta == {"n": 2}
        assert share.d == {"k": 2} and share.lst == ["x"]
        assert share.child_made == {"from": "child"}
        assert share.counter == 15
        assert "gone" not in dir(share)


def _chains(share: Share, n: int) -> None:
    _force_tcp()
    for x in range(n):
        share.c = share.c * 1 + 2 - 1  # one chained update, sent as (operator, operand) steps
        share.d[str(x % 2)] = share.d[str(x % 2)] + 1
        share.g[x % 2] = share.g.get(x % 2, 0) + 1  # sent with its default


def test_chained_and_computed_key_updates_over_tcp(start_method: str, tcp_env: None) -> None:
    with Share() as share:
        share.c, share.d, share.g = 0, {"0": 0, "1": 0}, {}
        share.serve()
        run_processes(_chains, [(share, 300)] * 2)
        assert share.c == 600 and share.d == {"0": 300, "1": 300} and share.g == {0: 300, 1: 300}


def test_rebuilt_handle_in_this_process_reads_earlier_writes(tcp_env: None) -> None:
    with Share() as share:
        share.serve()
        remote = pickle.loads(pickle.dumps(share))
        assert remote._sk_transport() == "tcp"
        share.x = [1]
        assert remote.x == [1]
        remote.x.append(2)
        assert share.x == [1, 2]
        share.x.append(3)
        assert remote.x == [1, 2, 3]  # cached by version, refreshed when it changed
        remote.clear()
        assert "x" not in dir(share)
        remote.obj = Bag()  # class travels once, decoded by the other side
        assert share.obj.add(2) == 2 and remote.obj.total == 2
        assert remote.reconnect_all()["obj"].total == 2
        assert remote.is_running
        assert repr(remote) == "Share(status=running, objects=['obj'])"


def test_unserved_share_from_another_host_is_a_clear_error() -> None:
    with Share() as share:
        share.x = 1
        name, pid, _host, net = share.__reduce__()[1]
        other = _share._rebuild_share(name, pid, "another-machine", net)
        with pytest.raises(ShareError, match=r"call share\.serve\(\)"):
            _ = other.x


def test_stop_closes_server_and_connections_start_serves_again(tcp_env: None) -> None:
    threads_before = set(threading.enumerate())
    share = Share()
    try:
        share.n = 1
        addr = share.serve()
        assert addr[0] == "127.0.0.1"
        remote = pickle.loads(pickle.dumps(share))
        assert remote.n == 1
        share.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(addr, timeout=5).close()
        with pytest.raises(ShareError, match=r"cannot reach|lost the connection"):
            _ = remote.n
        assert not remote.is_running
        share.start()  # same address, same key: existing handles reconnect
        assert remote.n == 1
        remote.n += 1
        assert share.n == 2
    finally:
        share.stop()
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert leftover == []


def test_stop_closes_this_processs_own_connections_to_the_server(tcp_env: None) -> None:
    """A handle of this process that reached its own Share over TCP keeps a socket; stop()
    closes it (before, it stayed open until garbage collection: a ResourceWarning), also
    for a handle whose Remote is no longer the registry's (another key for the same name)."""
    share = Share()
    try:
        share.n = 1
        share.serve()
        first = pickle.loads(pickle.dumps(share))
        assert first.n == 1
        name, pid, host, net = share.__reduce__()[1]
        other = _share._rebuild_share(name, pid, host, (net[0], secrets.token_bytes(32), *net[2:]))
        with pytest.raises(ShareError, match="refused our authentication"):
            _ = other.n  # its Remote replaces first's in the registry
        assert first.n == 1  # first still reaches the server through its own Remote
        sock = first.__dict__["_sk_remote"].client.ch.sock
        assert sock.fileno() != -1
        share.stop()
        assert sock.fileno() == -1
    finally:
        share.stop()
        drop_remote(share._sk_name)


def test_serve_only_in_owner_and_loopback_by_default() -> None:
    with Share() as share:
        host, port = share.serve()
        assert host == "127.0.0.1" and port > 0
        assert share.serve() == (host, port)  # idempotent
        assert _server(share).sock.getsockname()[0] == "127.0.0.1"
        other = pickle.loads(pickle.dumps(share))
        with pytest.raises(ShareError, match="process that created"):
            other.serve()
        with pytest.raises(AttributeError, match="reserved"):
            share.serve = 1  # type: ignore[method-assign,assignment]


# -- security -----------------------------------------------------------------------------

MARKER_ENV = "SK_SHARE_TEST_MARKER"


def _touch(path: str) -> str:
    with open(path, "w") as f:
        f.write("code ran")
    return path


class Bomb:
    """Deserializing this runs code (creates a file): it must never be deserialized."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


class GoodClient(threading.Thread):
    """A well-behaved TCP client that keeps incrementing until told to stop."""

    def __init__(self, share: Share) -> None:
        super().__init__(daemon=True)
        self.handle = pickle.loads(pickle.dumps(share))
        self.count = 0
        self.started_ops = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.is_set() or self.count < 20:
                self.handle.counter += 1
                self.count += 1
                if self.count == 10:
                    self.started_ops.set()
        except BaseException as e:  # reported by the test
            self.error = e
            self.started_ops.set()


@pytest.fixture
def served(tcp_env: None, tmp_path: Any) -> Iterator[tuple[Share, GoodClient]]:
    share = Share()
    share.counter = 0
    share.serve()
    good = GoodClient(share)
    good.start()
    assert good.started_ops.wait(TIMEOUT)
    try:
        yield share, good
    finally:
        good.done.set()
        good.join(TIMEOUT)
        share.stop()


def _connect(share: Share) -> socket.socket:
    addr = share.__dict__["_sk_net"][0]
    s = socket.create_connection(tuple(addr), timeout=TIMEOUT)
    return s


def _session(share: Share) -> tuple[socket.socket, _net.Channel]:
    """A correctly authenticated raw session (to send malformed frames inside it)."""
    s = _connect(share)
    key = share.__dict__["_sk_net"][1]
    s, c2s, s2c = _net.client_handshake(s, key, TIMEOUT)
    s.settimeout(TIMEOUT)
    return s, _net.Channel(s, c2s, s2c, _net.DEFAULT_MAX_FRAME)


def _closed_by_server(s: socket.socket) -> bool:
    s.settimeout(TIMEOUT)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    finally:
        s.close()


def _wait_refusal(share: Share, before: int) -> None:
    srv = _server(share)
    deadline = threading.Event()
    for _ in range(TIMEOUT * 20):
        if srv.stats["refused"] > before:
            return
        deadline.wait(0.05)
    raise AssertionError("the server never recorded the refusal")


def _finish(share: Share, good: GoodClient, caplog: pytest.LogCaptureFixture, reason: str,
            extra: int = 0) -> None:
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert any(reason in r.getMessage() for r in records), [r.getMessage() for r in records]
    # the well-behaved client was not disturbed, and a new one can still connect
    assert good.is_alive() and good.error is None
    addr, key, max_frame, _pin = share.__dict__["_sk_net"]
    fresh = _net.Client(tuple(addr), key, max_frame)
    assert fresh.request(("running",)) is True
    fresh.close()
    good.done.set()
    good.join(TIMEOUT)
    assert good.error is None
    assert share.counter == good.count + extra


def test_client_without_key_sending_a_payload_is_refused(
    served: tuple[Share, GoodClient], caplog: pytest.LogCaptureFixture, tmp_path: Any,
) -> None:
    share, good = served
    marker = str(tmp_path / "ran")
    caplog.set_level(logging.WARNING, LOGGER)
    before = _server(share).stats["refused"]
    s = _connect(share)
    assert s.recv(len(_net.PROTO) + _net.NONCE)[: len(_net.PROTO)] == _net.PROTO
    payload = cucumber.serialize(("call", ("counter",), "bit_length", (Bomb(marker),), {}))
    s.sendall(struct.pack("!IQ", len(payload), 0) + b"\0" * 32 + payload)
    assert _closed_by_server(s)
    _wait_refusal(share, before)
    assert not os.path.exists(marker)
    _finish(share, good, caplog, "authentication failed")


def test_wrong_key_is_refused(served: tuple[Share, GoodClient], caplog: pytest.LogCaptureFixture) -> None:
    share, good = served
    caplog.set_level(logging.WARNING, LOGGER)
    before = _server(share).stats["refused"]
    s = _connect(share)
    with pytest.raises(_net.NetError, match="refused our authentication"):
        _net.client_handshake(s, secrets.token_bytes(32), TIMEOUT)
    s.close()
    _wait_refusal(share, before)
    # and through the public API: a Share payload carrying a wrong key
    name, pid, host, net = share.__reduce__()[1]
    forged = _share._rebuild_share(name, pid, host, (net[0], secrets.token_bytes(32), *net[2:]))
    drop_remote(name)
    try:
        with pytest.raises(ShareError, match="refused our authentication"):
            forged.counter += 1
    finally:
        drop_remote(name)
    _finish(share, good, caplog, "authentication failed")


def test_random_bytes_are_refused(served: tuple[Share, GoodClient], caplog: pytest.LogCaptureFixture) -> None:
    share, good = served
    caplog.set_level(logging.WARNING, LOGGER)
    before = _server(share).stats["refused"]
    s = _connect(share)
    s.sendall(secrets.token_bytes(4096))
    assert _closed_by_server(s)
    _wait_refusal(share, before)
    _finish(share, good, caplog, "authentication failed")


def test_oversized_frame_is_refused_without_reading_it(
    served: tuple[Share, GoodClient], caplog: pytest.LogCaptureFixture,
) -> None:
    share, good = served
    caplog.set_level(logging.WARNING, LOGGER)
    before = _server(share).stats["refused"]
    s, _ch = _session(share)
    s.sendall(struct.pack("!IQ", 0xFFFFFFFF, 0) + b"\0" * 32)  # announces 4 GiB, sends none
    assert _closed_by_server(s)
    _wait_refusal(share, before)
    _finish(share, good, caplog, "oversized frame")


def test_replayed_frame_is_refused_and_not_applied(
    served: tuple[Share, GoodClient], caplog: pytest.LogCaptureFixture,
) -> None:
    share, good = served
    caplog.set_level(logging.WARNING, LOGGER)
    before = _server(share).stats["refused"]
    s, ch = _session(share)
    payload = cucumber.serialize(("aug", ("counter",), "iadd", 1))
    hdr = struct.pack("!IQ", len(payload), 0)
    frame = hdr + hmac.new(ch.send_key, hdr + payload, hashlib.sha256).digest() + payload
    s.sendall(frame)  # a valid frame: applied once
    ch.send_seq = 1
    status, _value = cucumber.deserialize(ch.recv())
    assert status == "ok"
    s.sendall(frame)  # the same frame again, in the same session
    assert _closed_by_server(s)
    _wait_refusal(share, before)
    # the same frame in a new session (sequence 0 again) fails its MAC
    before = _server(share).stats["refused"]
    s2, _ch2 = _session(share)
    s2.sendall(frame)
    assert _closed_by_server(s2)
    _wait_refusal(share, before)
    _finish(share, good, caplog, "replayed or reordered frame", extra=1)
    assert any("frame authentication failed" in r.getMessage() for r in caplog.records)


def test_truncated_and_tampered_frames_are_refused(
    served: tuple[Share, GoodClient], caplog: pytest.LogCaptureFixture, tmp_path: Any,
) -> None:
    share, good = served
    marker = str(tmp_path / "ran")
    caplog.set_level(logging.WARNING, LOGGER)
    before = _server(share).stats["refused"]
    s, _ch = _session(share)
    s.sendall(struct.pack("!IQ", 100, 0) + b"\0" * 32 + b"x" * 10)
    s.shutdown(socket.SHUT_WR)
    assert _closed_by_server(s)
    _wait_refusal(share, before)
    # tampered: a valid frame whose payload was replaced by a code-running one
    before = _server(share).stats["refused"]
    s2, ch2 = _session(share)
    good_payload = cucumber.serialize(("running",))
    bad_payload = cucumber.serialize(("call", ("counter",), "bit_length", (Bomb(marker),), {}))
    hdr = struct.pack("!IQ", len(bad_payload), 0)
    mac = hmac.new(ch2.send_key, struct.pack("!IQ", len(good_payload), 0) + good_payload,
                       hashlib.sha256).digest()
    s2.sendall(hdr + mac + bad_payload)
    assert _closed_by_server(s2)
    _wait_refusal(share, before)
    assert not os.path.exists(marker)
    _finish(share, good, caplog, "truncated")
    assert any("frame authentication failed" in r.getMessage() for r in caplog.records)


def test_silent_client_times_out_in_the_handshake(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    srv = _net.Server("t", "127.0.0.1", 0, secrets.token_bytes(32), lambda req: req,
                      handshake_timeout=0.5)
    try:
        s = socket.create_connection(srv.address, timeout=TIMEOUT)
        assert _closed_by_server(s)  # we never answered the challenge
        assert any("timed out" in r.getMessage() for r in caplog.records)
        # a client with the key still works
        c = _net.Client(srv.address, srv.key, _net.DEFAULT_MAX_FRAME)
        assert c.request(("echo", 1)) == ("echo", 1)
        c.close()
    finally:
        srv.stop()


def test_too_large_message_is_a_clear_error_on_the_sender(tcp_env: None) -> None:
    with Share() as share:
        share.serve(max_frame=8192)
        remote = pickle.loads(pickle.dumps(share))
        with pytest.raises(ValueError, match="exceeds the frame limit"):
            remote.blob = b"x" * 100_000
        remote.small = 1
        assert share.small == 1
        share.big = b"y" * 100_000
        with pytest.raises(RuntimeError, match="exceeds the Share's frame limit"):
            _ = remote.big
