"""The command line's conventions: options from the environment, defaults in --help,
one-line errors, the extra each command needs, and no heavy import for --help or --version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import edgefilter
from edgefilter import cli
from edgefilter.cli import COMMANDS, CliError, main, parse_args
from edgefilter.server._store import ROLES

SRC = Path(edgefilter.__file__).resolve().parents[1]
STACKS = {"sqlalchemy", "uvicorn", "starlette", "httpx", "cachetools", "idna", "psycopg"}


def run_cli(
    *argv: str, blocked: tuple[str, ...] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """``edgefilter ARGV`` in a fresh interpreter with ``blocked`` modules made unimportable;
    it prints, last, the application stacks it loaded."""
    probe = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from edgefilter.cli import main\n"
        "try:\n"
        f"    status = main({list(argv)!r})\n"
        "except SystemExit as stop:\n"
        "    status = stop.code\n"
        f"print('LOADED', *sorted({{m.split('.')[0] for m in sys.modules}} & {STACKS!r}))\n"
        "sys.exit(status)\n"
    )
    environ = {**os.environ, "PYTHONPATH": str(SRC), **env}
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=environ, check=False
    )


def loaded(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The application stacks a ``run_cli`` process loaded."""
    return result.stdout.rsplit("LOADED", 1)[1].split()


def one_line_error(text: str) -> str:
    """The error a command printed, asserted to be one line and no traceback."""
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if not line.startswith("edgefilter: warning:")]
    assert len(lines) == 1, text
    return lines[0]


# --- --version and --help ------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["serve-api", "--help"]])
def test_version_and_help_load_no_application_stack(argv: list[str]) -> None:
    """``--version`` and ``--help`` answer without importing the server or client stacks."""
    result = run_cli(*argv)
    assert result.returncode == 0
    assert loaded(result) == []


def test_version_prints_the_distribution_version() -> None:
    """``edgefilter --version`` prints ``edgefilter <version>`` and exits 0."""
    result = run_cli("--version")
    assert result.stdout.splitlines()[0] == f"edgefilter {cli._version()}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_each_option_default_and_variable(name: str) -> None:
    """Every option's help line says its default (or that it is required) and its variable."""
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
    text = " ".join(sub.format_help().split())
    for option in COMMANDS[name].options:
        default = "required" if option.required else f"default: {option.shown or option.default}"
        assert f"[{default}; env: {option.env}]" in text


def test_roles_are_the_stores() -> None:
    """The --role choices are the store's roles (kept apart so --help loads no SQLAlchemy)."""
    assert cli.ROLES == ROLES


# --- options from the environment ----------------------------------------------------------


def test_options_come_from_the_environment() -> None:
    """Every proxy option can be set by its variable; lists are comma-separated."""
    environ = {
        "EDGEFILTER_UPSTREAM": "http://up",
        "EDGEFILTER_API": "http://api",
        "EDGEFILTER_API_KEY": "secret",
        "EDGEFILTER_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
        "EDGEFILTER_PROXY_HEADER": "X-Real-IP",
        "EDGEFILTER_PORT": "9000",
        "EDGEFILTER_WORKERS": "3",
        "EDGEFILTER_UPSTREAM_TIMEOUT": "2.5",
        "EDGEFILTER_LOG_LEVEL": "INFO",
    }
    args = parse_args(["proxy"], environ)
    assert (args.upstream, args.api, args.key) == ("http://up", "http://api", "secret")
    assert args.trusted_proxy == ["10.0.0.0/8", "192.0.2.1"]
    assert (args.proxy_header, args.port, args.workers) == ("x-real-ip", 9000, 3)
    assert (args.upstream_timeout, args.log_level) == (2.5, "info")


def test_the_command_line_wins_over_the_environment() -> None:
    """A flag overrides its variable; an unset option takes its default."""
    args = parse_args(["serve-api", "--port", "7"], {"EDGEFILTER_PORT": "9", "EDGEFILTER_DB": "x"})
    assert (args.port, args.db, args.host, args.workers) == (7, "x", "127.0.0.1", 1)
    assert parse_args(["serve-api"], {}).db == cli.DEFAULT_DB


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["--log-level", "debug", "list-orgs"], "debug"),  # before the command
        (["list-orgs", "--log-level", "ERROR"], "error"),  # after it, any case
        (["--log-level", "info", "list-orgs", "--log-level", "critical"], "critical"),
        (["list-orgs"], "warning"),
    ],
)
def test_log_level_before_or_after_the_command(argv: list[str], level: str) -> None:
    """``--log-level`` is accepted on either side of the command; the later one wins."""
    assert parse_args(argv, {}).log_level == level


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"EDGEFILTER_PORT": "eighty"}, "EDGEFILTER_PORT"),
        ({"EDGEFILTER_PORT": "70000"}, "EDGEFILTER_PORT"),
        ({"EDGEFILTER_WORKERS": "0"}, "EDGEFILTER_WORKERS"),
        ({"EDGEFILTER_TIMEOUT_KEEP_ALIVE": "-1"}, "EDGEFILTER_TIMEOUT_KEEP_ALIVE"),
        ({"EDGEFILTER_LOG_LEVEL": "loud"}, "EDGEFILTER_LOG_LEVEL"),
    ],
)
def test_a_bad_variable_is_named(environ: dict[str, str], named: str) -> None:
    """A variable that does not parse is a CliError (status 2) naming it."""
    with pytest.raises(CliError) as raised:
        parse_args(["serve-api"], environ)
    assert named in str(raised.value)
    assert raised.value.status == 2


