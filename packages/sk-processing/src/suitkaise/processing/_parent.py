"""The parent side of a started ``Skprocess``: ``start()``, what the monitor does with its child.

Processes and channels of one ``start()``::

    parent process                                   child process (one per life lost to a crash)
    --------------                                   -------------
    user thread: start/tell/listen/wait/result       main thread: child_main -> Lifecycle.run()
         |  tell: conn.send_bytes(b"T"+cucumber)  ==>    reader thread: conn -> inbox (listen);
         |                                               EOF = parent gone -> os._exit
    monitor thread (one per parent, _monitor):   <==   tell: b"T"+cucumber   final: b"F"+cucumber
                                                             or b"M"+marshal (an atom result)
         waits on [conn, process sentinel] of every child                  ack: b"A"
         and on the nearest section deadline
         - b"T" -> inbox (parent's listen())
         - b"A" -> forget the oldest unacknowledged tell()
         - b"F"/b"M" -> final state: result/error, current_run, error, timers (kept as
           bytes until the sentinel: decoded once the child has exited)
         - sentinel after b"F" -> apply the final state, resolve result()
         - sentinel without b"F" -> crash: on a thread of its own, restart (lives
           left; the new child goes back to the monitor) or ProcessError
         - deadline + grace passed -> SIGKILL the child stuck in native code
    ctrl: 7 shared doubles (_runtime.new_ctrl):  [stop, deadline, timeout, section, run, lives, booted]

One ``start()``: the parent validates ``process_config``, creates the duplex
pipe and ``ctrl``, serializes the instance with cucumber (``_forkpayload``:
Pipe points carry their fd under every start method; under fork an instance of
atoms is not serialized, the child runs the one it inherits) and starts the child.
The child sets PR_SET_PDEATHSIG, rebuilds the instance (real class), applies
``@autoreconnect`` and runs the loop. ``stop()`` sets ``ctrl[stop]`` (checked
before each iteration and after prerun/run: ~100 ns). Section timeouts use
``setitimer`` in the child's main thread; the deadline is also published in
``ctrl`` so that the parent can replace a child stuck in code that never
returns to Python. The final message carries the child's state; the monitor
applies it to the parent's instance, then resolves ``result()``. No manager
process, no temp files, no shared-memory names.

tell() messages are never lost to a crash restart: the parent keeps each one
until the child acknowledges it (taken off the pipe); those the dead life had
not taken, then those told while it was being replaced, go to the next life
in order.
"""

from __future__ import annotations

import contextlib
import marshal
import multiprocessing.connection as mpc
import os
import select
import threading
import time
from collections import deque
from typing import IO, Any

from suitkaise import cucumber
from suitkaise.processing._checkpoint import create_file, read_saved, read_timers
from suitkaise.processing._child import child_main
from suitkaise.processing._config import validate
from suitkaise.processing._context import get_context
from suitkaise.processing._errors import (
    ProcessError,
    ProcessTimeoutError,
    ResultTimeoutError,
    attach_traceback,
    bootstrap_failure,
    check_can_start_processes,
    describe_exit,
    unsendable_attribute,
)
from suitkaise.processing._forkpayload import SpawnPayload, fd_for_child, fork_payload
from suitkaise.processing._lifecycle import check_sections, section_fns
from suitkaise.processing._monitor import is_forker, on_forker, watch
from suitkaise.processing._pdeathsig import preload as preload_libc
from suitkaise.processing._runtime import (
    BOOTED,
    DEADLINE,
    LIVES,
    RUN,
    RUNTIME_ATTR,
    SECTION,
    STOP,
    TAG_ACK,
    TAG_FINAL,
    TAG_FINAL_MARSHAL,
    TAG_TELL,
    TIMEOUT,
    FinalState,
    Outcome,
    SectionTimeout,
    min_timeout,
    new_ctrl,
)
from suitkaise.processing._sections import BY_CODE, KEYS
from suitkaise.processing._timers import ProcessTimers

__all__ = ["ParentRun", "start"]

