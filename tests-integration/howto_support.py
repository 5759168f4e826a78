"""Module-level classes and placeholder functions for test_howto_examples.py.

Every class body below is copied from processing-how-to-use.md; only the
page's placeholders (``fetch_next_batch``, ``process``, ``log_error``,
``heavy_computation``, ``process_command``, ``cleanup_resources`` ...) are
filled with small real functions. They live in an importable module so that
spawn/forkserver children can import them by reference.
"""

from __future__ import annotations

import itertools
import os
import sys
import time

from suitkaise.processing import Skprocess

# -- placeholders ------------------------------------------------------------------

_batch_numbers = itertools.count()
PROCESSED: list[int] = []  # filled in the child by process(item)


def fetch_next_batch() -> list[int]:
    """Batch n is [3n, 3n+1, 3n+2] (n counts calls in this process)."""
    n = next(_batch_numbers)
    return [3 * n, 3 * n + 1, 3 * n + 2]


def process(item: int) -> None:
    PROCESSED.append(item)


def log_error(error: BaseException) -> None:
    # Child's stderr is the test's fd 2 (captured by capfd).
    print(f"LOGGED-ERROR {type(error).__name__}: {error}", file=sys.stderr, flush=True)


def heavy_computation(item: int) -> int:
    return sum(i * i for i in range(item))


def process_item(x: int) -> int:
    return x * x


def fn(*args: object) -> tuple[object, ...]:
    """Shows exactly what the worker received."""
    return args


def slow_fn(x: float) -> float:
    time.sleep(x)
    return x


def mark_and_sleep(path: str) -> None:
    """Pool task: announce that it runs (creates ``path``), then block for a long time."""
    with open(path, "a"):
        pass
    time.sleep(60)


def process_command(command: dict) -> dict:
    if command.get("action") == "compute":
        return {"action": "compute", "result": command["value"] * 2}
    return {"error": f"unknown action {command.get('action')!r}"}


# -- Skprocess section --------------------------------------------------------------

class MyProcess(Skprocess):
    def __init__(self):
        self.counter = 0
        self.process_config.runs = 10

    def __run__(self):
        self.counter += 1

    def __result__(self):
        return self.counter


class BatchProcess(Skprocess):
    """The page's __prerun__ and __run__ snippets."""

    def __init__(self):
        self.process_config.runs = 3

    def __prerun__(self):
        self.data = fetch_next_batch()

    def __run__(self):
        for item in self.data:
            process(item)

    def __result__(self):
        return list(PROCESSED)


class RecordingProcess(Skprocess):
    """The page's __postrun__, __onfinish__ and __result__ snippets."""

    def __init__(self):
        self.counter = 0
        self.results = []
        self.batch_result = None
        self.process_config.runs = 4

    def __run__(self):
        self.counter += 1
        self.batch_result = self.counter * 10

    def __postrun__(self):
        self.results.append(self.batch_result)
        self.batch_result = None

    def __onfinish__(self):
        self.cleanup_resources()
        self.save_final_state()

    def cleanup_resources(self):
        self.tell("cleaned up")

    def save_final_state(self):
        self.tell({"saved": list(self.results), "batch_result": self.batch_result})

    def __result__(self):
        return {
            'count': self.counter,
            'results': self.results,
            'status': 'completed'
        }


class FailingWithHandler(Skprocess):
    """The page's __error__ snippet."""

    def __init__(self):
        self.process_config.runs = 3

    def __run__(self):
        if self._current_run == 1:
            raise ValueError("bad batch 1")

    def __error__(self):
        log_error(self.error)
        return {'status': 'failed', 'error': str(self.error)}


class FailingWithoutHandler(Skprocess):
    """Default __error__: result() raises self.error."""

    def __init__(self):
        self.process_config.runs = 3

    def __run__(self):
        if self._current_run == 1:
            raise ValueError("bad batch 1")


class HundredRuns(Skprocess):
    def __init__(self):
        # run 100 iterations, then stop
        self.process_config.runs = 100
        self.n = 0

    def __run__(self):
        self.n += 1

    def __result__(self):
        return self.n


class JoinInProcess(Skprocess):
    def __init__(self):
        # stop after 60 seconds
        self.process_config.join_in = 60.0
        self.n = 0

    def __run__(self):
        self.n += 1
        if self.n == 3:
            self.stop()

    def __result__(self):
        return self.n


class ShortJoinIn(Skprocess):
    """join_in as a real limit: runs=None, stops by itself."""

    def __init__(self):
        self.process_config.runs = None
        self.process_config.join_in = 0.5
        self.n = 0

    def __run__(self):
        self.n += 1
        time.sleep(0.01)

    def __result__(self):
        return self.n


