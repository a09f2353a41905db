"""The ``edgefilter`` command line: one entry point for the whole project.

Every option can also be set in the environment (``--help`` names each one's variable);
the command line wins. Secrets belong there: ``EDGEFILTER_API_KEY`` for the Sites API key
and ``EDGEFILTER_DB`` for a database URL with a password, so neither shows in ``ps``.
Errors are one line on stderr with a non-zero exit status: 2 for a bad option or
configuration, 1 for a failure at run time (a database that cannot be reached, a missing
extra, a server that did not start).

This module imports only the standard library and the core at import time: each command
loads its own stack (the ``server``, ``proxy`` or ``demo`` extra) when it runs, so
``edgefilter --help`` and ``edgefilter --version`` work on a core install.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Final, NoReturn

from ._errors import EdgeFilterError
from .middleware import PROXY_HEADERS

LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
CLIENT_ADDRESS_HEADERS: Final = ("x-real-ip", "x-forwarded-for")  # the proxy's default
DEFAULT_DB: Final = "sqlite:///edgefilter.db"
# edgefilter.server._store.ROLES (a test checks)
ROLES: Final = ("owner", "admin", "member", "edge")
DB_SCHEMES: Final = ("sqlite", "postgresql", "postgresql+psycopg")
RULES_SOURCES: Final = ("cache", "feed")
API_FACTORY: Final = "edgefilter.cli:api_app_from_environment"
PROXY_FACTORY: Final = "edgefilter.cli:proxy_app_from_environment"
# The modules each extra brings, checked before a command loads them.
EXTRA_MODULES: Final[Mapping[str, tuple[str, ...]]] = {
    "server": ("starlette", "uvicorn", "sqlalchemy", "idna"),
    "proxy": ("httpx", "cachetools", "starlette", "uvicorn"),
    "demo": ("httpx", "cachetools", "starlette", "uvicorn", "sqlalchemy", "idna"),
    "postgres": ("psycopg",),
}
_PASSWORD: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@]*:)[^@/]*@")

logger = logging.getLogger("edgefilter")
DESCRIPTION: Final = """\
Decide at the edge of a web-analytics pipeline whether a tracking hit is recorded.

Every option can also be set in the environment: each option's help names its variable
and default, and the command line wins. Put secrets there (EDGEFILTER_API_KEY,
EDGEFILTER_DB with a password): the command line shows in ps. Errors are one line with
exit status 2 (bad option or configuration) or 1 (failure at run time)."""


class CliError(Exception):
    """A command cannot go on; the message is the one line the user sees."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- option values -------------------------------------------------------------------------


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    value = _integer(text, "port")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} is not between 0 and 65535")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = _integer(text, "count")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not at least 1")
    return value


def _seconds(text: str, *, zero: bool, bound: str) -> float:
    """A finite number of seconds above 0 (or also 0 with ``zero``); ``bound`` names the
    range in the error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds{bound}")
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds above 0."""
    return _seconds(text, zero=False, bound=" above 0")


def seconds_or_zero(text: str) -> float:
    """A number of seconds, 0 or above."""
    return _seconds(text, zero=True, bound=", 0 or above")


def count_or_zero(text: str) -> int:
    """An integer of at least 0."""
    value = _integer(text, "count")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not 0 or more")
    return value


def log_level(text: str) -> str:
    """A logging level name, in any case."""
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not an integer") from None


