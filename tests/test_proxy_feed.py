"""``edgefilter proxy --rules-source feed``: the proxy fed by the rules feed, on loopback.

The reference server (SQLite, an ``edge`` key) and a recording upstream on loopback; the
proxy is built by the CLI's ``build_proxy`` from the command line and the environment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefilter import EdgeFilter, RulesCache, RulesFeed, SitesApiClient
from edgefilter._serving import serve_in_thread
from edgefilter.cli import build_proxy, parse_args
from edgefilter.proxy import create_proxy_app

from .conftest import CHROME
from .redis_server import started_redis
from .test_cli_serving import edgefilter_process, first_answer, free_port
from .test_feed import FeedApi, eventually, serving
from .test_proxy_health import dead_url, get
from .upstream import Upstream

EXCLUDED = {"success": True, "message": "Event not tracked - IP excluded"}
NOT_FOUND = {"success": False, "error": "Site not found"}


@pytest.fixture
def feed_api(tmp_path: Path) -> Iterator[FeedApi]:
    """The reference server on a fresh SQLite file, with an owner and an edge key."""
    with serving(f"sqlite:///{tmp_path / 'sites.db'}") as api:
        yield api


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    """A recording stand-in upstream on loopback, and its URL."""
    recorder = Upstream()
    with serve_in_thread(recorder.app) as url:
        yield recorder, url


def proxy_args(api: FeedApi, upstream_url: str, *argv: str, **environ: str) -> Any:
    """The ``proxy`` command's settings on the edge key, fed by the feed."""
    command = ["proxy", "--upstream", upstream_url, "--api", api.url, *argv]
    return parse_args(command, {"EDGEFILTER_API_KEY": api.edge_key, **environ})


def track(client: httpx.Client, site: str) -> httpx.Response:
    return client.post(
        "/api/track", json={"type": "pageview", "site_id": site}, headers={"User-Agent": CHROME}
    )


def test_an_excluded_hit_and_a_made_up_site_cost_no_site_read(
    feed_api: FeedApi, upstream: tuple[Upstream, str]
) -> None:
    """Fed by the feed, the proxy drops a hit from an excluded address and answers a
    made-up site id unknown, with no per-site API read, and relays a tracked hit."""
    recorder, upstream_url = upstream
    excluded = feed_api.new_site(excludedIPs=["127.0.0.1"])
    tracked = feed_api.new_site()
    proxy = build_proxy(proxy_args(feed_api, upstream_url, "--rules-source", "feed"))
    with serve_in_thread(proxy) as url, httpx.Client(base_url=url, timeout=10) as client:
        eventually(lambda: client.get("/readyz").status_code == 200)
        feed_api.faults.requests.clear()
        dropped = track(client, excluded)
        unknown = [track(client, str(site)) for site in range(900_000, 900_050)]
        passed = track(client, tracked)
        metrics = client.get("/metrics").text.splitlines()
    assert (dropped.status_code, dropped.json()) == (200, EXCLUDED)
    assert {(answer.status_code, str(answer.json())) for answer in unknown} == {
        (404, str(NOT_FOUND))
    }
    assert passed.status_code == 200
    assert [seen.path for seen in recorder.seen] == ["/api/track"]
    assert set(feed_api.faults.requests) <= {"GET /api/edge/rules"}
    assert f'edgefilter_decisions_total{{reason="excluded_ip",site="{excluded}"}} 1.0' in metrics
    assert 'edgefilter_decisions_total{reason="unknown_site",site=""} 50.0' in metrics


def test_the_cache_asks_the_api_about_each_site(
    feed_api: FeedApi, upstream: tuple[Upstream, str]
) -> None:
    """The baseline the test above is measured against: by default (the cache) a made-up
    site id is a read of the API."""
    proxy = build_proxy(proxy_args(feed_api, upstream[1]))
    assert isinstance(proxy.edge_filter.source, RulesCache)
    with serve_in_thread(proxy) as url, httpx.Client(base_url=url, timeout=10) as client:
        feed_api.faults.requests.clear()
        assert track(client, "900001").json() == NOT_FOUND
    assert any(request.startswith("GET /api/sites/") for request in feed_api.faults.requests)


def test_readyz_is_ready_once_the_feed_holds_rules(
    feed_api: FeedApi, upstream: tuple[Upstream, str]
) -> None:
    """/readyz: 503 before the first read has answered, ready once a state is held, still
    ready while the API then fails (the node decides from the last good state)."""
    feed_api.new_site()
    client = feed_api.edge()
    feed = RulesFeed(client, wait=0.0, poll_interval=0.05, max_backoff=0.05, start=False)
    proxy = create_proxy_app(upstream[1], EdgeFilter(feed))
    try:
        with serve_in_thread(proxy) as url, httpx.Client(base_url=url, timeout=10) as http:
            pending = http.get("/readyz")
            feed.start()
            feed.check(timeout=10)
            ready = http.get("/readyz")
            feed_api.faults.mode = "500"
            eventually(lambda: feed.stats()["failing"] == 1)
            failing = http.get("/readyz")
    finally:
        feed.close()
        client.close()
    assert (pending.status_code, pending.json()) == (
        503,
        {"status": "unavailable", "reason": "the rules feed holds no rules yet"},
    )
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert failing.status_code == 200


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("api down", "the rules feed cannot be read (ApiUnreachableError)"),
        ("key refused", "the Sites API refused the key"),
    ],
)
def test_readyz_names_the_first_read_s_failure(
    feed_api: FeedApi, upstream: tuple[Upstream, str], failure: str, reason: str
) -> None:
    """A feed whose first read failed (the API down, the key refused) is 503, saying why."""
    if failure == "api down":
        client = SitesApiClient(dead_url(), feed_api.edge_key)
    else:
        client = SitesApiClient(feed_api.url, "ef_refused")
    feed = RulesFeed(client, max_backoff=5.0)
    try:
        eventually(lambda: feed.stats()["failures"] >= 1)
        (readyz,) = get(create_proxy_app(upstream[1], EdgeFilter(feed)), "/readyz")
    finally:
        feed.close()
        client.close()
    assert (readyz.status_code, readyz.json()) == (
        503,
        {"status": "unavailable", "reason": reason},
    )


