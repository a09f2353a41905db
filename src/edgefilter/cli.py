"""The ``edgefilter`` command line: one entry point for the whole project."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ._demo import run_offline_demo


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="edgefilter", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="decide sample traffic against sample site configs")
    demo.add_argument(
        "--data", type=Path, default=Path("data/demo"), help="sites.json, traffic.tsv"
    )
    demo.add_argument(
        "--geoip", type=Path, default=Path("data/geo/GeoLite2-City-Test.mmdb"), help=".mmdb file"
    )
    demo.add_argument("--repeat", type=int, default=2000, help="replays for the rate measurement")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line; the exit status is the return value."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        return run_offline_demo(args.data, args.geoip, repeat=args.repeat)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
