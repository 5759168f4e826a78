"""The meta-package: re-exports, lazy imports, the demo."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import suitkaise


def test_submodules_import_through_the_namespace() -> None:
    from suitkaise import cucumber, pipe, processing, share, timing

    assert processing.Share is share.Share
    assert processing.Pipe is pipe.Pipe
    assert cucumber.serialize is suitkaise.serialize
    assert timing.Sktimer is suitkaise.Sktimer


@pytest.mark.parametrize("name", suitkaise.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(suitkaise, name) is not None


def test_exports_are_the_same_objects() -> None:
    from suitkaise import Pipe, Pool, Share, Skprocess, Sktimer, TimeThis, autoreconnect, timethis
    from suitkaise.pipe import Pipe as pipe_pipe
    from suitkaise.processing import Pool as proc_pool
    from suitkaise.processing import Skprocess as proc_skprocess
    from suitkaise.processing import autoreconnect as proc_autoreconnect
    from suitkaise.share import Share as share_share
    from suitkaise.timing import Sktimer as timing_sktimer
    from suitkaise.timing import TimeThis as timing_timethis
    from suitkaise.timing import timethis as timing_timethis_fn

    assert (Skprocess, Pool, Share, Pipe) == (proc_skprocess, proc_pool, share_share, pipe_pipe)
    assert (Sktimer, TimeThis, timethis, autoreconnect) == (
        timing_sktimer, timing_timethis, timing_timethis_fn, proc_autoreconnect,
    )


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        suitkaise.nope  # noqa: B018


def test_import_suitkaise_is_lazy() -> None:
    code = (
        "import sys, suitkaise; "
        "print(any(m.startswith('suitkaise.processing') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_version_command_lists_every_distribution() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "suitkaise", "version"], capture_output=True, text=True, check=True
    )
    for dist in ("suitkaise", "sk-cucumber", "sk-timing", "sk-pipe", "sk-share", "sk-processing"):
        assert dist in out.stdout
    assert "not installed" not in out.stdout


def test_demo_runs_and_agrees_with_serial() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "suitkaise", "demo", "--quick", "--workers", "2"],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert "square(7) = 49" in out.stdout
    assert "next line: 'second line'" in out.stdout
    assert "hello from the child interpreter" in out.stdout
    assert "| same total as serial             | True" in out.stdout
    assert "| audit mismatches                 | 0 " in out.stdout


def test_all_lists_exactly_the_lazy_exports() -> None:
    exported = {name for names in suitkaise._EXPORTS.values() for name in names}
    assert set(suitkaise.__all__) == set(suitkaise._SUBMODULES) | exported
    assert len(suitkaise.__all__) == len(set(suitkaise.__all__))


def test_every_export_is_public_in_its_module() -> None:
    for module_name, names in suitkaise._EXPORTS.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert name in module.__all__, f"{module_name} does not export {name}"
            assert getattr(suitkaise, name) is getattr(module, name)


def test_stub_lists_exactly_the_table() -> None:
    """__init__.pyi (what mypy and IDEs read) names what the runtime table exports, no more."""
    stub = Path(suitkaise.__file__).with_suffix(".pyi")
    tree = ast.parse(stub.read_text())
    seen = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert alias.asname == alias.name, f"{stub}: write 'import {alias.name} as {alias.name}'"
                seen.add(f"from {node.module} import {alias.name} as {alias.name}")
    wanted = {f"from suitkaise import {sub} as {sub}" for sub in suitkaise._SUBMODULES}
    wanted |= {
        f"from {module} import {name} as {name}"
        for module, names in suitkaise._EXPORTS.items() for name in names
    }
    missing, extra = sorted(wanted - seen), sorted(seen - wanted)
    assert not missing and not extra, f"{stub}: add {missing}, remove {extra}"



def test_demo_says_when_the_machine_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    from suitkaise import _demo

    monkeypatch.setattr(_demo.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_demo.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    note = _demo._busy_note(2)
    assert note is not None and "busy (load average 5.0 on 2 CPUs)" in note
    monkeypatch.setattr(_demo.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert _demo._busy_note(2) is None
