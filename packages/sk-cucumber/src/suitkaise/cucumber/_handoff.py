"""Live objects handed to the child process multiprocessing is starting right now.

Some objects are not data but a share of something the OS holds for several
processes: multiprocessing queues, locks, events, conditions, semaphores,
barriers, ``Value``/``Array`` (and raw shared ctypes), manager proxies,
``Pipe()`` connections, sockets and files open for writing. A copy of one in
another process would be a different queue, lock, connection or file offset:
what one side puts, sets or writes would silently never reach the other. They
can only be *shared*, and only while a child is being started, which is what
``multiprocessing.Process`` does with its arguments:

==========================  ==========================================================
how the child starts        what it gets
==========================  ==========================================================
fork                        the very object: the child inherits the parent's memory
spawn, forkserver           the object rebuilt by multiprocessing's own reducers: the
                            spawning ``Popen`` passes its file descriptors (the same
                            pipe, socket, semaphore, shared memory, open file
                            description: a file's offset is shared)
==========================  ==========================================================

The handlers of these types call ``handoff(obj, kind)`` first: while
``multiprocessing.context.get_spawning_popen()`` is set (sk-processing serializes an
``Skprocess`` then) it returns how the object travels, else ``None`` and the handler
does what it does at any other time (multiprocessing objects are refused with an
error saying how to share them, never copied; sockets and connections become
Reconnectors, files are reopened by path). Nothing is checked for other objects:
the pickler's hot path is unchanged.

A spawning popen with an ``inherit(obj, reducer)`` method (sk-processing's) takes
each object out of the payload and returns what names it there: under fork its
index in a list the child inherits, under spawn/forkserver its index in a list that
multiprocessing pickles in the same stream as the process's other arguments (so one
shared-memory arena or descriptor is passed once, however many objects use it).
A ``Pool``'s initializer and initargs are serialized once, when the pool is built,
under such a popen that only collects the objects: each worker gets the list as it
starts (``processing._forkpayload.LiveArgs``).
``reducer`` is ``None`` when multiprocessing's own pickler can do it. Without such a
method, the object is reduced in place by multiprocessing's reducers.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["FILE", "MP", "OWN", "handoff"]

# How an object is pickled for a spawn/forkserver child: by its own reduce (it passes
# assert_spawning() while spawning), by multiprocessing's registered reducer (it passes the
# descriptor through reduction.DupFd), or as a file on a duplicate of its descriptor.
OWN, MP, FILE = "own", "mp", "file"

PROTOCOL = 5


def handoff(obj: Any, kind: str) -> Any:
    """The reduce value that hands ``obj`` to the child multiprocessing is starting, or
    ``None`` when no child is being started."""
    context = sys.modules.get("multiprocessing.context")
    popen = None if context is None else context.get_spawning_popen()
    if popen is None:
        return None
    if kind == FILE:
        # What the parent wrote so far goes to the file now: a fork child would otherwise
        # inherit the unflushed buffer and write it a second time.
        obj.flush()
    inherit = getattr(popen, "inherit", None)
    if inherit is not None:  # sk-processing's start: it hands the object over itself
        return inherit(obj, _file_reducer() if kind == FILE else None)
    if kind == OWN:
        return obj.__reduce_ex__(PROTOCOL)
    if kind == MP:
        return _mp_reducer(obj)(obj)
    return _file_reducer()(obj)


def _mp_reducer(obj: Any) -> Any:
    """multiprocessing's registered reducer for ``obj``'s type (``socket``, ``Connection``,
    ``Arena``, shared ctypes), or ``None``."""
    from multiprocessing import reduction

    reducers: dict[type, Any] = reduction.ForkingPickler._extra_reducers  # type: ignore[attr-defined]
    return reducers.get(type(obj))


def _file_reducer() -> Any:
    from suitkaise.cucumber._handlers._io import reduce_file_for_child

    return reduce_file_for_child