class ThreeLives(Skprocess):
    def __init__(self, failures):
        # retry up to 2 times (3 total attempts)
        self.process_config.lives = 3
        self.process_config.runs = 2
        self.failures = failures
        self.attempts = []

    def __run__(self):
        self.attempts.append(self._current_run)
        if len(self.attempts) <= self.failures:
            raise RuntimeError(f"crash {len(self.attempts)}")

    def __result__(self):
        return self.attempts


class AllTimeouts(Skprocess):
    def __init__(self):
        self.process_config.timeouts.prerun = 5.0
        self.process_config.timeouts.run = 30.0
        self.process_config.timeouts.postrun = 5.0
        self.process_config.timeouts.onfinish = 10.0
        self.process_config.timeouts.result = 5.0
        self.process_config.timeouts.error = 5.0
        self.process_config.runs = 2
        self.sections = []

    def __prerun__(self):
        self.sections.append("prerun")

    def __run__(self):
        self.sections.append("run")

    def __postrun__(self):
        self.sections.append("postrun")

    def __onfinish__(self):
        self.sections.append("onfinish")

    def __result__(self):
        return self.sections


class SlowRun(Skprocess):
    def __init__(self):
        self.process_config.runs = 1
        self.process_config.timeouts.run = 0.3

    def __run__(self):
        time.sleep(30)


class CrashOnce(Skprocess):
    """Dies hard (os._exit(3)) on its first attempt; the marker file remembers it."""

    def __init__(self, marker, lives=2):
        self.marker = marker
        self.process_config.lives = lives
        self.process_config.runs = 1

    def __run__(self):
        if not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os._exit(3)

    def __result__(self):
        return "survived"


class Forever(Skprocess):
    """runs=None: loops until stop(); tells the parent once it is running."""

    def __init__(self):
        self.n = 0
        self.finished = False

    def __run__(self):
        self.n += 1
        time.sleep(0.01)

    def __postrun__(self):
        if self.n == 1:
            self.tell("running")

    def __onfinish__(self):
        self.finished = True

    def __result__(self):
        return {"n": self.n, "finished": self.finished}


class Silent(Skprocess):
    """runs=None, never tells; waits for stop()."""

    def __run__(self):
        time.sleep(0.02)


class CommandProcess(Skprocess):
    """The page's tell()/listen() snippets."""

    def __init__(self):
        self.process_config.runs = 3
        self.size = 0
        self.batch = []

    def handle_command(self, command):
        if command["command"] == "update_config":
            self.size = command["value"]

    def __prerun__(self):
        command = self.listen(timeout=1.0)
        if command:
            self.handle_command(command)

    def __run__(self):
        self.batch = list(range(self.size))

    def __postrun__(self):
        self.tell({"status": "batch_complete", "count": len(self.batch)})


class TimedProcess(Skprocess):
    def __init__(self):
        self.process_config.runs = 5

    def __prerun__(self):
        time.sleep(0.001)

    def __run__(self):
        time.sleep(0.002)

    def __postrun__(self):
        time.sleep(0.001)


class ProcessItem(Skprocess):
    def __init__(self, item):
        self.item = item
        self.process_config.runs = 1

    def __run__(self):
        self.result_data = heavy_computation(self.item)

    def __result__(self):
        return self.result_data


class IncrementProcess(Skprocess):
    def __init__(self, share):
        self.share = share
        self.process_config.runs = 10

    def __postrun__(self):
        self.share.counter += 1


class PipeProcess(Skprocess):
    def __init__(self, pipe_point):
        self.pipe = pipe_point
        self.process_config.runs = 1

    def __run__(self):
        # receive command
        command = self.pipe.recv()

        # process it
        result = process_command(command)

        # send result back
        self.pipe.send(result)


class OneWayReader(Skprocess):
    def __init__(self, point):
        self.point = point
        self.process_config.runs = 1

    def __run__(self):
        self.got = [self.point.recv(), self.point.recv()]

    def __result__(self):
        return self.got


# -- one failing section per error class ---------------------------------------------

class FailIn(Skprocess):
    """Raises ValueError in the named section."""

    def __init__(self, section):
        self.section = section
        self.process_config.runs = 2

    def _maybe(self, name):
        if self.section == name and self._current_run == 1:
            raise ValueError(f"boom in {name}")

    def __prerun__(self):
        self._maybe("prerun")

    def __run__(self):
        self._maybe("run")

    def __postrun__(self):
        self._maybe("postrun")

    def __onfinish__(self):
        if self.section == "onfinish":
            raise ValueError("boom in onfinish")

    def __result__(self):
        if self.section == "result":
            raise ValueError("boom in result")
        return "ok"



class FailThenBadHandler(FailIn):
    def __init__(self):
        super().__init__("run")
        self.section = "run"

    def __error__(self):
        raise KeyError("handler broke")
