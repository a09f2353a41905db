"""SitesApiClient against the reference server on loopback: reads, writes, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefilter import (
    ApiAuthError,
    ApiRequestError,
    ApiServerError,
    ApiTimeoutError,
    ApiUnreachableError,
    MalformedResponseError,
    SiteNotFoundError,
    SitesApiClient,
    compile_rules,
)
from edgefilter._client import READS
from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app

from .conftest import LiveApi
from .held import ReadGate
from .live import unused_port

READ_SUFFIXES = ("/excluded-ips", "/excluded-countries")


def test_fetch_config_merges_the_three_reads(sites_api: LiveApi) -> None:
    """One config from GET site, excluded-ips and excluded-countries."""
    site = sites_api.new_site(excludedIPs=["10.0.0.0/8"], excludedCountries=["CN"], blockBots=False)
    with sites_api.client() as client:
        fetched = client.fetch_config(site["id"])
    assert fetched.config.site_id == site["siteId"]
    assert fetched.config.excluded_ips == ("10.0.0.0/8",)
    assert fetched.config.excluded_countries == ("CN",)
    assert fetched.config.block_bots is False
    assert all(fetched.etags)
    assert "10.1.2.3" in compile_rules(fetched.config).excluded_ips


def test_fetch_config_is_conditional(sites_api: LiveApi) -> None:
    """Refetching with the previous ETags answers 304s and reports not_modified."""
    site = sites_api.new_site(excludedIPs=["10.0.0.0/8"])
    with sites_api.client() as client:
        first = client.fetch_config(str(site["siteId"]))
        second = client.fetch_config(str(site["siteId"]), first)
        assert second.not_modified
        assert second.config == first.config
        assert sites_api.faults.statuses[304] == len(READS)
        client.update_config(str(site["siteId"]), excludedCountries=["FR"])
        third = client.fetch_config(str(site["siteId"]), second)
    assert not third.not_modified
    assert third.config.excluded_countries == ("FR",)
    assert third.config.excluded_ips == ("10.0.0.0/8",)


def test_writes_round_trip(sites_api: LiveApi) -> None:
    """Create, update, private link and delete through the client."""
    with sites_api.client() as client:
        created = client.create_site(sites_api.org_id, "shop.example", "Shop", blockBots=False)
        site = created["id"]
        config = client.update_config(site, excludedIPs=["192.0.2.1"], public=True)
        assert config["excludedIPs"] == ["192.0.2.1"]
        assert client.excluded_ips(site) == ["192.0.2.1"]
        assert client.excluded_countries(site) == []
        assert client.site(site)["public"] is True
        assert client.private_link(site) is None
        key = client.generate_private_link(site)
        assert client.private_link(site) == key
        client.revoke_private_link(site)
        assert client.private_link(site) is None
        client.delete_site(site)
        with pytest.raises(SiteNotFoundError):
            client.site(site)


def test_async_calls(sites_api: LiveApi) -> None:
    """The async methods do what the sync ones do."""

    async def scenario() -> None:
        client = sites_api.client()
        try:
            created = await client.acreate_site(sites_api.org_id, "a.example", "Async")
            site = str(created["siteId"])
            await client.aupdate_config(site, excludedCountries=["de"])
            fetched = await client.afetch_config(site)
            assert fetched.config.excluded_countries == ("DE",)
            again = await client.afetch_config(site, fetched)
            assert again.not_modified
            assert (await client.asite(site))["name"] == "Async"
            await client.adelete_site(site)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_typed_errors_for_auth_and_missing_sites(sites_api: LiveApi) -> None:
    """401 and 403 are ApiAuthError, 404 is SiteNotFoundError, 400 is ApiRequestError."""
    site = sites_api.new_site()
    other_org = sites_api.store.create_organization("Other")
    stranger = sites_api.store.create_key(other_org, "owner")
    with SitesApiClient(sites_api.url, "ef_wrong") as client, pytest.raises(ApiAuthError) as bad:
        client.fetch_config(site["id"])
    assert bad.value.status == 401
    with SitesApiClient(sites_api.url, stranger) as client, pytest.raises(ApiAuthError) as denied:
        client.fetch_config(site["id"])
    assert denied.value.status == 403
    with sites_api.client() as client:
        with pytest.raises(SiteNotFoundError):
            client.fetch_config("999999999")
        with pytest.raises(ApiRequestError) as refused:
            client.update_config(site["id"], excludedIPs=["nope"])
    assert refused.value.details == [
        "nope: excluded IP entry 'nope' is not an address, CIDR or range"
    ]


@pytest.mark.parametrize(
    ("mode", "error"),
    [("500", ApiServerError), ("malformed", MalformedResponseError), ("403", ApiAuthError)],
)
def test_typed_errors_for_faults(sites_api: LiveApi, mode: str, error: type[Exception]) -> None:
    """Server errors and non-JSON bodies raise their own types."""
    site = sites_api.new_site()
    sites_api.faults.mode = mode
    with sites_api.client() as client, pytest.raises(error):
        client.fetch_config(site["id"])


def test_timeout(sites_api: LiveApi) -> None:
    """A server slower than the timeout raises ApiTimeoutError, also a TimeoutError."""
    site = sites_api.new_site()
    sites_api.faults.mode, sites_api.faults.delay = "slow", 1.0
    with sites_api.client(timeout=0.1) as client, pytest.raises(TimeoutError):
        client.fetch_config(site["id"])
    with sites_api.client(timeout=0.1) as client, pytest.raises(ApiTimeoutError):
        client.site(site["id"])


def test_unreachable() -> None:
    """Nothing listening: ApiUnreachableError, also a ConnectionError."""
    with SitesApiClient(f"http://127.0.0.1:{unused_port()}", "key") as client:
        with pytest.raises(ApiUnreachableError):
            client.fetch_config("1")
        with pytest.raises(ConnectionError):
            client.site("1")


def fetch_once(client: SitesApiClient, site: str, run: str) -> None:
    """One ``fetch_config`` (sync) or ``afetch_config`` (async, pool closed on its loop)."""
    if run == "sync":
        client.fetch_config(site)
        return

    async def scenario() -> None:
        try:
            await client.afetch_config(site)
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_missing_site_costs_one_read(sites_api: LiveApi, run: str) -> None:
    """A 404 stops the fetch after the site read: the two list reads are not sent."""
    missing = str(sites_api.new_site()["siteId"] + 1000)
    sites_api.faults.requests.clear()
    with sites_api.client() as client, pytest.raises(SiteNotFoundError):
        fetch_once(client, missing, run)
    assert sites_api.faults.requests == {f"GET /api/sites/{missing}": 1}


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_refused_key_costs_one_read(sites_api: LiveApi, run: str) -> None:
    """A 401 on the site read stops the fetch there."""
    site = str(sites_api.new_site()["siteId"])
    sites_api.faults.requests.clear()
    with SitesApiClient(sites_api.url, "ef_wrong") as client, pytest.raises(ApiAuthError):
        fetch_once(client, site, run)
    assert sites_api.faults.requests == {f"GET /api/sites/{site}": 1}


@pytest.fixture
def gated_api(tmp_path: Path) -> Iterator[tuple[str, str, str, ReadGate]]:
    """A reference server behind a gate on list reads: its url, an org, its key, the gate."""
    app = create_app(f"sqlite:///{tmp_path / 'sites.db'}")
    org = app.state.store.create_organization("Gated")
    key = app.state.store.create_key(org, "owner")
    gate = ReadGate(app, suffixes=READ_SUFFIXES, together=2)
    gate.armed = False
    with serve_in_thread(gate) as url:
        yield url, org, key, gate


def test_async_first_fetch_sends_the_list_reads_together(
    gated_api: tuple[str, str, str, ReadGate],
) -> None:
    """afetch_config sends both list reads at once after the site read (else it times out)."""
    url, org, key, gate = gated_api

    async def scenario() -> None:
        client = SitesApiClient(url, key, timeout=3.0)
        try:
            site = str((await client.acreate_site(org, "a.example", "Gated"))["siteId"])
            gate.armed = True
            fetched = await client.afetch_config(site)
            assert fetched.config.site_id == int(site)
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert gate.arrived == 2


def test_async_refresh_sends_all_three_reads_together(
    gated_api: tuple[str, str, str, ReadGate],
) -> None:
    """afetch_config with a previous answer sends its three reads at once."""
    url, org, key, gate = gated_api

    async def scenario() -> None:
        client = SitesApiClient(url, key, timeout=3.0)
        try:
            site = str((await client.acreate_site(org, "a.example", "Gated"))["siteId"])
            first = await client.afetch_config(site)
            gate.suffixes, gate.together, gate.armed = (f"/sites/{site}", *READ_SUFFIXES), 3, True
            again = await client.afetch_config(site, first)
            assert again.not_modified
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert gate.arrived == 3
