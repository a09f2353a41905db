"""``decide_many`` and ``adecide_many``: the answers of ``should_track`` one by one, in order,
with either reader; cold sites awaited once per site."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import (
    AsnResolver,
    BotDetector,
    CountryResolver,
    Decision,
    EdgeFilter,
    Reason,
    RulesSource,
    SiteConfig,
    SiteRules,
    compile_rules,
)

from .conftest import ASN_DB, CITY_DB
from .hostile import any_values
from .readers import database_addresses, pure_reader, text_hits

USER_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "Googlebot/2.1", "", "qa-probe"]
SITES = ["1", "2", "3", "4", "5", "6", "9"]  # 9 is unknown


@cache
def batch_filter() -> EdgeFilter:
    """Sites of every kind: IPs only, compact, countries and ASNs layered, patterns, no
    address rules, bots off; site 6's layers are never built (the databases stay unwalked
    for it: it is decided on the slow path)."""
    geoip, asn_db = CountryResolver(CITY_DB), AsnResolver(ASN_DB)
    geoip.wait_compiled()
    asn_db.wait_compiled()
    ips = ("10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.0/120", "81.2.69.0/24")
    layered = {"excluded_countries": ("GB", "CN"), "excluded_asns": (15169, 1221)}
    configs = {
        "1": (SiteConfig(excluded_ips=ips), False),
        "2": (SiteConfig(excluded_ips=ips, **layered), True),  # type: ignore[arg-type]
        "3": (SiteConfig(excluded_ips=ips, excluded_paths=("/admin*",)), False),
        "4": (SiteConfig(block_bots=True), False),
        "5": (SiteConfig(excluded_ips=ips, block_bots=False, **layered), True),  # type: ignore[arg-type]
        "6": (SiteConfig(excluded_ips=ips, excluded_countries=("US",)), False),
    }
    sites = {
        site: compile_rules(config, compact=site in "25") for site, (config, _) in configs.items()
    }
    edge_filter = EdgeFilter(sites, geoip=geoip, asn_db=asn_db, bots=BotDetector())
    for site, (_, prepare) in configs.items():
        if prepare:
            assert edge_filter.prepare(sites[site])
        else:
            sites[site].country_layers.clear()
    return edge_filter


def hits() -> st.SearchStrategy[tuple[object, ...]]:
    """Hits of three or five fields over the sites, with odd values anywhere."""
    site = st.one_of(st.sampled_from(SITES), any_values)
    ip = st.one_of(text_hits(), st.sampled_from(database_addresses()))
    ua = st.one_of(st.sampled_from(USER_AGENTS), any_values)
    path = st.one_of(st.none(), st.sampled_from(["/admin/1", "/blog"]), any_values)
    three = st.tuples(site, ip, ua)
    return st.one_of(three, st.tuples(site, ip, ua, path, st.sampled_from([None, "a.example"])))


def one_by_one(edge_filter: EdgeFilter, batch: list[tuple[object, ...]]) -> list[Decision]:
    """The oracle: ``should_track`` for each hit."""
    answers = []
    for hit in batch:
        path, hostname = hit[3:] if len(hit) == 5 else (None, None)
        answers.append(edge_filter.should_track(*hit[:3], path=path, hostname=hostname))
    return answers


@settings(max_examples=150)
@given(st.lists(hits(), max_size=30), st.booleans())
def test_decide_many_answers_as_should_track_one_by_one(
    batch: list[tuple[object, ...]], pure: bool
) -> None:
    """Each answer, in order, is the Decision ``should_track`` gives that hit, with the
    compiled reader or the pure one."""
    edge_filter = batch_filter()
    if pure:
        with pure_reader():
            assert edge_filter.decide_many(batch) == one_by_one(edge_filter, batch)
    else:
        assert edge_filter.decide_many(batch) == one_by_one(edge_filter, batch)


@given(st.lists(st.tuples(st.sampled_from(SITES), text_hits(), st.sampled_from(USER_AGENTS))))
def test_parallel_sequences_are_the_tuples_zipped(
    batch: list[tuple[object, object, object]],
) -> None:
    """``sites``, ``ips``, ``uas`` (and paths, hostnames) give the answers of their tuples."""
    edge_filter = batch_filter()
    sites, ips, uas = ([hit[n] for hit in batch] for n in range(3))
    expected = edge_filter.decide_many(batch)
    assert edge_filter.decide_many(sites=sites, ips=ips, uas=uas) == expected
    paths = ["/admin/x"] * len(batch)
    with_paths = edge_filter.decide_many(sites=sites, ips=ips, uas=uas, paths=paths)
    assert with_paths == edge_filter.decide_many([(*hit, "/admin/x", None) for hit in batch])


def test_the_batch_reaches_every_kind_of_answer() -> None:
    """The sites and hits above lead to each decision the loop and its fallback give."""
    edge_filter = batch_filter()
    batch = [
        (site, ip, ua, "/admin/1", None)
        for site in SITES
        for ip in ["10.1.2.3", "2.125.160.216", "1.0.0.1", "8.8.8.8", " 10.0.0.1", "x"]
        for ua in USER_AGENTS[:2]
    ]
    reasons = {decision.reason.value for decision in edge_filter.decide_many(batch)}
    assert reasons >= {
        "excluded_ip", "excluded_country", "excluded_asn", "excluded_path", "bot", "tracked",
        "invalid_ip", "unknown_site",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("hits", "columns", "message"),
    [
        ([("1", "10.0.0.1")], {}, "is neither"),
        ([("1", "10.0.0.1", "ua", "/")], {}, "is neither"),
        ([], {"sites": ["1"], "ips": ["10.0.0.1"], "uas": []}, "unequal lengths"),
        ([], {"sites": ["1"], "ips": ["10.0.0.1"]}, "parallel sequences"),
        ([("1", "10.0.0.1", "ua")], {"sites": ["1"], "ips": ["1"], "uas": ["u"]}, "not both"),
    ],
    ids=["two fields", "four fields", "unequal", "no uas", "both forms"],
)
def test_a_batch_of_the_wrong_shape_is_a_valueerror(
    hits: list[tuple[object, ...]], columns: dict[str, list[object]], message: str
) -> None:
    """A hit of another shape, columns of unequal lengths or missing, both forms: named."""
    with pytest.raises(ValueError, match=message):
        if hits:
            batch_filter().decide_many(hits, **columns)  # type: ignore[arg-type]
        else:
            batch_filter().decide_many(**columns)  # type: ignore[arg-type]


RULES = compile_rules(SiteConfig(block_bots=False, excluded_ips=("203.0.113.0/24",)))


class CountedFetch(RulesSource):
    """A fetching source: each cold site's rules arrive after one awaited fetch, counted."""

    rules_for: Callable[[str], SiteRules | None]

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.hot: dict[str, SiteRules] = {}
        self.rules_for = self.hot.get
        self.fetches: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.failing = failing

    def resolve(self, site: str) -> SiteRules | Reason | None:
        return Reason.rules_pending

    async def aensure(self, site: str, timeout: float | None = None) -> None:
        self.fetches.append(site)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        if site in self.failing:
            raise ConnectionError(f"site {site} failed")
        self.hot[site] = RULES


