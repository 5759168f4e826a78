"""Throw-away PostgreSQL and Redis servers on loopback, started from Debian's packages.

Each server lives in its own temporary directory on a free port and is torn
down completely by ``stop()``; a watchdog (``watchdog.py``) tears it down when the
process that started it dies first. When the binaries are missing, ``start()``
raises ``ServerUnavailable`` with the reason, and the fixtures skip with it.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from sk_testkit import watchdog


class ServerUnavailable(RuntimeError):
    """The server cannot be started on this machine (binaries missing, no unprivileged user)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerUnavailable(f"server did not open port {port} in time")


def _pg_bindir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in candidates:
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    raise ServerUnavailable(
        "PostgreSQL server binaries not found (apt-get install postgresql provides /usr/lib/postgresql/*/bin)"
    )


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster: ``host``, ``port``, ``user``, ``password``, ``dbname``."""

    host: str = "127.0.0.1"
    port: int = 0
    user: str = "postgres"
    password: str = field(default_factory=lambda: secrets.token_hex(8))
    dbname: str = "postgres"
    _dir: str = ""
    _bindir: str = ""
    _run_as: list[str] = field(default_factory=list)
    _watchdog: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.dbname}"
        )

    def start(self) -> PostgresServer:
        self._bindir = _pg_bindir()
        self._dir = tempfile.mkdtemp(prefix="testkit-pg-")
        if os.geteuid() == 0:
            # initdb refuses to run as root: run the cluster as the packaged 'postgres' user.
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise ServerUnavailable("running as root and no 'postgres' user exists") from e
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        pwfile = os.path.join(self._dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password)
        if self._run_as:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self._dir, "data")
        self._watchdog = watchdog.start(stop=self._run_as + self._stop_argv(), remove=self._dir)
        self._run(
            [os.path.join(self._bindir, "initdb"), "-D", data, "-U", self.user, "-A", "md5",
             f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"]
        )
        self.port = free_port()
        opts = f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [os.path.join(self._bindir, "pg_ctl"), "-D", data, "-o", opts,
             "-l", os.path.join(self._dir, "log"), "-w", "-t", "60", "start"]
        )
        _wait_for_port(self.port, time.monotonic() + 30)
        return self

    def stop(self) -> None:
        _end(self._watchdog)
        self._watchdog = None
        if not self._dir:
            return
        try:
            self._run(self._stop_argv())
        except ServerUnavailable:
            pass
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = ""

    def _stop_argv(self) -> list[str]:
        return [os.path.join(self._bindir, "pg_ctl"), "-D", os.path.join(self._dir, "data"),
                "-m", "immediate", "-w", "stop"]

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run(self._run_as + argv, capture_output=True, timeout=120, cwd=self._dir)
        if proc.returncode != 0:
            raise ServerUnavailable(
                f"{os.path.basename(argv[0])} failed ({proc.returncode}): "
                + (proc.stderr or proc.stdout).decode(errors="replace")[-2000:]
            )


@dataclass
class RedisServer:
    """A private redis-server on loopback with a password.

    ``persistent=True`` keeps the data across ``restart()`` (append-only file, fsync on
    every write); ``tls=(certfile, keyfile)`` serves TLS only, on ``.port``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(8))
    persistent: bool = False
    tls: tuple[str, str] | None = None
    _dir: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _watchdog: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ServerUnavailable("redis-server not found (apt-get install redis-server provides it)")
        if not self._dir:
            self._dir = tempfile.mkdtemp(prefix="testkit-redis-")
        if not self.port:
            self.port = free_port()
        argv = [exe, "--bind", "127.0.0.1", "--save", "", "--requirepass", self.password,
                "--dir", self._dir, "--daemonize", "no"]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        if self.tls is not None:
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls[0],
                     "--tls-key-file", self.tls[1], "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        log = os.path.join(self._dir, "redis.log")
        with open(log, "ab") as out:
            self._proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self._watchdog = watchdog.start(kill=self._proc.pid, remove=self._dir)
        deadline = time.monotonic() + 30
        while True:
            code = self._proc.poll()
            if code is not None:  # e.g. a build without TLS refusing --tls-port
                self._proc = None
                with open(log, "rb") as f:
                    tail = f.read()[-500:].decode(errors="replace").strip()
                raise ServerUnavailable(f"redis-server exited with {code}: {tail or 'no message'}")
            try:
                _wait_for_port(self.port, min(deadline, time.monotonic() + 0.5))
                return self
            except ServerUnavailable:
                if time.monotonic() >= deadline:
                    raise

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def url(self) -> str:
        """``redis://:password@host:port`` (``rediss://`` with TLS); append ``/db``."""
        return f"{'rediss' if self.tls else 'redis'}://:{self.password}@{self.host}:{self.port}"

    def _terminate(self) -> None:
        _end(self._watchdog)
        self._watchdog = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def restart(self, down: float = 0.0) -> None:
        """Stop the server, wait ``down`` seconds, start it again on the same port (and, when
        ``persistent``, with the same data)."""
        self._terminate()
        time.sleep(down)
        self.start()

    def stop(self) -> None:
        self._terminate()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""


def _end(proc: subprocess.Popen[bytes] | None) -> None:
    """End a server's watchdog before a normal teardown stops the server itself."""
    if proc is not None:
        proc.kill()
        proc.wait()
