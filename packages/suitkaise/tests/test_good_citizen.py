"""Importing any suitkaise package leaves the importing program alone.

Each package is imported in a fresh interpreter (one subprocess per package) that first
records the process-wide state a library could change, and installs an audit hook
(``sys.addaudithook``) that sees every file opened for writing, every file-system change,
every thread, process and listening socket started during the import. After the import
it compares: start method, signal handlers, logging (root handlers and level, handlers on
any logger, logging hooks, warnings filters), interpreter hooks, recursion limit,
environment, threads (Python and native), child processes.

The meta-package is checked twice: ``import suitkaise`` (lazy) and ``from suitkaise import *``
(which resolves every re-exported name, i.e. imports every sub-package through it).

A second group of tests checks that each package's ``__all__`` is its public API: every
name in it exists and is not private, and every public name the package defines (not a
submodule, not an import from elsewhere) is in it.
"""

from __future__ import annotations
import __future__

import importlib
import json
import os
import subprocess
import sys
import types
import typing

import pytest

PACKAGES = [
    "suitkaise",
    "suitkaise.cucumber",
    "suitkaise.timing",
    "suitkaise.share",
    "suitkaise.pipe",
    "suitkaise.processing",
]

CHECKER = r'''
import sys
sys.dont_write_bytecode = True  # the import system's own .pyc files are not the package's

import json, logging, multiprocessing, os, signal, threading, warnings

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
FS_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link",
             "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.copyfile",
             "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.rmtree",
             "shutil.move", "shutil.make_archive", "shutil.unpack_archive"}
PROC_EVENTS = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
               "subprocess.Popen", "os.startfile"}
THREAD_EVENTS = {"_thread.start_new_thread"}  # 3.13+; see the wrapper below for 3.11
SOCKET_EVENTS = {"socket.bind", "socket.connect"}
seen = []
armed = [True]

def hook(event, args):
    if not armed[0]:
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        if writes:
            seen.append(f"writes a file: open({path!r}, mode={mode!r}, flags={flags!r})")
    elif event in FS_EVENTS:
        seen.append(f"changes the file system: {event}{args!r}")
    elif event in PROC_EVENTS:
        seen.append(f"starts a process: {event}")
    elif event in THREAD_EVENTS:
        seen.append(f"starts a thread: {event}")
    elif event in SOCKET_EVENTS:
        seen.append(f"opens a network socket: {event}{args[1:]!r}")

def children():
    me, out = str(os.getpid()), []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.append(int(pid))
    return sorted(out)

def logging_state():
    loggers = {}
    for name, lg in logging.root.manager.loggerDict.items():
        if isinstance(lg, logging.Logger):
            hs = [type(h).__name__ for h in lg.handlers if not isinstance(h, logging.NullHandler)]
            if hs or lg.level != logging.NOTSET or lg.disabled:
                loggers[name] = (hs, lg.level, lg.disabled)
    return {
        "root handlers": [repr(h) for h in logging.root.handlers],
        "root level": logging.root.level,
        "disable": logging.root.manager.disable,
        "configured loggers": loggers,
        "logger class": repr(logging.getLoggerClass()),
        "record factory": repr(logging.getLogRecordFactory()),
        "lastResort": repr(logging.lastResort),
        "raiseExceptions": logging.raiseExceptions,
        "warnings filters": repr(warnings.filters),
        "showwarning": repr(warnings.showwarning),
    }

def state():
    sigs = {}
    for s in sorted(signal.valid_signals()):
        try:
            sigs[signal.Signals(s).name] = repr(signal.getsignal(s))
        except (ValueError, OSError):
            pass
    return {
        "start method": multiprocessing.get_start_method(allow_none=True),
        "signal handlers": sigs,
        "logging": logging_state(),
        "hooks": [repr(sys.excepthook), repr(threading.excepthook), repr(sys.unraisablehook),
                  repr(sys.displayhook)],
        "recursion limit": sys.getrecursionlimit(),
        "environment": dict(os.environ),
        "sys.path": list(sys.path),
        "threads": sorted(t.name for t in threading.enumerate()),
        "native threads": len(os.listdir("/proc/self/task")),
        "child processes": children(),
    }

# 3.11 has no audit event for a new thread: wrap the one function every thread starts through
import _thread

def _counting(start):
    def start_new_thread(*args, **kwargs):
        if armed[0]:
            seen.append(f"starts a thread: {getattr(args[0], '__qualname__', args[0])!r}")
        return start(*args, **kwargs)
    return start_new_thread

threading._start_new_thread = _counting(threading._start_new_thread)
_thread.start_new_thread = _counting(_thread.start_new_thread)

before = state()
sys.addaudithook(hook)
STATEMENT
armed[0] = False
after = state()
problems = list(seen)
for key in before:
    if before[key] != after[key]:
        if isinstance(before[key], dict):
            changed = {k: (before[key].get(k), after[key].get(k))
                       for k in set(before[key]) | set(after[key])
                       if before[key].get(k) != after[key].get(k)}
            problems.append(f"changes {key}: {changed!r}")
        else:
            problems.append(f"changes {key}: {before[key]!r} -> {after[key]!r}")
print(json.dumps(problems))
'''


