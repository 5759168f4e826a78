"""sk-pipe needs only sk-cucumber: importing and using it must not touch the rest."""

from __future__ import annotations

import textwrap

from sk_testkit import run_fresh

CODE = textwrap.dedent(
    """
    import sys

    BLOCKED = ("suitkaise.processing", "suitkaise.timing", "suitkaise.share")

    class Blocker:
        # Behaves as if only sk-cucumber and sk-pipe were installed.
        def find_spec(self, name, path=None, target=None):
            if name.startswith(BLOCKED):
                raise ImportError(f"{name} is not installed (blocked by the test)")
            return None

    sys.meta_path.insert(0, Blocker())

    import suitkaise.pipe as sp
    from suitkaise.pipe import Pipe, PipeEndpointError

    assert set(sp.__all__) >= {"Pipe", "PipeEndpointError"}, sp.__all__
    anchor, point = Pipe.pair()
    anchor.send({"ok": [1, 2]})
    assert point.recv() == {"ok": [1, 2]}
    loaded = sorted(m for m in sys.modules if m.startswith(BLOCKED))
    assert not loaded, loaded
    print("OK", sp.__version__)
    """
)


def test_imports_with_only_cucumber() -> None:
    proc = run_fresh(CODE)
    assert proc.stdout.decode().startswith("OK 0.5.0")
