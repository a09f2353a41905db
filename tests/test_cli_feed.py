"""The CLI's rules feed options: ``proxy --rules-source feed`` and the feed's settings,
``serve-api``'s feed bounds; from flags and ``EDGEFILTER_*`` variables, to the objects."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edgefilter import RulesCache, RulesFeed
from edgefilter._serving import serve_in_thread
from edgefilter.cli import (
    FEED_SERVER_OPTIONS,
    api_app_from_environment,
    build_parser,
    build_proxy,
    close_proxy,
    feed_server_options,
    main,
    parse_args,
)
from edgefilter.server import create_app
from edgefilter.server._feed import DEFAULT_MAX_WAIT, DEFAULT_MAX_WAITERS
from edgefilter.server._store import DEFAULT_MAX_TOMBSTONES

BASE = ["proxy", "--upstream", "http://127.0.0.1:9", "--api", "http://127.0.0.1:9"]


def test_the_options_reach_the_feed(tmp_path: Path) -> None:
    """--rules-source feed and the feed's options, by flag and by variable; the flag wins."""
    snapshot = tmp_path / "rules.snapshot"
    environ = {
        "EDGEFILTER_API_KEY": "k",
        "EDGEFILTER_RULES_SOURCE": "FEED",
        "EDGEFILTER_FEED_SNAPSHOT": str(snapshot),
        "EDGEFILTER_FEED_WAIT": "0",
        "EDGEFILTER_FEED_POLL_INTERVAL": "7.5",
    }
    for argv, wait in [([], 0.0), (["--feed-wait", "12"], 12.0)]:
        proxy = build_proxy(parse_args([*BASE, *argv], environ), start=False)
        close_proxy(proxy)
        feed = proxy.edge_filter.source
        assert isinstance(feed, RulesFeed)
        assert (feed.wait, feed.poll_interval, feed.snapshot_path) == (wait, 7.5, snapshot)
        assert feed._thread is None  # start=False: a proxy built to check the settings
    cached = build_proxy(parse_args([*BASE, "--rules-source", "cache"], environ))
    close_proxy(cached)
    assert isinstance(cached.edge_filter.source, RulesCache)


def test_serve_api_feed_bounds_reach_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--feed-max-tombstones, --feed-max-wait and --feed-max-waiters (or their variables)
    reach the store and the feed endpoint, in one process and in each worker's factory."""
    db = f"sqlite:///{tmp_path / 'sites.db'}"
    environ = {
        "EDGEFILTER_DB": db,
        "EDGEFILTER_FEED_MAX_TOMBSTONES": "10",
        "EDGEFILTER_FEED_MAX_WAIT": "0",
        "EDGEFILTER_FEED_MAX_WAITERS": "3",
    }
    args = parse_args(["serve-api", "--feed-max-wait", "2.5"], environ)
    for app, wait in [
        (create_app(db, **feed_server_options(args)), 2.5),
        (_factory_app(monkeypatch, environ), 0.0),
    ]:
        try:
            feed = app.state.feed
            assert (feed.max_wait, feed.max_waiters, app.state.store.max_tombstones) == (
                wait,
                3,
                10,
            )
        finally:
            app.state.store.close()


def _factory_app(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> object:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return api_app_from_environment()


def test_serve_api_without_waiters_holds_no_read(tmp_path: Path) -> None:
    """Served with --feed-max-waiters 0, a read asking to wait answers 304 with
    Retry-After at once (the nodes poll)."""
    args = parse_args(["serve-api", "--feed-max-waiters", "0"], {})
    app = create_app(f"sqlite:///{tmp_path / 'sites.db'}", **feed_server_options(args))
    store = app.state.store
    org = store.create_organization("Feed")
    key = store.create_key(org, "edge")
    with serve_in_thread(app, timeout_graceful_shutdown=0.1) as url:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            version = http.get("/api/edge/rules").json()["version"]
            held = http.get(f"/api/edge/rules?since={version}&wait=20")
    assert held.status_code == 304
    assert "retry-after" in held.headers


def test_the_defaults_are_the_server_s() -> None:
    """The CLI's feed bounds default to the server's own (kept apart so --help loads no
    SQLAlchemy)."""
    defaults = [option.default for option in FEED_SERVER_OPTIONS]
    assert defaults == [DEFAULT_MAX_TOMBSTONES, DEFAULT_MAX_WAIT, DEFAULT_MAX_WAITERS]


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (
            "proxy",
            [
                "EDGEFILTER_RULES_SOURCE",
                "EDGEFILTER_FEED_SNAPSHOT",
                "EDGEFILTER_FEED_WAIT",
                "EDGEFILTER_FEED_POLL_INTERVAL",
            ],
        ),
        (
            "serve-api",
            [
                "EDGEFILTER_FEED_MAX_TOMBSTONES",
                "EDGEFILTER_FEED_MAX_WAIT",
                "EDGEFILTER_FEED_MAX_WAITERS",
            ],
        ),
    ],
)
def test_help_names_the_feed_options(command: str, variables: list[str]) -> None:
    """--help names each feed option's variable."""
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    text = " ".join(sub.format_help().split())
    for variable in variables:
        assert f"env: {variable}]" in text, variable


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*BASE, "--rules-source", "poll"], "invalid choice: 'poll'"),
        ([*BASE, "--feed-wait", "-1"], "'-1' is not a number of seconds, 0 or above"),
        ([*BASE, "--feed-poll-interval", "0"], "'0' is not a number of seconds above 0"),
        (["serve-api", "--feed-max-waiters", "-1"], "'-1' is not 0 or more"),
        (["serve-api", "--feed-max-tombstones", "0"], "'0' is not at least 1"),
        (["serve-api", "--feed-max-wait", "soon"], "'soon' is not a number of seconds"),
    ],
)
def test_bad_feed_values_are_one_line_errors(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad feed option: exit status 2, one line naming the value."""
    monkeypatch.setenv("EDGEFILTER_API_KEY", "k")
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