_DEADLINE_POLL = 0.25
_TRIM_EVERY = 64  # with checkpoints: look at what the child consumed once this many messages wait


def _grace(timeout: float) -> float:
    """How long past a section deadline the parent waits before killing the child.

    The child's own SIGALRM normally fires at the deadline; the parent only
    steps in for code that never returns to Python, so the margin is generous
    (a loaded machine must not turn a normal timeout into a kill).
    """
    return 1.0 + 0.5 * timeout


def _section_name(code: float) -> str:
    section = BY_CODE.get(int(code))
    return "__run__" if section is None else section.dunder




class ParentRun:
    """Parent-side state of one ``start()``: child process, pipe, ctrl, monitor thread."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.ctx = get_context(owner.process_config.context)
        self.method = self.ctx.get_start_method()
        self.ctrl = new_ctrl(self.ctx)
        self.ctrl[LIVES] = owner.process_config.lives
        self.total_lives = owner.process_config.lives
        # One condition for the inbox and the outcome (settled once ``outcome`` is set): an
        # Event beside it was a second condition and lock to build, ~30 pages written per
        # start. An RLock: Condition's set-up then raises no AttributeError (a Lock's: three).
        self.cond = threading.Condition(threading.RLock())
        self.inbox: deque[bytes] = deque()
        self.outcome: Outcome | None = None
        self.killed = False
        self.consumed = False
        self.send_lock = threading.Lock()
        self.conn: mpc.Connection | None = None
        # Every tell() message, numbered, until it is known to be consumed: acknowledged by
        # the child (taken off its pipe), or covered by a checkpoint (listen()ed in a completed
        # iteration). A restarted life gets all the rest, in order.
        self.pending: deque[tuple[int, bytes]] = deque()
        self.told = 0
        self.acked = 0
        self.ack_lock = threading.Lock()  # guards pending/told/acked; never held while sending
        cfg = owner.process_config
        self.checkpoint: IO[bytes] | None = create_file() if cfg.checkpoint and cfg.lives > 1 else None
        self.process: Any = None
        # the child's final message (its tag and bytes), taken off the pipe as it arrives and
        # decoded once the child has exited: meanwhile the child may need this core to exit,
        # and every page written while it lives is copied
        self.final: bytes | None = None
        self.timeout_kill: SectionTimeout | None = None
        timeouts = owner.process_config.timeouts
        self.has_timeouts = any(getattr(timeouts, name) is not None for name in KEYS)

    # -- spawning ----------------------------------------------------------------------

    def spawn(self) -> None:
        """Start one child for the current life; raises SerializationError before spawning."""
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        owner = self.owner
        self.ctrl[BOOTED] = 0.0
        thread = threading.current_thread()
        # PR_SET_PDEATHSIG fires when the *thread* that forked the child ends: only
        # safe from the main thread or the monitor's long-lived forking thread (which
        # forks every restart); a child started from another thread of the user's
        # watches its pipe's EOF instead. Not under forkserver: the child's parent is
        # the fork server, which itself only exits once all its children (holding its
        # "alive" fd) are gone.
        pdeathsig = self.method != "forkserver" and (thread is threading.main_thread() or is_forker(thread))
        try:
            if self.method == "fork":
                preload_libc()
                payload: Any = fork_payload(owner)
                close_in_child: list[Any] = [parent_conn]
                ppid = os.getpid()
                # looked up here, not in the child (see child_main), when the child runs this
                # very instance, of this very class (a class may travel by value in bytes)
                fns = section_fns(type(owner)) if payload is owner else None
            else:
                payload = SpawnPayload(owner)
                close_in_child = []
                # forkserver: the parent of the child is the fork server
                ppid = os.getpid() if self.method == "spawn" else 0
                fns = None  # the child looks them up (functions of a local class do not pickle)
            checkpoint = None if self.checkpoint is None else fd_for_child(self.checkpoint.fileno(), self.method)
            process = self.ctx.Process(
                target=child_main,
                args=(payload, child_conn, self.ctrl, close_in_child, pdeathsig, ppid, checkpoint, fns),
                name=f"Skprocess-{type(owner).__qualname__}",
                daemon=False,
            )
            process.start()
        except BaseException as e:
            parent_conn.close()
            child_conn.close()
            if isinstance(e, cucumber.SerializationError):
                raise unsendable_attribute(owner, e) from e.__cause__
            raise
        child_conn.close()
        with self.send_lock:
            self.process = process  # before the pipe: tell() judges the pipe by this process
            self.conn = parent_conn
            if self.pending:  # (tell() appends under send_lock: nothing can arrive meanwhile)
                self._redeliver(parent_conn)
        self.final = None

    def _redeliver(self, conn: mpc.Connection) -> None:
        """Send a new life (under ``send_lock``) every message not known to be consumed: those
        the previous life had not taken, or (checkpointing) had taken in the iteration that
        did not complete, then those told while it was being replaced -- in the order told."""
        with self.ack_lock:
            self._trim()
            messages = [payload for _, payload in self.pending]
        for payload in messages:
            try:
                conn.send_bytes(payload)
            except OSError:
                return  # this child died too; the monitor restarts it (they stay pending) or reports

    def _trim(self) -> None:
        """Forget the messages known to be consumed (under ``ack_lock``)."""
        done = self.acked
        if self.checkpoint is not None:
            saved = read_saved(self.checkpoint.fileno())
            if saved is None:
                return  # being written right now: keep everything
            done = saved.consumed
        pending = self.pending
        while pending and pending[0][0] < done:
            pending.popleft()

    def begin(self, timers: ProcessTimers) -> None:
        """Start the first life. The owner gets ``timers`` after the spawn (its payload carries
        none: the child makes its own) and before the monitor (which may adopt the child's)."""
        try:
            self.spawn()
        except BaseException:
            if self.checkpoint is not None:
                self.checkpoint.close()
                self.checkpoint = None
            raise
        self.owner.__dict__["timers"] = timers
        self._watch()

    def _watch(self) -> None:
        assert self.conn is not None and self.process is not None
        watch(self, self.conn, self.process.sentinel)

    # -- called on the monitor thread (_monitor) -----------------------------------------

    def on_message(self, conn: mpc.Connection) -> None:
        self._handle(conn.recv_bytes())

    def on_exit(self, conn: mpc.Connection) -> None:
        """The child has exited. With its final message read, settle here; otherwise (a
        crash: restart or error) or with a tell() holding the pipe, on a thread of its own,
        so that the monitor goes back to the other children at once."""
        ready = select.poll()  # (Connection.poll builds a selector per call)
        ready.register(conn.fileno(), select.POLLIN)
        while ready.poll(0):  # what the child sent before it exited
            try:
                self._handle(conn.recv_bytes())
            except (EOFError, OSError):
                break
        self.process.join()
        if self.final is not None and self._close_conn(wait=0.0):
            self._resolve(self._adopt_final(self._read_final(self.final)))
        else:
            threading.Thread(target=self._after_crash, name="sk-restart", daemon=True).start()

    def check_deadline(self, now: float) -> float:
        """SIGKILL a child stuck past its section deadline + grace where SIGALRM cannot reach it
        (native code). The child does not message us when it enters a section, so without a
        deadline the monitor looks again a few times a second."""
        ctrl = self.ctrl
        deadline = ctrl[DEADLINE]
        if deadline <= 0:
            return _DEADLINE_POLL
        kill_at = deadline + _grace(ctrl[TIMEOUT])
        if now <= kill_at:
            return kill_at - now
        self.timeout_kill = SectionTimeout(_section_name(ctrl[SECTION]), float(ctrl[TIMEOUT]), int(ctrl[RUN]))
        ctrl[DEADLINE] = 0.0
        self.process.kill()
        return _DEADLINE_POLL

    def on_monitor_error(self, error: BaseException) -> None:
        try:
            self.process.kill()
        except (OSError, ValueError):
            pass
        self._close_conn(wait=0.0)
        self._resolve(Outcome("raise", ProcessError(f"internal error in the Skprocess monitor: {error!r}", 0, error)))

    # -- after a child exited without its final message --------------------------------

    def _after_crash(self) -> None:
        """Resolve the run, or replace the child and hand the new one to the monitor."""
        try:
            # Bounded: a tell() stuck on a full pipe must not keep the run from settling.
            self._close_conn(wait=5.0, force=True)
            if not self._on_exit(self.process.exitcode):
                return
            if self.killed:
                self._resolve(Outcome("killed", None))
                return
            try:
                on_forker(self.spawn)  # a long-lived thread: the new child keeps PR_SET_PDEATHSIG
            except BaseException as e:
                self._resolve(Outcome("raise", ProcessError(
                    f"{type(self.owner).__qualname__} could not be restarted after a crash: "
                    f"{type(e).__name__}: {e}", int(self.ctrl[RUN]), e)))
                return
            if self.killed:
                self.process.kill()
            self._watch()
        except BaseException as e:  # a bug here must not leave result() hanging
            self._resolve(Outcome("raise", ProcessError(f"internal error in the Skprocess monitor: {e!r}", 0, e)))

    def _close_conn(self, wait: float, force: bool = False) -> bool:
        """Close the parent's end of the pipe under ``send_lock``: a tell() racing with this
        close must not write to a reused descriptor (the next life's pipe); it finds None and
        buffers. False if a tell() held the lock for ``wait`` seconds (``force``: close anyway)."""
        locked = self.send_lock.acquire(timeout=wait) if wait > 0 else self.send_lock.acquire(blocking=False)
        if not (locked or force):
            return False
        try:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        finally:
            if locked:
                self.send_lock.release()
        return True

    def _handle(self, data: bytes) -> None:
        tag = data[:1]
        if tag == TAG_TELL:
            with self.cond:
                self.inbox.append(data[1:])
                self.cond.notify_all()
        elif tag == TAG_ACK:
            with self.ack_lock:
                self.acked += 1
                pending = self.pending
                while pending and pending[0][0] < self.acked:
                    pending.popleft()
        elif tag == TAG_FINAL or tag == TAG_FINAL_MARSHAL:
            self.final = data

    def _on_exit(self, exitcode: int | None) -> bool:
        """The child has exited: resolve the run, or return True to restart it."""
        if self.final is not None:
            self._resolve(self._adopt_final(self._read_final(self.final)))
            return False
        if self.killed:
            self._resolve(Outcome("killed", None))
            return False
        error, retry = self._crash_error(exitcode)
        self.timeout_kill = None
        saved = None if self.checkpoint is None else read_saved(self.checkpoint.fileno())
        if retry:
            # One life less; the next one resumes from the last checkpoint (else the start state).
            self.ctrl[LIVES] = int(self.ctrl[LIVES]) - 1
            self.ctrl[DEADLINE] = 0.0
            self.ctrl[RUN] = 0 if saved is None else saved.run
            return True
        d = self.owner.__dict__
        d["_current_run"] = error.current_run
        d["error"] = error
        if saved is not None and self.checkpoint is not None:
            d["timers"] = read_timers(self.checkpoint.fileno(), saved)
        self._resolve(Outcome("raise", error))
        return False

    def _read_final(self, final: bytes) -> FinalState | Outcome:
        """The child's final state (its message, tag included), or the error that it could not be read."""
        try:
            state = marshal.loads(final[1:]) if final[:1] == TAG_FINAL_MARSHAL else cucumber.deserialize(final[1:])
            if type(state) is tuple:  # the plain form (_child._final_message)
                state = FinalState(*state)
                state = state._replace(timers=ProcessTimers._unpack(state.timers))
        except Exception as e:
            return Outcome("raise", ProcessError(
                f"the final state sent by {type(self.owner).__qualname__} could not be read: "
                f"{type(e).__name__}: {e}", int(self.ctrl[RUN]), e))
        if not isinstance(state, FinalState):
            return Outcome("raise", ProcessError(
                f"the final state sent by {type(self.owner).__qualname__} is a "
                f"{type(state).__name__}, not a FinalState", int(self.ctrl[RUN])))
        return state

    def _adopt_final(self, state: FinalState | Outcome) -> Outcome:
        """Apply the child's final state to the parent's instance (decision 6)."""
        if isinstance(state, Outcome):
            return state
        d = self.owner.__dict__
        if state.has_state:
            d["_current_run"] = state.current_run
            d["error"] = state.error
            if state.timers is not None:
                d["timers"] = state.timers
        if state.kind == "raise":
            attach_traceback(state.value)
            self._name_process(state.value)
        self._name_process(d.get("error"))  # (a returned value stays as __result__ made it)
        return Outcome(state.kind, state.value)

    def _name_process(self, *errors: Any) -> None:
        """Say in the child's errors which process they come from (class and pid): the message
        made in the child does not (it is ``self.error`` there, as the user may show it)."""
        name = type(self.owner).__qualname__
        pid = getattr(self.process, "pid", None)
        for err in errors:
            if isinstance(err, ProcessError):
                err._note_process(name, pid)
                handled = getattr(err, "handled_error", None)
                if isinstance(handled, ProcessError):
                    handled._note_process(name, pid)

    def _crash_error(self, exitcode: int | None) -> tuple[ProcessError, bool]:
        """The error for a child that exited without a final message, and whether to restart."""
        name = type(self.owner).__qualname__
        pid = getattr(self.process, "pid", None)
        run = int(self.ctrl[RUN])
        if not self.ctrl[BOOTED] and self.method != "fork" and exitcode is not None and exitcode > 0:
            # Deterministic: every new child would fail the same way, so no restart.
            return ProcessError(bootstrap_failure(f"{name}: the child process", self.method, exitcode), run), False
        retry = int(self.ctrl[LIVES]) - 1 >= 1
        total = self.total_lives
        if self.timeout_kill is not None:
            section, timeout, run = self.timeout_kill
            error: ProcessError = ProcessTimeoutError(section, timeout, run)
            if not retry:
                error._note_lives(total)
            error._note_process(name, pid)
            return error, retry
        used = f", after {total} of {total} lives" if total > 1 else ""
        error = ProcessError(f"{name} (pid {pid}): process {describe_exit(exitcode)} (on run {run}{used})", run)
        error.lives = total
        error.process_name, error.pid = name, pid
        return error, retry

    def _resolve(self, outcome: Outcome) -> None:
        """Publish the outcome; the checkpoint file is closed first (nothing reads it after)."""
        with self.ack_lock:
            if self.checkpoint is not None:
                self.checkpoint.close()
                self.checkpoint = None
        # The exited child's sentinel and pipe descriptors go now, before result() returns:
        # the owner and this run refer to each other, so they would wait for the cyclic GC
        # (a service that runs many processes with the GC frozen ran out of descriptors).
        process = self.process
        if process is not None and process.exitcode is not None:
            with contextlib.suppress(ValueError):
                process.close()
        with self.cond:
            if self.outcome is None:
                self.outcome = outcome
            self.cond.notify_all()

    def settled(self) -> bool:
        """Whether the run has its outcome (result, error or killed)."""
        return self.outcome is not None

    def _wait_settled(self, timeout: float | None) -> bool:
        with self.cond:
            return self.cond.wait_for(self.settled, timeout)

    # -- API used by Skprocess -----------------------------------------------------------

    def stop(self) -> None:
        if not self.settled():
            self.ctrl[STOP] = 1.0

    def kill(self) -> None:
        if self.settled():
            return
        self.killed = True
        process = self.process
        if process is not None:
            try:
                process.kill()
            except (OSError, ValueError):
                pass
        self._wait_settled(10.0)

    def wait(self, timeout: float | None, sk_timeout: float | None) -> bool:
        limit = min_timeout(timeout, sk_timeout)
        if self._wait_settled(limit):
            return True
        if sk_timeout is not None and (timeout is None or sk_timeout <= timeout):
            raise ResultTimeoutError(f"wait() timed out after {sk_timeout}s")
        return False

    def result(self, sk_timeout: float | None, what: str = "result") -> Any:
        if not self._wait_settled(sk_timeout):
            raise ResultTimeoutError(f"{what}() timed out after {sk_timeout}s")
        self.consumed = True
        assert self.outcome is not None
        kind, value = self.outcome
        if kind == "raise":
            raise value
        if kind == "killed":
            return None
        return value

    def tell(self, data: Any) -> None:
        if self.consumed or self.settled():
            raise RuntimeError("Cannot tell() - process finished")
        payload = TAG_TELL + cucumber.serialize(data)
        with self.send_lock:
            with self.ack_lock:
                self.pending.append((self.told, payload))
                self.told += 1
                if self.checkpoint is not None and len(self.pending) > _TRIM_EVERY:
                    self._trim()
            conn = self.conn
            process = self.process
            # Between two lives (no pipe yet, or the child has exited and the monitor has
            # not replaced it yet), the message waits in pending for the restarted child. The
            # exit is read from the sentinel, not inferred from EPIPE: another process forked
            # while the pipe was being set up may hold a copy of the child's end.
            if conn is None or (process is not None and mpc.wait([process.sentinel], 0)):
                return
            try:
                conn.send_bytes(payload)
            except OSError:
                pass  # the child just died: if it is restarted, the new one gets the message

    def listen(self, timeout: float | None, sk_timeout: float | None) -> Any:
        if self.consumed:
            raise RuntimeError("Cannot listen() - process finished (result() was already collected)")
        limit = min_timeout(timeout, sk_timeout)
        end = None if limit is None else time.monotonic() + limit
        with self.cond:
            while not self.inbox:
                if self.outcome is not None:
                    return None  # finished and drained: nothing more can arrive
                if end is None:
                    self.cond.wait()
                    continue
                remaining = end - time.monotonic()
                if remaining <= 0:
                    if sk_timeout is not None and (timeout is None or sk_timeout <= timeout):
                        raise ResultTimeoutError(f"listen() timed out after {sk_timeout}s")
                    return None
                self.cond.wait(remaining)
            data = self.inbox.popleft()
        return cucumber.deserialize(data)

    def live_current_run(self) -> int | None:
        if self.settled():
            return None
        return int(self.ctrl[RUN])

    def is_alive(self) -> bool:
        return not self.settled()

    def describe(self) -> str:
        if not self.settled():
            pid = getattr(self.process, "pid", None)
            return f"running, pid {pid}"
        return "finished"


def start(owner: Any) -> None:
    """``Skprocess.start()``: validate, reset the run state, spawn, start the monitor."""
    d = owner.__dict__
    if "process_config" not in d:
        raise TypeError(
            f"{type(owner).__qualname__} was not initialised: its __init__ must run "
            "(do not bypass Skprocess.__init__ with __new__)"
        )
    rt = d.get(RUNTIME_ATTR)
    if isinstance(rt, ParentRun) and not rt.settled():
        raise RuntimeError("process already started")
    if rt is not None and not isinstance(rt, ParentRun):
        raise RuntimeError("start() cannot be called from inside the running Skprocess")
    validate(owner.process_config, type(owner).__qualname__)
    check_sections(type(owner), owner.process_config.runs, owner.process_config.join_in)
    check_can_start_processes(f"{type(owner).__qualname__}.start()")
    # Not in the payload: the child's Lifecycle makes its own. Ours are made before the fork
    # (after it, every page the parent writes is copied while the child lives).
    timers = ProcessTimers()
    d["timers"] = None
    d["error"] = None
    d["_current_run"] = 0
    d[RUNTIME_ATTR] = None  # the payload must not carry the previous run
    new = ParentRun(owner)
    new.begin(timers)
    d[RUNTIME_ATTR] = new
