"""Live objects handed to the child process multiprocessing is starting right now.

Some objects are not data but a share of something the OS holds for several
processes: multiprocessing queues, locks, events, conditions, semaphores,
barriers, ``Value``/``Array`` (and raw shared ctypes), ``Pipe`` connections,
sockets and files open for writing. A copy of one in another process would be
a different queue, lock, connection or file offset: what one side puts, sets
or writes would silently never reach the other. They can only be *shared*, and
only while a child is being started, which is what ``multiprocessing.Process``
does with its arguments:

==========================  ==========================================================
how the child starts        what it gets
==========================  ==========================================================
fork                        the very object: the child inherits the parent's memory
spawn, forkserver           the object rebuilt by multiprocessing's own reducers: the
                            spawning ``Popen`` passes its file descriptors (the same
                            pipe, socket, semaphore, shared memory, open file
                            description: a file's offset is shared)
==========================  ==========================================================

``dumps`` uses ``ChildPickler`` while ``multiprocessing.context.get_spawning_popen()``
is set (sk-processing serializes an ``Skprocess`` then). A spawning popen with an
``inherit(obj, reducer)`` method (sk-processing's) takes each shared object out of
the payload and returns what names it there: under fork its index in a list the
child inherits, under spawn/forkserver its index in a list that multiprocessing
pickles in the same stream as the process's other arguments (so one shared-memory
arena or descriptor is passed once, however many objects use it). Without one,
the objects are reduced in place. At any other time these
objects are refused by their handlers (``_handlers._mp``) with an error that
says how to share them, never copied; ``socket``, ``Connection`` and files keep
their usual handlers (reconnectors, reopen by path).
"""

from __future__ import annotations

from typing import Any

from suitkaise.cucumber._handlers._io import reduce_file_for_child, writable_os_file
from suitkaise.cucumber._pickler import PROTOCOL, CucumberPickler

__all__ = ["ChildPickler"]

# Modules whose objects are shares of OS resources (semaphores, pipes, shared memory)
_SHARED_MODULES = frozenset({
    "multiprocessing.synchronize", "multiprocessing.queues", "multiprocessing.sharedctypes", "multiprocessing.heap",
})
# Types multiprocessing reduces to their file descriptor (its modules register them on import)
_FD_TYPES = frozenset({"socket.socket", "multiprocessing.connection.Connection", "multiprocessing.heap.Arena"})


class ChildPickler(CucumberPickler):
    """The pickler for a payload multiprocessing hands to a child it is starting: shared
    objects (see the module docstring) travel as themselves, the rest as usual. ``_popen``
    is the spawning popen of the payload being written."""

    _popen: Any = None

    def reducer_override(self, obj: Any) -> Any:
        kind = _share_kind(obj)
        if kind is None:
            return super().reducer_override(obj)
        reducer = _REDUCERS[kind]
        inherit = getattr(self._popen, "inherit", None)
        if inherit is not None:  # sk-processing's start: it hands the object over itself
            return inherit(obj, reducer if kind is _FILE else None)
        return reducer(obj)


# How a shared object is pickled for a spawn/forkserver child: by its own reduce (it passes
# assert_spawning() now), by multiprocessing's registered reducer (it passes the descriptor
# through reduction.DupFd), or as a file on a duplicate of its descriptor. multiprocessing's
# pickler does the first two itself (``inherit`` then gets ``None``).
_OWN, _MP, _FILE = "own", "mp", "file"
_MAYBE_FILE, _MAYBE_HEAP = "file?", "heap?"  # decided per object
_FILE_TYPES = frozenset({"_io.TextIOWrapper", "_io.BufferedWriter", "_io.BufferedRandom", "_io.FileIO"})
_kinds: dict[type, str | None] = {}


def _share_kind(obj: Any) -> str | None:
    """Which kind of shared object ``obj`` is, ``None`` when it is not one (then it travels
    as any other value). Decided once per type, but for files (only one open for writing)
    and ctypes objects (only those in multiprocessing's shared heap)."""
    t = type(obj)
    try:
        kind = _kinds[t]
    except KeyError:
        if len(_kinds) > 4096:
            _kinds.clear()
        kind = _kinds[t] = _kind_of_type(t)
    if kind is _MAYBE_FILE:
        if not writable_os_file(obj):
            return None
        # What the parent wrote so far goes to the file now: a fork child would otherwise
        # inherit the unflushed buffer and write it a second time.
        obj.flush()
        return _FILE
    if kind is _MAYBE_HEAP:
        if getattr(obj, "_wrapper", None) is None or t not in _mp_reducers():
            return None
        return _MP
    return kind


def _kind_of_type(t: type) -> str | None:
    name = f"{t.__module__}.{t.__qualname__}"
    if name in _FD_TYPES:
        return _MP
    if t.__module__ in _SHARED_MODULES:
        return _OWN
    if t.__module__ == "multiprocessing.managers":
        from multiprocessing.managers import BaseProxy

        # a proxy connects the child to the manager (its authkey travels while spawning)
        return _OWN if issubclass(t, BaseProxy) else None
    if name in _FILE_TYPES:
        return _MAYBE_FILE
    if any(k.__module__ == "_ctypes" for k in t.__mro__[1:]):
        return _MAYBE_HEAP  # multiprocessing registers a reducer per ctypes type it allocates
    return None


def _mp_reducers() -> dict[type, Any]:
    from multiprocessing import reduction

    reducers: dict[type, Any] = reduction.ForkingPickler._extra_reducers  # type: ignore[attr-defined]
    return reducers


def _own_reduce(obj: Any) -> Any:
    return obj.__reduce_ex__(PROTOCOL)


def _mp_reduce(obj: Any) -> Any:
    return _mp_reducers()[type(obj)](obj)


_REDUCERS = {_OWN: _own_reduce, _MP: _mp_reduce, _FILE: reduce_file_for_child}
