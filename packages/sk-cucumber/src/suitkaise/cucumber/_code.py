"""Code objects travel with their real file name, line numbers and source lines.

cloudpickle rebuilds the code of a by-value function (one defined in
``__main__``, a lambda, a closure) with ``co_filename = "<dynamic-code>"``, so
a traceback formatted in a worker says ``File "<dynamic-code>", line 6`` and
shows no source, exactly where a user needs it most. cucumber instead ships a
code object as ``marshal`` bytes, which keep ``co_filename``, the line table and
everything else (the sender and the receiver run the same Python, as they must
for cloudpickle's own code rebuild).

Code whose source a receiver may not have (the ``__main__`` script, IPython
cells, or code that itself arrived carrying its source) also carries the
source lines it spans. On load they are entered into ``linecache``, so
``traceback`` shows the line text even when the file is missing on the
receiving machine or was deleted since. The entry keeps the rest of the file
when it is readable, and is marked as not backed by the disk (``mtime`` None,
as IPython does for cells), so ``linecache.checkcache`` leaves it alone.

A by-value function's state leaves out what the rebuilt function gets anyway
(its name and qualified name when they are its code's, ``None`` defaults and
docstring, empty annotations, no submodules to import): for small functions
those entries were about a quarter of the payload, and their absence pays for
the source lines.
"""

from __future__ import annotations

import linecache
import marshal
import opcode
import sys
import threading
import types
import weakref
from collections.abc import Iterable
from typing import Any

import cloudpickle

from suitkaise.cucumber._registry import register

__all__: list[str] = []

# What travels for one code object: (file name, marshal bytes without the file
# name, first carried line, carried source text). The file name goes once per
# payload (pickle's memo), not once per code object inside each marshal blob.
_Reduced = tuple[str, bytes, int, str]
_reduced: weakref.WeakKeyDictionary[types.CodeType, _Reduced] = weakref.WeakKeyDictionary()
_loaded: dict[tuple[str, bytes], types.CodeType] = {}  # code objects are immutable: share them
_LOADED_LIMIT = 1024

# Instructions of a function's prologue, which sit on its ``def`` line: a line
# holding only these never shows in a traceback, so it does not travel.
_PROLOGUE = {
    opcode.opmap[name]
    for name in ("RESUME", "MAKE_CELL", "COPY_FREE_VARS", "RETURN_GENERATOR", "POP_TOP", "NOP", "CACHE",
                 "EXTENDED_ARG")
    if name in opcode.opmap
}

# filename -> {line number: text} carried in so far, and the list installed in linecache
_carried: dict[str, dict[int, str]] = {}
_installed: dict[str, list[str]] = {}
_lock = threading.Lock()


def _shown_lines(code: types.CodeType, out: set[int]) -> set[int]:
    """Line numbers a traceback through ``code`` (or code nested in it) can show."""
    raw = code.co_code
    for start, end, line in code.co_lines():
        if line is not None and line not in out:
            if line != code.co_firstlineno or any(raw[i] not in _PROLOGUE for i in range(start, end, 2)):
                out.add(line)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _shown_lines(const, out)
    return out


def _source_may_be_missing(filename: str) -> bool:
    """True for the script run as ``__main__`` and for sources held only in linecache."""
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__file__", None) == filename:
        return True
    entry = linecache.cache.get(filename)
    return entry is not None and len(entry) == 4 and entry[1] is None


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    consts = code.co_consts
    if any(isinstance(c, types.CodeType) for c in consts):
        consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _reduce(code: types.CodeType) -> _Reduced:
    filename = code.co_filename
    blob = marshal.dumps(_with_filename(code, ""))
    first, text = 0, ""
    if _source_may_be_missing(filename):
        shown = _shown_lines(code, set())
        lines = linecache.getlines(filename)
        if shown and max(shown) <= len(lines):
            first = min(shown)
            text = "".join(lines[first - 1 : max(shown)])
    return (filename, blob, first, text)


@register("builtins.code")
def reduce_code(code: types.CodeType) -> Any:
    try:
        reduced = _reduced[code]
    except KeyError:
        try:
            reduced = _reduce(code)
        except ValueError:  # a constant marshal cannot write (hand-built code): cloudpickle's way
            return NotImplemented
        _reduced[code] = reduced
    if not reduced[3]:
        return (_load_code, reduced[:2])
    return (_load_code, reduced)


