"""Remote tracebacks of ``__main__`` code name the script and show its source lines.

Functions and classes defined in a script's ``__main__`` travel by value. cloudpickle
alone rebuilds their code with ``co_filename = "<dynamic-code>"``; cucumber keeps the
real file name and line numbers and carries the source lines, so a worker's
traceback reads ``File "/path/script.py", line 6, in helper`` followed by the line.

Each test writes a real script into its ``tmp_path`` and runs it with the test's
interpreter, because only a script run as ``python script.py`` has that
``__main__``. The script prints the traceback the parent gets; the test checks the
exact ``File ... line N, in name`` / source-line pair of the failing line.
"""

from __future__ import annotations

import linecache
import os
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkaise.cucumber import deserialize, serialize

FAILING = 'raise ValueError(f"bad input {y}")'


def _run(script: Path, *args: str, timeout: float = 90.0) -> str:
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(script.parent),
        env={**os.environ, "TMPDIR": str(script.parent)},  # Dask's scratch space stays in tmp_path
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def _line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def _assert_frame(out: str, path: Path, line: int, func: str, text: str) -> None:
    """``File "<path>", line <n>, in <func>`` immediately followed by the source line."""
    head = f'File "{path}", line {line}, in {func}\n'
    assert head in out, f"no frame {head!r} in:\n{out}"
    after = out.split(head, 1)[1].splitlines()[0]
    assert after.strip() == text, f"frame {head!r} shows {after!r}, expected {text!r}:\n{out}"
    assert "<dynamic-code>" not in out, out


_POOL_SCRIPT = '''
import multiprocessing
import os
import sys
import traceback

from suitkaise.processing import Pool

DELETE = sys.argv[2] == "delete"


def helper(x):
    y = x + 1
    if DELETE:
        os.remove(__file__)  # the worker formats the traceback after this
    raise ValueError(f"bad input {y}")


def task(x):
    return [helper(v) for v in [x]]


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    with Pool(2) as pool:
        try:
            pool.map(task, [1])
        except ValueError as e:
            print("".join(traceback.format_exception(e)))
        else:
            raise SystemExit("no error")
'''


def test_pool_traceback_names_script_and_line(tmp_path: Path, start_method: str) -> None:
    script = _write(tmp_path, "pool_script.py", _POOL_SCRIPT)
    out = _run(script, start_method, "keep")
    _assert_frame(out, script, _line_of(script, FAILING), "helper", FAILING)
    comprehension = "<listcomp>" if sys.version_info < (3, 12) else "task"  # 3.12 inlines comprehensions
    _assert_frame(out, script, _line_of(script, "return [helper"), comprehension, "return [helper(v) for v in [x]]")


def test_pool_traceback_when_script_deleted_before_formatting(tmp_path: Path, start_method: str) -> None:
    script = _write(tmp_path, "pool_deleted.py", _POOL_SCRIPT)
    line = _line_of(script, FAILING)
    out = _run(script, start_method, "delete")
    assert not script.exists()
    _assert_frame(out, script, line, "helper", FAILING)


_SKPROCESS_SCRIPT = '''
import multiprocessing
import os
import sys
import traceback

from suitkaise.processing import Skprocess

DELETE = sys.argv[3] == "delete"


class TopLevel(Skprocess):
    def __init__(self):
        self.process_config.runs = 1

    def __run__(self):
        y = 0
        if DELETE:
            os.remove(__file__)
        raise ValueError(f"bad input {y}")


def make_local():
    class Local(Skprocess):
        def __init__(self):
            self.process_config.runs = 1

        def __run__(self):
            y = 1
            if DELETE:
                os.remove(__file__)
            raise ValueError(f"bad input {y}")  # local

    return Local


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    cls = TopLevel if sys.argv[2] == "top" else make_local()
    p = cls()
    p.start()
    p.wait()
    try:
        p.result()
    except Exception as e:
        print("".join(traceback.format_exception(e)))
    else:
        raise SystemExit("no error")
'''


@pytest.mark.parametrize("delete", ["keep", "delete"])
@pytest.mark.parametrize("where", ["top", "local"])
def test_skprocess_run_traceback_names_script_and_line(
    tmp_path: Path, start_method: str, where: str, delete: str
) -> None:
    """A top-level class resolves to the child's own copy, a local one travels by value.

    With ``delete`` the script is removed inside ``__run__``, before the child
    formats the traceback.
    """
    script = _write(tmp_path, "skprocess_script.py", _SKPROCESS_SCRIPT)
    text = FAILING + ("  # local" if where == "local" else "")
    line = _line_of(script, text) if where == "local" else _line_of(script, "bad input {y}")
    out = _run(script, start_method, where, delete)
    assert script.exists() == (delete == "keep")
    _assert_frame(out, script, line, "__run__", text)


_SECTIONS_SCRIPT = '''
import multiprocessing
import os
import sys
import traceback

from suitkaise.processing import Skprocess

SECTION, DELETE = sys.argv[2], sys.argv[3] == "delete"


def make_local():
    class Local(Skprocess):
        def __init__(self):
            self.process_config.runs = 1

        def boom(self, section):
            if section == SECTION:
                y = section
                if DELETE:
                    os.remove(__file__)
                raise ValueError(f"bad input {y}")

        def __prerun__(self):
            self.boom("__prerun__")  # in __prerun__

        def __run__(self):
            self.boom("__run__")  # in __run__

        def __postrun__(self):
            self.boom("__postrun__")  # in __postrun__

        def __onfinish__(self):
            self.boom("__onfinish__")  # in __onfinish__

        def __result__(self):
            self.boom("__result__")  # in __result__
            return "no error"

    return Local


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    p = make_local()()
    try:
        p.run.timeout(60)()
    except Exception as e:
        print("".join(traceback.format_exception(e)))
    else:
        raise SystemExit("no error")
'''


