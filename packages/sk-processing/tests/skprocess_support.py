"""Skprocess subclasses used by the test_skprocess_* modules (importable in spawn children)."""

from __future__ import annotations

import os
import signal
import time
from fractions import Fraction

from suitkaise.processing import Skprocess
from suitkaise.timing import Sktimer


class Counter(Skprocess):
    def __init__(self, runs: int = 10) -> None:
        self.counter = 0
        self.process_config.runs = runs

    def __run__(self) -> None:
        self.counter += 1

    def __result__(self) -> int:
        return self.counter


class Logged(Skprocess):
    """Scenario 1/2 of the spec: every section appends (name, run)."""

    def __init__(self, runs: int = 4, lives: int = 2, fail_at: tuple[int, ...] = (2,), fail_times: int = 1):
        self.log: list[str] = []
        self.fail_at = fail_at
        self.fail_times = fail_times
        self.failures: dict[int, int] = {}
        self.process_config.runs = runs
        self.process_config.lives = lives

    def __prerun__(self) -> None:
        self.log.append(f"pre{self._current_run}")

    def __run__(self) -> None:
        self.log.append(f"run{self._current_run}")
        run = self._current_run
        if run in self.fail_at and self.failures.get(run, 0) < self.fail_times:
            self.failures[run] = self.failures.get(run, 0) + 1
            raise ValueError(f"boom at {self._current_run}")

    def __postrun__(self) -> None:
        self.log.append(f"post{self._current_run}")

    def __onfinish__(self) -> None:
        self.log.append("finish")

    def __result__(self) -> list[str]:
        return self.log


class Base(Skprocess):
    LIMIT = 3
    _private = "p"

    def __init__(self) -> None:
        self.items: list[int] = []
        self.process_config.runs = self.LIMIT

    def __run__(self) -> None:
        self.items.append(self.helper(self._current_run))

    def helper(self, x: int) -> int:
        return self.scale(x) + self.offset()

    @staticmethod
    def scale(x: int) -> int:
        return x * 10

    @classmethod
    def offset(cls) -> int:
        return len(cls.__name__)

    def _secret(self) -> str:
        return self._private

    def __len__(self) -> int:
        return len(self.items)

    def __result__(self) -> dict:
        return {
            "items": self.items,
            "cls": type(self).__qualname__,
            "is_base": isinstance(self, Base),
            "secret": self._secret(),
            "len": len(self),
            "tag": getattr(self, "tag", None),
        }


class Child(Base):
    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag


class Child2(Base):
    """No __init__: Base.__init__ must run."""


class GrandChild(Child):
    def __postrun__(self) -> None:
        self.items.append(-1)


class Echo(Skprocess):
    """Scenario 7: echo over tell/listen; 'quit' stops the child."""

    def __init__(self) -> None:
        self.msg = None

    def __prerun__(self) -> None:
        self.msg = self.listen(timeout=0.2)

    def __run__(self) -> None:
        if self.msg is None:
            return
        if self.msg == "quit":
            self.stop()
            return
        payload = self.msg(21) if callable(self.msg) else self.msg
        self.tell(("echo", payload, self._current_run))

    def __result__(self) -> str:
        return "bye"


