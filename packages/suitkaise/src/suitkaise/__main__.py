"""Command line: ``python -m suitkaise demo|version|report`` (or the ``suitkaise`` script)."""

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
    report = sub.add_parser(
        "report", help="run a script and draw a timeline of its Pool calls (which worker ran which item, when)",
        description="Run SCRIPT with Pool recording on (SK_POOL_TRACE) and write a timeline: one lane per "
        "worker process, one bar per item, crashes and replacement workers marked.",
    )
    report.add_argument("-o", "--output", default="pool-timeline.svg", help="SVG, or HTML with a summary "
                        "(.html) (default: pool-timeline.svg)")
    report.add_argument("--trace", help="also keep the recorded events (JSON lines) in this file")
    report.add_argument("--from", dest="source", metavar="TRACE", help="draw an existing trace; run nothing")
    report.add_argument("script", nargs=argparse.REMAINDER, help="the script and its arguments")
    args = parser.parse_args(argv)
    if args.command == "report":
        from suitkaise._report import main as report_main

        return report_main(args.script, args.output, args.trace, args.source)
    if args.command == "version":
        from suitkaise._demo import versions

        for dist, version in versions().items():
            print(f"{dist:15} {version}")
        return 0
    from suitkaise._demo import run_demo

    return run_demo(quick=args.quick, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
