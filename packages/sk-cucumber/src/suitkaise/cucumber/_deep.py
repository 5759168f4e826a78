"""Run a recursive function on a thread with a large stack.

pickle's C implementation recurses once per nesting level and stops at the
interpreter's recursion limit (1000 by default), which caps nesting at a few
hundred levels. Rather than a fixed cap, cucumber retries a call that hit the
limit on a helper thread with a large stack and a recursion limit sized to
that stack; if even that is too shallow it tries once more with a larger
stack. Only deep payloads pay for this, and depth is then bounded by memory.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Virtual address space: the kernel commits stack pages only as they are used.
STACK_TIERS = (1 << 30, 8 << 30)
# Measured on CPython 3.11: 180-220 bytes of C stack per recursion count of the
# C pickler; 512 leaves more than 2x headroom, so the limit trips before the stack.
BYTES_PER_LEVEL = 512

_limit_lock = threading.Lock()


class TooDeepError(RecursionError):
    """Even the largest stack tier could not hold the recursion."""


def is_recursion_error(exc: BaseException) -> bool:
    """pickle's "too deep" error (cloudpickle re-raises it as a PicklingError)."""
    return isinstance(exc, RecursionError) or isinstance(exc.__cause__, RecursionError)


def _run_with_stack(stack_bytes: int, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # re-raised in the caller's thread
            outcome.append((False, exc))

    old_limit = sys.getrecursionlimit()
    old_stack = threading.stack_size()
    sys.setrecursionlimit(max(old_limit, stack_bytes // BYTES_PER_LEVEL))
    try:
        threading.stack_size(stack_bytes)
        try:
            worker = threading.Thread(target=target, name="cucumber-deep", daemon=True)
            worker.start()
        finally:
            threading.stack_size(old_stack)
        worker.join()
    finally:
        sys.setrecursionlimit(old_limit)
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return,unused-ignore]
    raise value


def call_deep(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a large-stack thread; raises TooDeepError if no tier suffices."""
    with _limit_lock:
        last: BaseException | None = None
        for stack_bytes in STACK_TIERS:
            try:
                return _run_with_stack(stack_bytes, fn, args, kwargs)
            except Exception as exc:
                refused = isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)
                if not (refused or is_recursion_error(exc)):
                    raise
                last = exc  # too deep for this tier, or the OS refused so large a stack
        raise TooDeepError(
            f"nesting is deeper than {STACK_TIERS[-1] // BYTES_PER_LEVEL:,} levels"
        ) from last