def _run(statement: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    for var in list(env):  # an inherited start method or transport must not hide anything
        if var.startswith("SK_"):
            del env[var]
    proc = subprocess.run(
        [sys.executable, "-c", CHECKER.replace("STATEMENT", statement)],
        capture_output=True, timeout=120, env=env, cwd=os.path.dirname(__file__),
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out: list[str] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_import_is_a_good_citizen(package: str) -> None:
    problems = _run(f"import {package}")
    assert problems == [], f"import {package}:\n  " + "\n  ".join(problems)


def test_star_import_of_the_meta_package_is_a_good_citizen() -> None:
    problems = _run("from suitkaise import *")
    assert problems == [], "from suitkaise import *:\n  " + "\n  ".join(problems)


def test_the_checker_sees_what_it_checks() -> None:
    """Each kind of misbehaviour, done on purpose, is reported (so a pass means something)."""
    bad = "; ".join([
        "import multiprocessing, signal, logging, threading, tempfile, subprocess, sys, os",
        "multiprocessing.set_start_method('spawn')",
        "signal.signal(signal.SIGUSR1, lambda *a: None)",
        "logging.basicConfig(level=logging.INFO)",
        "threading.Thread(target=lambda: None).start()",
        "f = tempfile.NamedTemporaryFile(prefix='sk-good-citizen-'); f.close()",
        "subprocess.run([sys.executable, '-c', 'pass'])",
        "os.environ['SK_GOOD_CITIZEN'] = '1'",
    ])
    text = "\n".join(_run(bad))
    for expected in ("start method", "signal handlers", "root handlers", "root level",
                     "starts a thread", "writes a file", "starts a process", "environment"):
        assert expected in text, (expected, text)


# -- __all__ is the public API --------------------------------------------------------------


def _defined_here(pkg: types.ModuleType, name: str, value: object) -> bool:
    """A public name the package itself defines (or re-exports from its own private modules)."""
    if isinstance(value, types.ModuleType):
        return False  # submodules are reached by import, not listed
    if any(getattr(m, name, None) is value for m in (typing, __future__)):
        return False  # `from typing import TYPE_CHECKING`, `from __future__ import annotations`
    mod = getattr(value, "__module__", None)
    if not isinstance(mod, str):
        return True  # a constant
    return mod == pkg.__name__ or mod.startswith(pkg.__name__ + ".")


@pytest.mark.parametrize("package", PACKAGES)
def test_all_lists_exactly_the_public_api(package: str) -> None:
    pkg = importlib.import_module(package)
    names = list(pkg.__all__)
    assert len(names) == len(set(names)), f"{package}.__all__ has duplicates"
    missing = [n for n in names if not hasattr(pkg, n)]
    assert missing == [], f"{package}.__all__ names what the package does not have: {missing}"
    private = [n for n in names if n.startswith("_") and n != "__version__"]
    assert private == [], f"{package}.__all__ lists private names: {private}"
    public = {n for n in dir(pkg) if not n.startswith("_")}
    unlisted = sorted(n for n in public - set(names) if _defined_here(pkg, n, getattr(pkg, n)))
    assert unlisted == [], f"{package} defines public names missing from __all__: {unlisted}"


# timing's `time` and `sleep` stay out of the meta-package on purpose: `from suitkaise import *`
# must not shadow the standard library's names.
# submodules (suitkaise.pipe.wire) stay under their package: suitkaise.pipe.wire, not suitkaise.wire
NOT_REEXPORTED = {"__version__", "time", "sleep", "wire"}


def test_meta_package_reexports_every_package_api() -> None:
    """The meta-package's docstring promises the public API of every sk-* distribution."""
    import suitkaise

    missing = {}
    for sub in ("cucumber", "timing", "share", "pipe", "processing"):
        mod = importlib.import_module(f"suitkaise.{sub}")
        gone = sorted(set(mod.__all__) - set(suitkaise.__all__) - NOT_REEXPORTED)
        if gone:
            missing[sub] = gone
    assert missing == {}, f"not re-exported by suitkaise: {missing}"
