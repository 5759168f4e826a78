"""Find *where* inside an object a serialization failure comes from.

The C pickler only says what failed, not where. When ``serialize`` fails,
cucumber walks down from the root, pickling each child on its own and
descending into the first child that fails, until it reaches an object whose
children all pickle: that object is the culprit. The walk only runs on the
error path, so successful calls pay nothing for it.
"""

from __future__ import annotations

import copyreg
import io
import itertools
from collections.abc import Iterator
from typing import Any

from suitkaise.cucumber._deep import deep_dumps, failure_chain, is_recursion_error
from suitkaise.cucumber._pickler import CucumberPickler, dumps

__all__ = ["locate"]

_ATOMIC = (type(None), bool, int, float, complex, str, bytes, bytearray)


def _try_dump(obj: Any) -> BaseException | None:
    try:
        try:
            dumps(obj)
        except Exception as exc:
            if not is_recursion_error(exc):
                raise
            deep_dumps(obj)
    except Exception as exc:
        failure_chain(exc)  # not needed here: release the objects it holds
        return exc
    return None


def format_path(labels: list[str], keep_head: int = 4, keep_tail: int = 6) -> str:
    """``root.jobs[3].lock``; a very deep path keeps its two ends."""
    if len(labels) > keep_head + keep_tail + 1:
        hidden = len(labels) - keep_head - keep_tail
        labels = [*labels[:keep_head], f"...({hidden} more levels)...", *labels[-keep_tail:]]
    return "root" + "".join(labels)


def _label_for_key(key: Any) -> str:
    return f"[{key!r}]"


def _reduce(obj: Any) -> Any:
    """The reduce value pickle would use for ``obj`` (raises if that fails)."""
    rv = CucumberPickler(io.BytesIO()).reducer_override(obj)
    if rv is NotImplemented:
        reducer = copyreg.dispatch_table.get(type(obj))
        rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(5)
    return rv


def _state_children(state: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(state, dict):
        for key, value in list(state.items()):
            yield (f".{key}" if isinstance(key, str) and key.isidentifier() else _label_for_key(key)), value
    elif isinstance(state, tuple) and len(state) == 2 and all(
        s is None or isinstance(s, dict) for s in state
    ):
        for part in state:
            if part:
                yield from _state_children(part)
    elif state is not None:
        yield ".__getstate__()", state


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for i, (key, value) in enumerate(list(obj.items())):
            if not isinstance(key, _ATOMIC):
                yield f".keys()[{i}]", key
            yield _label_for_key(key), value
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield f"[{i}]", value
        return
    if isinstance(obj, (set, frozenset)):
        for i, value in enumerate(obj):
            yield f"<set item {i}>", value
        return
    rv = _reduce(obj)
    if not isinstance(rv, tuple):
        return
    args = rv[1] if len(rv) > 1 else ()
    for i, arg in enumerate(args or ()):
        if isinstance(arg, type):
            continue
        yield f"<arg {i}>", arg
    if len(rv) > 2:
        yield from _state_children(rv[2])
    if len(rv) > 3 and rv[3] is not None:
        for i, item in enumerate(rv[3]):
            yield f"[{i}]", item
    if len(rv) > 4 and rv[4] is not None:
        for key, value in rv[4]:
            yield _label_for_key(key), value


def _along(chain: list[Any], error: BaseException) -> tuple[str, Any, BaseException]:
    """The path through a known chain of objects (one reduce per level: linear in depth)."""
    labels: list[str] = []
    for parent, child in itertools.pairwise(chain):
        label = f"<{type(child).__qualname__}>"  # a reducer built it afresh: no stable name
        try:
            for candidate_label, candidate in _children(parent):
                if candidate is child:
                    label = candidate_label
                    break
        except Exception:
            pass
        labels.append(label)
    return format_path(labels), chain[-1], error


def locate(root: Any, error: BaseException) -> tuple[str, Any, BaseException]:
    """``(path, culprit, its error)`` for a root object whose serialization raised ``error``."""
    chain = failure_chain(error)
    if chain is not None and chain and chain[0] is root:
        return _along(chain, error)
    labels: list[str] = []
    obj, exc = root, error
    seen = {id(root)}
    while True:
        try:
            children = list(_children(obj))
        except Exception as reduce_error:  # the object itself refuses to be reduced
            return format_path(labels), obj, reduce_error
        for label, child in children:
            if isinstance(child, _ATOMIC) or id(child) in seen:
                continue
            seen.add(id(child))
            child_error = _try_dump(child)
            if child_error is not None:
                labels.append(label)
                obj, exc = child, child_error
                break
        else:
            return format_path(labels), obj, exc
