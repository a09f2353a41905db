"""RulesCache against a live server: freshness, outages, single flight, bounds."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter import (
    ApiAuthError,
    ApiServerError,
    ApiUnreachableError,
    ConfigError,
    EdgeFilter,
    MalformedResponseError,
    Reason,
    RulesCache,
    SiteNotFoundError,
    SiteRules,
    SitesApiClient,
)
from edgefilter._cache import PROBE_SITE, _backoff
from edgefilter._client import READS
from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app

from .conftest import CHROME, FakeClock, LiveApi
from .held import GUARD, HeldClient
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


def held_client(api: LiveApi, **options: Any) -> HeldClient:
    """A client of the live server whose fetches wait for ``release`` (see ``HeldClient``)."""
    return HeldClient(api.url, api.key, timeout=options.pop("timeout", 2.0), **options)


def path_site(request: str) -> str:
    """The site id in a counted request such as ``GET /api/sites/7/excluded-ips``."""
    return request.split(" ", 1)[1].split("/")[3]


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
    assert caplog.text.count("the Sites API is failing") == 1
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
    """Past max_stale after their ttl with the API still failing, the site has no rules."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    client = sites_api.client()
    cache = make_cache(client, clock, max_stale=300.0, cold_wait=0.5)
    try:
        cache.ensure(ref)
        sites_api.faults.mode = "500"
        clock.advance(TTL + 299)
        cache.maintain()
        assert cache.resolve(ref) is not None  # still within max_stale past the ttl
        cache.ensure(ref)
        clock.advance(2)
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
    assert sites_api.faults.statuses[304] == len(READS)
    assert cache.rules_for(ref) is before
    assert cache.fetches == 2


def test_hot_site_never_waits_for_a_refresh(sites_api: LiveApi, clock: FakeClock) -> None:
    """Refresh-ahead: a due site answers its current rules while its refresh is held."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    client = held_client(sites_api)
    cache = make_cache(client, clock, cold_wait=3600.0)  # a wait would last until GUARD
    try:
        client.release.set()
        cache.ensure(ref)
        good = cache.rules_for(ref)
        client.release.clear()
        clock.advance(0.9 * TTL)  # past refresh_ahead * ttl, before ttl
        cache.maintain()
        assert cache.rules_for(ref) is None
        assert cache.resolve(ref) is good
        assert client.finished == [ref]  # the answer came while the refresh was held
        assert cache.fetches == 2
        assert cache.rules_for(ref) is good
    finally:
        client.release.set()
        cache.close()
        client.close()


def test_thousand_concurrent_async_misses_make_one_fetch(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """1,000 concurrent ensure() calls for one cold site, all made while it is held: one fetch."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    client = held_client(sites_api)
    cache = make_cache(client, clock)
    edge_filter = EdgeFilter(cache)

    async def burst() -> None:
        tasks = [asyncio.ensure_future(edge_filter.aensure(site["id"])) for _ in range(1000)]
        await asyncio.sleep(0)  # every task runs up to its wait on the fetch
        assert cache.fetches == 1
        assert client.finished == []
        client.release.set()
        await asyncio.gather(*tasks)

    try:
        asyncio.run(burst())
        assert site_reads(sites_api, site) == 1
        assert cache.rules_for(site["id"]) is not None
    finally:
        client.release.set()
        cache.close()
        client.close()


