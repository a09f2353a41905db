"""The proxy's ``/healthz``, ``/readyz`` and ``/metrics``, on loopback."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import httpx
import pytest

from edgefilter import CountryResolver, EdgeFilter, RulesCache, SiteConfig, SitesApiClient
from edgefilter._serving import serve_in_thread
from edgefilter.proxy import create_proxy_app

from .conftest import CHROME, CITY_DB, LiveApi
from .upstream import Upstream

SITES = {"1": SiteConfig(site_id=1, block_bots=True)}


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    """A stand-in upstream on loopback."""
    with serve_in_thread(Upstream().app) as url:
        yield url


def get(proxy: object, *paths: str) -> list[httpx.Response]:
    """GET each path of the proxy served on loopback."""
    with serve_in_thread(proxy) as url, httpx.Client(base_url=url, timeout=10) as client:
        return [client.get(path) for path in paths]


def dead_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_healthz_and_readyz_with_static_rules(upstream_url: str) -> None:
    """Static rules and no GeoIP: up and ready at once; nothing is asked of the upstream."""
    healthz, readyz = get(create_proxy_app(upstream_url, EdgeFilter(SITES)), "/healthz", "/readyz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})


def test_readyz_waits_for_the_geoip_walk(upstream_url: str) -> None:
    """While the GeoIP database is still being walked, /readyz is 503 with that reason."""
    resolver = CountryResolver(CITY_DB)
    assert resolver.wait_compiled(10)
    resolver._ended.clear()  # as if the walk were still running
    proxy = create_proxy_app(upstream_url, EdgeFilter(SITES, geoip=resolver))
    healthz, readyz = get(proxy, "/healthz", "/readyz")
    assert healthz.status_code == 200
    assert (readyz.status_code, readyz.json()) == (
        503,
        {"status": "unavailable", "reason": "the GeoIP database is still being read"},
    )
    resolver._ended.set()
    assert get(proxy, "/readyz")[0].status_code == 200


def test_readyz_probes_the_sites_api(upstream_url: str, sites_api: LiveApi) -> None:
    """A RulesCache whose API answers is ready; one whose API is down is 503, saying so."""
    for api, key, expected in [
        (sites_api.url, sites_api.key, (200, "ready")),
        (dead_url(), "k", (503, "unavailable")),
    ]:
        client = SitesApiClient(api, key)
        cache = RulesCache(client, tick=None)
        try:
            (readyz,) = get(create_proxy_app(upstream_url, EdgeFilter(cache)), "/readyz")
        finally:
            cache.close()
            client.close()
        assert (readyz.status_code, readyz.json()["status"]) == expected
    assert readyz.json()["reason"] == "the Sites API cannot be reached (ApiUnreachableError)"


def test_metrics_count_decisions_rules_and_upstream(upstream_url: str, sites_api: LiveApi) -> None:
    """/metrics: decisions by site and reason, the rules cache's stats, upstream answers."""
    site = str(sites_api.new_site()["siteId"])
    client = sites_api.client()
    cache = RulesCache(client, tick=None)
    proxy = create_proxy_app(upstream_url, EdgeFilter(cache))
    body = f'{{"type":"pageview","site_id":"{site}"}}'.encode()
    try:
        cache.ensure(site, None)
        with serve_in_thread(proxy) as url, httpx.Client(base_url=url) as http:
            http.post("/api/track", content=body, headers={"User-Agent": CHROME})
            http.post("/api/track", content=body, headers={"User-Agent": "curl/8.0"})
            metrics = http.get("/metrics")
    finally:
        cache.close()
        client.close()
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = set(metrics.text.splitlines())
    assert f'edgefilter_decisions_total{{reason="tracked",site="{site}"}} 1.0' in lines
    assert f'edgefilter_decisions_total{{reason="bot",site="{site}"}} 1.0' in lines
    assert 'edgefilter_rules_fetches_total{outcome="ok"} 1.0' in lines
    assert "edgefilter_rules_sites_held 1.0" in lines
    assert "edgefilter_rules_failing 0.0" in lines
    assert "edgefilter_rules_outages_total 0.0" in lines
    assert "edgefilter_rules_stale_sites 0.0" in lines
    assert any(line.startswith("edgefilter_rules_stale_seconds ") for line in lines)
    assert 'edgefilter_upstream_answers_total{status="2xx"} 1.0' in lines


def test_metrics_without_prometheus_client_is_a_clear_501(
    upstream_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without prometheus-client, /metrics is 501 naming the extra to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    (metrics,) = get(create_proxy_app(upstream_url, EdgeFilter(SITES)), "/metrics")
    assert (metrics.status_code, metrics.json()) == (
        501,
        {
            "success": False,
            "error": "metrics need prometheus-client: pip install 'edgefilter[prometheus]'",
        },
    )
