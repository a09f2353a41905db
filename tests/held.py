"""Fetches held in flight on an event, so tests can see what happens meanwhile without timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from edgefilter import FetchedConfig, SitesApiClient

# Only a deadlock breaker: a held fetch that nobody releases goes on after this many seconds,
# and the test that held it sees it in ``finished`` and fails. No test waits for it to pass.
GUARD = 10.0


class HeldClient(SitesApiClient):
    """A client whose ``fetch_config`` waits for ``release`` when ``held(site)`` is true.

    ``started`` lists the sites whose fetch reached the client, ``finished`` those whose
    fetch returned or raised, in order.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        held: Callable[[str], bool] = lambda _site: True,
        **options: Any,
    ) -> None:
        super().__init__(base_url, api_key, **options)
        self.held = held
        self.release = threading.Event()
        self.started: list[str] = []
        self.finished: list[str] = []
        self._arrivals = threading.Condition()

    def wait_started(self, count: int) -> None:
        """Block until ``count`` fetches have reached the client (or GUARD seconds)."""
        with self._arrivals:
            self._arrivals.wait_for(lambda: len(self.started) >= count, timeout=GUARD)

    def fetch_config(self, site: str, previous: FetchedConfig | None = None) -> FetchedConfig:
        """The real fetch, after ``release`` when the site is held."""
        with self._arrivals:
            self.started.append(site)
            self._arrivals.notify_all()
        try:
            if self.held(site):
                self.release.wait(GUARD)
            return super().fetch_config(site, previous)
        finally:
            self.finished.append(site)


class ReadGate:
    """ASGI wrapper: holds the reads whose path ends with one of ``suffixes`` until
    ``together`` of them have arrived; later ones pass at once.

    A client that sends those reads together passes; one that sends them one after the
    other waits on the first until its own timeout. Nothing is held while ``armed`` is
    false.
    """

    def __init__(self, app: Any, *, suffixes: tuple[str, ...], together: int) -> None:
        self.app = app
        self.suffixes, self.together = suffixes, together
        self.armed = True
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.armed and scope["type"] == "http" and scope["path"].endswith(self.suffixes):
            self.arrived += 1
            if self.arrived >= self.together:
                self.all_here.set()
            await self.all_here.wait()
        await self.app(scope, receive, send)
