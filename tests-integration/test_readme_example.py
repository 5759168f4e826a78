"""The README's first example runs as written, under every start method, and prints what
its comments say (a second new-user trial found it lacked the __main__ guard: it failed
under spawn, the default on macOS and from Python 3.14)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _first_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "no python example in README.md"
    return blocks[0]


def test_readme_example_runs_as_written(start_method: str, tmp_path: Path) -> None:
    code = _first_example()
    assert 'if __name__ == "__main__":' in code
    script = tmp_path / "readme_example.py"
    # the start method is the only line added (force: a spawn child re-imports the script)
    script.write_text(f"import multiprocessing\nmultiprocessing.set_start_method({start_method!r}, force=True)\n{code}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["100", "[0, 1, 4, 9, 16]"], done.stdout
