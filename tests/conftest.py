"""Shared fixtures: paths into the project's own ``data/``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from edgefilter import SitesApiClient
from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app
from edgefilter.server._store import SiteStore

from .live import FaultInjector

# Shared CI machines are noisy: a slow example is not a failure (speed is for benchmarks).
settings.register_profile("edgefilter", deadline=None)
settings.load_profile("edgefilter")

DATA = Path(__file__).resolve().parents[1] / "data"
CITY_DB = DATA / "geo" / "GeoLite2-City-Test.mmdb"
ASN_DB = DATA / "geo" / "GeoLite2-ASN-Test.mmdb"

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture(scope="session")
def city_db() -> Path:
    """MaxMind's GeoLite2 City test database (Apache-2.0 or MIT, see data/README.md)."""
    return CITY_DB


class FakeClock:
    """An injectable clock that moves only when told to (model: cachetools' test timer)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@dataclass
class LiveApi:
    """The reference Sites API served on loopback behind a FaultInjector, with an owner key."""

    url: str
    faults: FaultInjector
    store: SiteStore
    org_id: str
    key: str

    def client(self, **options: Any) -> SitesApiClient:
        """A client with the owner key."""
        return SitesApiClient(self.url, self.key, **options)

    def new_site(self, **config: Any) -> dict[str, Any]:
        """A new site with the given config fields; its created object."""
        with self.client() as client:
            created = client.create_site(self.org_id, "example.com", "Test site")
            if config:
                client.update_config(str(created["siteId"]), **config)
        return created


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """One reference server per test module, SQLite in a temporary directory."""
    app = create_app(f"sqlite:///{tmp_path_factory.mktemp('api') / 'sites.db'}")
    faults = FaultInjector(app)
    store: SiteStore = app.state.store
    org_id = store.create_organization("Tests")
    key = store.create_key(org_id, "owner")
    with serve_in_thread(faults) as url:
        yield LiveApi(url, faults, store, org_id, key)


@pytest.fixture
def sites_api(live_api: LiveApi) -> Iterator[LiveApi]:
    """The module's server, its faults reset before and after the test."""
    live_api.faults.mode, live_api.faults.delay = "ok", 0.0
    live_api.faults.requests.clear()
    live_api.faults.statuses.clear()
    yield live_api
    live_api.faults.mode = "ok"
