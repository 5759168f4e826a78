"""``Pipe``: a ``multiprocessing`` pipe with an Anchor end and a Point end.

::

    parent process                                child process
    --------------                                -------------
    anchor = Pipe.Anchor  <==== socketpair ====>  point = Pipe.Point
      (locked: never leaves                        (unlocked: travels in
       the creating process)                        Process args, inside an
                                                    Skprocess, or through
                                                    another pipe/queue)

    one_way=True:  anchor --- os.pipe ---> point   (anchor sends, point receives)

A Point travels by pickling (plain pickle or cucumber): its ``__reduce__``
hands multiprocessing a ``DupFd`` for its file descriptor, exactly as
``multiprocessing.connection.Connection`` does, so the OS handle reaches the
child under fork, spawn and forkserver (the spawning ``Popen`` passes the fd)
and through any later pipe or queue (the ``resource_sharer`` thread passes
it). The raw ``Connection`` is never placed in the reduce arguments: cucumber
would turn it into a Reconnector.

An Anchor, and a Point while locked, refuse to be pickled. After ``os.fork``
the child closes its inherited copies of every Anchor: the Anchor belongs to
the process that created it, and a forked child holding a copy would keep the
pipe open after the parent died, so its Point would never see "peer closed".

One call's journey: ``anchor.send(obj)`` serializes ``obj`` with cucumber
(buffers of 64 KiB and more out-of-band), writes one message whose head is the
object's kind, plus the raw buffers (see ``suitkaise.pipe.wire``);
``point.recv()`` in the child reads them and deserializes.
"""

from __future__ import annotations

import os
import threading
import weakref
from multiprocessing import reduction
from multiprocessing.connection import Connection
from multiprocessing.connection import Pipe as _mp_pipe
from typing import Any, ClassVar

from suitkaise.pipe import wire
from suitkaise.pipe._errors import PipeEndpointError
from suitkaise.pipe.wire import Progress, Reader

__all__ = ["Pipe"]

_TRANSFER_REFUSED = "Locked pipe endpoint cannot be transferred. Keep it in the parent process."
_ANCHOR_LOCKED = "Anchor endpoints are always locked."

# Every live endpoint in this process, so that the fork hook can reset locks
# and close inherited Anchors in the child.
_live: weakref.WeakSet[_PipeEndpoint] = weakref.WeakSet()


