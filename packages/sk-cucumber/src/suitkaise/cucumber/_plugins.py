"""Entry-point discovery: libraries ship cucumber handlers, users import nothing.

A library declares, in its ``pyproject.toml``::

    [project.entry-points."suitkaise.cucumber"]
    mylib = "mylib._cucumber"            # a module whose import registers handlers
    "mylib.net.Client" = "mylib._cucumber:register"   # or a function, called once

The entry point's *name* says which types it covers: a module name covers
every type defined in that module and below it (``mylib`` covers
``mylib.net.Client``), a qualified name covers that class. Nothing is read or
imported when ``suitkaise.cucumber`` is imported: the first time a lookup
misses for a type from outside ``builtins`` and ``__main__``, the installed
distributions' metadata is read once (``*.dist-info`` / ``*.egg-info``
``entry_points.txt`` on ``sys.path``), and an entry point is loaded the first
time a type it covers misses. The handlers it registers sit between the
built-in ones and those a program registers itself (see ``._registry``).

The metadata is read directly rather than through ``importlib.metadata``,
which costs about 30 ms of CPU to import (measured); this scan costs about a
millisecond. Distributions inside zip files on ``sys.path`` are not scanned.
A plugin that fails to load is reported once with a ``RuntimeWarning`` and
skipped; serialization goes on without it.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import warnings

from suitkaise.cucumber import _registry

__all__ = ["GROUP"]

GROUP = "suitkaise.cucumber"

_NOT_COVERED = frozenset({"builtins", "__main__", "__mp_main__"})


class EntryPoint:
    """One ``name = value`` line of the group, and the distribution that declared it."""

    __slots__ = ("distribution", "name", "value")  # a NamedTuple costs 0.3 ms to define at import

    def __init__(self, name: str, value: str, distribution: str) -> None:
        self.name = name
        self.value = value
        self.distribution = distribution

    def __repr__(self) -> str:
        return f"EntryPoint({self.name!r}, {self.value!r}, {self.distribution!r})"


_lock = threading.RLock()
_pending: list[EntryPoint] | None = None  # None: metadata not read yet


def _parse(text: str, distribution: str) -> list[EntryPoint]:
    """The ``[suitkaise.cucumber]`` section of an ``entry_points.txt`` (INI)."""
    out: list[EntryPoint] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == GROUP
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            value = re.sub(r"\s*\[.*\]\s*$", "", value.strip())  # legacy extras: "mod:fn [extra]"
            out.append(EntryPoint(name.strip().strip('"'), value, distribution))
    return out


def _normalize(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def scan(path: list[str] | None = None) -> list[EntryPoint]:
    """Every ``suitkaise.cucumber`` entry point installed on ``path`` (default ``sys.path``).

    The first distribution of a name on the path wins, as with ``importlib.metadata``.
    """
    seen_dirs: set[str] = set()
    seen_dists: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path if path is None else path:
        directory = os.path.abspath(entry or os.getcwd())
        if directory in seen_dirs or not os.path.isdir(directory):
            continue
        seen_dirs.add(directory)
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            distribution = _normalize(name.rsplit(".", 1)[0].split("-", 1)[0])
            if distribution in seen_dists:
                continue
            seen_dists.add(distribution)
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            found.extend(_parse(text, distribution))
    return found


def _covers(ep: EntryPoint, names: list[str]) -> bool:
    prefix = ep.name + "."
    return any(n == ep.name or n.startswith(prefix) for n in names)


def _load(ep: EntryPoint) -> None:
    module_name, _, attr = ep.value.partition(":")
    try:
        with _registry.plugin_layer():
            target: object = importlib.import_module(module_name.strip())
            if attr:
                for part in attr.strip().split("."):
                    target = getattr(target, part)
                if callable(target):
                    target()
    except Exception as e:
        warnings.warn(
            f"suitkaise.cucumber: the entry point {ep.name!r} = {ep.value!r} of {ep.distribution!r} "
            f"failed to load and is skipped ({type(e).__name__}: {e})",
            RuntimeWarning,
            stacklevel=2,
        )


def on_miss(t: type) -> bool:
    """Load the entry points that cover ``t``; True when at least one was loaded."""
    global _pending
    try:
        mro = t.__mro__
    except AttributeError:  # pragma: no cover - exotic extension types
        return False
    if all(k.__module__ in _NOT_COVERED for k in mro):
        return False
    with _lock:
        if _pending is None:
            _pending = scan()
        if not _pending:
            _registry.on_miss = None  # nothing installed: misses cost nothing from now on
            return False
        names = [_registry.type_name(k) for k in mro]
        due = [ep for ep in _pending if _covers(ep, names)]
        if not due:
            return False
        for ep in due:
            _pending.remove(ep)  # before loading: a re-entrant miss never loads it twice
        for ep in due:
            _load(ep)
    return True


def reset() -> None:
    """Forget what was scanned (tests, or after installing a distribution at run time)."""
    global _pending
    with _lock:
        _pending = None
        _registry.on_miss = on_miss
        _registry._CACHE.clear()  # types that missed before may be covered now


_registry.on_miss = on_miss
