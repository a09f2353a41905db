"""The client reads v2.7's lists and ours, and a server that lacks them (an older Rybbit)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from edgefilter import (
    ApiServerError,
    MalformedResponseError,
    SiteNotFoundError,
    SitesApiClient,
    compile_rules,
)
from edgefilter._client import READS, FetchedConfig
from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app
from edgefilter.server._store import SiteStore

from .live import FaultInjector

NEWER = ("/excluded-paths", "/excluded-hostnames", "/excluded-user-agents", "/excluded-asns")
# What Fastify answers for a route it does not have (Rybbit's server framework).
FASTIFY_404 = {"message": "Route GET not found", "error": "Not Found", "statusCode": 404}


class OlderServer:
    """ASGI wrapper: the suffixes in ``lacking`` answer ``answer`` with ``status``, as a
    server without those endpoints would; everything else reaches the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lacking: tuple[str, ...] = ()
        self.status = 404
        self.answer: dict[str, Any] = FASTIFY_404

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith(self.lacking or ("\0",)):
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": json.dumps(self.answer).encode()})
            return
        await self.app(scope, receive, send)


@dataclass
class Server:
    """The reference server behind an OlderServer and a FaultInjector (which counts)."""

    url: str
    older: OlderServer
    faults: FaultInjector
    key: str
    org_id: str

    def client(self) -> SitesApiClient:
        return SitesApiClient(self.url, self.key)

    def new_site(self, **config: Any) -> str:
        with self.client() as client:
            site = str(client.create_site(self.org_id, "example.com", "Site")["siteId"])
            if config:
                client.update_config(site, **config)
        return site


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module."""
    app = create_app(f"sqlite:///{tmp_path_factory.mktemp('older') / 'sites.db'}")
    store: SiteStore = app.state.store
    org_id = store.create_organization("Older")
    key = store.create_key(org_id, "owner")
    older = OlderServer(app)
    faults = FaultInjector(older)
    with serve_in_thread(faults) as url:
        yield Server(url, older, faults, key, org_id)


@pytest.fixture
def server(module_server: Server) -> Iterator[Server]:
    """The module's server with every endpoint, its counts cleared."""
    module_server.older.lacking, module_server.older.status = (), 404
    module_server.older.answer = FASTIFY_404
    module_server.faults.requests.clear()
    yield module_server
    module_server.older.lacking = ()


RULES: dict[str, Any] = {
    "excludedIPs": ["10.0.0.0/8"],
    "excludedPaths": ["/admin*"],
    "excludedHostnames": ["*.internal.example"],
    "excludedUserAgents": ["UptimeRobot"],
    "excludedASNs": ["AS15169"],
    "type": "mobile",
}


def fetch(server: Server, site: str, previous: FetchedConfig | None = None) -> FetchedConfig:
    """fetch_config with a fresh client."""
    with server.client() as client:
        return client.fetch_config(site, previous)


def afetch(server: Server, site: str, previous: FetchedConfig | None = None) -> FetchedConfig:
    """afetch_config with a fresh client, run to its end."""

    async def run() -> FetchedConfig:
        client = server.client()
        try:
            return await client.afetch_config(site, previous)
        finally:
            await client.aclose()

    return asyncio.run(run())


FETCHES = pytest.mark.parametrize("fetcher", [fetch, afetch], ids=["sync", "async"])


@FETCHES
def test_the_new_lists_are_read(server: Server, fetcher: Any) -> None:
    """A config carries the site's paths, hostnames, user agents, ASNs and type."""
    site = server.new_site(**RULES)
    config = fetcher(server, site).config
    assert config.excluded_paths == ("/admin*",)
    assert config.excluded_hostnames == ("*.internal.example",)
    assert config.excluded_user_agents == ("UptimeRobot",)
    assert config.excluded_asns == (15169,)
    assert config.type == "mobile"
    rules = compile_rules(config)
    assert rules.excluded_asns == {15169} and rules.mobile and not rules.block_bots
    assert len(server.faults.requests) == len(READS) + 2  # and the create and the update


@FETCHES
@pytest.mark.parametrize("lacking", [NEWER, NEWER[3:], NEWER[:1]])
def test_a_server_lacking_newer_endpoints_is_read_without_failing(
    server: Server, fetcher: Any, lacking: tuple[str, ...]
) -> None:
    """A 404 on a newer sub-path (the site read succeeded) is an empty list of that kind;
    the other lists are still read."""
    site = server.new_site(**RULES)
    server.older.lacking = lacking
    config = fetcher(server, site).config
    assert config.excluded_ips == ("10.0.0.0/8",)
    lists = {
        "/excluded-paths": config.excluded_paths,
        "/excluded-hostnames": config.excluded_hostnames,
        "/excluded-user-agents": config.excluded_user_agents,
        "/excluded-asns": config.excluded_asns,
    }
    for suffix, entries in lists.items():
        assert (entries == ()) is (suffix in lacking)


@FETCHES
def test_a_refresh_against_the_older_server_is_not_modified(server: Server, fetcher: Any) -> None:
    """Refetching from a server that still lacks the endpoints reports not_modified."""
    site = server.new_site(excludedIPs=["10.0.0.0/8"])
    server.older.lacking = NEWER
    first = fetcher(server, site)
    again = fetcher(server, site, first)
    assert again.not_modified
    assert again.config == first.config
    server.older.lacking = NEWER[1:]  # the server is upgraded: its paths are read again
    upgraded = fetcher(server, site, again)
    assert not upgraded.not_modified


@FETCHES
def test_an_unknown_site_still_costs_one_read(server: Server, fetcher: Any) -> None:
    """Against either server, a site that does not exist is one read, then SiteNotFoundError."""
    for lacking in ((), NEWER):
        server.older.lacking = lacking
        server.faults.requests.clear()
        with pytest.raises(SiteNotFoundError):
            fetcher(server, "999999999")
        assert sum(server.faults.requests.values()) == 1


@FETCHES
def test_a_404_that_names_the_site_is_not_an_empty_list(server: Server, fetcher: Any) -> None:
    """A newer read's 404 'Site not found' (the site went between reads) is SiteNotFoundError."""
    site = server.new_site()
    server.older.lacking = NEWER[3:]
    server.older.answer = {"success": False, "error": "Site not found"}
    with pytest.raises(SiteNotFoundError):
        fetcher(server, site)


@FETCHES
@pytest.mark.parametrize(
    ("status", "answer", "error"),
    [
        (500, {"error": "boom"}, ApiServerError),
        (200, {"success": True}, MalformedResponseError),  # no list in the answer
        (200, {"success": True, "excludedASNs": "AS1"}, MalformedResponseError),
    ],
)
def test_other_failures_of_the_newer_reads_still_fail(
    server: Server, fetcher: Any, status: int, answer: dict[str, Any], error: type[Exception]
) -> None:
    """Only a 404 means 'not there': a 5xx or a malformed answer fails the fetch."""
    site = server.new_site()
    server.older.lacking, server.older.status, server.older.answer = NEWER[3:], status, answer
    with pytest.raises(error):
        fetcher(server, site)


def test_a_previous_fetch_of_fewer_reads_is_refetched(server: Server) -> None:
    """A FetchedConfig with fewer reads than READS (an older client's) is refreshed whole."""
    site = server.new_site(excludedPaths=["/a"])
    first = fetch(server, site)
    short = FetchedConfig(first.config, first.bodies[:3], first.etags[:3])
    again = fetch(server, site, short)
    assert not again.not_modified
    assert again.config.excluded_paths == ("/a",)
