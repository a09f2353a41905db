"""RulesCache against a live server: freshness, outages, single flight, bounds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from edgefilter import EdgeFilter, Reason, RulesCache, SitesApiClient
from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app

from .conftest import CHROME, FakeClock, LiveApi
from .live import unused_port

TTL = 60.0


@pytest.fixture
def clock() -> FakeClock:
    """Time that moves only when the test says so."""
    return FakeClock()


def make_cache(client: SitesApiClient, clock: FakeClock, **options: Any) -> RulesCache:
    """A cache with no background ticker (tests call maintain) and a fake clock."""
    settings: dict[str, Any] = {"ttl": TTL, "clock": clock, "tick": None, "cold_wait": 5.0}
    settings.update(options)
    return RulesCache(client, **settings)


@pytest.fixture
def cache(sites_api: LiveApi, clock: FakeClock) -> Iterator[RulesCache]:
    """A cache over the live server."""
    client = sites_api.client(timeout=2.0)
    rules_cache = make_cache(client, clock)
    yield rules_cache
    rules_cache.close()
    client.close()


def site_reads(api: LiveApi, site: dict[str, Any]) -> int:
    """How many times the site object itself was read (one per fetch)."""
    return sum(
        count
        for path, count in api.faults.requests.items()
        if path.endswith(f"/{site['siteId']}") or path.endswith(f"/{site['id']}")
    )


def test_cold_site_is_fetched_and_decided(sites_api: LiveApi, cache: RulesCache) -> None:
    """The first hit waits for the fetch and is decided with the site's rules."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    edge_filter = EdgeFilter(cache)
    assert (
        edge_filter.should_track(str(site["siteId"]), "203.0.113.9", CHROME).reason
        is Reason.excluded_ip
    )
    assert (
        edge_filter.should_track(str(site["siteId"]), "198.51.100.1", CHROME).reason
        is Reason.tracked
    )
    assert cache.fetches == 1


def test_compact_tables_are_compiled_compact(sites_api: LiveApi, clock: FakeClock) -> None:
    """``compact_tables=True`` compiles fetched rules compact; they decide the same."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24", "2001:db8::/32"])
    with sites_api.client(timeout=2.0) as client:
        rules_cache = make_cache(client, clock, compact_tables=True)
        edge_filter = EdgeFilter(rules_cache)
        for ip, reason in [
            ("203.0.113.9", Reason.excluded_ip),
            ("2001:db8::1", Reason.excluded_ip),
        ]:
            assert edge_filter.should_track(str(site["siteId"]), ip, CHROME).reason is reason
        assert edge_filter.should_track(str(site["siteId"]), "198.51.100.1", CHROME).tracked
        rules = rules_cache.rules_for(str(site["siteId"]))
        assert rules is not None and rules.excluded_ips.compact
        rules_cache.close()


def test_both_id_forms_share_one_entry(sites_api: LiveApi, cache: RulesCache) -> None:
    """After one fetch by siteId, the 12-hex id answers from the same entry."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    cache.ensure(str(site["siteId"]))
    assert cache.rules_for(site["id"]) is cache.rules_for(str(site["siteId"]))
    assert len(cache) == 1
    assert cache.fetches == 1


def test_api_down_from_the_start(clock: FakeClock) -> None:
    """Nothing ever fetched and no API: rules_unavailable, tracked unless failing closed."""
    client = SitesApiClient(f"http://127.0.0.1:{unused_port()}", "key", timeout=0.5)
    cache = make_cache(client, clock)
    try:
        open_filter = EdgeFilter(cache)
        closed_filter = EdgeFilter(cache, track_when_unavailable=False)
        decision = open_filter.should_track("1", "203.0.113.9", CHROME)
        assert decision.reason is Reason.rules_unavailable
        assert decision.tracked
        assert not closed_filter.should_track("1", "203.0.113.9", CHROME).tracked
    finally:
        cache.close()