class _PipeEndpoint:
    """Behaviour shared by ``Pipe.Anchor`` and ``Pipe.Point``.

    Thread safety: one endpoint may be shared by several threads. ``send`` is
    atomic with respect to other ``send`` calls and ``recv`` with respect to
    other ``recv`` calls (one lock each), so messages never interleave; one
    thread may send while another receives. ``close()`` from another thread
    does not wake a thread blocked in ``recv()``: use ``poll(timeout)``.
    """

    _role: ClassVar[str] = "endpoint"
    # Read by suitkaise.share (duck-typed, no import): a Share refuses the endpoint on
    # assignment. Its OS handle can be handed to one process once; every process reading
    # it from a Share would need its own.
    _share_disallowed: ClassVar[str] = (
        "a Pipe endpoint cannot be stored in a Share: its OS handle goes to one process "
        "once. Pass the point to the process that uses it instead (an Skprocess argument, "
        "a Pool item or multiprocessing.Process args)"
    )

    __slots__ = (
        "__weakref__",
        "_broken",
        "_can_recv",
        "_can_send",
        "_conn",
        "_fd",
        "_locked",
        "_progress",
        "_reader",
        "_recv_lock",
        "_send_lock",
    )

    def __init__(self, conn: Connection, locked: bool) -> None:
        self._conn = conn
        self._fd = conn.fileno()  # read once (Connection.fileno() is two Python calls); -1 once closed
        self._locked = locked
        self._can_send = conn.writable
        self._can_recv = conn.readable
        self._progress = Progress()
        self._reader = Reader()
        self._broken: str | None = None
        self._init_locks()
        _live.add(self)

    def _init_locks(self) -> None:
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()

    # -- state -----------------------------------------------------------

    @property
    def locked(self) -> bool:
        """True when this endpoint may not leave the process (pickling raises)."""
        return self._locked

    @property
    def closed(self) -> bool:
        """True after ``close()`` (or after a fork closed an inherited Anchor)."""
        return self._conn.closed

    @property
    def readable(self) -> bool:
        """False for the anchor of a one-way pipe."""
        return self._conn.readable

    @property
    def writable(self) -> bool:
        """False for the point of a one-way pipe."""
        return self._conn.writable

    def lock(self) -> None:
        """Forbid transferring this endpoint to another process."""
        self._locked = True

    def unlock(self) -> None:
        """Allow transferring this endpoint to another process."""
        self._locked = False

    def close(self) -> None:
        """Close this endpoint. Idempotent. The peer's ``recv`` then reports "peer closed"
        once every copy of this end (in every process) is closed."""
        self._fd = -1
        self._conn.close()

    def __enter__(self) -> _PipeEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._conn.closed:
            where = "closed"
        else:
            where = f"fd={self._conn.fileno()}"
        if self._conn.readable and self._conn.writable:
            direction = "two-way"
        elif self._conn.writable:
            direction = "send-only"
        else:
            direction = "receive-only"
        return f"Pipe.{type(self).__name__}({where}, {direction}, locked={self._locked})"

    # -- data ------------------------------------------------------------

    def _name(self) -> str:
        return f"Pipe.{type(self).__name__}"

    def _check(self, op: str) -> None:
        if self._conn.closed:
            raise PipeEndpointError(
                f"{self._name()} is closed: {op}() is not possible after close(). "
                "Create a new pair with Pipe.pair()."
            )
        if self._broken is not None:
            raise PipeEndpointError(
                f"{self._name()} is unusable: {self._broken} "
                "Close it and create a new pair with Pipe.pair()."
            )

    def _peer_closed(self, op: str, exc: BaseException) -> PipeEndpointError:
        return PipeEndpointError(
            f"{self._name()}.{op}(): peer closed (the other end was closed or its process "
            f"exited) [{type(exc).__name__}: {exc}]"
        )

    def send(self, obj: Any) -> None:
        """Serialize ``obj`` with cucumber and send it. Returns once the bytes are written
        (blocks only while the OS pipe buffer is full)."""
        if self._fd < 0 or self._broken is not None:
            self._check("send")
        if not self._can_send:
            raise PipeEndpointError(
                f"{self._name()} is receive-only: on a one-way pipe (Pipe.pair(one_way=True)) "
                "the anchor sends and the point receives. Use Pipe.pair() for two-way traffic."
            )
        with self._send_lock:
            progress = self._progress
            try:
                kind, data, buffers = wire.encode(obj)
                try:
                    wire.send(self._fd, _KIND_HEADS[kind], data, buffers, progress)
                finally:
                    for b in buffers:  # let the sender resize its arrays again
                        b.release()
            except (BrokenPipeError, ConnectionResetError) as e:
                raise self._peer_closed("send", e) from e
            except OSError as e:
                if self._conn.closed:
                    raise PipeEndpointError(f"{self._name()} is closed (closed during send).") from e
                raise
            finally:
                if progress.tx_dirty:
                    progress.tx_dirty = False
                    self._broken = "a send() was interrupted half way, so the stream is out of step."

    def recv(self) -> Any:
        """Block until one object arrives, then return it (deserialized with cucumber).

        Raises ``PipeEndpointError`` ("peer closed") when the other end is gone
        instead of blocking forever.
        """
        if self._fd < 0 or self._broken is not None:
            self._check("recv")
        if not self._can_recv:
            raise PipeEndpointError(
                f"{self._name()} is send-only: on a one-way pipe (Pipe.pair(one_way=True)) "
                "the anchor sends and the point receives. Use Pipe.pair() for two-way traffic."
            )
        with self._recv_lock:
            progress = self._progress
            try:
                head, data, buffers = wire.recv(self._fd, 1, self._reader, progress)
                return wire.decode(head[0], data, buffers)
            except (EOFError, ConnectionResetError) as e:
                raise self._peer_closed("recv", e) from e
            except OSError as e:
                if self._conn.closed:
                    raise PipeEndpointError(f"{self._name()} is closed (closed during recv).") from e
                raise
            finally:
                if progress.rx_dirty:
                    progress.rx_dirty = False
                    if self._broken is None:
                        self._broken = "a recv() was interrupted half way, so the stream is out of step."

    def poll(self, timeout: float | None = 0.0) -> bool:
        """True if a message (or end of file) is ready to read; waits up to ``timeout``
        seconds (``None`` = forever)."""
        self._check("poll")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise TypeError(f"{self._name()}.poll(timeout) must be a number of seconds or None, got {timeout!r}")
        if self._reader.pending:
            return True
        return self._conn.poll(timeout)

    # -- transfer --------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        if self._locked:
            raise PipeEndpointError(_TRANSFER_REFUSED)
        if self._conn.closed:
            raise PipeEndpointError(f"{self._name()} is closed and cannot be transferred.")
        if self._reader.pending:
            # Those bytes were read from the OS pipe already: the receiving
            # process could never see them.
            raise PipeEndpointError(
                f"{self._name()} holds {len(self._reader.pending)} bytes of an unread message; "
                "recv() it before transferring the endpoint."
            )
        # Same mechanism as multiprocessing.connection.reduce_connection: a DupFd
        # chosen by the spawning Popen (fork/spawn/forkserver) or by the
        # resource_sharer when sent later. Not the Connection itself: cucumber
        # maps raw Connections to Reconnectors.
        df = reduction.DupFd(self._conn.fileno())
        return _rebuild_point, (df, self._conn.readable, self._conn.writable)

    def __copy__(self) -> _PipeEndpoint:
        raise TypeError(f"{self._name()} cannot be copied; pass the endpoint itself.")

    def __deepcopy__(self, memo: dict[int, Any]) -> _PipeEndpoint:
        raise TypeError(f"{self._name()} cannot be copied; pass the endpoint itself.")


