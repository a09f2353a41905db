"""Async callers: ``adecide`` awaits a cold site's rules; the sync call in a loop never waits."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable

import pytest

from edgefilter import (
    Decision,
    EdgeFilter,
    Reason,
    RulesCache,
    RulesSource,
    SiteConfig,
    SiteRules,
    compile_rules,
)

from .conftest import CHROME, LiveApi

EXCLUDED = "203.0.113.9"
RULES = compile_rules(SiteConfig(site_id=1, block_bots=False, excluded_ips=("203.0.113.0/24",)))


class HeldFetch(RulesSource):
    """A fetching source whose one fetch is held until the test releases it."""

    rules_for: Callable[[str], SiteRules | None]

    def __init__(self) -> None:
        self.hot: dict[str, SiteRules] = {}
        self.rules_for = self.hot.get
        self.release = asyncio.Event()
        self.awaited: list[tuple[str, float | None]] = []
        self.cold_wait = 30.0

    def resolve(self, site: str) -> SiteRules | Reason | None:
        return Reason.rules_pending  # the fetch has not answered: never wait here

    async def aensure(self, site: str, timeout: float | None = None) -> None:
        self.awaited.append((site, timeout))
        await self.release.wait()
        self.hot[site] = RULES


def test_adecide_awaits_a_cold_site_then_decides() -> None:
    """A cold site's hit waits for the held fetch, without blocking the loop, then is
    decided from the fetched rules; the canonical id and the source's cold_wait are used."""
    source = HeldFetch()
    edge_filter = EdgeFilter(source)

    async def scenario() -> Decision:
        hit = asyncio.create_task(edge_filter.adecide("0001", EXCLUDED, CHROME))
        await asyncio.sleep(0)  # the hit runs up to its await
        await asyncio.sleep(0)
        assert not hit.done()  # held on the fetch, and the loop still runs this test
        source.release.set()
        return await hit

    assert asyncio.run(scenario()) == Decision(False, Reason.excluded_ip)
    assert source.awaited == [("1", 30.0)]


def test_should_track_in_a_loop_never_waits_and_warns_once() -> None:
    """Inside a running loop the sync call answers rules_pending (not tracked) at once and
    warns once per filter to use adecide."""
    source = HeldFetch()
    edge_filter = EdgeFilter(source)

    async def forgot_to_await() -> list[Decision]:
        return [edge_filter.should_track("1", EXCLUDED, CHROME) for _ in range(3)]

    with pytest.warns(RuntimeWarning, match="adecide") as caught:
        decisions = asyncio.run(forgot_to_await())
    assert decisions == [Decision(False, Reason.rules_pending)] * 3
    assert len(caught) == 1
    assert source.awaited == []


def test_should_track_outside_a_loop_does_not_warn() -> None:
    """A thread with no running loop may wait (or not) as the source decides: no warning."""
    edge_filter = EdgeFilter(HeldFetch())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert edge_filter.should_track("1", EXCLUDED, CHROME).reason is Reason.rules_pending
    assert caught == []


def test_the_warning_never_makes_should_track_raise() -> None:
    """With warnings made errors (as this suite does), the hot path still answers."""
    edge_filter = EdgeFilter(HeldFetch())

    async def forgot_to_await() -> Decision:
        return edge_filter.should_track("1", EXCLUDED, CHROME)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(forgot_to_await()) == Decision(False, Reason.rules_pending)


def test_adecide_does_not_warn_when_the_fetch_is_still_pending() -> None:
    """adecide has awaited: a site still pending after cold_wait is not the caller's fault."""

    class Unanswered(HeldFetch):
        async def aensure(self, site: str, timeout: float | None = None) -> None:
            self.awaited.append((site, timeout))  # returns as a cold_wait that ran out

    edge_filter = EdgeFilter(Unanswered())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decision = asyncio.run(edge_filter.adecide("1", EXCLUDED, CHROME))
    assert decision == Decision(False, Reason.rules_pending)
    assert caught == []


def test_an_async_consumer_lets_no_excluded_hit_through(sites_api: LiveApi) -> None:
    """The reported leak: 2,000 async hits from an excluded address on a cold live site,
    all excluded once the consumer awaits adecide."""
    site = sites_api.new_site(excludedIPs=["203.0.113.0/24"])
    with sites_api.client(timeout=5.0) as client:
        cache = RulesCache(client, tick=None, cold_wait=30.0)
        edge_filter = EdgeFilter(cache)

        async def consumer() -> list[Decision]:
            hits = (edge_filter.adecide(site["id"], EXCLUDED, CHROME) for _ in range(2_000))
            return await asyncio.gather(*hits)

        try:
            decisions = asyncio.run(consumer())
        finally:
            cache.close()
    assert {decision.reason for decision in decisions} == {Reason.excluded_ip}
    # One compile; a hit racing the first fetch's publication may start one 304 refresh.
    assert cache.stats()["fetches_ok"] == 1, cache.stats()
