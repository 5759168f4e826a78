"""Serializing the instance for its child so that ``Pipe`` points (file descriptors) travel.

A ``Pipe`` point reduces through ``multiprocessing.reduction.DupFd``, which
only works while multiprocessing is spawning a process. Two cases:

- fork: the child inherits the very same fd numbers, so we serialize up front
  under a stand-in "spawning popen" that hands the fd through unchanged. This
  uses multiprocessing's private ``context.set_spawning_popen`` (this module is
  the one place in the package that does).
- spawn/forkserver: ``SpawnPayload`` serializes with cucumber while
  multiprocessing pickles the ``Process`` (its real popen is spawning then).

Live objects the instance shares with its child (multiprocessing queues, locks, events,
values, ``Pipe()`` connections, sockets, files open for writing: ``cucumber._handoff``) are
taken out of the bytes: the payload is then ``Inherited(bytes, live objects)``, the child
gets the very objects under fork (inherited memory), and multiprocessing pickles them beside
the bytes under spawn/forkserver, as it pickles ``Process(args=...)``.

Under fork an instance whose state is only immutable atoms (numbers, strings, bytes,
``None``) besides its validated ``process_config`` is not serialized at all
(``fork_payload``): the child runs the very object it inherited, which is what it
would rebuild from the bytes (same class, same values; nothing in it can alias
anything mutable), and that skips ~0.1 ms of serializing in the parent and ~0.15 ms
of rebuilding in the child, right after the fork, where every page written is copied.
"""

from __future__ import annotations

import copyreg
import sys
from multiprocessing import context as mp_context
from multiprocessing import reduction
from typing import Any

from suitkaise import cucumber
from suitkaise.cucumber._code import keep_source
from suitkaise.cucumber._registry import lookup as cucumber_handler
from suitkaise.processing._config import ProcessConfig, TimeoutConfig
from suitkaise.processing._runtime import RUNTIME_ATTR, SKPROCESS_MARK

__all__ = [
    "FdArg",
    "Inherited",
    "LiveArgs",
    "SpawnPayload",
    "fd_for_child",
    "fork_payload",
    "load_payload",
    "loads_with_live",
    "serialize_for_fork",
]

_ATOMS = frozenset({int, float, complex, bool, str, bytes, type(None)})
# pickle and cucumber hooks a class could define: any of them, and the copy could differ
_HOOKS = ("__setstate__", "__serialize__", "__deserialize__", "__slots__")


class _ForkDupFd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def detach(self) -> int:
        return self.fd


class _ForkSpawningPopen:
    """Lets objects that reduce through ``DupFd`` serialize for a fork child, and hands it
    the live objects it shares with the parent (multiprocessing queues, locks, events,
    values, sockets, files open for writing: see ``cucumber._handoff``) as themselves."""

    DupFd = _ForkDupFd

    def __init__(self) -> None:
        self.live: list[Any] = []

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd

    def inherit(self, obj: Any, reducer: Any) -> tuple[Any, ...]:
        """What names ``obj`` in the payload: its index in ``live``, which the child inherits."""
        self.live.append(obj)
        return (_inherited, (len(self.live) - 1,))


class _SpawnHandoff:
    """The spawning popen cucumber sees while ``SpawnPayload`` serializes: multiprocessing's
    own (``DupFd``, ``duplicate_for_child``), plus ``inherit``, which takes the live objects
    out of the payload so that multiprocessing pickles them with the other process
    arguments, in one stream (a descriptor or shared-memory arena used by several objects,
    such as the ctrl array and an ``mp.Value``, is then passed once)."""

    def __init__(self, popen: Any) -> None:
        self.popen = popen
        self.live: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.popen, name)

    def inherit(self, obj: Any, reducer: Any) -> tuple[Any, ...]:
        """``reducer``: how to pickle ``obj`` while spawning, ``None`` when multiprocessing can."""
        self.live.append(obj if reducer is None else _Reduced(obj, reducer))
        return (_inherited, (len(self.live) - 1,))


class _Reduced:
    """``obj`` reduced by cucumber's ``reducer`` when multiprocessing pickles it (its
    popen is spawning then, so descriptors are passed)."""

    __slots__ = ("obj", "reducer")

    def __init__(self, obj: Any, reducer: Any) -> None:
        self.obj = obj
        self.reducer = reducer

    def __reduce__(self) -> Any:
        return self.reducer(self.obj)


class LiveArgs:
    """Takes the live objects out of bytes serialized now, for every child started later
    (a Pool's initializer and initargs, serialized once for all its workers): ``dumps``
    runs under this stand-in spawning popen. ``for_child`` gives what to pass beside the
    bytes to each child, as ``multiprocessing.Pool(initargs=...)`` does: the very objects
    under fork, the objects multiprocessing pickles while spawning otherwise."""

    def __init__(self) -> None:
        self.live: list[Any] = []
        self.reducers: list[Any] = []

    def dumps(self, dumps: Any, obj: Any) -> Any:
        popen = mp_context.get_spawning_popen()
        mp_context.set_spawning_popen(self)  # type: ignore[arg-type]
        try:
            return dumps(obj)
        finally:
            mp_context.set_spawning_popen(popen)

    def inherit(self, obj: Any, reducer: Any) -> tuple[Any, ...]:
        self.live.append(obj)
        self.reducers.append(reducer)
        return (_inherited, (len(self.live) - 1,))

    @staticmethod
    def DupFd(fd: int) -> Any:
        from multiprocessing import resource_sharer

        return resource_sharer.DupFd(fd)

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd

    def for_child(self, method: str) -> list[Any]:
        """The live objects to pass to a child about to start by ``method``."""
        if method != "fork":
            return [obj if r is None else _Reduced(obj, r) for obj, r in zip(self.live, self.reducers, strict=True)]
        for obj, reducer in zip(self.live, self.reducers, strict=True):
            if reducer is not None and not obj.closed:
                obj.flush()  # a file: the child must not inherit (and write again) our buffer
        return self.live