class StopInRun(Skprocess):
    """Scenario 3, made deterministic: run 3 tells the parent, waits for 'go'."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def __prerun__(self) -> None:
        self.log.append(f"pre{self._current_run}")

    def __run__(self) -> None:
        self.log.append(f"run{self._current_run}")
        if self._current_run == 3:
            self.tell("in run 3")
            assert self.listen(timeout=30) == "go"

    def __postrun__(self) -> None:
        self.log.append(f"post{self._current_run}")

    def __onfinish__(self) -> None:
        self.log.append("finish")

    def __result__(self) -> list[str]:
        return self.log


class StopInPrerun(StopInRun):
    def __prerun__(self) -> None:
        super().__prerun__()
        if self._current_run == 1:
            self.stop()

    def __run__(self) -> None:
        self.log.append(f"run{self._current_run}")


class Forever(Skprocess):
    """Runs until stopped; tells its pid first."""

    def __init__(self, nap: float = 0.01) -> None:
        self.nap = nap
        self.n = 0

    def __prerun__(self) -> None:
        if self._current_run == 0:
            self.tell(os.getpid())

    def __run__(self) -> None:
        self.n += 1
        time.sleep(self.nap)

    def __result__(self) -> int:
        return self.n


class ErrorValue(Skprocess):
    def __init__(self, returns: str = "dict") -> None:
        self.returns = returns
        self.process_config.runs = 2

    def __run__(self) -> None:
        raise KeyError("k")

    def __error__(self):
        if self.returns == "dict":
            return {"status": "failed", "error": type(self.error).__name__}
        if self.returns == "none":
            return None
        if self.returns == "exception":
            return LookupError("from handler")
        if self.returns == "raise":
            raise OSError("handler broke")
        return self.error


class FailingFinish(Skprocess):
    def __init__(self, where: str) -> None:
        self.where = where
        self.finishes = 0
        self.process_config.runs = 1
        self.process_config.lives = 3

    def __onfinish__(self) -> None:
        self.finishes += 1
        if self.where == "onfinish":
            raise RuntimeError("finish failed")

    def __result__(self):
        if self.where == "result":
            raise RuntimeError("result failed")
        if self.where == "unserializable":
            return Untransferable()
        return self.finishes

    def __error__(self):
        return self.error


class Sleeper(Skprocess):
    """__run__ sleeps ``nap`` the first ``slow_times`` attempts (state kept across retries)."""

    def __init__(self, nap: float, timeout: float, lives: int = 1, slow_times: int = 99, section: str = "run"):
        self.nap = nap
        self.slow_times = slow_times
        self.attempts = 0
        self.section = section
        self.pids: list[int] = []
        self.process_config.runs = 1
        self.process_config.lives = lives
        setattr(self.process_config.timeouts, section, timeout)

    def _work(self) -> None:
        self.attempts += 1
        self.pids.append(os.getpid())
        if self.attempts <= self.slow_times:
            time.sleep(self.nap)

    def __run__(self) -> None:
        if self.section == "run":
            self._work()

    def __onfinish__(self) -> None:
        if self.section == "onfinish":
            self._work()

    def __result__(self):
        return {"attempts": self.attempts, "pids": self.pids}


class NativeBlock(Skprocess):
    """Blocks where SIGALRM cannot interrupt (signal masked + C sleep), unless the marker exists."""

    def __init__(self, marker: str, timeout: float, lives: int) -> None:
        self.marker = marker
        self.process_config.runs = 1
        self.process_config.lives = lives
        self.process_config.timeouts.run = timeout

    def __run__(self) -> None:
        if os.path.exists(self.marker):
            return
        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)

    def __result__(self) -> str:
        return "recovered"


class Crasher(Skprocess):
    """Dies hard in __run__ (how = exit/sigkill/segv) unless the marker file exists."""

    def __init__(self, how: str, lives: int = 1, marker: str | None = None) -> None:
        self.how = how
        self.marker = marker
        self.process_config.runs = 3
        self.process_config.lives = lives

    def __run__(self) -> None:
        if self._current_run != 1:
            return
        if self.marker is not None:
            if os.path.exists(self.marker):
                return
            with open(self.marker, "w") as f:
                f.write("crashed once")
        if self.how == "exit":
            os._exit(3)
        elif self.how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.how == "segv":
            import ctypes

            ctypes.string_at(0)
        elif self.how == "sysexit":
            raise SystemExit(4)

    def __result__(self) -> str:
        return "survived"


class PipeUser(Skprocess):
    def __init__(self, point) -> None:
        self.pipe = point
        self.process_config.runs = 1

    def __run__(self) -> None:
        command = self.pipe.recv()
        self.pipe.send({"doubled": command["value"] * 2})

    def __result__(self) -> str:
        return "done"


class SqliteUser(Skprocess):
    """Holds a live sqlite3 connection: cucumber sends a Reconnector, @autoreconnect revives it."""

    def __init__(self, conn) -> None:
        self.db = conn
        self.process_config.runs = 1

    def __run__(self) -> None:
        import sqlite3

        self.kind = type(self.db) is sqlite3.Connection
        self.rows = self.db.execute("select x from t order by x").fetchall()

    def __result__(self):
        return self.kind, self.rows


class Untransferable:
    """A result that cucumber cannot carry back to the parent."""

    def __reduce__(self):
        raise TypeError("this object refuses to leave its process")


class CrashThenListen(Skprocess):
    """First life: record its pid in `marker` and die; second life: wait for a message."""

    def __init__(self, marker):
        self.marker = marker
        self.process_config.runs = 1
        self.process_config.lives = 2

    def __run__(self):
        import os

        if not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
        self.got = self.listen(timeout=60)

    def __result__(self):
        return self.got


class FailsIn(Skprocess):
    """``section`` raises ``ValueError(message)`` every time it runs (from run ``at`` on)."""

    def __init__(self, section: str, message: str, lives: int = 1, at: int = 0) -> None:
        self.section = section
        self.message = message
        self.at = at
        self.process_config.runs = 5
        self.process_config.lives = lives

    def _maybe_fail(self, section: str) -> None:
        if self.section == section and self._current_run >= self.at:
            raise ValueError(self.message)

    def __prerun__(self) -> None:
        self._maybe_fail("prerun")

    def __run__(self) -> None:
        self._maybe_fail("run")

    def __postrun__(self) -> None:
        self._maybe_fail("postrun")

    def __onfinish__(self) -> None:
        self._maybe_fail("onfinish")

    def __result__(self) -> str:
        self._maybe_fail("result")
        return "no error"


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def _die_once(marker_dir: str, run: int) -> None:
    """SIGKILL this process the first time it reaches ``run`` (a marker file remembers)."""
    marker = os.path.join(marker_dir, f"killed-at-{run}")
    if os.path.exists(marker):
        return
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # not reached


class SelfKiller(Skprocess):
    """Appends each iteration's number to ``log`` (a side effect outside the process) and
    SIGKILLs itself the first time it reaches each run in ``kill_at``, before that side effect."""

    def __init__(self, log: str, marker_dir: str, runs: int, lives: int, kill_at: tuple[int, ...],
                 checkpoint: bool = True) -> None:
        self.log = log
        self.marker_dir = marker_dir
        self.kill_at = kill_at
        self.seen: list[int] = []
        self.pids: set[int] = set()
        self.process_config.runs = runs
        self.process_config.lives = lives
        self.process_config.checkpoint = checkpoint

    def __run__(self) -> None:
        run = self._current_run
        self.pids.add(os.getpid())
        if run in self.kill_at:
            _die_once(self.marker_dir, run)
        _append(self.log, str(run))
        self.seen.append(run)

    def __result__(self) -> dict:
        return {"seen": self.seen, "pids": len(self.pids)}


class ListenEachRun(Skprocess):
    """Takes one message per iteration (prerun) and records it after the iteration (postrun)."""

    def __init__(self, marker_dir: str, runs: int, lives: int, kill_at: int) -> None:
        self.marker_dir = marker_dir
        self.kill_at = kill_at
        self.msg = None
        self.got: list[tuple[int, object]] = []
        self.process_config.runs = runs
        self.process_config.lives = lives

    def __prerun__(self) -> None:
        self.msg = self.listen(timeout=60)

    def __run__(self) -> None:
        if self._current_run == self.kill_at:
            _die_once(self.marker_dir, self.kill_at)

    def __postrun__(self) -> None:
        self.got.append((self._current_run, self.msg))

    def __result__(self) -> list:
        return self.got


class BigState(Skprocess):
    """A state of ``nbytes`` (bytearray), changed every iteration, surviving a SIGKILL."""

    def __init__(self, marker_dir: str, nbytes: int, runs: int, lives: int, kill_at: int) -> None:
        self.marker_dir = marker_dir
        self.kill_at = kill_at
        self.blob = bytearray(nbytes)
        self.marks: list[int] = []
        self.pids: set[int] = set()
        self.process_config.runs = runs
        self.process_config.lives = lives

    def __run__(self) -> None:
        run = self._current_run
        self.pids.add(os.getpid())
        if run == self.kill_at:
            _die_once(self.marker_dir, run)
        self.blob[run] = run + 1
        self.blob[-1 - run] = run + 1
        self.marks.append(run + 1)

    def __result__(self) -> dict:
        n = len(self.marks)
        intact = list(self.blob[:n]) == self.marks and list(self.blob[-n:][::-1]) == self.marks
        return {"runs": n, "marks": self.marks if intact else None, "size": len(self.blob),
                "lives_used": len(self.pids)}


class Unpicklable(Skprocess):
    """Gains an attribute cucumber cannot serialize during iteration 1."""

    def __init__(self, runs: int, lives: int) -> None:
        self.process_config.runs = runs
        self.process_config.lives = lives

    def __run__(self) -> None:
        if self._current_run == 1:
            self.bad = Untransferable()

    def __result__(self) -> int:
        return self._current_run


def inline_life(parent_pid, fd, log, marker_dir, lives, result) -> None:
    """One Pool-worker life of a SelfKiller item: run_inline on the parent's checkpoint file."""
    from suitkaise.processing._checkpoint import Checkpoint
    from suitkaise.processing._inline import run_inline

    mine = os.open(f"/proc/{parent_pid}/fd/{fd}", os.O_RDWR)  # the same file as the parent's
    proc = SelfKiller(log, marker_dir, runs=100, lives=3, kill_at=(37, 71))
    out = run_inline(proc, lives=lives, checkpoint=Checkpoint(mine, "SelfKiller"))
    result.put({"seen": out["seen"], "run": proc.current_run, "timed": proc.timers.run.num_times})
    result.close()
    result.join_thread()


