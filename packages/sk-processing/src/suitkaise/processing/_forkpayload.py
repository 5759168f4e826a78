"""Serializing the instance for its child so that ``Pipe`` points (file descriptors) travel.

A ``Pipe`` point reduces through ``multiprocessing.reduction.DupFd``, which
only works while multiprocessing is spawning a process. Two cases:

- fork: the child inherits the very same fd numbers, so we serialize up front
  under a stand-in "spawning popen" that hands the fd through unchanged. This
  uses multiprocessing's private ``context.set_spawning_popen`` (the one place
  in the package that does).
- spawn/forkserver: ``SpawnPayload`` serializes with cucumber while
  multiprocessing pickles the ``Process`` (its real popen is spawning then).
"""

from __future__ import annotations

from multiprocessing import context as mp_context
from multiprocessing import reduction
from typing import Any

from suitkaise import cucumber

__all__ = ["FdArg", "SpawnPayload", "fd_for_child", "serialize_for_fork"]


class _ForkDupFd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def detach(self) -> int:
        return self.fd


class _ForkSpawningPopen:
    """Lets objects that reduce through ``DupFd`` serialize for a fork child."""

    DupFd = _ForkDupFd

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd


def serialize_for_fork(obj: Any) -> bytes:
    """cucumber bytes of ``obj`` for a child about to be forked (fds kept as numbers)."""
    mp_context.set_spawning_popen(_ForkSpawningPopen())  # type: ignore[arg-type]
    try:
        return cucumber.serialize(obj, for_fork=True)  # __main__ classes by name: the child has them
    finally:
        mp_context.set_spawning_popen(None)


def _same(handle: Any) -> Any:
    return handle


class FdArg:
    """Process argument carrying a file descriptor to a spawn/forkserver child: it becomes a
    ``DupFd`` while multiprocessing spawns (the fd is passed along), ``.detach()`` there."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return (_same, (reduction.DupFd(self.fd),))


def fd_for_child(fd: int, method: str) -> Any:
    """What to pass to a child so that ``arg.detach()`` there gives ``fd``."""
    return _ForkDupFd(fd) if method == "fork" else FdArg(fd)


class SpawnPayload:
    """Process argument that serializes ``obj`` with cucumber while multiprocessing is spawning."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (bytes, (cucumber.serialize(self.obj),))