def test_metrics_export_the_feed_s_stats(feed_api: FeedApi, upstream: tuple[Upstream, str]) -> None:
    """/metrics: the feed's counters as counters (answers by kind), its state as gauges."""
    site = feed_api.new_site()
    client = feed_api.edge()
    feed = RulesFeed(client, wait=5.0)
    try:
        feed.check(timeout=10)
        with feed_api.owner() as owner:
            owner.update_config(site, excludedIPs=["192.0.2.1"])
        eventually(lambda: feed.stats()["deltas"] == 1)
        (metrics,) = get(create_proxy_app(upstream[1], EdgeFilter(feed)), "/metrics")
        version = feed.stats()["version"]
    finally:
        feed.close()
        client.close()
    lines = set(metrics.text.splitlines())
    for counter in (
        "requests",
        "answers",
        "failures",
        "sites_compiled",
        "sites_deleted",
        "snapshot_saves",
        "snapshot_loads",
    ):
        assert f"# TYPE edgefilter_rules_feed_{counter}_total counter" in lines, counter
    assert 'edgefilter_rules_feed_answers_total{kind="snapshot"} 1.0' in lines
    assert 'edgefilter_rules_feed_answers_total{kind="delta"} 1.0' in lines
    assert "edgefilter_rules_feed_sites_compiled_total 2.0" in lines
    assert "edgefilter_rules_feed_failures_total 0.0" in lines
    for gauge in ("version", "ready"):
        assert f"# TYPE edgefilter_rules_feed_{gauge} gauge" in lines, gauge
    assert f"edgefilter_rules_feed_version {float(version)}" in lines
    assert "edgefilter_rules_feed_ready 1.0" in lines
    assert "edgefilter_rules_sites_held 1.0" in lines
    assert "edgefilter_rules_failing 0.0" in lines
    assert "# TYPE edgefilter_rules_stale_seconds gauge" in lines


def test_shutdown_closes_the_feed_its_client_and_the_redis_client(
    feed_api: FeedApi, upstream: tuple[Upstream, str], tmp_path: Path
) -> None:
    """At the served proxy's shutdown the feed stops (its file saved), the Sites API
    client closes and the rate layer's Redis connections close."""
    import redis  # noqa: PLC0415 - the redis extra

    server = started_redis()
    try:
        site = feed_api.new_site()
        snapshot = tmp_path / "rules.snapshot"
        args = proxy_args(
            feed_api,
            upstream[1],
            "--rules-source=feed",
            f"--feed-snapshot={snapshot}",
            f"--rates-redis={server.url}",
        )
        proxy = build_proxy(args)
        feed = proxy.edge_filter.source
        with redis.Redis.from_url(server.url) as watcher:
            with serve_in_thread(proxy) as url, httpx.Client(base_url=url, timeout=10) as http:
                feed.check(timeout=10)
                assert track(http, site).status_code == 200
                assert len(watcher.client_list()) == 2  # the rate layer's and this one
            deadline = time.monotonic() + 5
            while len(watcher.client_list()) > 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(watcher.client_list()) == 1
        assert feed._thread is not None
        feed._thread.join(timeout=5)
        assert not feed._thread.is_alive()
        assert feed.client._client.is_closed
        assert snapshot.is_file()
    finally:
        server.close()


def test_the_proxy_process_saves_the_feed_s_state_when_interrupted(
    feed_api: FeedApi, tmp_path: Path
) -> None:
    """``edgefilter proxy --rules-source feed --feed-snapshot FILE`` as an operator runs it:
    it decides by the feed (a change pushed to it), and on SIGINT writes the state it holds
    (the change included, within the file's 5 s save interval) to the file."""
    site = feed_api.new_site()
    snapshot = tmp_path / "rules.snapshot"
    port = free_port()
    argv = ["proxy", "--port", str(port), "--upstream", "http://127.0.0.1:9"]
    argv += ["--api", feed_api.url, "--rules-source", "feed", "--feed-snapshot", str(snapshot)]
    url = f"http://127.0.0.1:{port}"
    hit = {"json": {"type": "pageview", "site_id": site}, "headers": {"User-Agent": CHROME}}
    with edgefilter_process(argv, EDGEFILTER_API_KEY=feed_api.edge_key) as err:
        assert first_answer(f"{url}/readyz").status_code in (200, 503)
        eventually(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=20)
        with feed_api.owner() as owner:
            owner.update_config(site, excludedIPs=["127.0.0.1"])
        eventually(
            lambda: httpx.post(f"{url}/api/track", **hit).json() == EXCLUDED,  # type: ignore[arg-type]
            timeout=10,
        )
        version = httpx.get(f"{feed_api.url}/api/edge/rules", headers=_bearer(feed_api)).json()
    saved = json.loads(snapshot.read_bytes())
    assert saved["version"] == version["version"], err
    assert [entry.get("excludedIPs") for entry in saved["sites"]] == [["127.0.0.1"]], err


def _bearer(api: FeedApi) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.edge_key}"}