@pytest.mark.parametrize("delete", ["keep", "delete"])
@pytest.mark.parametrize("section", ["__prerun__", "__run__", "__postrun__", "__onfinish__", "__result__"])
def test_skprocess_traceback_of_every_lifecycle_method(
    tmp_path: Path, start_method: str, section: str, delete: str
) -> None:
    """Issue 14.1 for every lifecycle method of a class that travels by value: the method's
    own frame and the helper it calls show the script's file, line and source text."""
    script = _write(tmp_path, "sections_script.py", _SECTIONS_SCRIPT)
    call = f'self.boom("{section}")  # in {section}'
    call_line, fail_line = _line_of(script, call), _line_of(script, FAILING)
    out = _run(script, start_method, section, delete)
    assert script.exists() == (delete == "keep")
    _assert_frame(out, script, call_line, section, call)
    _assert_frame(out, script, fail_line, "boom", FAILING)


_DASK_SCRIPT = '''
import logging
import os
import sys
import traceback

import distributed

from suitkaise.processing import Pool


def helper(x):
    y = x * 2
    raise ValueError(f"bad input {y}")


if __name__ == "__main__":
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.CRITICAL, local_directory=os.path.dirname(__file__),
    )
    try:
        with Pool(backend=cluster) as pool:
            try:
                pool.map(helper, [3])
            except ValueError as e:
                print("".join(traceback.format_exception(e)))
            else:
                raise SystemExit("no error")
    finally:
        cluster.close()
'''


@pytest.mark.timeout(180)
def test_dask_traceback_names_script_and_line(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    script = _write(tmp_path, "dask_script.py", _DASK_SCRIPT)
    out = _run(script, timeout=150)
    _assert_frame(out, script, _line_of(script, FAILING), "helper", FAILING)


_SENDER = '''
import sys
from suitkaise.cucumber import serialize


def helper(x):
    y = x + 1
    raise ValueError(f"bad input {y}")


class Holder:
    def method(self):
        y = "m"
        raise ValueError(f"bad input {y}")  # method


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(serialize((helper, Holder)))
'''

_RECEIVER = '''
import sys
import traceback
from suitkaise.cucumber import deserialize

with open(sys.argv[1], "rb") as f:
    helper, Holder = deserialize(f.read())
for call in (lambda: helper(1), lambda: Holder().method()):
    try:
        call()
    except ValueError as e:
        print("".join(traceback.format_exception(e)))
'''


def test_source_travels_to_an_interpreter_without_the_file(tmp_path: Path) -> None:
    """The script is gone before the payload is even loaded, as on another machine."""
    sender = _write(tmp_path, "sender.py", _SENDER)
    receiver = _write(tmp_path, "receiver.py", _RECEIVER)
    payload = tmp_path / "payload.bin"
    helper_line = _line_of(sender, FAILING)
    method_line = _line_of(sender, "# method")
    _run(sender, str(payload))
    sender.unlink()
    out = _run(receiver, str(payload))
    _assert_frame(out, sender, helper_line, "helper", FAILING)
    _assert_frame(out, sender, method_line, "method", FAILING + "  # method")


# -- in-process properties (code compiled from a source held only in linecache) --


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pad=st.integers(min_value=0, max_value=300),
    body=st.integers(min_value=0, max_value=40),
    nested=st.booleans(),
)
def test_line_text_follows_the_code_wherever_it_sits(pad: int, body: int, nested: bool) -> None:
    """Any position, length and nesting: the receiving side shows the failing line.

    The source exists only in linecache (like an IPython cell); the test drops it
    before loading, as a receiver that never had it.
    """
    filename = f"<cell-{pad}-{body}-{nested}>"
    lines = ["\n"] * pad + ["def f(x):\n"] + [f"    v{i} = {i}\n" for i in range(body)]
    if nested:
        lines += ["    return [int(s) for s in [x]]\n"]
    else:
        lines += ["    return int(x)\n"]
    source = "".join(lines)
    linecache.cache[filename] = (len(source), None, lines, filename)
    try:
        namespace: dict[str, object] = {"__name__": "cell"}
        exec(compile(source, filename, "exec"), namespace)
        data = serialize(namespace["f"])
    finally:
        del linecache.cache[filename]
    f = deserialize(data)
    with pytest.raises(ValueError) as info:
        f("not a number")
    frames = traceback.extract_tb(info.value.__traceback__)
    last = frames[-1]
    assert last.filename == filename
    assert last.lineno == pad + body + 2
    assert last.line == lines[-1].strip()
    linecache.cache.pop(filename, None)


def test_code_keeps_every_attribute_through_a_round_trip() -> None:
    def sample(a: int, *args: int, b: int = 2, **kw: int) -> int:
        def inner() -> int:
            return a + b
        return inner() + sum(args) + len(kw)

    code = sample.__code__
    back = deserialize(serialize(sample))
    assert back(1, 2, 3, b=4, z=5) == sample(1, 2, 3, b=4, z=5)
    c = back.__code__
    for attr in ("co_filename", "co_firstlineno", "co_name", "co_qualname", "co_linetable", "co_code"):
        assert getattr(c, attr) == getattr(code, attr), attr
    assert list(c.co_lines()) == list(code.co_lines())


def test_importable_code_keeps_its_file_name_without_carrying_source() -> None:
    """Code from an importable module keeps ``co_filename``; its source stays on disk."""
    f = lambda: 1 / 0  # noqa: E731 - a lambda travels by value even from an importable module
    data = serialize(f)
    assert deserialize(data).__code__.co_filename == f.__code__.co_filename == __file__
    assert b"1 / 0" not in data