_live: list[Any] = []  # in a child, while its payload loads: the live objects it names


def _inherited(index: int) -> Any:
    return _live[index]


def loads_with_live(live: list[Any], loads: Any, *args: Any) -> Any:
    """``loads(*args)`` for bytes that name the live objects ``live`` (``Inherited``, ``LiveArgs``)."""
    global _live
    _live = live
    try:
        return loads(*args)
    finally:
        _live = []


class Inherited:
    """A child's payload that names live objects of the parent, as
    ``multiprocessing.Process(args=...)`` hands them over: under fork the child inherits
    this very list (the same objects); under spawn/forkserver multiprocessing pickled it
    (descriptors passed, semaphores and shared memory reopened)."""

    __slots__ = ("data", "live")

    def __init__(self, data: bytes, live: list[Any]) -> None:
        self.data = data
        self.live = live


def load_payload(payload: bytes | Inherited) -> Any:
    """The object a child's start payload (bytes, or ``Inherited``) holds."""
    if not isinstance(payload, Inherited):
        return cucumber.deserialize(payload)
    return loads_with_live(payload.live, cucumber.deserialize, payload.data)


def fork_payload(obj: Any) -> Any:
    """What a fork child gets its instance from: ``obj`` itself when a cucumber copy would
    be the same (``_child.child_main`` then runs it as it is), else ``serialize_for_fork``'s
    bytes. Must be called right before the fork (the child sees the state as of the fork)."""
    if not _same_as_copy(obj):
        return serialize_for_fork(obj)
    if type(obj).__module__ == "__main__":
        # what serializing does for a __main__ class taken by name: the child inherits a
        # snapshot of the script's lines, so its tracebacks show them even if the script
        # is deleted or edited meanwhile
        keep_source(getattr(sys.modules.get("__main__"), "__file__", None))
    return obj


def _same_as_copy(obj: Any) -> bool:
    """Whether rebuilding ``obj`` from cucumber bytes in a fork child gives the same object:
    ``Skprocess.__reduce_ex__`` (its ``__dict__``, by reference to the class, which the child
    has) with no hook of the class's own and no copyreg or cucumber handler for it, and every
    value an immutable atom, but for the reset run state and a plain, validated
    ``process_config``. (cucumber's registry is asked directly: a handler registered for the
    class would make the copy differ.)"""
    cls = type(obj)
    base = next((k for k in cls.__mro__ if SKPROCESS_MARK in vars(k)), None)
    if base is None or cls.__reduce_ex__ is not vars(base)["__reduce_ex__"]:
        return False
    if any(hook in vars(k) for k in cls.__mro__ for hook in _HOOKS):
        return False
    if cls in copyreg.dispatch_table or cucumber_handler(cls) is not None:
        return False
    for key, value in obj.__dict__.items():
        if key == "process_config":
            if not _plain_config(value):
                return False
        elif key in (RUNTIME_ATTR, "timers", "error"):
            if value is not None:  # start() resets them; a restart's carry the parent's timers
                return False
        elif type(value) not in _ATOMS:
            return False
    return True


def _plain_config(cfg: Any) -> bool:
    if type(cfg) is not ProcessConfig or type(cfg.timeouts) is not TimeoutConfig:
        return False
    values = [v for k, v in vars(cfg).items() if k != "timeouts"]
    return all(type(v) in _ATOMS for v in [*values, *vars(cfg.timeouts).values()])


def serialize_for_fork(obj: Any) -> bytes | Inherited:
    """cucumber bytes of ``obj`` for a child about to be forked (fds kept as numbers), with
    the live objects they name (``Inherited``) if any."""
    popen = _ForkSpawningPopen()
    mp_context.set_spawning_popen(popen)  # type: ignore[arg-type]
    try:
        data = cucumber.serialize(obj, for_fork=True)  # __main__ classes by name: the child has them
    finally:
        mp_context.set_spawning_popen(None)
    return Inherited(data, popen.live) if popen.live else data


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
    """Process argument that serializes ``obj`` with cucumber while multiprocessing is spawning;
    the live objects it shares with the child travel beside the bytes (``_SpawnHandoff``)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __reduce__(self) -> tuple[Any, ...]:
        popen = mp_context.get_spawning_popen()
        handoff = _SpawnHandoff(popen)
        mp_context.set_spawning_popen(handoff)  # type: ignore[arg-type]
        try:
            data = cucumber.serialize(self.obj)
        finally:
            mp_context.set_spawning_popen(popen)
        if handoff.live:
            return (Inherited, (data, handoff.live))
        return (bytes, (data,))