def test_thousand_concurrent_thread_misses_make_one_fetch(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """1,000 hits from 50 threads on one cold site while its fetch is held: one fetch."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    client = held_client(sites_api)
    cache = make_cache(client, clock, cold_wait=0.0)
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = set(pool.map(lambda _: cache.resolve(site["id"]), range(1000)))
        assert answers == {Reason.rules_pending}
        assert cache.fetches == 1
        client.release.set()
        cache.ensure(site["id"])
        edge_filter = EdgeFilter(cache)
        with ThreadPoolExecutor(max_workers=50) as pool:
            decisions = list(
                pool.map(
                    lambda _: edge_filter.should_track(site["id"], "203.0.113.9", CHROME),
                    range(1000),
                )
            )
        assert {decision.reason for decision in decisions} == {Reason.excluded_ip}
        assert cache.fetches == 1
        assert site_reads(sites_api, site) == 1
    finally:
        client.release.set()
        cache.close()
        client.close()


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


# --- site ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "site",
    [
        # not text at all
        None,
        3.0,
        b"7",
        # text that is no site id
        "",
        "abc",
        "-1",
        "1.5",
        "0x12",
        " 7",
        "../7",
        "7/excluded-ips",
        "\uff11\uff12",  # full-width digits
        "\u0663",  # an Arabic-Indic digit
        "9" * 20,  # past 2**63 - 1
        "0" * 70 + "7",  # padding past MAX_RAW_LENGTH
        "a1b2c3d4e5f",  # 11 hex
        "a1b2c3d4e5f6a",  # 13 hex
        "g1b2c3d4e5f6",  # not hex
    ],
)
@pytest.mark.adversarial
def test_what_cannot_be_a_site_id_is_unknown_without_a_fetch(
    sites_api: LiveApi, cache: RulesCache, site: object
) -> None:
    """resolve, ensure and aensure answer an id that cannot be one at once, with no fetch."""
    assert cache.resolve(site) is None  # type: ignore[arg-type]
    cache.ensure(site)  # type: ignore[arg-type]
    asyncio.run(cache.aensure(site))  # type: ignore[arg-type]
    assert cache.fetches == 0
    assert not sites_api.faults.requests


def test_spellings_of_one_id_share_one_entry(sites_api: LiveApi, cache: RulesCache) -> None:
    """'007' is '7' and an upper-case hex id is its lower-case self: one entry, one fetch."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    padded, upper = "00" + str(site["siteId"]), site["id"].upper()
    cache.ensure(padded)
    rules = cache.rules_for(str(site["siteId"]))
    assert rules is not None
    assert cache.resolve(padded) is rules
    assert cache.resolve(upper) is rules
    assert cache.rules_for(padded) is None  # the hot dict holds canonical ids only
    assert len(cache) == 1
    assert cache.fetches == 1


def test_both_id_forms_fetched_at_once_end_in_one_entry(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """A site fetched cold by each of its ids at once ends as one entry, under both ids."""
    site = sites_api.new_site()
    ids = (str(site["siteId"]), site["id"])
    client = held_client(sites_api)
    cache = make_cache(client, clock, cold_wait=0.0)
    try:
        assert [cache.resolve(ref) for ref in ids] == [Reason.rules_pending] * 2
        assert cache.fetches == 2  # neither fetch has named the other id yet
        client.wait_started(2)  # both fetches looked their id up before either answered
        client.release.set()
        for ref in ids:
            cache.ensure(ref)
        assert len(cache) == 1
        assert cache.rules_for(ids[0]) is cache.rules_for(ids[1]) is not None
    finally:
        client.release.set()
        cache.close()
        client.close()


# --- floods of made-up ids --------------------------------------------------------------

COLD_QUEUE = 8


def made_up_ids(count: int) -> list[str]:
    """Ids shaped like site ids that no site has: numeric and 12-hex, in canonical form."""
    numeric = [str(10**12 + n) for n in range(count // 2)]
    hexadecimal = [f"{0xFEED00000000 + n:012x}" for n in range(count - count // 2)]
    return [ref for pair in zip(numeric, hexadecimal, strict=False) for ref in pair]


def junk_ids(count: int) -> list[str]:
    """Text that cannot be a site id."""
    shapes = ("site-{}", "{}.0", "-{}", "0x{}", "{}/excluded-ips", "{} ", "x" * 65 + "{}")
    return [shapes[n % len(shapes)].format(n) for n in range(count)]


@pytest.mark.adversarial
def test_a_flood_of_made_up_ids_is_bounded_and_starves_no_real_site(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """Thousands of made-up ids: bounded requests, warm sites stay and refresh, a real cold
    site gets its rules afterwards, and an outage after the flood keeps the last good rules."""
    warm = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    cold = sites_api.new_site(excludedIPs=["198.51.100.0/24"])
    real = {str(warm["siteId"]), warm["id"], str(cold["siteId"]), cold["id"]}
    warm_ref, cold_ref = str(warm["siteId"]), str(cold["siteId"])
    client = held_client(sites_api, held=lambda site: site not in real)
    cache = make_cache(client, clock, maxsize=2, cold_queue=COLD_QUEUE, cold_wait=0.0)
    edge_filter = EdgeFilter(cache)
    try:
        cache.ensure(warm_ref)
        made_up, junk = made_up_ids(3000), junk_ids(1000)
        sites_api.faults.requests.clear()
        # The flood, while the first cold fetches are held: only COLD_QUEUE ids are queued.
        for shaped, odd in zip(made_up, junk + junk + junk, strict=True):
            assert cache.resolve(shaped) is Reason.rules_pending
            assert cache.resolve(odd) is None
        assert edge_filter.should_track(warm_ref, "203.0.113.9", CHROME).reason is (
            Reason.excluded_ip
        )
        # The warm site's refresh does not queue behind the held cold ids.
        with sites_api.client() as writer:
            writer.update_config(warm_ref, excludedIPs=["192.0.2.0/24"])
        clock.advance(0.9 * TTL)
        cache.maintain()
        assert isinstance(cache.resolve(warm_ref), SiteRules)
        cache.ensure(warm_ref, timeout=GUARD)
        assert edge_filter.should_track(warm_ref, "192.0.2.1", CHROME).reason is (
            Reason.excluded_ip
        )
        # A real cold site during the flood: pending (the filter does not track it).
        assert cache.resolve(cold_ref) is Reason.rules_pending
        assert cache.stats()["pending_refusals"] == len(made_up) - COLD_QUEUE + 1
        client.release.set()
        for ref in made_up[:COLD_QUEUE]:
            cache.ensure(ref)
        flood_reads = {
            path: count
            for path, count in sites_api.faults.requests.items()
            if path_site(path) not in real
        }
        assert flood_reads == {f"GET /api/sites/{ref}": 1 for ref in made_up[:COLD_QUEUE]}
        # Afterwards: the real cold site gets its rules, and the warm one is still held.
        cache.ensure(cold_ref)
        assert edge_filter.should_track(cold_ref, "198.51.100.7", CHROME).reason is (
            Reason.excluded_ip
        )
        assert cache.stats()["sites_held"] == 2
        assert cache.stats()["negative_held"] == COLD_QUEUE
        # An outage after the flood: the warm site keeps its last good rules.
        sites_api.faults.mode = "500"
        clock.advance(TTL + 1)
        cache.maintain()
        for _ in range(3):
            assert edge_filter.should_track(warm_ref, "192.0.2.1", CHROME).reason is (
                Reason.excluded_ip
            )
            cache.ensure(warm_ref)
    finally:
        client.release.set()
        cache.close()
        client.close()


@pytest.mark.adversarial
def test_negative_entries_never_evict_real_sites(sites_api: LiveApi, clock: FakeClock) -> None:
    """404s fill their own bounded store; the one real site stays, through an outage too."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    with sites_api.client() as client:
        cache = make_cache(client, clock, maxsize=1, negative_maxsize=3)
        try:
            cache.ensure(ref)
            for made_up in made_up_ids(10):
                cache.ensure(made_up)
                assert cache.resolve(made_up) is None
            assert cache.stats()["negative_held"] == 3
            assert len(cache) == 1
            sites_api.faults.mode = "500"
            clock.advance(TTL + 1)
            cache.maintain()
            assert isinstance(cache.resolve(ref), SiteRules)
            cache.ensure(ref)
            assert isinstance(cache.resolve(ref), SiteRules)
        finally:
            cache.close()


def test_a_full_cold_lane_answers_pending_without_queueing(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """Past cold_queue, a cold id is not queued: rules_pending, and no fetch is started."""
    client = held_client(sites_api)
    cache = make_cache(client, clock, cold_queue=1, cold_wait=0.0)
    try:
        first, second = made_up_ids(2)
        assert cache.resolve(first) is Reason.rules_pending
        assert cache.resolve(second) is Reason.rules_pending
        cache.ensure(second)  # nothing to wait for: not queued
        assert cache.fetches == 1
        assert cache.stats()["pending_refusals"] == 2
    finally:
        client.release.set()
        cache.close()
        client.close()


def test_a_cold_fetch_not_answered_within_cold_wait_is_pending(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """A queued cold fetch still held after cold_wait answers rules_pending."""
    site = sites_api.new_site()
    client = held_client(sites_api)
    cache = make_cache(client, clock, cold_wait=0.01)
    try:
        assert cache.resolve(str(site["siteId"])) is Reason.rules_pending
        assert cache.stats()["cold_waits"] == 1
        assert client.finished == []
    finally:
        client.release.set()
        cache.close()
        client.close()


def test_refreshes_do_not_wait_behind_cold_ids(sites_api: LiveApi, clock: FakeClock) -> None:
    """With every cold worker held, a known site's refresh still runs in its own lane."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    ref = str(site["siteId"])
    client = held_client(sites_api, held=lambda key: key != ref)
    cache = make_cache(client, clock, cold_workers=1, cold_queue=4, cold_wait=0.0)
    try:
        cache.ensure(ref)
        for made_up in made_up_ids(4):
            assert cache.resolve(made_up) is Reason.rules_pending
        clock.advance(TTL)
        cache.maintain()
        cache.ensure(ref, timeout=GUARD)
        assert client.finished == [ref, ref]
    finally:
        client.release.set()
        cache.close()
        client.close()


# --- reasons, by cause -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("500", Reason.rules_unavailable),
        ("malformed", Reason.rules_unavailable),
        ("403", Reason.rules_unauthorized),
    ],
)
def test_a_cold_site_answers_the_cause_of_its_failure(
    sites_api: LiveApi, cache: RulesCache, mode: str, reason: Reason
) -> None:
    """Outages answer rules_unavailable, refusals rules_unauthorized; until the retry is due."""
    ref = str(sites_api.new_site()["siteId"])
    sites_api.faults.mode = mode
    cache.ensure(ref)
    assert cache.resolve(ref) is reason
    assert cache.fetches == 1


def test_a_bad_key_answers_rules_unauthorized(sites_api: LiveApi, clock: FakeClock) -> None:
    """A 401 for a cold site is rules_unauthorized, not an outage and not an unknown site."""
    ref = str(sites_api.new_site()["siteId"])
    with SitesApiClient(sites_api.url, "ef_wrong") as client:
        cache = make_cache(client, clock)
        try:
            assert cache.resolve(ref) is Reason.rules_unauthorized
        finally:
            cache.close()


# --- logging: once per change, not per site per fetch ---------------------------------------


def test_an_outage_is_logged_once_for_every_site(
    sites_api: LiveApi, cache: RulesCache, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Three sites failing over three refreshes: one WARNING; the recovery: one INFO."""
    refs = [str(sites_api.new_site()["siteId"]) for _ in range(3)]
    for ref in refs:
        cache.ensure(ref)
    sites_api.faults.mode = "500"
    with caplog.at_level(logging.INFO, logger="edgefilter"):
        for _ in range(3):
            clock.advance(TTL)
            cache.maintain()
            for ref in refs:
                cache.ensure(ref)
        sites_api.faults.mode = "ok"
        clock.advance(TTL)
        cache.maintain()
        for ref in refs:
            cache.ensure(ref)
    levels = [(record.levelno, record.getMessage().split(" (")[0]) for record in caplog.records]
    assert levels == [
        (logging.WARNING, "the Sites API is failing"),
        (logging.INFO, "the Sites API answers again: rules are fetched and refreshed"),
    ]


def test_a_site_that_keeps_failing_alone_does_not_make_the_log_flap(
    sites_api: LiveApi, cache: RulesCache, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One site failing refresh after refresh while another answers: logged once, not each time."""
    failing, fine = (str(sites_api.new_site()["siteId"]) for _ in range(2))
    cache.ensure(failing)
    cache.ensure(fine)
    with caplog.at_level(logging.INFO, logger="edgefilter"):
        for _ in range(3):
            clock.advance(TTL)
            cache.maintain()
            sites_api.faults.mode = "500"
            cache.ensure(failing)
            sites_api.faults.mode = "ok"
            cache.ensure(fine)
    assert [record.levelno for record in caplog.records] == [logging.WARNING, logging.INFO]


def test_a_refused_key_is_logged_once_as_an_error(
    sites_api: LiveApi, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong key across three sites: one ERROR saying the API refused the key."""
    refs = [str(sites_api.new_site()["siteId"]) for _ in range(3)]
    with SitesApiClient(sites_api.url, "ef_wrong") as client:
        cache = make_cache(client, clock)
        try:
            with caplog.at_level(logging.DEBUG, logger="edgefilter"):
                for _ in range(2):
                    clock.advance(TTL)
                    for ref in refs:
                        cache.ensure(ref)
        finally:
            cache.close()
    loud = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.levelno for record in loud] == [logging.ERROR]
    assert "the API refused the key" in loud[0].getMessage()


def test_a_site_the_key_cannot_see_is_not_a_refused_key(
    sites_api: LiveApi, cache: RulesCache, caplog: pytest.LogCaptureFixture
) -> None:
    """A 403 for a cold site while the key works elsewhere (Rybbit's unknown site) is no ERROR."""
    mine = str(sites_api.new_site()["siteId"])
    other_org = sites_api.store.create_organization("Other")
    with SitesApiClient(sites_api.url, sites_api.store.create_key(other_org, "owner")) as other:
        theirs = str(other.create_site(other_org, "b.example", "Theirs")["siteId"])
    with caplog.at_level(logging.DEBUG, logger="edgefilter"):
        cache.ensure(mine)
        cache.ensure(theirs)
    assert cache.resolve(theirs) is Reason.rules_unauthorized
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


# --- start-up checks -----------------------------------------------------------------------


def run_check(cache: RulesCache, run: str, *sites: str) -> None:
    """``cache.check(*sites)``, or ``acheck`` on a loop of its own (its async pool closed)."""
    if run == "sync":
        cache.check(*sites)
        return

    async def scenario() -> None:
        try:
            await cache.acheck(*sites)
        finally:
            await cache.client.aclose()

    asyncio.run(scenario())


RUNS = pytest.mark.parametrize("run", ["sync", "async"])


@RUNS
def test_check_passes_a_good_key_with_one_probe(
    sites_api: LiveApi, cache: RulesCache, run: str
) -> None:
    """Without sites, one probe read: the reference server's 404 says the key is good."""
    run_check(cache, run)
    assert sites_api.faults.requests == {f"GET /api/sites/{PROBE_SITE}": 1}


@RUNS
def test_check_raises_on_a_bad_key(
    sites_api: LiveApi, clock: FakeClock, caplog: pytest.LogCaptureFixture, run: str
) -> None:
    """A 401 to the probe raises ApiAuthError and logs that the API refused the key."""
    with SitesApiClient(sites_api.url, "ef_wrong") as client:
        cache = make_cache(client, clock)
        try:
            with (
                caplog.at_level(logging.ERROR, logger="edgefilter"),
                pytest.raises(ApiAuthError) as refused,
            ):
                run_check(cache, run)
        finally:
            cache.close()
    assert refused.value.status == 401
    assert "the API refused the key" in caplog.text


@RUNS
def test_check_raises_on_an_unreachable_api(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, run: str
) -> None:
    """Nothing listening: ApiUnreachableError, logged as an outage (WARNING), not a bad key."""
    with SitesApiClient(f"http://127.0.0.1:{unused_port()}", "key") as client:
        cache = make_cache(client, clock)
        try:
            with (
                caplog.at_level(logging.WARNING, logger="edgefilter"),
                pytest.raises(ApiUnreachableError),
            ):
                run_check(cache, run)
        finally:
            cache.close()
    assert [record.levelno for record in caplog.records] == [logging.WARNING]


@RUNS
@pytest.mark.parametrize(
    ("mode", "error"), [("500", ApiServerError), ("malformed", MalformedResponseError)]
)
def test_check_raises_on_a_failing_api(
    sites_api: LiveApi, cache: RulesCache, run: str, mode: str, error: type[Exception]
) -> None:
    """A probe answered 500 or garbage raises that outage's error."""
    sites_api.faults.mode = mode
    with pytest.raises(error):
        run_check(cache, run)


@RUNS
def test_check_cannot_tell_a_403_probe(
    sites_api: LiveApi, cache: RulesCache, caplog: pytest.LogCaptureFixture, run: str
) -> None:
    """A 403 to the probe (Rybbit's answer for any key) is logged as unverified, not raised."""
    sites_api.faults.mode = "403"
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        run_check(cache, run)
    assert "the key is not verified" in caplog.text


@RUNS
def test_check_with_sites_warms_the_cache(sites_api: LiveApi, cache: RulesCache, run: str) -> None:
    """check(*sites) fetches each site now: its rules are in the hot dict afterwards."""
    sites = [sites_api.new_site(excludedIPs=["203.0.113.0/24"]) for _ in range(2)]
    run_check(cache, run, str(sites[0]["siteId"]), sites[1]["id"].upper())
    for site in sites:
        rules = cache.rules_for(site["id"])
        assert rules is not None
        assert rules is cache.rules_for(str(site["siteId"]))
    assert cache.stats()["fetches_ok"] == 2


@RUNS
def test_check_with_sites_raises_on_a_bad_key(
    sites_api: LiveApi, clock: FakeClock, run: str
) -> None:
    """A refused key raises ApiAuthError even when another site is missing."""
    ref = str(sites_api.new_site()["siteId"])
    with SitesApiClient(sites_api.url, "ef_wrong") as client:
        cache = make_cache(client, clock)
        try:
            with pytest.raises(ApiAuthError):
                run_check(cache, run, ref, "999999999")
        finally:
            cache.close()


@RUNS
def test_check_with_a_missing_site_raises_not_found(
    sites_api: LiveApi, cache: RulesCache, run: str
) -> None:
    """A site named to check that does not exist raises SiteNotFoundError."""
    ref = str(sites_api.new_site()["siteId"])
    with pytest.raises(SiteNotFoundError):
        run_check(cache, run, ref, "999999999")
    assert cache.rules_for(ref) is not None


@RUNS
def test_check_raises_a_refusal_before_a_missing_site(
    sites_api: LiveApi, cache: RulesCache, run: str
) -> None:
    """A site the key may not read outranks a missing one: ApiAuthError, not a 404."""
    other_org = sites_api.store.create_organization("Other")
    with SitesApiClient(sites_api.url, sites_api.store.create_key(other_org, "owner")) as other:
        theirs = str(other.create_site(other_org, "b.example", "Theirs")["siteId"])
    with pytest.raises(ApiAuthError) as refused:
        run_check(cache, run, "999999999", theirs)
    assert refused.value.status == 403


@RUNS
def test_check_refuses_what_is_no_site_id(cache: RulesCache, run: str) -> None:
    """check() names an id that cannot be one, before any request."""
    with pytest.raises(ConfigError, match="'site-1' is not a site id"):
        run_check(cache, run, "site-1")
    assert cache.fetches == 0


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        # durations
        ("ttl", 0),
        ("ttl", -5),
        ("ttl", math.inf),
        ("ttl", math.nan),
        ("ttl", "60"),
        ("ttl", True),
        ("max_stale", -1),
        ("max_stale", math.nan),
        ("negative_ttl", -1),
        ("negative_ttl", math.inf),
        ("cold_wait", -0.1),
        ("cold_wait", math.inf),
        ("tick", 0),
        ("tick", -1.0),
        # fractions
        ("refresh_ahead", 0),
        ("refresh_ahead", 3.0),
        ("refresh_ahead", -0.5),
        # counts
        ("maxsize", 0),
        ("maxsize", 1.5),
        ("maxsize", True),
        ("negative_maxsize", 0),
        ("max_workers", 0),
        ("cold_workers", 0),
        ("cold_queue", 0),
        ("cold_queue", None),
        # the rest
        ("clock", 5),
    ],
)
def test_bad_options_are_refused_naming_them(option: str, value: object) -> None:
    """Every option is checked at construction; the ConfigError names it and its value."""
    with (
        SitesApiClient("http://127.0.0.1:9", None) as client,
        pytest.raises(ConfigError, match=re.escape(f"{option}={value!r}")),
    ):
        RulesCache(client, **{"tick": None, option: value})


@pytest.mark.parametrize(
    "options",
    [
        {"refresh_ahead": 1},
        {"max_stale": 0},
        {"max_stale": math.inf},
        {"negative_ttl": 0},
        {"cold_wait": 0},
        {"maxsize": 1, "negative_maxsize": 1, "max_workers": 1, "cold_workers": 1, "cold_queue": 1},
    ],
)
def test_edge_options_are_accepted(options: dict[str, Any]) -> None:
    """The bounds themselves are valid options."""
    with SitesApiClient("http://127.0.0.1:9", None) as client:
        RulesCache(client, tick=None, **options).close()


def test_no_stale_rules_past_the_ttl_with_max_stale_zero(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """max_stale=0: rules are used for their ttl and not a moment longer while failing."""
    ref = str(sites_api.new_site()["siteId"])
    with sites_api.client() as client:
        cache = make_cache(client, clock, max_stale=0)
        try:
            cache.ensure(ref)
            sites_api.faults.mode = "500"
            clock.advance(0.9 * TTL)
            assert isinstance(cache.resolve(ref), SiteRules)
            clock.advance(0.1 * TTL)
            cache.maintain()
            assert cache.resolve(ref) is Reason.rules_unavailable
        finally:
            cache.close()


@given(ttl=st.floats(min_value=1e-3, max_value=1e7), failures=st.integers(1, 10**6))
def test_backoff_stays_within_the_ttl(ttl: float, failures: int) -> None:
    """However long an outage lasts, the next try is due within one ttl (and never overflows)."""
    assert 0 < _backoff(ttl, failures) <= ttl


# --- counting ------------------------------------------------------------------------------


def test_stats_count_fetches_by_outcome(sites_api: LiveApi, clock: FakeClock) -> None:
    """stats() counts each fetch's outcome, cold waits, refusals and the stores' sizes."""
    good, refused, failing = (str(sites_api.new_site()["siteId"]) for _ in range(3))
    held = "999999998"
    client = held_client(sites_api, held=lambda site: site == held)
    cache = make_cache(client, clock, cold_queue=1, cold_wait=0.01)
    try:
        cache.ensure(good)
        clock.advance(TTL)
        cache.maintain()
        cache.ensure(good)  # three 304s
        cache.ensure("999999999")
        sites_api.faults.mode = "403"
        cache.ensure(refused)
        sites_api.faults.mode = "500"
        cache.ensure(failing)
        sites_api.faults.mode = "ok"
        cache.ensure("999999996")  # a 404: the API answers again, so cold ids are pending
        assert cache.resolve(held) is Reason.rules_pending  # waited cold_wait, still held
        assert cache.resolve("999999997") is Reason.rules_pending  # the cold lane is full
        assert cache.stats() == {
            "fetches_started": 7,
            "fetches_ok": 1,
            "fetches_not_modified": 1,
            "fetches_not_found": 2,
            "fetches_auth": 1,
            "fetches_outage": 1,
            "cold_waits": 1,
            "pending_refusals": 1,
            "cold_in_flight": 1,
            "sites_held": 1,
            "negative_held": 2,
            "cold_failures_held": 2,
            "failing": 0,
            "outages": 1,  # the 500; the 403 was that cold id's own matter
            "stale_sites": 0,
            "stale_seconds": 0.0,
        }
    finally:
        client.release.set()
        cache.close()
        client.close()


def test_stats_say_how_stale_the_rules_are_through_an_outage(
    sites_api: LiveApi, clock: FakeClock
) -> None:
    """Through an outage stats() says the API is failing, counts one outage, and ages the
    held rules past their ttl; the API answering again makes them fresh."""
    ref = str(sites_api.new_site()["siteId"])
    client = sites_api.client()
    cache = make_cache(client, clock)
    try:
        cache.ensure(ref)
        clock.advance(5)
        fresh = cache.stats()
        assert (fresh["failing"], fresh["outages"], fresh["stale_sites"]) == (0, 0, 0)
        assert fresh["stale_seconds"] == pytest.approx(5)
        sites_api.faults.mode = "500"
        for _ in range(3):
            clock.advance(TTL)
            cache.maintain()
            cache.ensure(ref)
        failing = cache.stats()
        assert (failing["failing"], failing["outages"], failing["stale_sites"]) == (1, 1, 1)
        assert failing["stale_seconds"] == pytest.approx(5 + 3 * TTL)
        sites_api.faults.mode = "ok"
        clock.advance(TTL)
        cache.maintain()
        cache.ensure(ref)
        healed = cache.stats()
        assert (healed["failing"], healed["outages"], healed["stale_sites"]) == (0, 1, 0)
        assert healed["stale_seconds"] < TTL
    finally:
        cache.close()
        client.close()


@pytest.mark.parametrize(
    ("mode", "reason"), [("500", Reason.rules_unavailable), ("403", Reason.rules_unauthorized)]
)
def test_a_cold_id_not_answered_during_an_outage_is_not_pending(
    sites_api: LiveApi, clock: FakeClock, mode: str, reason: Reason
) -> None:
    """While the API is known to be failing, an unanswered cold id answers that failure."""
    down, cold = (str(sites_api.new_site()["siteId"]) for _ in range(2))
    client = held_client(sites_api, held=lambda site: site == cold)
    cache = make_cache(client, clock, cold_wait=0.0)
    try:
        sites_api.faults.mode = mode
        cache.ensure(down)
        assert cache.resolve(cold) is reason
        assert client.finished == [down]
    finally:
        client.release.set()
        cache.close()
        client.close()