class Pipe:
    """Namespace: ``Pipe.pair()``, ``Pipe.Anchor``, ``Pipe.Point``."""

    def __init__(self) -> None:
        raise TypeError("Pipe is a namespace; create endpoints with Pipe.pair().")

    class Anchor(_PipeEndpoint):
        """The end that stays in the creating process. Always locked.

        On a one-way pipe the anchor is send-only.
        """

        _role = "anchor"
        __slots__ = ()

        def lock(self) -> None:
            """No-op: an Anchor is always locked."""

        def unlock(self) -> None:
            """Always raises: an Anchor never leaves the creating process."""
            raise PipeEndpointError(_ANCHOR_LOCKED)

    class Point(_PipeEndpoint):
        """The mobile end. Unlocked by default, so it can be handed to a child.

        Handing it off does not lock or close the parent's copy: close it in the
        parent after starting the child, or the anchor cannot notice the child's
        death. On a one-way pipe the point is receive-only.
        """

        _role = "point"
        __slots__ = ()

    @staticmethod
    def pair(one_way: bool = False) -> tuple[Pipe.Anchor, Pipe.Point]:
        """Create a connected ``(anchor, point)``.

        ``one_way=True`` makes the anchor send-only and the point receive-only
        (backed by ``os.pipe`` instead of a socket pair).
        """
        if not isinstance(one_way, bool):
            raise TypeError(f"Pipe.pair(one_way=...) takes a bool, got {type(one_way).__name__}.")
        if one_way:
            reader, writer = _mp_pipe(duplex=False)
            return Pipe.Anchor(writer, True), Pipe.Point(reader, False)
        a, b = _mp_pipe(duplex=True)
        return Pipe.Anchor(a, True), Pipe.Point(b, False)


_KIND_HEADS = [bytes([kind]) for kind in range(4)]


def _rebuild_point(df: Any, readable: bool, writable: bool) -> Pipe.Point:
    """Unpickling side of ``Point.__reduce__``: claim the duplicated fd."""
    return Pipe.Point(Connection(df.detach(), readable, writable), False)


def _after_fork_in_child() -> None:
    """Reset locks copied mid-use and close inherited Anchors (see module docstring)."""
    for ep in list(_live):
        ep._init_locks()
        if isinstance(ep, Pipe.Anchor):
            ep.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