def redact(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", url)


# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a command: its flags, the variable that backs it and its default."""

    flags: tuple[str, ...]
    env: str
    help: str
    default: Any = None
    convert: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    required: bool = False
    secret: bool = False  # visible in ps when given as a flag: the variable is the way
    many: bool = False  # repeatable; the variable holds a comma-separated list
    shown: str | None = None  # the default as --help says it, when not the value itself
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The attribute the parsed value lands in."""
        return self.flags[0].lstrip("-").replace("-", "_")

    def help_text(self) -> str:
        """The help line: what it is, its default and its variable."""
        if self.required:
            default = "required"
        elif self.shown is not None:
            default = f"default: {self.shown}"
        else:
            default = f"default: {self.default}"
        return f"{self.help} [{default}; env: {self.env}]".replace("%", "%%")

    def from_environment(self, environ: Mapping[str, str]) -> Any:
        """The value the variable sets, or None when it is unset or empty."""
        raw = environ.get(self.env, "").strip()
        if not raw:
            return None
        texts = [item.strip() for item in raw.split(",") if item.strip()] if self.many else [raw]
        try:
            values = [self.convert(text) for text in texts]
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise CliError(f"{self.env}: {error}", 2) from None
        for value in values:
            if self.choices is not None and value not in self.choices:
                raise CliError(f"{self.env}: {value!r} is not one of {', '.join(self.choices)}", 2)
        return values if self.many else values[0]

    def as_environment(self, value: Any) -> str:
        """``value`` as the variable spells it."""
        if self.many:
            return ",".join(str(item) for item in value)
        return str(value)


# The request bot layers (edgefilter._botlayers.REQUEST_LAYERS; not imported: the CLI
# starts without the filter's modules).
BOT_LAYER_NAMES: Final = ("headers", "client", "datacenter", "rate")


def _server_options(command: str, port: int) -> list[Option]:
    """The listening and uvicorn options of ``serve-api`` and ``proxy``."""
    return [
        Option(
            ("--host",), "EDGEFILTER_HOST", "address to listen on", "127.0.0.1", metavar="ADDRESS"
        ),
        Option(("--port",), "EDGEFILTER_PORT", "port to listen on", port, port_number),
        Option(
            ("--workers",),
            "EDGEFILTER_WORKERS",
            f"worker processes; over 1, each builds the {command} from the EDGEFILTER_* variables",
            1,
            positive_int,
        ),
        Option(
            ("--root-path",),
            "EDGEFILTER_ROOT_PATH",
            "ASGI root_path when served under a path prefix",
            "",
            shown="none",
        ),
        Option(
            ("--log-config",),
            "EDGEFILTER_LOG_CONFIG",
            "logging config file for uvicorn (.json, .yaml or .ini)",
            None,
            Path,
            shown="uvicorn's",
            metavar="FILE",
        ),
        Option(
            ("--timeout-keep-alive",),
            "EDGEFILTER_TIMEOUT_KEEP_ALIVE",
            "seconds an idle keep-alive connection stays open",
            5.0,
            positive_seconds,
        ),
        Option(
            ("--timeout-graceful-shutdown",),
            "EDGEFILTER_TIMEOUT_GRACEFUL_SHUTDOWN",
            "seconds to let open requests finish on shutdown",
            None,
            positive_seconds,
            shown="wait for all",
        ),
    ]


DB_OPTION: Final = Option(
    ("--db",),
    "EDGEFILTER_DB",
    "database URL: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB",
    DEFAULT_DB,
    secret=True,
    metavar="URL",
)
DEMO_OPTIONS: Final = [
    Option(
        ("--data",),
        "EDGEFILTER_DEMO_DATA",
        "folder with sites.json, traffic.tsv and e2e-traffic.tsv",
        None,
        Path,
        shown="the sample shipped in the package",
        metavar="DIR",
    ),
    Option(
        ("--geoip",),
        "EDGEFILTER_GEOIP",
        "MaxMind .mmdb file",
        None,
        Path,
        shown="MaxMind's test database shipped in the package",
        metavar="FILE",
    ),
    Option(("--repeat",), "EDGEFILTER_DEMO_REPEAT", "offline replays (rate)", 2000, positive_int),
    Option(("--rounds",), "EDGEFILTER_DEMO_ROUNDS", "live replays", 40, positive_int),
]
PROXY_OPTIONS: Final = [
    Option(
        ("--upstream",),
        "EDGEFILTER_UPSTREAM",
        "the Rybbit to forward to",
        required=True,
        metavar="URL",
    ),
    Option(
        ("--api",),
        "EDGEFILTER_API",
        "Sites API base URL (Rybbit or serve-api)",
        required=True,
        metavar="URL",
    ),
    Option(
        ("--key",),
        "EDGEFILTER_API_KEY",
        "Sites API key (set the variable: a flag shows in ps)",
        required=True,
        secret=True,
        metavar="KEY",
    ),
    Option(
        ("--geoip",),
        "EDGEFILTER_GEOIP",
        ".mmdb file for country rules",
        None,
        Path,
        shown="no country rules",
        metavar="FILE",
    ),
    Option(
        ("--asn-db",),
        "EDGEFILTER_ASN_DB",
        "GeoLite2-ASN or GeoIP2-ISP .mmdb file for ASN rules",
        None,
        Path,
        shown="no ASN rules",
        metavar="FILE",
    ),
    Option(
        ("--trusted-proxy",),
        "EDGEFILTER_TRUSTED_PROXIES",
        "address or CIDR that may set the client address; repeatable, the variable comma-separated",
        [],
        many=True,
        shown="none",
        metavar="CIDR",
    ),
    Option(
        ("--proxy-header",),
        "EDGEFILTER_PROXY_HEADER",
        "the one header trusted proxies set the client address in",
        "x-forwarded-for",
        str.lower,
        choices=PROXY_HEADERS,
    ),
    Option(
        ("--bot-layer",),
        "EDGEFILTER_BOT_LAYERS",
        "request bot layer to turn on (headers, client, datacenter, rate); repeatable, the "
        "variable comma-separated",
        [],
        many=True,
        choices=BOT_LAYER_NAMES,
        shown="none",
        metavar="LAYER",
    ),
    Option(
        ("--datacenter-file",),
        "EDGEFILTER_DATACENTER_FILES",
        "file of datacenter ranges (an address, CIDR or range a line) for the datacenter "
        "layer; repeatable",
        [],
        Path,
        many=True,
        shown="none",
        metavar="FILE",
    ),
    Option(
        ("--datacenter-asn",),
        "EDGEFILTER_DATACENTER_ASNS",
        "AS number whose addresses the datacenter layer flags (needs --asn-db); repeatable",
        [],
        many=True,
        shown="none",
        metavar="ASN",
    ),
    Option(
        ("--rates-redis",),
        "EDGEFILTER_RATES_REDIS",
        "Redis URL the rate layer shares its counters in (extra: redis)",
        None,
        secret=True,
        shown="counted in each process",
        metavar="URL",
    ),
    Option(
        ("--rules-source",),
        "EDGEFILTER_RULES_SOURCE",
        "where the rules come from: 'cache' (RulesCache, per-site reads: any Sites API, "
        "Rybbit too) or 'feed' (RulesFeed: every site from serve-api's versioned rules feed, "
        "changes pushed; an unknown site id costs no request)",
        "cache",
        str.lower,
        choices=RULES_SOURCES,
    ),
    Option(
        ("--ttl",),
        "EDGEFILTER_TTL",
        "rules cache TTL, seconds (--rules-source cache)",
        60.0,
        positive_seconds,
    ),
    Option(
        ("--feed-snapshot",),
        "EDGEFILTER_FEED_SNAPSHOT",
        "file the feed's rules are saved to and started from, so a restart decides even "
        "with the API down (--rules-source feed)",
        None,
        Path,
        shown="none",
        metavar="FILE",
    ),
    Option(
        ("--feed-wait",),
        "EDGEFILTER_FEED_WAIT",
        "seconds the server holds each feed read until a change commits (push); 0 polls "
        "every --feed-poll-interval (--rules-source feed)",
        25.0,
        seconds_or_zero,
    ),
    Option(
        ("--feed-poll-interval",),
        "EDGEFILTER_FEED_POLL_INTERVAL",
        "seconds between feed reads when polling, or when the server holds no more reads "
        "(--rules-source feed)",
        30.0,
        positive_seconds,
    ),
    Option(
        ("--body-timeout",),
        "EDGEFILTER_BODY_TIMEOUT",
        "seconds a request's whole body may take to arrive before answering 408 (slow clients)",
        30.0,
        positive_seconds,
    ),
    Option(
        ("--upstream-timeout",),
        "EDGEFILTER_UPSTREAM_TIMEOUT",
        "seconds to wait for the upstream (each connect, read, write) before answering 504",
        10.0,
        positive_seconds,
    ),
    Option(
        ("--client-address-header",),
        "EDGEFILTER_CLIENT_ADDRESS_HEADERS",
        "header the upstream reads the visitor's address from, set to the address the filter "
        "decided on (whatever the client sent); repeatable, the variable comma-separated; "
        "'none' sends none",
        list(CLIENT_ADDRESS_HEADERS),
        str.lower,
        many=True,
        shown=" and ".join(CLIENT_ADDRESS_HEADERS),
        metavar="NAME",
    ),
    Option(
        ("--max-body",),
        "EDGEFILTER_MAX_BODY",
        "largest track or identify body, bytes (413 past it)",
        64 * 1024,
        positive_int,
        metavar="BYTES",
    ),
    Option(
        ("--max-replay-body",),
        "EDGEFILTER_MAX_REPLAY_BODY",
        "largest session replay upload, bytes (413 past it)",
        10 * 1024 * 1024,
        positive_int,
        metavar="BYTES",
    ),
    Option(
        ("--relay",),
        "EDGEFILTER_RELAY",
        "what to relay: 'ingest' (Rybbit's ingest surface; other paths 404) or 'all' "
        "(every other path too, unfiltered)",
        "ingest",
        str.lower,
        choices=("ingest", "all"),
    ),
    *_server_options("proxy", 8080),
]
# The rules feed's bounds (edgefilter.server: DEFAULT_MAX_TOMBSTONES, DEFAULT_MAX_WAIT,
# DEFAULT_MAX_WAITERS; a test checks).
FEED_SERVER_OPTIONS: Final = [
    Option(
        ("--feed-max-tombstones",),
        "EDGEFILTER_FEED_MAX_TOMBSTONES",
        "deleted sites the rules feed's deltas can still tell; a node further behind takes "
        "a full snapshot",
        100_000,
        positive_int,
    ),
    Option(
        ("--feed-max-wait",),
        "EDGEFILTER_FEED_MAX_WAIT",
        "seconds the rules feed holds a node's read at most (long poll); 0 holds none",
        30.0,
        seconds_or_zero,
    ),
    Option(
        ("--feed-max-waiters",),
        "EDGEFILTER_FEED_MAX_WAITERS",
        "reads the rules feed holds at once per process; past it a read answers 304 with "
        "Retry-After",
        10_000,
        count_or_zero,
    ),
]
SERVE_API_OPTIONS: Final = [DB_OPTION, *FEED_SERVER_OPTIONS, *_server_options("Sites API", 8000)]
LOG_LEVEL_OPTION: Final = Option(
    ("--log-level",),
    "EDGEFILTER_LOG_LEVEL",
    "logging level, before or after the command",
    "warning",
    log_level,
    choices=LOG_LEVELS,
)


@dataclass(frozen=True, slots=True)
class Command:
    """A sub-command: its help, its options, the extra it needs and what runs it."""

    help: str
    run: Callable[[argparse.Namespace], int]
    options: list[Option] = field(default_factory=list)
    extra: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


# --- the parser ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``edgefilter serve-api: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("edgefilter")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``: the installed distribution's version, read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any) -> None:
        print(f"edgefilter {_version()}")
        parser.exit(0)


def _add(parser: argparse.ArgumentParser, option: Option, default: Any = None) -> None:
    parser.add_argument(
        *option.flags,
        dest=option.dest,
        type=option.convert,
        default=default,
        choices=option.choices,
        action="append" if option.many else "store",
        help=option.help_text(),
        metavar=option.metavar or _METAVARS.get(option.convert),
    )


_METAVARS: Final[dict[Callable[[str], Any], str]] = {
    port_number: "PORT",
    positive_int: "N",
    count_or_zero: "N",
    positive_seconds: "SECONDS",
    seconds_or_zero: "SECONDS",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="edgefilter", description=DESCRIPTION, formatter_class=formatter)
    parser.add_argument("--version", action=_VersionAction)
    _add(parser, LOG_LEVEL_OPTION)
    common = _Parser(add_help=False)
    _add(common, LOG_LEVEL_OPTION, argparse.SUPPRESS)  # after the command too
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        extra = f" (extra: {command.extra})" if command.extra else ""
        sub = commands.add_parser(
            name, help=command.help + extra, description=command.help + extra, parents=[common]
        )
        if command.arguments is not None:
            command.arguments(sub)
        for option in command.options:
            _add(sub, option)
    return parser


def resolve(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Fill in what the command line left out from ``environ`` (the process environment),
    then from the defaults; ``CliError`` for a missing required option or a bad variable."""
    environ = os.environ if environ is None else environ
    command = COMMANDS[args.command]
    for option in [LOG_LEVEL_OPTION, *command.options]:
        value = getattr(args, option.dest, None)
        if value is not None and option.secret and option.dest in vars(args):
            _warn_visible(option, value)
        if value is None:
            value = option.from_environment(environ)
        if value is None and option.required:
            raise CliError(f"{'/'.join(option.flags)} or {option.env} is required", 2)
        setattr(args, option.dest, option.default if value is None else value)
    return args


def _warn_visible(option: Option, value: str) -> None:
    """A secret given as a flag is visible to every user in ``ps``: say so (not the value)."""
    if option.dest in ("db", "rates_redis") and redact(value) == value:
        return  # a URL without a password holds no secret
    print(
        f"edgefilter: warning: {option.flags[0]} shows in ps; set {option.env} instead",
        file=sys.stderr,
    )


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """The command line parsed and completed from the environment (see ``resolve``)."""
    return resolve(build_parser().parse_args(argv), environ)


def configure_logging(level: str, *, log_config: object = None) -> None:
    """Log at ``level``; through the handlers of ``log_config`` when uvicorn is given one."""
    if log_config is None:
        logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    else:  # the file's handlers; the level still applies to edgefilter's own records
        logger.setLevel(level.upper())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line; the exit status is the return value."""
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        resolve(args)
        configure_logging(args.log_level, log_config=getattr(args, "log_config", None))
        return command.run(args)
    except CliError as error:
        return _fail(str(error), error.status)
    except EdgeFilterError as error:  # a bad rule, trusted proxy or GeoIP file: configuration
        return _fail(str(error), 2)
    except ModuleNotFoundError as error:
        extra = command.extra or "all"
        return _fail(f"needs {error.name!r}: pip install 'edgefilter[{extra}]'", 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, status: int) -> int:
    print(f"edgefilter: error: {message}", file=sys.stderr)
    return status


def require(extra: str, command: str) -> None:
    """``CliError`` naming the extra to install when a module it brings is missing."""
    missing = [name for name in EXTRA_MODULES[extra] if find_spec(name) is None]
    if missing:
        raise CliError(
            f"{command} needs the {extra!r} extra ({', '.join(missing)} missing): "
            f"pip install 'edgefilter[{extra}]'"
        )


# --- the database --------------------------------------------------------------------------


def check_db_url(url: str) -> None:
    """``CliError`` unless ``url`` is a SQLite or PostgreSQL URL whose driver is installed."""
    scheme = url.partition(":")[0].lower() if "://" in url else ""
    if scheme not in DB_SCHEMES:
        raise CliError(
            f"--db {redact(url)!r} is not a database URL: "
            "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB",
            2,
        )
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        make_url(url)
    except (ArgumentError, ValueError) as error:
        raise CliError(f"--db {redact(url)!r} is not a valid URL: {error}", 2) from None
    if scheme.startswith("postgresql"):
        require("postgres", "a PostgreSQL --db")


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn the database's errors into one ``CliError`` naming the (redacted) URL."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    try:
        yield
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise CliError(f"cannot use the database {redact(url)}: {reason}") from None


def open_store(url: str) -> Any:
    """The ``SiteStore`` at ``url`` (migrated), with every failure as a ``CliError``."""
    require("server", "this command")
    check_db_url(url)
    from .server._store import SiteStore  # noqa: PLC0415

    with database_errors(url):
        return SiteStore(url)


def _with_store(args: argparse.Namespace, work: Callable[[Any], None]) -> int:
    store = open_store(args.db)
    try:
        with database_errors(args.db):
            work(store)
    except (LookupError, ValueError) as error:
        raise CliError(str(error)) from None
    finally:
        store.close()
    return 0


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Rows in columns under their headers, two spaces apart."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    for row in [headers, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


# --- the commands --------------------------------------------------------------------------


def _create_org(args: argparse.Namespace) -> int:
    return _with_store(args, lambda store: print(store.create_organization(args.name)))


def _create_key(args: argparse.Namespace) -> int:
    return _with_store(args, lambda store: print(store.create_key(args.org, args.role, args.user)))


def _new_feed_epoch(args: argparse.Namespace) -> int:
    def work(store: Any) -> None:
        clock = store.new_feed_epoch()
        print(f"feed epoch {clock.epoch} (version {clock.version}): every node takes a full")
        print("snapshot at its next read (on PostgreSQL at once, reads held included)")

    return _with_store(args, work)


def _list_orgs(args: argparse.Namespace) -> int:
    def work(store: Any) -> None:
        rows = [(org.id, org.name, org.created_at) for org in store.organizations()]
        print_table(("ORGANISATION", "NAME", "CREATED"), rows)

    return _with_store(args, work)


def _list_keys(args: argparse.Namespace) -> int:
    def work(store: Any) -> None:
        rows = [
            (key.key_id, key.organization_id, key.user_id, key.role, key.created_at)
            for key in store.keys(args.org)
        ]
        print_table(("KEY ID", "ORGANISATION", "USER", "ROLE", "CREATED"), rows)

    return _with_store(args, work)


def _revoke_key(args: argparse.Namespace) -> int:
    def work(store: Any) -> None:
        key = store.revoke_key(args.key_id)
        print(f"revoked key {key.key_id} of {key.user_id} ({key.role}, {key.organization_id})")

    return _with_store(args, work)


def uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    """The uvicorn settings the server options ask for (proxy headers stay off regardless)."""
    options: dict[str, Any] = {
        "root_path": args.root_path,
        "timeout_keep_alive": args.timeout_keep_alive,
        "timeout_graceful_shutdown": args.timeout_graceful_shutdown,
        "log_level": args.log_level,
    }
    if args.log_config is not None:
        if not args.log_config.is_file():
            raise CliError(f"--log-config {str(args.log_config)!r} is not a file", 2)
        options["log_config"] = str(args.log_config)
    return options


def export_settings(args: argparse.Namespace, options: Sequence[Option]) -> None:
    """Put the resolved settings in the environment, where each worker's factory reads them."""
    for option in [LOG_LEVEL_OPTION, *options]:
        value = getattr(args, option.dest)
        if value is None:
            os.environ.pop(option.env, None)
        else:
            os.environ[option.env] = option.as_environment(value)


def _run_server(app: Any, args: argparse.Namespace) -> int:
    from ._serving import serve  # noqa: PLC0415

    options = uvicorn_options(args)
    if args.workers > 1:
        options["factory"] = True
    return 0 if serve(app, host=args.host, port=args.port, workers=args.workers, **options) else 1


def _serve_api(args: argparse.Namespace) -> int:
    require("server", "serve-api")
    check_db_url(args.db)
    from .server import create_app  # noqa: PLC0415

    with database_errors(args.db):
        app = create_app(args.db, **feed_server_options(args))  # migrates once, here
    if args.workers == 1:
        return _run_server(app, args)
    app.state.store.close()
    export_settings(args, SERVE_API_OPTIONS)
    return _run_server(API_FACTORY, args)


def feed_server_options(args: argparse.Namespace) -> dict[str, Any]:
    """``create_app``'s rules feed bounds from ``serve-api``'s options."""
    return {
        "max_tombstones": args.feed_max_tombstones,
        "feed_max_wait": args.feed_max_wait,
        "feed_max_waiters": args.feed_max_waiters,
    }


def _proxy(args: argparse.Namespace) -> int:
    require("proxy", "proxy")
    # Configuration errors surface here, before any worker starts.
    proxy = build_proxy(args, start=args.workers == 1)
    if args.workers == 1:
        return _run_server(proxy, args)  # closed at its lifespan shutdown
    close_proxy(proxy)
    export_settings(args, PROXY_OPTIONS)
    return _run_server(PROXY_FACTORY, args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_DATA, TEST_GEOIP, run_live_demo, run_offline_demo  # noqa: PLC0415

    data = args.data if args.data is not None else DEMO_DATA
    geoip = args.geoip if args.geoip is not None else TEST_GEOIP
    traffic = "traffic.tsv" if args.offline else "e2e-traffic.tsv"
    for name in ("sites.json", traffic):
        if not (data / name).is_file():
            raise CliError(f"--data {str(data)!r} has no {name}", 2)
    if not geoip.is_file():
        raise CliError(f"--geoip {str(geoip)!r} is not a file", 2)
    if args.offline:
        return run_offline_demo(data, geoip, repeat=args.repeat)
    require("demo", "the live demo (without --offline)")
    return run_live_demo(data, geoip, rounds=args.rounds)


def build_proxy(args: argparse.Namespace, *, start: bool = True) -> Any:
    """The edge proxy app (an ``EdgeFilterMiddleware``) from the ``proxy`` command's options.

    Its rules source (a ``RulesCache`` or, with ``--rules-source feed``, a ``RulesFeed``),
    Sites API client and Redis rate client close at the app's lifespan shutdown;
    ``close_proxy`` closes those of an app that is not served. ``start=False`` leaves a
    feed's thread unstarted (a proxy built only to check the configuration).
    """
    from ._client import SitesApiClient  # noqa: PLC0415
    from ._filter import EdgeFilter  # noqa: PLC0415
    from .proxy import create_proxy_app  # noqa: PLC0415

    client = SitesApiClient(args.api, args.key)
    geoip = str(args.geoip) if args.geoip else None
    asn_db = str(args.asn_db) if args.asn_db else None
    source = None
    layers = None
    try:
        source = rules_source_from_args(args, client, start=start)
        edge_filter = EdgeFilter(source, geoip=geoip, asn_db=asn_db)
        layers = bot_layers_from_args(args, edge_filter.asn_db)

        async def shutdown() -> None:
            await aclose_resources(source, client, layers)

        return create_proxy_app(
            args.upstream,
            edge_filter,
            trusted_proxies=args.trusted_proxy,
            proxy_header=args.proxy_header,
            upstream_timeout=args.upstream_timeout,
            body_timeout=args.body_timeout,
            client_address_headers=[name for name in args.client_address_header if name != "none"],
            max_body_bytes=args.max_body,
            max_replay_body_bytes=args.max_replay_body,
            relay_all=args.relay == "all",
            on_shutdown=[shutdown],
            **({"bot_layers": layers} if layers is not None else {}),
        )
    except BaseException:
        close_resources(source, client, layers)
        raise


def rules_source_from_args(args: argparse.Namespace, client: Any, *, start: bool = True) -> Any:
    """The proxy's rules source: a ``RulesCache`` (``--ttl``) or a ``RulesFeed``
    (``--feed-snapshot``, ``--feed-wait``, ``--feed-poll-interval``)."""
    if args.rules_source == "feed":
        from ._feed import RulesFeed  # noqa: PLC0415

        return RulesFeed(
            client,
            wait=args.feed_wait,
            poll_interval=args.feed_poll_interval,
            snapshot_path=args.feed_snapshot,
            start=start,
        )
    from ._cache import RulesCache  # noqa: PLC0415

    return RulesCache(client, ttl=args.ttl)


def bot_layers_from_args(args: argparse.Namespace, asn_db: Any) -> Any:
    """The proxy's ``RequestLayers`` from ``--bot-layer`` and the datacenter and Redis
    options (a datacenter file or ASN turns the datacenter layer on, a Redis URL the rate
    layer); None when none is on."""
    from ._botlayers import RequestLayers  # noqa: PLC0415
    from ._datacenter import DatacenterRanges  # noqa: PLC0415
    from ._rates import RedisRates  # noqa: PLC0415

    names = set(args.bot_layer or ())
    if args.datacenter_file or args.datacenter_asn:
        names.add("datacenter")
    if args.rates_redis:
        names.add("rate")
    if not names:
        return None
    datacenter = None
    if "datacenter" in names:
        if not (args.datacenter_file or args.datacenter_asn):
            raise CliError("--bot-layer datacenter needs --datacenter-file or --datacenter-asn", 2)
        datacenter = DatacenterRanges.from_sources(
            args.datacenter_file, asns=args.datacenter_asn, asn_db=asn_db
        )
    rates: Any = None
    if "rate" in names:
        rates = RedisRates(args.rates_redis) if args.rates_redis else True
    return RequestLayers(
        headers="headers" in names, client="client" in names, datacenter=datacenter, rates=rates
    )


def close_proxy(proxy: Any) -> None:
    """Close what ``build_proxy`` opened for a proxy that is not being served: its rules
    source, its Sites API client and its Redis rate client."""
    source = proxy.edge_filter.source
    close_resources(source, source.client, proxy.bot_layers)


def close_resources(source: Any, client: Any, layers: Any) -> None:
    """Stop the rules source (a feed saves its snapshot file) and close the clients."""
    if source is not None:
        source.close()
    client.close()
    if layers is not None and layers.needs_await:  # rates in Redis: an asyncio client
        asyncio.run(layers.aclose())


async def aclose_resources(source: Any, client: Any, layers: Any) -> None:
    """``close_resources`` at the served app's shutdown, on its event loop."""
    await asyncio.to_thread(source.close)  # a feed writes its snapshot file
    await client.aclose()
    if layers is not None:
        await layers.aclose()


def _settings(command: str) -> argparse.Namespace:
    """A command's settings from the environment alone, as a worker process reads them."""
    args = argparse.Namespace(command=command)
    resolve(args)
    configure_logging(args.log_level, log_config=args.log_config)
    return args


def api_app_from_environment() -> Any:
    """The Sites API app from ``EDGEFILTER_DB``: the factory ``serve-api --workers`` runs.

    Served by hand (``uvicorn --factory edgefilter.cli:api_app_from_environment``), pass
    ``--no-proxy-headers``: the app does not read forwarded addresses, uvicorn would.
    """
    from .server import create_app  # noqa: PLC0415

    args = _settings("serve-api")
    return create_app(args.db, **feed_server_options(args))


def proxy_app_from_environment() -> Any:
    """The edge proxy from the ``EDGEFILTER_*`` variables: the factory ``proxy --workers`` runs.

    Served by hand, pass uvicorn ``--no-proxy-headers``: client addresses are the
    middleware's job alone (see ``edgefilter._serving``).
    """
    return build_proxy(_settings("proxy"))


def _organization_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the organisation's name")


def _key_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", required=True, help="organisation id (org_...)")
    parser.add_argument(
        "--role",
        choices=ROLES,
        default="member",
        help="the key's role; edge: an edge node's key, read-only, the rules of every "
        "organisation (GET /api/edge/rules) [default: %(default)s]",
    )
    parser.add_argument("--user", default=None, help="user id [default: a new user]")


def _org_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", default=None, help="only this organisation's keys")


def _key_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key_id", metavar="KEY_ID", help="the KEY ID list-keys shows (8+ hex)")


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offline", action="store_true", help="decide in-process, no servers")


COMMANDS: Final[dict[str, Command]] = {
    "demo": Command(
        "end to end on loopback: Sites API, live rules, middleware, sample traffic "
        "(--offline: in-process, core only)",
        _demo,
        DEMO_OPTIONS,
        "demo",
        _demo_arguments,
    ),
    "proxy": Command(
        "edge proxy: filter hits, forward the rest to Rybbit", _proxy, PROXY_OPTIONS, "proxy"
    ),
    "serve-api": Command(
        "serve the reference Sites API with uvicorn", _serve_api, SERVE_API_OPTIONS, "server"
    ),
    "create-org": Command(
        "create an organisation; prints its id",
        _create_org,
        [DB_OPTION],
        "server",
        _organization_name,
    ),
    "create-key": Command(
        "create an API key; prints it, once", _create_key, [DB_OPTION], "server", _key_arguments
    ),
    "list-orgs": Command("list the organisations", _list_orgs, [DB_OPTION], "server"),
    "list-keys": Command(
        "list the API keys: id (start of its hash), organisation, user, role, created; never a key",
        _list_keys,
        [DB_OPTION],
        "server",
        _org_filter,
    ),
    "revoke-key": Command(
        "revoke (delete) an API key by its id", _revoke_key, [DB_OPTION], "server", _key_id
    ),
    "new-feed-epoch": Command(
        "give the database a new rules-feed epoch (after a restore): nodes resync in full",
        _new_feed_epoch,
        [DB_OPTION],
        "server",
    ),
}


if __name__ == "__main__":
    sys.exit(main())
