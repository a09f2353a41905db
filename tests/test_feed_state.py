"""Snapshot then deltas equal a fresh snapshot, after any creates, updates and deletes.

A Hypothesis state machine drives the real server (SQLite and PostgreSQL, a retained window
of three tombstones so that nodes fall out of it) and two nodes: the plainest oracle (a dict
by siteId that takes a full answer in place of what it holds and applies a delta's sites
and deletions) and a ``RulesFeed`` fed the same answers. After each sync both must hold
exactly what a fresh snapshot holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from edgefilter import FeedAnswer, RulesFeed, SitesApiClient
from edgefilter._rules import SiteConfig, compile_rules

from .test_feed import FeedApi, serving
from .test_server import postgres_url

CONFIGS = st.fixed_dictionaries(
    {},
    optional={
        "excludedIPs": st.lists(st.sampled_from(["192.0.2.1", "10.0.0.0/8", "2001:db8::/32"])),
        "excludedCountries": st.lists(st.sampled_from(["FR", "DE", "US"]), unique=True),
        "excludedPaths": st.lists(st.sampled_from(["/admin*", "/health", "*.php"])),
        "blockBots": st.booleans(),
        "type": st.sampled_from(["web", "mobile"]),
        "domain": st.sampled_from(["example.com", "www.example.org"]),
    },
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FeedApi]:
    """One server per backend for the module, keeping three tombstones."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('feed') / 'sites.db'}"
    else:
        url = postgres_url()
    with serving(url, max_tombstones=3) as api:
        yield api


def apply(held: dict[int, dict[str, Any]], answer: FeedAnswer) -> None:
    """The oracle: a full answer replaces what is held; a delta updates and deletes."""
    if answer.not_modified:
        return
    if answer.full:
        held.clear()
    for site in answer.sites:
        held[site["siteId"]] = site
    for site_id in answer.deleted:
        held.pop(site_id, None)


class FeedMachine(RuleBasedStateMachine):
    """Random changes through the API; nodes that sync now and then."""

    api: FeedApi

    def __init__(self) -> None:
        super().__init__()
        store = self.api.store
        self.org = store.create_organization("Machine")
        self.owner = SitesApiClient(self.api.url, store.create_key(self.org, "owner"))
        self.sites: list[str] = []
        self.oracle: dict[int, dict[str, Any]] = {}
        self.version: int | None = None
        self.feed = RulesFeed(self.owner, start=False)

    @rule(config=CONFIGS)
    def create(self, config: dict[str, Any]) -> None:
        site = str(self.owner.create_site(self.org, "example.com", "Site")["siteId"])
        if config:
            self.owner.update_config(site, **config)
        self.sites.append(site)

    @precondition(lambda self: self.sites)
    @rule(data=st.data(), config=CONFIGS)
    def update(self, data: st.DataObject, config: dict[str, Any]) -> None:
        site = data.draw(st.sampled_from(self.sites))
        self.owner.update_config(site, **(config or {"public": True}))

    @precondition(lambda self: self.sites)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        site = data.draw(st.sampled_from(self.sites))
        self.owner.delete_site(site)
        self.sites.remove(site)

    @rule()
    def sync(self) -> None:
        answer = self.owner.edge_rules(self.version)
        apply(self.oracle, answer)
        self.feed._apply(answer)
        if answer.version is not None:
            self.version = answer.version
        fresh = {site["siteId"]: site for site in self.owner.edge_rules().sites}
        assert self.oracle == fresh
        held = {site_id: entry[0] for site_id, entry in self.feed._held.sites.items()}
        assert held == fresh
        for site_id, site in fresh.items():
            rules = self.feed.rules_for(str(site_id))
            assert rules == compile_rules(SiteConfig.from_api(site))
            assert self.feed.rules_for(site["id"]) is rules
        assert len(self.feed.known_sites()) == 2 * len(fresh)

    @invariant()
    def sites_are_the_ones_made(self) -> None:
        assert len(self.sites) == len(set(self.sites))

    def teardown(self) -> None:
        try:
            self.sync()  # every example ends checked, whatever its last rule was
        finally:
            self.owner.close()


def test_snapshot_then_deltas_equal_a_fresh_snapshot(shared_api: FeedApi, tmp_path: Path) -> None:
    """Any sequence of creates, updates, deletes and syncs: the nodes hold a fresh snapshot."""
    FeedMachine.api = shared_api
    run_state_machine_as_test(
        FeedMachine, settings=settings(max_examples=12, stateful_step_count=10, deadline=None)
    )
