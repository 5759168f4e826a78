"""Exceptions travel with their type, ``args``, attributes, cause and context.

Plain pickle rebuilds an exception by calling ``cls(*args)``, which breaks for
user exceptions whose ``__init__`` takes other arguments, and it drops the
traceback. cucumber rebuilds without calling ``__init__`` and keeps the
formatted traceback as the string attribute ``__remote_traceback__``.
"""

from __future__ import annotations

import traceback
from typing import Any

from suitkaise.cucumber._registry import register

__all__ = ["remote_traceback"]


TB_ATTR = "__remote_traceback__"


def remote_traceback(exc: BaseException) -> str:
    """The traceback text that travels with ``exc``: the one it already brought from another
    process (a re-raised remote error keeps where it started), else its own, formatted now.
    Stored on ``exc`` as ``__remote_traceback__`` so that it survives the trip. The one
    capture of every sender (cucumber itself, Pool workers, Skprocess children)."""
    tb = _traceback_text(exc)
    if getattr(exc, "__dict__", {}).get(TB_ATTR) is not tb:
        try:
            setattr(exc, TB_ATTR, tb)
        except AttributeError:  # an exception type without __dict__
            pass
    return tb


def _traceback_text(exc: BaseException) -> str:
    tb = getattr(exc, "__dict__", {}).get(TB_ATTR)
    if isinstance(tb, str) and tb:
        return tb
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@register("builtins.BaseException")
def reduce_exception(exc: BaseException) -> Any:
    state = dict(getattr(exc, "__dict__", {}))
    if exc.__traceback__ is not None:  # serializing does not change the user's exception
        state[TB_ATTR] = _traceback_text(exc)
    # The type's own reduce knows the constructor arguments (OSError puts its
    # filename there, not in .args); __init__ is still never called.
    new_args = exc.args
    try:
        reduced = exc.__reduce__()
        if reduced[0] is type(exc) and isinstance(reduced[1], tuple):
            new_args = reduced[1]
    except Exception:
        pass
    return (
        _rebuild_exception,
        (type(exc), exc.args, new_args, state, exc.__cause__, exc.__context__, exc.__suppress_context__),
    )


def _rebuild_exception(
    cls: type[BaseException],
    args: tuple[Any, ...],
    new_args: tuple[Any, ...],
    state: dict[str, Any],
    cause: BaseException | None,
    context: BaseException | None,
    suppress_context: bool,
) -> BaseException:
    try:
        # __new__ (not __init__) so that OSError & co. still derive errno etc. from args.
        exc = cls.__new__(cls, *new_args)
    except Exception:
        exc = cls.__new__(cls)
    exc.args = args
    if state:
        try:
            exc.__dict__.update(state)
        except AttributeError:  # pragma: no cover - exception type without __dict__
            pass
    exc.__cause__ = cause
    exc.__context__ = context
    exc.__suppress_context__ = suppress_context
    return exc
