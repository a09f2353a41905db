"""The README's custom RulesSource, written from the protocol alone, works as documented.

The class below is the README's example verbatim (section "A rules source of your own").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edgefilter import (
    EdgeFilter,
    Reason,
    RulesSource,
    SiteConfig,
    SiteRules,
    compile_rules,
)

from .conftest import CHROME, GOOGLEBOT

# --- README example ---------------------------------------------------------------------


class DatabaseRules(RulesSource):
    """Rules read from the application's own database, one site at a time."""

    rules_for: Callable[[str], SiteRules | None]

    def __init__(self, load_config: Callable[[str], SiteConfig | None]) -> None:
        self.load_config = load_config  # site id -> SiteConfig, or None for no such site
        self.compiled: dict[str, SiteRules] = {}
        self.rules_for = self.compiled.get  # the hot path reads this dict directly

    def resolve(self, site: str) -> SiteRules | Reason | None:
        try:
            config = self.load_config(site)
        except ConnectionError:
            return Reason.rules_unavailable  # tracked by default: fail open on an outage
        if config is None:
            return None  # an unknown site
        rules = self.compiled[site] = compile_rules(config)
        return rules


# --- end of the README example ----------------------------------------------------------


def test_the_readme_custom_source_decides_from_its_own_database() -> None:
    """Known sites get their rules (once compiled), unknown ones unknown_site."""
    loads: list[str] = []
    configs = {"7": SiteConfig(site_id=7, excluded_ips=("10.0.0.0/8",))}

    def load_config(site: str) -> SiteConfig | None:
        loads.append(site)
        return configs.get(site)

    edge_filter = EdgeFilter(DatabaseRules(load_config))
    assert edge_filter.should_track("007", "10.1.2.3", CHROME).reason is Reason.excluded_ip
    assert edge_filter.should_track("7", "192.0.2.1", CHROME).reason is Reason.tracked
    assert edge_filter.should_track("7", "192.0.2.1", GOOGLEBOT).reason is Reason.bot
    assert edge_filter.should_track("8", "192.0.2.1", CHROME).reason is Reason.unknown_site
    assert edge_filter.should_track("not a site", "192.0.2.1", CHROME).reason is (
        Reason.unknown_site
    )
    assert loads == ["7", "8"]  # compiled once; no lookup for what is not a site id


def test_the_readme_custom_source_fails_open_on_an_outage() -> None:
    """A database outage is rules_unavailable, tracked by default."""

    def load_config(site: str) -> SiteConfig | None:
        raise ConnectionError("database down")

    edge_filter = EdgeFilter(DatabaseRules(load_config))
    decision = edge_filter.should_track("7", "10.1.2.3", CHROME)
    assert (decision.tracked, decision.reason) == (True, Reason.rules_unavailable)


def test_the_readme_custom_source_gets_the_protocol_defaults() -> None:
    """It inherits cold_wait, aensure and known_sites, and adecide works with it."""
    source = DatabaseRules(lambda site: SiteConfig(site_id=int(site), excluded_ips=("10.0.0.1",)))
    assert source.cold_wait == 0.25 and dict(source.known_sites()) == {}
    edge_filter = EdgeFilter(source)
    decision = asyncio.run(edge_filter.adecide("3", "10.0.0.1", CHROME))
    assert decision.reason is Reason.excluded_ip
