"""``__main__`` classes whose methods name each other, through Pool.map, Share and Skprocess.

Each such class used to be serialized by a nested call that never saw the others,
so the pair recursed until RecursionError and Pool.map, ``share.a = A()`` and an
Skprocess start under spawn/forkserver all failed with a SerializationError.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from sk_testkit import run_script

SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from suitkaise.processing import Pool, Share, Skprocess

    class Node:
        def leaf(self):
            return Leaf()

    class Leaf:
        def up(self):
            return Node()

    class A:
        def make(self):
            return B()

    class B(A):
        pass

    def grow(node):
        return node.leaf()

    def made(share, i):
        return type(share.a.make()).__name__

    class Grower(Skprocess):
        def __init__(self):
            self.node = Node()
            self.process_config.runs = 1

        def __run__(self):
            self.leaf = self.node.leaf()

        def __result__(self):
            return self.leaf

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        with Pool(workers=2) as pool:
            leaves = pool.map(grow, [Node(), Node(), Node()])
            with Share() as share:
                share.a = A()
                names = pool.star().map(made, [(share, i) for i in range(3)])
                local = type(share.a.make()) is B
        grown = Grower().run()
        print([type(x) is Leaf for x in leaves], [type(x.up()) is Node for x in leaves], names, local,
              type(grown) is Leaf)
    """
)


def test_linked_main_classes_through_pool_map_and_share(tmp_path: Path, start_method: str) -> None:
    script = tmp_path / "linked.py"
    script.write_text(SCRIPT)
    out = run_script(script, start_method, timeout=150).stdout.decode().strip()
    assert out == "[True, True, True] [True, True, True] ['B', 'B', 'B'] True True", out
