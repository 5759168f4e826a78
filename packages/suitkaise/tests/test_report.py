"""``python -m suitkaise report``: a timeline of a user's own Pool run (issue 14.7)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.timeout(180)

_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from suitkaise import Pool, ProcessError

    def work(i):
        time.sleep(0.02)
        if i == 7:
            os._exit(3)
        return i

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        with Pool(2) as pool:
            try:
                pool.map(work, range(12))
            except ProcessError:
                print("first call raised", flush=True)
            print(pool.map(work, [0, 1, 2]), flush=True)
    """
)


def _report(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("SK_POOL_TRACE", None)
    return subprocess.run(
        [sys.executable, "-m", "suitkaise", "report", *args],
        capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=150,
    )


def test_report_draws_workers_items_crash_and_replacement(start_method: str, tmp_path) -> None:
    (tmp_path / "mine.py").write_text(_SCRIPT)
    done = _report(tmp_path, "-o", "t.svg", "--trace", "t.jsonl", "mine.py", start_method)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "first call raised" in out and "[0, 1, 2]" in out  # the script ran as usual
    assert "2 call(s), 3 worker process(es)" in out
    assert "call 1: Pool.map" in out and "raised WorkerCrashedError" in out  # a ProcessError
    assert "(replacement): call 2: item" in out  # the call after the crash needs a new worker
    assert "died running item 7 of call 1: exited with code 3" in out
    svg = ET.parse(tmp_path / "t.svg").getroot()  # well-formed SVG
    text = " ".join("".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert text.count("worker ") >= 3 and "(replacement)" in text
    assert "item 7: exited with code 3" in text
    titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("item 7 (call 1)") and "the worker died, exited with code 3" in t for t in titles)
    for i in range(3):  # every item of the second call, finished
        assert any(t.startswith(f"item {i} (call 2)") and "died" not in t for t in titles)
    # the kept trace draws the same picture again, without running anything
    again = _report(tmp_path, "--from", "t.jsonl", "-o", "t.html")
    assert again.returncode == 0, again.stderr
    assert "died running item 7 of call 1" in again.stdout
    assert (tmp_path / "t.html").read_text().startswith("<!doctype html>")


def test_report_says_when_nothing_was_recorded(tmp_path) -> None:
    (tmp_path / "plain.py").write_text("print('no pool here')\n")
    done = _report(tmp_path, "plain.py")
    assert done.returncode == 1
    assert "no Pool call was recorded" in done.stderr
    assert not (tmp_path / "pool-timeline.svg").exists()


def test_recording_is_off_by_default(start_method: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from suitkaise import Pool

    monkeypatch.delenv("SK_POOL_TRACE", raising=False)
    monkeypatch.chdir(tmp_path)
    with Pool(2) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
    assert os.listdir(tmp_path) == []
