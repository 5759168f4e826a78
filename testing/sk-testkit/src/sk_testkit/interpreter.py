"""Run code in a fresh interpreter that sees the same packages as the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_fresh(code: str, *, stdin: bytes | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run ``code`` with ``python -c`` in a new interpreter and return the finished process.

    The child gets the parent's ``sys.path`` so that test modules and editable
    installs resolve the same way. Raises ``AssertionError`` with the child's
    stderr when it exits non-zero.
    """
    return _run(["-c", code], stdin, timeout)


def run_script(script: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run ``python script *args`` (a real ``__main__`` module) as ``run_fresh`` runs code."""
    return _run([str(script), *args], None, timeout)


def _run(argv: list[str], stdin: bytes | None, timeout: float) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, *argv], input=stdin, capture_output=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(
            f"fresh interpreter exited with {proc.returncode}\n--- stderr ---\n"
            + proc.stderr.decode(errors="replace")
        )
    return proc
