"""The child side of a started ``Skprocess``: ``child_main`` and its runtime.

::

    child process
    main thread:   child_main -> rebuild instance (real class) -> Lifecycle.run()
                   -> final message (_final_message) b"M" + marshal or b"F" + cucumber of
                      (kind, value, has_state, current_run, error, timers)
    reader thread: conn -> inbox (listen()); acknowledges each message (b"A")
                   unless checkpointing (then each checkpoint says how many were consumed);
                   EOF = parent gone -> os._exit

The reader starts on the first ``listen()`` (a thread costs ~1 ms in a fresh
child) unless it must also watch for the parent's death because
``PR_SET_PDEATHSIG`` is unavailable or unsafe for this child.

Under fork every page this process writes first is copied from the parent (~3 us
each): the path from ``child_main`` to the final message is kept to what it needs
(the parent looks up the section methods before the fork; nothing is built for
``listen()`` or timeouts until they are used; the final message takes neither
cucumber nor ``Connection.send_bytes``' layers when it can do without).
"""

from __future__ import annotations

import marshal
import multiprocessing.connection as mpc
import os
import queue
import signal
import struct
import threading
from collections.abc import Sequence
from typing import Any

from suitkaise import cucumber
from suitkaise.processing._checkpoint import Checkpoint, resume
from suitkaise.processing._errors import (
    ProcessError,
    ResultError,
    ResultTimeoutError,
    capture_traceback,
    portable,
    portable_error,
)
from suitkaise.processing._forkpayload import load_payload
from suitkaise.processing._lifecycle import Lifecycle
from suitkaise.processing._pdeathsig import set_pdeathsig
from suitkaise.processing._runtime import (
    BOOTED,
    LIVES,
    RUNTIME_ATTR,
    STOP,
    TAG_ACK,
    TAG_FINAL,
    TAG_FINAL_MARSHAL,
    TAG_TELL,
    FinalState,
    Outcome,
    is_skprocess,
    min_timeout,
)
from suitkaise.processing._timers import ProcessTimers

__all__ = ["ChildRuntime", "child_main"]

class ChildRuntime:
    """Runtime of the instance inside its child (implements ``Runtime``):
    tell/listen over the pipe, stop via ctrl."""

    def __init__(
        self, conn: mpc.Connection, ctrl: Any, watch_parent: bool, checkpoint: Checkpoint | None = None
    ) -> None:
        self.conn = conn
        self.ctrl = ctrl
        # With checkpoints the parent learns what was consumed from them, not from acks.
        self.checkpoint = checkpoint
        self.inbox: queue.SimpleQueue[bytes] | None = None  # made with the reader, which fills it
        self.send_lock = threading.Lock()
        self.finishing = False
        self.reader: threading.Thread | None = None
        if watch_parent:
            self._start_reader()

    def _start_reader(self) -> None:
        with self.send_lock:
            if self.reader is None:
                self.inbox = queue.SimpleQueue()
                self.reader = threading.Thread(target=self._reader, name="sk-skprocess-reader", daemon=True)
                self.reader.start()

    def _reader(self) -> None:
        # SIGALRM must reach the main thread (section timeouts), never this one.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        conn, inbox = self.conn, self.inbox
        assert inbox is not None
        try:
            while True:
                data = conn.recv_bytes()
                if data[:1] == TAG_TELL:
                    inbox.put(data[1:])
                    if self.checkpoint is None:
                        self.send(TAG_ACK, b"")  # the parent may now forget it
        except (EOFError, OSError):
            pass
        if not self.finishing:
            # The parent is gone (its end of the pipe closed): nothing may outlive it.
            os._exit(1)

    def send(self, tag: bytes, payload: bytes) -> None:
        with self.send_lock:
            self.conn.send_bytes(tag + payload)

    def send_final(self, message: bytes) -> None:
        """Send the final message: ``Connection.send_bytes``'s frame (the length as 4 bytes,
        big-endian, then the bytes) written by ``os.write`` itself. In a fork child the first
        ``send_bytes`` call costs ~0.05 ms more, in the pages its Python layers touch."""
        size = len(message)
        if size > 0x7FFFFFFF:  # a longer frame: leave it to multiprocessing
            self.send(message[:1], message[1:])
            return
        with self.send_lock:
            fd = self.conn.fileno()
            data = memoryview(_FRAME.pack(size) + message)
            while data:
                data = data[os.write(fd, data):]

    def stop(self) -> None:
        self.ctrl[STOP] = 1.0

    def kill(self) -> None:
        self.ctrl[STOP] = 1.0

    def tell(self, data: Any) -> None:
        self.send(TAG_TELL, cucumber.serialize(data))

    def listen(self, timeout: float | None, sk_timeout: float | None) -> Any:
        if self.reader is None:
            self._start_reader()
        inbox = self.inbox
        assert inbox is not None
        limit = min_timeout(timeout, sk_timeout)
        try:
            data = inbox.get(timeout=limit) if limit is not None else inbox.get()
        except queue.Empty:
            if sk_timeout is not None and (timeout is None or sk_timeout <= timeout):
                raise ResultTimeoutError(f"listen() timed out after {sk_timeout}s") from None
            return None
        if self.checkpoint is not None:
            self.checkpoint.consumed += 1
        return cucumber.deserialize(data)

    def wait(self, timeout: float | None, sk_timeout: float | None) -> bool:
        raise RuntimeError("wait() cannot be called from inside the running Skprocess")

    def result(self, sk_timeout: float | None, what: str = "result") -> Any:
        raise RuntimeError(f"{what}() cannot be called from inside the running Skprocess")

    def live_current_run(self) -> int | None:
        return None

    def is_alive(self) -> bool:
        return True

    def describe(self) -> str:
        return f"running in pid {os.getpid()}"


