"""The ``edgefilter`` command line: one entry point for the whole project."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ._cache import RulesCache
from ._client import SitesApiClient
from ._errors import ConfigError
from ._filter import EdgeFilter
from ._serving import serve
from .demo import run_live_demo, run_offline_demo
from .middleware import PROXY_HEADERS, EdgeFilterMiddleware
from .proxy import create_proxy_app
from .server import create_app
from .server._store import ROLES, SiteStore

DEFAULT_DB = "sqlite:///edgefilter.db"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="edgefilter", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="end to end on loopback: Sites API, live rules, middleware, sample traffic"
    )
    demo.add_argument("--data", type=Path, default=Path("data/demo"), help="sites and traffic")
    demo.add_argument(
        "--geoip", type=Path, default=Path("data/geo/GeoLite2-City-Test.mmdb"), help=".mmdb file"
    )
    demo.add_argument("--offline", action="store_true", help="decide in-process, no servers")
    demo.add_argument("--repeat", type=int, default=2000, help="offline replays (rate)")
    demo.add_argument("--rounds", type=int, default=40, help="live replays of the traffic")

    proxy = commands.add_parser("proxy", help="edge proxy: filter hits, forward the rest")
    proxy.add_argument("--upstream", required=True, help="the Rybbit server to forward to")
    proxy.add_argument("--api", required=True, help="Sites API base URL (Rybbit or serve-api)")
    proxy.add_argument("--key", required=True, help="Sites API key")
    proxy.add_argument("--geoip", type=Path, default=None, help=".mmdb file for country rules")
    proxy.add_argument("--trusted-proxy", action="append", default=[], help="address or CIDR")
    proxy.add_argument(
        "--proxy-header",
        choices=PROXY_HEADERS,
        default="x-forwarded-for",
        help="the one header trusted proxies set the client address in (default %(default)s)",
    )
    proxy.add_argument("--ttl", type=float, default=60.0, help="rules cache TTL in seconds")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8080)

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


def build_proxy(args: argparse.Namespace) -> EdgeFilterMiddleware:
    """The edge proxy app from the ``proxy`` command's options."""
    client = SitesApiClient(args.api, args.key)
    geoip = str(args.geoip) if args.geoip else None
    edge_filter = EdgeFilter(RulesCache(client, ttl=args.ttl), geoip=geoip)
    return create_proxy_app(
        args.upstream,
        edge_filter,
        trusted_proxies=args.trusted_proxy,
        proxy_header=args.proxy_header,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line; the exit status is the return value."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo" and args.offline:
        return run_offline_demo(args.data, args.geoip, repeat=args.repeat)
    if args.command == "demo":
        return run_live_demo(args.data, args.geoip, rounds=args.rounds)
    if args.command == "proxy":
        try:
            proxy = build_proxy(args)
        except ConfigError as error:
            print(f"edgefilter: {error}", file=sys.stderr)
            return 2
        return 0 if serve(proxy, host=args.host, port=args.port) else 1
    if args.command == "serve-api":
        return 0 if serve(create_app(args.db), host=args.host, port=args.port) else 1
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