# Set at runtime by the test (never at import): a forked child inherits the change,
# a spawn or forkserver child imports this module afresh and sees the default.
RUNTIME_MARK = {"set": False}


def forked_from_this_parent(_item: object = None) -> bool:
    """True in a child that was forked from the test process (it inherited RUNTIME_MARK)."""
    return RUNTIME_MARK["set"]


class ReportsStart(Skprocess):
    """Returns whether its child inherited the parent's runtime state (fork) or not."""

    def __init__(self, context: str | None) -> None:
        self.process_config.runs = 1
        self.process_config.context = context

    def __result__(self) -> bool:
        return forked_from_this_parent()


class TimerReader(Skprocess):
    """Reads its own timers inside the loop: what it sees must be every iteration so far.

    At run ``window_at`` it sets ``max_times=2`` on the run timer, so from then on that
    timer keeps only the last two durations (the loop must honour a window set mid-run).
    """

    def __init__(self, runs: int, window_at: int | None = None) -> None:
        self.process_config.runs = runs
        self.window_at = window_at
        self.seen: list[tuple[int, int, int | None]] = []

    def __prerun__(self) -> None:
        if self.current_run == self.window_at:
            self.timers.run.set_max_times(2)

    def __run__(self) -> None:
        pass

    def __postrun__(self) -> None:
        run = self.timers.run
        # (current run, durations in the run timer, full_run's count before this iteration)
        self.seen.append((self.current_run, run.num_times, self.timers.full_run.num_times))

    def __result__(self) -> list[tuple[int, int, int | None]]:
        return self.seen


