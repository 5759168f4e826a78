"""share.serve(tls=...): the TCP path inside TLS, with a self-signed certificate made here.

::

    owner ── share.serve(tls=(cert, key)) ──► Server: "SKSHTLS2", TLS handshake, then the
      │                                        HMAC handshake and frames inside TLS
      ├── children (fork / spawn / forkserver), SK_SHARE_TRANSPORT=tcp: check the pinned
      │   certificate (its SHA-256 travels in the serialized Share), then increment
      └── a recording TCP proxy between a handle and the server: no plaintext on the wire
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import secrets
import selectors
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suitkaise.share import Share, ShareError, _net, _share
from suitkaise.share._remote import drop_remote

TIMEOUT = 90
LOGGER = "suitkaise.share.net"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _make_cert(where: Path, name: str) -> tuple[str, str]:
    cert, key = where / f"{name}-cert.pem", where / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=sk-share-test"],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


@pytest.fixture
def cert(tmp_path: Path) -> tuple[str, str]:
    return _make_cert(tmp_path, "a")


@pytest.fixture
def tcp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SK_SHARE_TRANSPORT", "tcp")
    yield


def _server(share: Share) -> _net.Server:
    return _share._SERVERS[share._sk_name]


def _handle_via(share: Share, address: tuple[str, int] | None = None, pin: Any = "same") -> Share:
    """A handle of ``share`` as another host would rebuild it, optionally pointed at another
    address (a proxy) or carrying another TLS pin."""
    name, pid, _host, (addr, key, max_frame, tls_pin) = share.__reduce__()[1]
    net = (address or addr, key, max_frame, tls_pin if pin == "same" else pin)
    drop_remote(name)
    return _share._rebuild_share(name, pid, "another-machine", net)


def _increment(share: Share, n: int, q: Any) -> None:
    os.environ["SK_SHARE_TRANSPORT"] = "tcp"  # a forkserver started earlier lacks the fixture's
    try:
        for _ in range(n):
            share.counter += 1
        share.items.append(os.getpid())
        q.put(("ok", share._sk_transport()))
    except BaseException as e:  # reported by the test
        q.put(("err", f"{type(e).__name__}: {e}"))


def test_tls_share_updated_from_other_processes(start_method: str, tcp_env: None, cert: tuple[str, str]) -> None:
    ctx = multiprocessing.get_context()
    q = ctx.Queue()
    with Share() as share:
        share.counter = 0
        share.items = []
        share.serve(tls=cert)
        assert share.__dict__["_sk_net"][3] is not None  # the pin travels with the Share
        procs = [ctx.Process(target=_increment, args=(share, 300, q)) for _ in range(2)]
        for p in procs:
            p.start()
        try:
            results = [q.get(timeout=TIMEOUT) for _ in procs]
        finally:
            for p in procs:
                p.join(TIMEOUT)
                if p.is_alive():
                    p.kill()
                    p.join()
        assert results == [("ok", "tcp")] * 2, results
        assert share.counter == 600
        assert sorted(share.items) == sorted(p.pid or 0 for p in procs)
        assert _server(share).stats["requests"] >= 600


def test_tls_with_an_sslcontext_and_restart(tcp_env: None, cert: tuple[str, str]) -> None:
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(*cert)
    share = Share()
    try:
        share.x = 1
        share.serve(tls=sctx)
        remote = pickle.loads(pickle.dumps(share))
        assert remote.x == 1
        remote.x += 1
        share.stop()
        with pytest.raises(ShareError, match=r"cannot reach|lost the connection"):
            remote.x += 1
        share.start()  # serves again, with the same TLS settings: the old handle reconnects
        remote.x += 1
        assert share.x == 3
    finally:
        share.stop()


# -- the wire carries no plaintext ----------------------------------------------------------


class RecordingProxy(threading.Thread):
    """Forwards one TCP connection at a time to ``target`` and records the client's bytes."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.lsock.settimeout(0.05)
        self.address = self.lsock.getsockname()[:2]
        self.seen = bytearray()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                a, _ = self.lsock.accept()
            except TimeoutError:
                continue
            b = socket.create_connection(self.target, timeout=TIMEOUT)
            sel = selectors.DefaultSelector()
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            open_ = True
            while open_ and not self.stop.is_set():
                for key, _ in sel.select(0.05):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        open_ = False
                        break
                    self.seen += data
                    key.data.sendall(data)
            sel.close()
            a.close()
            b.close()

    def close(self) -> None:
        self.stop.set()
        self.join(TIMEOUT)
        self.lsock.close()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext-control"])