def _final_message(proc: Any, kind: str, value: Any) -> bytes:
    """The last message of a life, tag included: outcome plus the state the parent adopts
    (decision 6).

    Sent as a plain tuple with the timers packed as builtin data when they allow it
    (``ProcessTimers._pack``): with an atom for a result and no error, encoded by
    ``marshal`` (``TAG_FINAL_MARSHAL``), else by cucumber, which takes its C-pickler fast
    path for plain data. In a fork child, whose every first write to a page costs a copy,
    cucumber's first call costs ~0.3 ms and ``marshal`` ~0.03 ms. The parent's
    ``ParentRun._read_final`` accepts every form.
    """
    if proc is None:
        state = FinalState(kind, value)
    else:
        timers, error = proc.timers, proc.error
        packed = timers._pack() if isinstance(timers, ProcessTimers) else None
        if packed is not None:
            plain = (kind, value, True, proc._current_run, error, packed)  # FinalState's fields
            if error is None and type(value) in _MARSHAL_ATOMS:
                try:
                    return TAG_FINAL_MARSHAL + marshal.dumps(plain)
                except ValueError:
                    pass  # something in the timers marshal cannot encode
            try:
                return TAG_FINAL + cucumber.serialize(plain)
            except Exception:
                pass  # the full form below reports what cannot be sent
        state = FinalState(kind, value, True, proc._current_run, error, timers)
    try:
        return TAG_FINAL + cucumber.serialize(state)
    except Exception as e:
        if kind == "value":
            value = ResultError(state.current_run, ProcessError(
                f"__result__ returned a {type(value).__name__} that cannot be sent to the parent: "
                f"{type(e).__name__}: {e}"
            ))
            kind = "raise"
        else:
            value = portable_error(value)
        sendable = portable(state.timers, lambda: None)
        return TAG_FINAL + cucumber.serialize(
            state._replace(kind=kind, value=value, error=portable_error(state.error), timers=sendable))


_FRAME = struct.Struct("!i")  # multiprocessing.connection's length prefix

# Results that marshal carries as they are (exact types: it would turn a bytearray, or anything
# with a buffer, into bytes, and it refuses subclasses)
_MARSHAL_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


def _rebuild(data: Any) -> tuple[Any, Outcome | None]:
    """The instance from the start payload, or the error that prevented it. Under fork the
    payload may be the inherited instance itself (``_forkpayload.fork_payload``)."""
    if is_skprocess(data):
        return data, None
    try:
        proc = load_payload(data)
        if not is_skprocess(proc):
            raise TypeError(f"expected an Skprocess, got {type(proc).__name__}")
    except Exception as e:
        capture_traceback(e)
        err = ProcessError(f"the Skprocess could not be rebuilt in the child process: {type(e).__name__}: {e}", 0, e)
        return None, Outcome("raise", err)
    return proc, None


def _resume(proc: Any, checkpoint: Checkpoint) -> Outcome | None:
    """Continue from the previous life's last checkpoint; the error if it cannot be read."""
    try:
        resume(proc, checkpoint)
    except Exception as e:
        capture_traceback(e)
        return Outcome("raise", ProcessError(
            f"{type(proc).__qualname__} could not resume from its last checkpoint: {type(e).__name__}: {e}",
            checkpoint.run, e))
    return None


def child_main(
    data: Any,
    conn: mpc.Connection,
    ctrl: Any,
    close_in_child: Sequence[Any],
    pdeathsig: bool,
    ppid: int,
    checkpoint_fd: Any = None,
    fns: dict[str, Any] | None = None,
) -> None:
    """Entry point of the child process (target of ``multiprocessing.Process``).

    ``data``: the instance's cucumber bytes, or under fork maybe the instance itself
    (``_forkpayload.fork_payload``). ``checkpoint_fd`` (``.detach()`` gives the descriptor) is the parent's checkpoint file
    when this process checkpoints (``_checkpoint``); a later life resumes from it.
    ``fns``: under fork, the class's section methods, looked up by the parent before the
    fork (``_lifecycle.section_fns``): here each lookup would write pages the parent must copy.
    """
    ctrl[BOOTED] = 1.0  # multiprocessing's bootstrap (re-importing __main__ under spawn) is over
    for obj in close_in_child:  # fork: the parent's end of our pipe, so its EOF reaches us
        try:
            obj.close()
        except OSError:
            pass
    watch_parent = not (pdeathsig and set_pdeathsig(ppid))
    proc, outcome = _rebuild(data)
    checkpoint = None
    if checkpoint_fd is not None:
        checkpoint = Checkpoint(checkpoint_fd.detach(), type(proc).__qualname__ if proc is not None else "Skprocess")
        if outcome is None:
            outcome = _resume(proc, checkpoint)
    rt = ChildRuntime(conn, ctrl, watch_parent, checkpoint)
    if outcome is None:
        proc.__dict__[RUNTIME_ATTR] = rt
        outcome = Lifecycle(proc, ctrl, lives=int(ctrl[LIVES]), checkpoint=checkpoint, fns=fns).run()
    message = _final_message(proc, *outcome)
    rt.finishing = True
    try:
        rt.send_final(message)
    except OSError:  # parent gone
        pass