def test_a_bad_proxy_header_variable_is_named() -> None:
    """A variable outside its choices is refused as its flag would be."""
    environ = {"EDGEFILTER_UPSTREAM": "u", "EDGEFILTER_API": "a", "EDGEFILTER_API_KEY": "k"}
    with pytest.raises(CliError, match="EDGEFILTER_PROXY_HEADER"):
        parse_args(["proxy"], {**environ, "EDGEFILTER_PROXY_HEADER": "x-client"})


@pytest.mark.parametrize(
    "argv",
    [
        ["serve-api", "--port", "http"],
        ["serve-api", "--workers", "0"],
        ["proxy", "--ttl", "0"],
        ["proxy", "--proxy-header", "x-client"],
        ["--log-level", "loud", "list-orgs"],
        ["list-orgs", "--log-level", "loud"],
        ["serve-ap"],
    ],
)
def test_a_bad_option_is_one_line_and_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's refusals are one line naming the option, exit status 2."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "error:" in one_line_error(capsys.readouterr().err)


def test_a_missing_required_option_names_flag_and_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``proxy`` without --key nor EDGEFILTER_API_KEY says both, exit status 2."""
    monkeypatch.delenv("EDGEFILTER_API_KEY", raising=False)
    assert main(["proxy", "--upstream", "http://u", "--api", "http://a"]) == 2
    assert "--key or EDGEFILTER_API_KEY is required" in one_line_error(capsys.readouterr().err)


def test_a_key_given_as_a_flag_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    """``--key`` works but warns that ps shows it; the variable does not warn."""
    environ = {"EDGEFILTER_UPSTREAM": "u", "EDGEFILTER_API": "a"}
    parse_args(["proxy", "--key", "k"], environ)
    assert "set EDGEFILTER_API_KEY instead" in capsys.readouterr().err
    parse_args(["proxy"], {**environ, "EDGEFILTER_API_KEY": "k"})
    assert capsys.readouterr().err == ""


def test_a_db_url_with_a_password_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    """``--db`` with a password warns (never printing it); one without does not."""
    parse_args(["list-orgs", "--db", "postgresql://u:hunter2@h/db"], {})
    err = capsys.readouterr().err
    assert "set EDGEFILTER_DB instead" in err
    assert "hunter2" not in err
    parse_args(["list-orgs", "--db", "sqlite:///x.db"], {})
    assert capsys.readouterr().err == ""


# --- the database --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["sites.db", "mysql://u@h/db", "sqlite:/x", "postgresql://u:p@h:port/db", ""]
)
def test_a_bad_db_url_is_one_line_and_status_2(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --db that is no SQLite or PostgreSQL URL is refused before anything opens."""
    assert main(["list-orgs", "--db", url]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "--db" in line
    assert ":p@" not in line


def test_an_unreachable_database_is_one_line_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A PostgreSQL server that refuses the connection: status 1, the URL redacted."""
    status = main(["serve-api", "--db", "postgresql://u:hunter2@127.0.0.1:1/db"])
    err = capsys.readouterr().err
    line = one_line_error(err)
    assert status == 1
    assert "cannot use the database postgresql://u:***@127.0.0.1:1/db" in line
    assert "hunter2" not in err


def test_an_unopenable_sqlite_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SQLite path in a folder that does not exist: status 1, one line."""
    url = f"sqlite:///{tmp_path / 'missing' / 'sites.db'}"
    assert main(["create-org", "Acme", "--db", url]) == 1
    assert "cannot use the database" in one_line_error(capsys.readouterr().err)


def test_redact_hides_only_the_password() -> None:
    """``redact`` replaces the password and keeps user, host and database."""
    assert cli.redact("postgresql://u:p%40ss@h:5/db") == "postgresql://u:***@h:5/db"
    assert cli.redact("sqlite:///a:b@c.db") == "sqlite:///a:b@c.db"


# --- missing extras ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "blocked", "extra"),
    [
        (["serve-api"], ("sqlalchemy",), "server"),
        (["serve-api"], ("sqlalchemy.engine",), "server"),  # found, but does not import
        (["list-keys"], ("starlette",), "server"),
        (["proxy", "--upstream", "u", "--api", "a"], ("httpx",), "proxy"),
        (["demo", "--rounds", "1"], ("httpx",), "demo"),
        (["list-orgs", "--db", "postgresql://u@127.0.0.1:1/db"], ("psycopg",), "postgres"),
    ],
)
def test_a_missing_extra_is_named(
    argv: list[str], blocked: tuple[str, ...], extra: str, tmp_path: Path
) -> None:
    """Without a command's stack, one line says which extra to install; status 1."""
    result = run_cli(
        *argv, blocked=blocked, EDGEFILTER_API_KEY="k", EDGEFILTER_DB=f"sqlite:///{tmp_path}/s.db"
    )
    assert result.returncode == 1
    assert f"pip install 'edgefilter[{extra}]'" in one_line_error(result.stderr)