class CustomTimed(Skprocess):
    """Replaces its run timer with an Sktimer subclass (the final message's fallback form)."""

    def __init__(self) -> None:
        self.process_config.runs = 3

    def __prerun__(self) -> None:
        if self.current_run == 0:
            self.timers.run = LabelledTimer("mine")

    def __run__(self) -> None:
        pass

    def __result__(self) -> object:
        return {"ratio": Fraction(1, 3)}  # not builtin data: the full form of the message


class LabelledTimer(Sktimer):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label


class CrashThenSpin(Skprocess):
    """Its first life dies hard; the next tells its pid, then holds the GIL in native code
    (its reader thread, the fallback that ends a child whose parent died, cannot run)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.process_config.lives = 2

    def __run__(self) -> None:
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        self.tell(os.getpid())  # written to the pipe by this thread, before it returns
        sum(range(10**14))  # one C call: the GIL is held for hours


SHARED_ITEMS = [1, 2]


class HoldsSharedList(Skprocess):
    """Holds a module-level list: the child must work on a copy, not on the list it
    inherited under fork (a fork child skips the copy only for instances of atoms)."""

    def __init__(self) -> None:
        self.process_config.runs = 1
        self.items = SHARED_ITEMS

    def __run__(self) -> None:
        self.items.append(3)

    def __result__(self) -> tuple[bool, list[int], list[int]]:
        return self.items is SHARED_ITEMS, list(self.items), list(SHARED_ITEMS)


class PausesItsTimer(Skprocess):
    """Two loop iterations, then one span with a pause on its own ``full_run`` timer."""

    def __init__(self) -> None:
        self.process_config.runs = 2

    def __onfinish__(self) -> None:
        timer = self.timers.full_run
        timer.start()
        timer.pause()
        time.sleep(0.02)
        timer.resume()
        timer.stop()


class Returns(Skprocess):
    """Returns the value it was given, after ``runs`` iterations."""

    def __init__(self, value: object, runs: int = 2) -> None:
        self.value = value
        self.process_config.runs = runs

    def __run__(self) -> None:
        pass

    def __result__(self) -> object:
        return self.value


class CatchesOSError(Skprocess):
    """A section with its own ``except OSError``/``except TimeoutError`` around a blocking call:
    the section timeout must not be swallowed by them."""

    def __init__(self, timeout: float) -> None:
        self.swallowed = 0
        self.process_config.runs = 1
        self.process_config.timeouts.run = timeout

    def __run__(self) -> None:
        try:
            time.sleep(30)
        except TimeoutError:
            self.swallowed += 1
        except OSError:
            self.swallowed += 1

    def __result__(self) -> int:
        return self.swallowed


class ReportsPid(Skprocess):
    """``__run__`` raises LookupError; ``__error__`` tells the parent its pid and its own str(self.error)."""

    def __init__(self, handle: bool = False) -> None:
        self.handle = handle
        self.process_config.runs = 1

    def __run__(self) -> None:
        raise LookupError("no such key")

    def __error__(self):
        self.tell((os.getpid(), str(self.error)))
        return {"seen": str(self.error)} if self.handle else self.error


class Holds(Skprocess):
    """Carries ``value`` as the attribute ``held`` (nested in a dict when ``nested``)."""

    def __init__(self, value, nested: bool = False) -> None:
        self.held = {"jobs": [value]} if nested else value
        self.process_config.runs = 1

    def __run__(self) -> None:
        pass

    def __result__(self) -> str:
        return "sent"
