"""The ``edgefilter`` command line: one entry point for the whole project."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from ._demo import run_offline_demo
from ._store import ROLES, SiteStore
from .server import create_app

DEFAULT_DB = "sqlite:///edgefilter.db"


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

    serve = commands.add_parser("serve-api", help="serve the reference Sites API with uvicorn")
    serve.add_argument("--db", default=DEFAULT_DB, help=f"database URL (default {DEFAULT_DB})")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    org = commands.add_parser("create-org", help="create an organisation; prints its id")
    org.add_argument("name")
    org.add_argument("--db", default=DEFAULT_DB)

    key = commands.add_parser("create-key", help="create an API key; prints it, once")
    key.add_argument("--org", required=True, help="organisation id")
    key.add_argument("--role", choices=ROLES, default="member")
    key.add_argument("--user", default=None, help="user id (default: a new user)")
    key.add_argument("--db", default=DEFAULT_DB)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line; the exit status is the return value."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        return run_offline_demo(args.data, args.geoip, repeat=args.repeat)
    if args.command == "serve-api":
        uvicorn.run(create_app(args.db), host=args.host, port=args.port)
        return 0
    store = SiteStore(args.db)
    try:
        if args.command == "create-org":
            print(store.create_organization(args.name))
        else:
            print(store.create_key(args.org, args.role, args.user))
    except (LookupError, ValueError) as error:
        print(f"edgefilter: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
