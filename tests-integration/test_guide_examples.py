"""Every runnable example of the Pool guide (a ``python`` block with a ``__main__`` guard)
runs as written and prints what its ``# comments`` say, under fork (the default here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "pool.md"


def _examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    return [b for b in blocks if 'if __name__ == "__main__":' in b]


def _expected(code: str) -> list[list[str]]:
    """What each commented ``print(...)  # value`` promises: the comment, or its part before
    two spaces or ``": "`` (the rest explains it); ``...`` elides a part of the value; an
    ``e.g.`` comment shows one possible output and is not checked."""
    out = []
    for line in code.splitlines():
        m = re.match(r"\s*print\(.*\)\s+#\s*(.+)$", line)
        if m:
            comment = m.group(1).strip()
            if comment.startswith("e.g."):
                continue
            out.append([comment, comment.split("  ")[0], comment.split(": ")[0]])
    return out


@pytest.mark.parametrize("index", range(len(_examples())))
def test_pool_guide_example(index: int, tmp_path: Path) -> None:
    code = _examples()[index]
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=str(tmp_path),
                          env=env, timeout=150)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    for candidates in _expected(code):
        patterns = [".*".join(re.escape(part.strip()) for part in want.split("...")) for want in candidates]
        assert any(re.fullmatch(p, line.strip()) for p in patterns for line in printed), (
            f"{candidates[0]!r} not printed: {printed}")
