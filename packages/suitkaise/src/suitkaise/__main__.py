"""Command line: ``python -m suitkaise demo`` (or the ``suitkaise`` script)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suitkaise", description="suitkaise command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short, real tour of the suite")
    demo.add_argument("--quick", action="store_true", help="a smaller workload (a few seconds)")
    demo.add_argument("--workers", type=int, default=None, help="pool size (default: CPU count)")
    sub.add_parser("version", help="print the installed versions")
    args = parser.parse_args(argv)
    if args.command == "version":
        from suitkaise._demo import versions

        for dist, version in versions().items():
            print(f"{dist:15} {version}")
        return 0
    from suitkaise._demo import run_demo

    return run_demo(quick=args.quick, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
