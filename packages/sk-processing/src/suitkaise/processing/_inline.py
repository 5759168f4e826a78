"""``run_inline``: the whole lifecycle of an ``Skprocess`` in the current process.

Pool workers run ``Skprocess`` items this way (one worker process, no child
per item). There is no other side to talk to, so ``tell``/``listen`` raise;
``stop()`` (or the caller's ``stop_event``) ends the loop.
"""

from __future__ import annotations

from typing import Any

from suitkaise.processing._checkpoint import Checkpoint, resume
from suitkaise.processing._config import validate
from suitkaise.processing._lifecycle import Lifecycle, check_sections
from suitkaise.processing._runtime import CTRL_SLOTS, RUNTIME_ATTR, STOP, is_skprocess

__all__ = ["InlineRuntime", "run_inline"]


class InlineRuntime:
    """Runtime of an Skprocess running inside the current process (implements ``Runtime``)."""

    def __init__(self, ctrl: list[float]) -> None:
        self.ctrl = ctrl

    def stop(self) -> None:
        self.ctrl[STOP] = 1.0

    def kill(self) -> None:
        self.ctrl[STOP] = 1.0

    def tell(self, data: Any) -> None:
        raise RuntimeError(
            "tell() is not available for an Skprocess running inline (e.g. inside a Pool worker): "
            "there is no other side to talk to; return data from __result__ or use a Share/Pipe"
        )

    def listen(self, timeout: float | None, sk_timeout: float | None) -> Any:
        raise RuntimeError(
            "listen() is not available for an Skprocess running inline (e.g. inside a Pool worker): "
            "there is no other side to talk to; pass data in __init__ or use a Share/Pipe"
        )

    def wait(self, timeout: float | None, sk_timeout: float | None) -> bool:
        raise RuntimeError("wait() cannot be called from inside the running Skprocess")

    def result(self, sk_timeout: float | None, what: str = "result") -> Any:
        raise RuntimeError(f"{what}() cannot be called from inside the running Skprocess")

    def live_current_run(self) -> int | None:
        return None

    def is_alive(self) -> bool:
        return True

    def describe(self) -> str:
        return "running inline"


def run_inline(
    process: Any,
    stop_event: Any = None,
    *,
    lives: int | None = None,
    checkpoint: Checkpoint | None = None,
) -> Any:
    """Run ``process``'s whole lifecycle in THIS process and return its result.

    Used by Pool workers. Applies ``@autoreconnect`` first, honours lives,
    section timeouts (SIGALRM on the main thread, a watcher thread elsewhere),
    ``__onfinish__``/``__result__``/``__error__`` semantics, and ``stop()``
    (or ``stop_event.is_set()``, any object with ``is_set()``). Returns the
    result, or ``__error__``'s non-exception value; raises the ProcessError
    subclass otherwise. ``tell``/``listen`` raise ``RuntimeError`` inside.
    ``lives`` (default: ``process_config.lives``) is what is left of them.
    ``checkpoint`` records each completed iteration; when it already holds one
    (an earlier worker died running this item), the run continues from there.
    """
    if not is_skprocess(process):
        raise TypeError(f"run_inline() needs an Skprocess instance, got {type(process).__name__}")
    validate(process.process_config, type(process).__qualname__)
    check_sections(type(process), process.process_config.runs, process.process_config.join_in)
    if checkpoint is not None:
        resume(process, checkpoint)
    ctrl = [0.0] * CTRL_SLOTS
    d = process.__dict__
    previous = d.get(RUNTIME_ATTR)
    d[RUNTIME_ATTR] = InlineRuntime(ctrl)
    try:
        kind, value = Lifecycle(process, ctrl, stop_event=stop_event, lives=lives, checkpoint=checkpoint).run()
    finally:
        d[RUNTIME_ATTR] = previous
    if kind == "raise":
        raise value
    return value