def test_adecide_many_awaits_each_cold_site_once_then_decides() -> None:
    """Sixty hits over three cold sites (in several spellings): three fetches, at once,
    then the answers of the fetched rules; a failed fetch leaves its site pending."""
    source = CountedFetch(failing=frozenset({"3"}))
    edge_filter = EdgeFilter(source)
    batch = [
        (site, ip, "Mozilla/5.0")
        for site in ("1", "01", "2", "3", "not a site")
        for ip in ("203.0.113.9", "198.51.100.1", "junk")
    ] * 4
    answers = asyncio.run(edge_filter.adecide_many(batch))
    assert sorted(source.fetches) == ["1", "2", "3"]
    assert source.most_at_once == 3
    assert answers == one_by_one(edge_filter, batch)
    reasons: dict[object, set[Reason]] = {}
    for (site, _, _), answer in zip(batch, answers, strict=True):
        reasons.setdefault(site, set()).add(answer.reason)
    assert reasons["1"] == {Reason.excluded_ip, Reason.tracked, Reason.invalid_ip}
    assert reasons["3"] == {Reason.rules_pending}
    assert reasons["not a site"] == {Reason.unknown_site}


def test_adecide_many_with_warm_sites_fetches_nothing() -> None:
    """Sites whose rules are at hand are decided at once, with no fetch."""
    source = CountedFetch()
    source.hot["1"] = RULES
    edge_filter = EdgeFilter(source)
    answers = asyncio.run(edge_filter.adecide_many(sites=["1"], ips=["203.0.113.1"], uas=["x"]))
    assert answers == [Decision(False, Reason.excluded_ip)]
    assert source.fetches == []