def _load_code(filename: str, blob: bytes, first: int = 0, text: str = "") -> types.CodeType:
    key = (filename, blob)
    code = _loaded.get(key)
    if code is None:
        loaded = marshal.loads(blob)
        if not isinstance(loaded, types.CodeType):
            raise TypeError(f"expected marshalled code, got {type(loaded).__name__}")
        code = _with_filename(loaded, filename)
        if len(_loaded) >= _LOADED_LIMIT:
            _loaded.clear()
        _loaded[key] = code
    if text:
        parts = text.split("\n")  # not str.splitlines(): linecache splits at newlines only
        lines = [part + "\n" for part in parts[:-1]]
        if parts[-1]:
            lines.append(parts[-1])
        remember_source(filename, first, lines)
    return code


def remember_source(filename: str, first: int, lines: list[str]) -> None:
    """Make ``linecache`` answer ``lines`` for ``filename`` from line ``first`` on.

    The first time a file is seen, its readable lines (if any) are kept and
    the carried ones laid over them: carried lines are the source of the code
    that actually runs.
    """
    owned = _installed.get(filename)
    entry = linecache.cache.get(filename)
    if (
        owned is not None
        and entry is not None
        and len(entry) == 4
        and entry[2] is owned
        and owned[first - 1 : first - 1 + len(lines)] == lines
    ):
        return  # already there (the common case: the same function again)
    with _lock:
        carried = _carried.setdefault(filename, {})
        new = list(enumerate(lines, first))
        carried.update(new)
        owned = _installed.get(filename)
        entry = linecache.cache.get(filename)
        if owned is None or entry is None or len(entry) != 4 or entry[2] is not owned:
            owned = list(linecache.getlines(filename))  # the file on this machine, if any
            _installed[filename] = owned
            spans: Iterable[tuple[int, str]] = carried.items()
        else:
            spans = new
        end = max(carried)
        if len(owned) < end:
            owned.extend("\n" for _ in range(end - len(owned)))
        for number, text in spans:
            owned[number - 1] = text
        linecache.cache[filename] = (len(owned), None, owned, filename)  # mtime None: not on disk


def keep_source(filename: str | None) -> None:
    """Snapshot ``filename``'s lines into ``linecache`` (once per process).

    Used when a ``__main__`` class resolves to the receiver's own copy (a fork
    child, a spawn child that re-imported the script): its code never travelled,
    so its source is whatever the disk holds; keeping it now means a later
    traceback still shows it if the script is deleted or edited meanwhile.
    """
    if not filename:
        return
    owned = _installed.get(filename)
    entry = linecache.cache.get(filename)
    if owned is not None and entry is not None and len(entry) == 4 and entry[2] is owned:
        return
    lines = list(linecache.getlines(filename))
    if lines:
        remember_source(filename, 1, lines)


# -- functions -------------------------------------------------------------------------

_make_function = cloudpickle.cloudpickle._make_function
_cloudpickle_function_setstate = cloudpickle.cloudpickle._function_setstate


def slim_function_reduce(func: types.FunctionType, reduced: Any) -> Any:
    """cloudpickle's reduce tuple for ``func`` without the state entries the receiver
    already has: ``_make_function(code, globals, None, None, closure)`` gives the code's
    name and qualified name, ``None`` defaults, keyword defaults and docstring (unless
    the code's first constant is a string) and empty annotations."""
    if not (
        len(reduced) == 6
        and reduced[0] is _make_function
        and reduced[5] is _cloudpickle_function_setstate
        and reduced[1][2] is None  # name
        and reduced[1][3] is None  # argument defaults
    ):
        return reduced  # not the shape this was written for: leave it alone
    slotstate = reduced[2][1]
    code = func.__code__
    if slotstate.get("__name__") == code.co_name:
        del slotstate["__name__"]
    if slotstate.get("__qualname__") == code.co_qualname:
        del slotstate["__qualname__"]
    for name in ("__defaults__", "__kwdefaults__"):
        if name in slotstate and slotstate[name] is None:
            del slotstate[name]
    if "__doc__" in slotstate and slotstate["__doc__"] is None:
        consts = code.co_consts
        if not (consts and isinstance(consts[0], str)):  # else FunctionType takes it as the doc
            del slotstate["__doc__"]
    if slotstate.get("__annotations__") == {}:
        del slotstate["__annotations__"]
    if slotstate.get("_cloudpickle_submodules") == []:
        del slotstate["_cloudpickle_submodules"]
    return (*reduced[:5], _function_setstate)


def _function_setstate(func: types.FunctionType, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """cloudpickle's ``_function_setstate`` for a state ``slim_function_reduce`` made."""
    slotstate = state[1]
    slotstate.setdefault("_cloudpickle_submodules", [])
    _cloudpickle_function_setstate(func, state)