def test_no_plaintext_on_the_wire(tcp_env: None, cert: tuple[str, str], tls: bool) -> None:
    marker = "marker-" + secrets.token_hex(16)
    with Share() as share:
        addr = share.serve(tls=cert if tls else None)
        proxy = RecordingProxy(addr)
        proxy.start()
        try:
            remote = _handle_via(share, proxy.address)
            remote.secret = marker
            assert share.secret == marker
            share.answer = marker.upper()
            assert remote.answer == marker.upper()
        finally:
            drop_remote(share._sk_name)
            proxy.close()
        assert len(proxy.seen) > 100
        found = marker.encode() in proxy.seen or marker.upper().encode() in proxy.seen
        assert found is (not tls)  # the control shows the check would see plaintext


# -- refusals -------------------------------------------------------------------------------


def test_plaintext_client_is_refused_with_a_clear_error(
    tcp_env: None, cert: tuple[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    with Share() as share:
        share.x = 1
        addr = share.serve(tls=cert)
        srv = _server(share)
        # a handle without TLS settings (as serialized before serve(tls=...))
        plain = _handle_via(share, pin=None)
        with pytest.raises(ShareError, match=r"requires TLS, but this handle has no TLS settings"):
            _ = plain.x
        # a client speaking the plaintext protocol anyway: the TLS handshake fails, logged
        before = srv.stats["refused"]
        s = socket.create_connection(addr, timeout=TIMEOUT)
        assert s.recv(len(_net.TLS_HELLO)) == _net.TLS_HELLO
        s.sendall(secrets.token_bytes(_net.NONCE + _net.DIGEST))
        s.settimeout(TIMEOUT)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        s.close()
        deadline = time.monotonic() + TIMEOUT
        while srv.stats["refused"] == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any("TLS handshake failed (a plaintext client?)" in r.getMessage() for r in caplog.records)
        # and the TLS clients still work
        good = _handle_via(share)
        good.x += 1
        assert share.x == 2


def test_tls_handle_refuses_a_plaintext_server(tcp_env: None, cert: tuple[str, str]) -> None:
    with Share() as share:
        share.x = 1
        share.serve()  # plaintext
        downgraded = _handle_via(share, pin="0" * 64)
        with pytest.raises(ShareError, match=r"does not use TLS, but this handle was served with TLS: refusing"):
            _ = downgraded.x


def test_other_certificate_is_refused(tcp_env: None, cert: tuple[str, str], tmp_path: Path) -> None:
    """A server presenting another certificate than the pinned one (a man in the middle)."""
    other_cert, _ = _make_cert(tmp_path, "b")
    other_pin = _net.server_tls((other_cert, _))[1]
    with Share() as share:
        share.x = 1
        share.serve(tls=cert)
        assert share.__dict__["_sk_net"][3] != other_pin
        impostor = _handle_via(share, pin=other_pin)
        with pytest.raises(ShareError, match=r"presented a TLS certificate other than the one this Share was served with"):
            _ = impostor.x
        assert share.x == 1


def test_bad_tls_arguments_are_clear_errors(cert: tuple[str, str], tmp_path: Path) -> None:
    with Share() as share:
        with pytest.raises(ValueError, match=r"cannot load the certificate '.*missing\.pem'"):
            share.serve(tls=str(tmp_path / "missing.pem"))
        with pytest.raises(ValueError, match=r"cannot load the certificate .* with the key"):
            share.serve(tls=(cert[0], cert[0]))  # a certificate is not a key
        with pytest.raises(ValueError, match="needs a server-side SSLContext"):
            share.serve(tls=ssl.create_default_context())
        required = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        required.load_cert_chain(*cert)
        required.verify_mode = ssl.CERT_REQUIRED
        with pytest.raises(ValueError, match="requires client certificates"):
            share.serve(tls=required)
        with pytest.raises(TypeError, match=r"takes an ssl\.SSLContext"):
            share.serve(tls=42)
        assert share._sk_name not in _share._SERVERS  # nothing is listening after a refusal
        # a PEM file holding both the certificate and the key
        both = tmp_path / "both.pem"
        both.write_text(Path(cert[0]).read_text() + Path(cert[1]).read_text())
        share.serve(tls=str(both))
        share.x = 5
        os.environ["SK_SHARE_TRANSPORT"] = "tcp"
        try:
            assert _handle_via(share).x == 5
        finally:
            del os.environ["SK_SHARE_TRANSPORT"]


# around TLS's 16 KiB record, the Channel's 64 KiB single-write limit, and large
SIZES = [0, 1, 16383, 16384, 16385, 65535, 65536, 65537, 10**6, 5 * 10**6]


def test_payload_sizes_through_tls(tcp_env: None, cert: tuple[str, str]) -> None:
    with Share() as share:
        share.serve(tls=cert)
        remote = _handle_via(share)
        try:
            for n in SIZES:
                blob = secrets.token_bytes(n)
                remote.blob = blob  # client -> server
                assert share.blob == blob, n
                back = bytes(reversed(blob))
                share.back = back  # server -> client
                assert remote.back == back, n
        finally:
            drop_remote(share._sk_name)
