"""Build every wheel and prove each install shape works in a fresh virtual environment.

Scenarios (each in its own venv, checked with ``python -I`` so nothing leaks in
from the source tree):

  cucumber-alone   sk-cucumber only
  timing-alone     sk-timing only
  pipe-alone       sk-pipe (+ sk-cucumber, its one dependency)
  share-alone      sk-share (+ sk-cucumber): a working Share across processes
  everything       all wheels, including the meta-package
  editable         every package installed editable (pip -e)
  mixed            sk-cucumber from a wheel, the rest editable
  upgrade          suitkaise 0.4.14 from PyPI, then the README's upgrade command
                   (skipped with a message when PyPI cannot be reached)

Usage: python scripts/check_wheels.py [--only NAME,NAME] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["sk-cucumber", "sk-timing", "sk-pipe", "sk-share", "sk-processing", "suitkaise"]

SMOKE = {
    "cucumber": """
        import threading
        from suitkaise.cucumber import serialize, deserialize, reconnect_all, SerializationError
        f = deserialize(serialize(lambda x: x + 1)); assert f(1) == 2
        lock = deserialize(serialize(threading.Lock())); assert lock.acquire(timeout=1)
        import suitkaise.cucumber.reconnectors
    """,
    "timing": """
        from suitkaise.timing import Sktimer, TimeThis, timethis, time, sleep, elapsed
        t = Sktimer(); t.add_time(1.0); t.add_time(3.0); assert t.mean == 2.0
        import pickle; assert pickle.loads(pickle.dumps(t)).num_times == 2
    """,
    "pipe": """
        import multiprocessing as mp
        from suitkaise.pipe import Pipe, PipeEndpointError
        def echo(point):
            point.send(point.recv() * 2)
        if __name__ == "__main__":
            anchor, point = Pipe.pair()
            p = mp.get_context("spawn").Process(target=echo, args=(point,)); p.start()
            anchor.send(21); assert anchor.recv() == 42; p.join(30); assert p.exitcode == 0
    """,
    "share": """
        import multiprocessing as mp
        from suitkaise.share import Share
        def bump(share):
            for _ in range(100):
                share.counter += 1
        if __name__ == "__main__":
            with Share() as share:
                share.counter = 0
                procs = [mp.get_context("spawn").Process(target=bump, args=(share,)) for _ in range(2)]
                for p in procs: p.start()
                for p in procs: p.join(60); assert p.exitcode == 0
                assert share.counter == 200, share.counter
    """,
    "processing": """
        from suitkaise.processing import Skprocess, Pool, Share, Pipe, autoreconnect, ProcessError
        class Count(Skprocess):
            def __init__(self):
                self.n = 0
                self.process_config.runs = 5
            def __run__(self):
                self.n += 1
            def __result__(self):
                return self.n
        if __name__ == "__main__":
            assert Count().run() == 5
            with Pool(2) as pool:
                assert pool.map(lambda x: x * x, range(10)) == [x * x for x in range(10)]
    """,
    "meta": """
        import suitkaise
        from suitkaise import Skprocess, Pool, Share, Pipe, Sktimer, TimeThis, timethis, autoreconnect
        from suitkaise import processing, cucumber, timing
        assert suitkaise.Share is processing.Share
    """,
}

SCENARIOS: dict[str, tuple[list[str], list[str]]] = {
    # name: (wheels to install, smoke checks)
    "cucumber-alone": (["sk-cucumber"], ["cucumber"]),
    "timing-alone": (["sk-timing"], ["timing"]),
    "pipe-alone": (["sk-pipe", "sk-cucumber"], ["cucumber", "pipe"]),
    "share-alone": (["sk-share", "sk-cucumber"], ["cucumber", "share"]),
    "everything": (PACKAGES, list(SMOKE)),
}


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    print("  $", " ".join(str(c) for c in cmd), flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}")
    return proc


def uv() -> str:
    exe = shutil.which("uv")
    if exe is None:
        raise SystemExit("uv is required (pip install uv)")
    return exe


def make_venv(where: Path) -> Path:
    run([uv(), "venv", "--quiet", "--seed", "--python", sys.executable, str(where)])
    return where / "bin" / "python"


def build_wheels(dist: Path) -> dict[str, Path]:
    wheels = {}
    for pkg in PACKAGES:
        run([uv(), "build", "--quiet", "--wheel", "--out-dir", str(dist), str(ROOT / "packages" / pkg)])
    for pkg in PACKAGES:
        stem = pkg.replace("-", "_")
        (found,) = dist.glob(f"{stem}-*.whl")
        wheels[pkg] = found
    return wheels


def smoke(python: Path, checks: list[str], workdir: Path) -> None:
    for check in checks:
        script = workdir / f"smoke_{check}.py"
        script.write_text(textwrap.dedent(SMOKE[check]))
        # -I: isolated mode, so only what the venv installed is importable.
        run([str(python), "-I", str(script)], cwd=str(workdir), timeout=300)
        print(f"    ok: {check}")


def scenario_wheels(name: str, wheels: dict[str, Path], base: Path) -> None:
    pkgs, checks = SCENARIOS[name]
    python = make_venv(base / name)
    run([uv(), "pip", "install", "--quiet", "--python", str(python), *map(str, (wheels[p] for p in pkgs))])
    smoke(python, checks, base)


def scenario_editable(name: str, wheels: dict[str, Path], base: Path) -> None:
    python = make_venv(base / name)
    editable = [p for p in PACKAGES if not (name == "mixed" and p == "sk-cucumber")]
    args = [arg for p in editable for arg in ("-e", str(ROOT / "packages" / p))]
    if name == "mixed":
        args.append(str(wheels["sk-cucumber"]))
    run([str(python), "-m", "pip", "install", "--quiet", *args])
    smoke(python, list(SMOKE), base)


def scenario_upgrade(name: str, wheels: dict[str, Path], base: Path) -> None:
    python = make_venv(base / name)
    try:
        run([str(python), "-m", "pip", "install", "--quiet", "suitkaise==0.4.14"], timeout=600)
    except SystemExit:
        print("    SKIPPED: suitkaise 0.4.14 could not be installed from PyPI (no index reachable?)")
        return
    run([str(python), "-I", "-c",
         "import importlib.metadata as m; assert m.version('suitkaise') == '0.4.14'"])
    # The upgrade command documented in README.md ("Upgrading from 0.4.14"):
    # uninstall the single-package release first, then install the split suite.
    run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", "suitkaise"])
    run([str(python), "-m", "pip", "install", "--quiet", *map(str, wheels.values())])
    smoke(python, list(SMOKE), base)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    names = [*SCENARIOS, "editable", "mixed", "upgrade"]
    if args.only:
        names = [n for n in args.only.split(",") if n]
    base = Path(tempfile.mkdtemp(prefix="sk-wheels-"))
    try:
        print("building wheels", flush=True)
        wheels = build_wheels(base / "dist")
        for name in names:
            print(f"scenario {name}", flush=True)
            if name in SCENARIOS:
                scenario_wheels(name, wheels, base)
            elif name in ("editable", "mixed"):
                scenario_editable(name, wheels, base)
            elif name == "upgrade":
                scenario_upgrade(name, wheels, base)
            else:
                raise SystemExit(f"unknown scenario {name!r}")
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print("all install scenarios passed")
    return 0


if __name__ == "__main__":
    os.environ.pop("PYTHONPATH", None)
    sys.exit(main())