def test_the_offline_demo_needs_only_the_core(tmp_path: Path) -> None:
    """``demo --offline`` runs with the server and client stacks unimportable."""
    result = run_cli(
        "demo", "--offline", "--repeat", "1", blocked=("httpx", "sqlalchemy", "starlette")
    )
    assert result.returncode == 0, result.stderr
    assert "all decisions as expected" in result.stdout


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--data", "{tmp}"], "has no traffic.tsv"),
        (["--geoip", "{tmp}/none.mmdb"], "is not a file"),
        (["--geoip", "{tmp}/sites.json"], "cannot open GeoIP database"),
    ],
)
def test_demo_paths_are_checked(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A demo path that is missing or wrong is one line naming it, status 2."""
    (tmp_path / "sites.json").write_text("{}")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert main(["demo", "--offline", "--repeat", "1", *argv]) == 2
    assert said in one_line_error(capsys.readouterr().err)


# --- the uvicorn options -------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[uvicorn.Config]:
    """The configs uvicorn servers are run with; none actually serves."""
    configs: list[uvicorn.Config] = []
    monkeypatch.setattr(
        uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config)
    )
    return configs


def test_serve_api_passes_the_uvicorn_options(
    captured: list[uvicorn.Config], tmp_path: Path
) -> None:
    """--root-path, the timeouts, --log-config and --log-level reach uvicorn; proxy headers
    stay off."""
    log_config = tmp_path / "logging.json"
    log_config.write_text('{"version": 1, "disable_existing_loggers": false}')
    argv = ["serve-api", "--db", f"sqlite:///{tmp_path / 's.db'}", "--root-path", "/sites"]
    argv += ["--timeout-keep-alive", "7", "--timeout-graceful-shutdown", "3"]
    assert main([*argv, "--log-config", str(log_config), "--log-level", "error"]) == 1
    (config,) = captured
    assert (config.root_path, config.timeout_keep_alive) == ("/sites", 7)
    assert (config.timeout_graceful_shutdown, config.log_config) == (3, str(log_config))
    assert (config.log_level, config.proxy_headers) == ("error", False)


def test_a_missing_log_config_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --log-config that is not a file is one line, status 2."""
    argv = ["serve-api", "--db", f"sqlite:///{tmp_path / 's.db'}"]
    assert main([*argv, "--log-config", str(tmp_path / "none.json")]) == 2
    assert "--log-config" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["serve-api", "proxy"])
def test_workers_serve_the_factory_with_proxy_headers_off(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Over one worker, uvicorn gets the factory's import string, proxy headers off, and the
    settings in the environment the workers inherit."""
    runs: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the command exports its settings
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append((app, options)))
    monkeypatch.setenv("EDGEFILTER_API_KEY", "k")
    argv = [command, "--workers", "3", "--port", "9"]
    if command == "proxy":
        argv += ["--upstream", "http://127.0.0.1:9", "--api", "http://127.0.0.1:9", "--ttl", "5"]
    else:
        argv += ["--db", f"sqlite:///{tmp_path / 's.db'}"]
    assert main(argv) == 0
    (app, options) = runs[0]
    factory = cli.PROXY_FACTORY if command == "proxy" else cli.API_FACTORY
    assert (app, options["workers"], options["factory"]) == (factory, 3, True)
    assert options["proxy_headers"] is False
    assert os.environ["EDGEFILTER_PORT"] == "9"
    if command == "proxy":
        assert os.environ["EDGEFILTER_TTL"] == "5.0"
    else:
        assert os.environ["EDGEFILTER_DB"] == f"sqlite:///{tmp_path / 's.db'}"