def test_stale_rules_survive_an_outage_and_recover(
    sites_api: LiveApi, cache: RulesCache, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """API errors keep the last good rules in use, log once, and recover within one TTL."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    edge_filter = EdgeFilter(cache)
    cache.ensure(ref)
    sites_api.faults.mode = "500"
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        for _ in range(5):  # five refresh attempts across the outage
            clock.advance(TTL)
            cache.maintain()
            assert edge_filter.should_track(ref, "203.0.113.9", CHROME).reason is Reason.excluded_ip
            cache.ensure(ref)
    assert caplog.text.count("rules refresh failed") == 1
    sites_api.faults.mode = "ok"
    with sites_api.client() as client:
        client.update_config(ref, excludedIPs=["192.0.2.0/24"])
    clock.advance(TTL)  # backoff is capped at one TTL
    cache.maintain()
    edge_filter.should_track(ref, "192.0.2.1", CHROME)
    cache.ensure(ref)
    assert edge_filter.should_track(ref, "192.0.2.1", CHROME).reason is Reason.excluded_ip
    assert edge_filter.should_track(ref, "203.0.113.9", CHROME).reason is Reason.tracked


@pytest.mark.parametrize("mode", ["500", "malformed", "403", "slow"])
def test_every_kind_of_failure_serves_stale(
    sites_api: LiveApi, clock: FakeClock, mode: str
) -> None:
    """500s, malformed bodies, 403 and time-outs all keep the last good rules."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    client = sites_api.client(timeout=0.2)
    cache = make_cache(client, clock)
    try:
        cache.ensure(ref)
        good = cache.rules_for(ref)
        sites_api.faults.mode, sites_api.faults.delay = mode, 0.5
        clock.advance(TTL)
        cache.maintain()
        assert cache.rules_for(ref) is None  # due: the next hit goes through resolve
        assert cache.resolve(ref) is good
        cache.ensure(ref)
        assert cache.rules_for(ref) is good
    finally:
        cache.close()
        client.close()


def test_api_down_mid_run(clock: FakeClock, tmp_path: Any) -> None:
    """The API process goes away and comes back on the same port: stale, then fresh."""
    app = create_app(f"sqlite:///{tmp_path / 'sites.db'}")
    org = app.state.store.create_organization("Down")
    key = app.state.store.create_key(org, "owner")
    port = unused_port()
    client = SitesApiClient(f"http://127.0.0.1:{port}", key, timeout=1.0)
    cache = make_cache(client, clock)
    edge_filter = EdgeFilter(cache)
    try:
        with serve_in_thread(app, port=port):
            site = str(client.create_site(org, "a.example", "A")["siteId"])
            client.update_config(site, excludedIPs=["203.0.113.0/24"])
            cache.ensure(site)
        clock.advance(TTL)  # server gone
        cache.maintain()
        assert edge_filter.should_track(site, "203.0.113.9", CHROME).reason is Reason.excluded_ip
        cache.ensure(site)
        assert edge_filter.should_track(site, "203.0.113.9", CHROME).reason is Reason.excluded_ip
        with serve_in_thread(app, port=port):
            client.update_config(site, excludedIPs=[])
            clock.advance(TTL)
            cache.maintain()
            edge_filter.should_track(site, "203.0.113.9", CHROME)
            cache.ensure(site)
            assert edge_filter.should_track(site, "203.0.113.9", CHROME).reason is Reason.tracked
    finally:
        cache.close()
        client.close()


def test_rules_expire_after_max_stale(sites_api: LiveApi, clock: FakeClock) -> None:
    """Past max_stale with the API still failing, the site has no rules any more."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    client = sites_api.client()
    cache = make_cache(client, clock, max_stale=300.0, cold_wait=0.5)
    try:
        cache.ensure(ref)
        sites_api.faults.mode = "500"
        clock.advance(301)
        cache.maintain()
        assert cache.rules_for(ref) is None
        assert cache.resolve(ref) is Reason.rules_unavailable
    finally:
        cache.close()
        client.close()


def test_not_found_is_negatively_cached_until_created(
    sites_api: LiveApi, cache: RulesCache, clock: FakeClock
) -> None:
    """A 404 is remembered (no refetch storm); once created and past negative_ttl, it loads."""
    probe = sites_api.new_site()
    future_id = str(probe["siteId"] + 1)
    edge_filter = EdgeFilter(cache)
    for _ in range(50):
        assert (
            edge_filter.should_track(future_id, "203.0.113.9", CHROME).reason is Reason.unknown_site
        )
    assert cache.fetches == 1
    created = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    assert str(created["siteId"]) == future_id
    assert edge_filter.should_track(future_id, "203.0.113.9", CHROME).reason is Reason.unknown_site
    clock.advance(cache.negative_ttl + 1)
    assert edge_filter.should_track(future_id, "203.0.113.9", CHROME).reason is Reason.excluded_ip
    assert cache.fetches == 2


def test_etag_refresh_keeps_the_compiled_rules(
    sites_api: LiveApi, cache: RulesCache, clock: FakeClock
) -> None:
    """A refresh answered by three 304s renews the entry without recompiling."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = site["id"]
    cache.ensure(ref)
    before = cache.rules_for(ref)
    clock.advance(TTL)
    cache.maintain()
    assert cache.resolve(ref) is before
    cache.ensure(ref)
    assert sites_api.faults.statuses[304] == 3
    assert cache.rules_for(ref) is before
    assert cache.fetches == 2


def test_hot_site_never_waits_for_a_refresh(sites_api: LiveApi, clock: FakeClock) -> None:
    """Refresh-ahead: a due site answers with its current rules while the server is slow."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    client = sites_api.client(timeout=5.0)
    cache = make_cache(client, clock, cold_wait=5.0)
    try:
        cache.ensure(ref)
        good = cache.rules_for(ref)
        sites_api.faults.mode, sites_api.faults.delay = "slow", 1.0
        clock.advance(0.9 * TTL)  # past refresh_ahead * ttl, before ttl
        cache.maintain()
        assert cache.rules_for(ref) is None
        assert cache.resolve(ref) is good  # no wait: the refresh runs in the background
        assert cache.rules_for(ref) is good
        assert cache.fetches == 2
    finally:
        sites_api.faults.mode = "ok"
        cache.close()
        client.close()


def test_thousand_concurrent_async_misses_make_one_fetch(
    sites_api: LiveApi, cache: RulesCache
) -> None:
    """1,000 concurrent ensure() calls for one cold site: exactly one fetch."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    edge_filter = EdgeFilter(cache)
    sites_api.faults.mode, sites_api.faults.delay = "slow", 0.2  # keep the fetch in flight

    async def burst() -> None:
        await asyncio.gather(*(edge_filter.aensure(site["id"]) for _ in range(1000)))

    asyncio.run(burst())
    assert cache.fetches == 1
    assert site_reads(sites_api, site) == 1
    assert cache.rules_for(site["id"]) is not None


def test_thousand_concurrent_thread_misses_make_one_fetch(
    sites_api: LiveApi, cache: RulesCache
) -> None:
    """1,000 hits from 50 threads on one cold site: one fetch, every hit decided."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    edge_filter = EdgeFilter(cache)
    sites_api.faults.mode, sites_api.faults.delay = "slow", 0.2
    with ThreadPoolExecutor(max_workers=50) as pool:
        decisions = list(
            pool.map(
                lambda _: edge_filter.should_track(site["id"], "203.0.113.9", CHROME), range(1000)
            )
        )
    assert cache.fetches == 1
    assert site_reads(sites_api, site) == 1
    assert {decision.reason for decision in decisions} == {Reason.excluded_ip}


def test_cache_is_bounded(sites_api: LiveApi, clock: FakeClock) -> None:
    """Past maxsize, old sites leave the cache and the hot dict."""
    client = sites_api.client()
    cache = make_cache(client, clock, maxsize=2)
    try:
        refs = [str(sites_api.new_site()["siteId"]) for _ in range(3)]
        for ref in refs:
            cache.ensure(ref)
        cache.maintain()
        assert len(cache) == 2
        assert cache.rules_for(refs[0]) is None
        assert cache.rules_for(refs[2]) is not None
    finally:
        cache.close()
        client.close()


def test_deleted_site_is_dropped(sites_api: LiveApi, cache: RulesCache, clock: FakeClock) -> None:
    """When a refresh answers 404, the site's rules go and its hits are unknown."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    cache.ensure(ref)
    with sites_api.client() as client:
        client.delete_site(ref)
    clock.advance(TTL + 1)
    cache.maintain()
    assert EdgeFilter(cache).should_track(ref, "203.0.113.9", CHROME).reason is Reason.unknown_site
    assert cache.rules_for(site["id"]) is None
