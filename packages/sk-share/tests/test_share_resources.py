"""A method of a stored object that returns a live resource gives this process's object as is.

A lock, a file, a socket, a connection or a logger stands for something of this process: a
copy is another one (cucumber builds a new lock, reopens the file, reconnects). The method
runs on this process's copy of the object, and returns what that copy holds, as a method of
a local object does: ``share.h.get_lock()`` is the lock ``share.h`` holds here, the same on
every call. It used to be a Proxy to the attribute (``with`` on it raised TypeError) or, for
a lock not held in an attribute, a copy.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from suitkaise.share import Share
from suitkaise.share._proxy import Proxy

pytestmark = pytest.mark.timeout(60)


class Holder:
    def __init__(self, path: str) -> None:
        self.n = 0
        self._lock = threading.Lock()
        self.log = logging.getLogger("sk-share-tests.holder")
        self.f = open(path, "a")

    def get_lock(self) -> Any:
        return self._lock

    def get_file(self) -> Any:
        return self.f

    def get_log(self) -> logging.Logger:
        return self.log

    def new_lock(self) -> Any:
        return threading.Lock()

    def holds(self, obj: Any) -> bool:
        return any(obj is value for value in vars(self).values())

    def bump(self) -> int:
        self.n += 1
        return self.n


class HoldsSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_sock(self) -> socket.socket:
        return self.sock

    def holds(self, obj: Any) -> bool:
        return obj is self.sock


def _stored_holder(share: Share, path: Path) -> None:
    local = Holder(str(path))
    try:
        share.h = local
    finally:
        local.f.close()


def test_a_method_returning_a_resource_it_holds_gives_this_process_object(tmp_path: Path) -> None:
    with Share() as share:
        _stored_holder(share, tmp_path / "out.txt")
        for getter in ("get_lock", "get_file", "get_log"):
            got = getattr(share.h, getter)()
            assert type(got) is not Proxy, getter
            assert got is getattr(share.h, getter)()  # the same object on every call
            assert share.h.holds(got)  # the one this process's copy of the object holds
        lock = share.h.get_lock()
        assert share.h.bump() == 1  # a write leaves this process's copy, and its lock, in place
        assert share.h.get_lock() is lock
        with share.lock():  # the general path (a lock block) returns it the same way
            assert share.h.get_lock() is lock
        with share.h.get_lock():  # a real lock: usable as one (a Proxy refused `with`)
            assert lock.locked()
        assert not lock.locked()
        f = share.h.get_file()
        f.write("through the object's own file\n")
        f.flush()
        assert (tmp_path / "out.txt").read_text() == "through the object's own file\n"
        fresh = share.h.new_lock()  # not held by the object: as the method made it
        assert type(fresh) is type(lock) and fresh is not lock
        share.h.get_file().close()


def test_threads_of_one_process_exclude_each_other_with_the_object_s_lock(tmp_path: Path) -> None:
    with Share() as share:
        _stored_holder(share, tmp_path / "out.txt")
        inside: list[int] = []
        overlaps: list[int] = []
        entered: list[int] = []

        def work() -> None:
            for _ in range(50):
                with share.h.get_lock():
                    inside.append(1)
                    entered.append(1)
                    if len(inside) > 1:
                        overlaps.append(1)
                    inside.pop()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(entered) == 200 and not overlaps
        share.h.get_file().close()


def test_a_socket_a_method_returns_is_this_process_socket() -> None:
    # a stored socket is a cucumber Reconnector in each process's copy: the method gives this
    # process's one, which becomes a live socket on first use (a Proxy to it used to)
    with Share() as share, socket.socket() as sock:
        share.s = HoldsSocket(sock)
        got = share.s.get_sock()
        assert type(got) is not Proxy and got is share.s.get_sock()
        assert share.s.holds(got)
        assert got.fileno() >= 0  # reconnected here, once
        assert got.fileno() == share.s.get_sock().fileno()
        got.close()
