"""Shared test support for the suitkaise suites: leak checks, start methods, real servers."""

from sk_testkit.buffers import BUFFER_KINDS, make_buffer, memfd_mappings, open_fds
from sk_testkit.interpreter import run_fresh, run_script
from sk_testkit.processes import alive, kill_and_wait, run_processes
from sk_testkit.servers import PostgresServer, RedisServer

__all__ = [
    "BUFFER_KINDS", "PostgresServer", "RedisServer", "alive", "kill_and_wait", "make_buffer", "memfd_mappings",
    "open_fds", "run_fresh", "run_processes", "run_script",
]
