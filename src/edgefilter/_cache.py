"""``RulesCache``: each site's compiled rules, fetched from the Sites API and kept fresh.

The hot path reads a plain dict (``rules_for`` is that dict's own ``get``): a cached site
costs exactly what a static mapping costs. Everything else happens off that path:

- **Refresh ahead** (stale-while-revalidate). A maintenance pass (``maintain``, run by a
  background ticker) takes sites whose rules are older than ``refresh_ahead * ttl`` out of
  the dict; the next hit for such a site goes through ``resolve``, which puts the current
  rules straight back and starts one background refresh. A hot site never waits; a site
  with no traffic is never fetched again.
- **Single flight**. Any number of concurrent misses for one site, from threads or asyncio
  tasks, share one fetch (one ``concurrent.futures.Future`` per site).
- **Stale-if-error**. When a refresh fails, the last good rules stay in use for up to
  ``max_stale`` seconds after they were fetched; the outage is logged once per site, and
  retries back off exponentially with jitter, capped at ``ttl``, so rules recover within
  one ``ttl`` after the API is back.
- **Negative cache**. A 404 is remembered for ``negative_ttl`` seconds.
- **Conditional refresh**. Each read sends ``If-None-Match``; when all three answer 304 the
  entry is renewed without recompiling.
- **One entry per site**. The numeric ``siteId`` and the 12-hex ``id`` share an entry once
  the first fetch has named both.
- **Bounded**. Entries live in a cachetools ``TTLCache`` (``maxsize`` sites, expiring
  ``max_stale + ttl`` after their last good fetch). ``compact_tables=True`` compiles each
  site with ``compile_rules(config, compact=True)``: more sites per megabyte.

A cold site (never fetched, or last fetched more than ``ttl`` ago) waits up to ``cold_wait``
seconds for its fetch, then gets the stale rules if any, else ``Reason.rules_unavailable``
(or None, an unknown site, after a 404) while the fetch goes on. ``aensure(site)`` awaits
the fetch instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Final

from cachetools import TTLCache

from ._client import FetchedConfig, SitesApiClient
from ._decisions import Reason
from ._errors import SiteNotFoundError, SitesApiError
from ._filter import RulesSource
from ._rules import SiteRules, compile_rules

logger = logging.getLogger("edgefilter")

DEFAULT_MAXSIZE: Final = 10_000
NEVER: Final = float("-inf")


@dataclass(slots=True)
class _Entry:
    """What the cache knows of one site."""

    key: str
    rules: SiteRules | None = None
    fetched: FetchedConfig | None = None
    aliases: frozenset[str] = frozenset()
    fetched_at: float = NEVER
    refresh_at: float = NEVER
    missing_until: float = NEVER
    failures: int = 0
    outage_logged: bool = False


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RulesCache(RulesSource):
    """Compiled ``SiteRules`` per site from a ``SitesApiClient``; a ``RulesSource``."""

    def __init__(
        self,
        client: SitesApiClient,
        *,
        ttl: float = 60.0,
        max_stale: float = 86400.0,
        maxsize: int = DEFAULT_MAXSIZE,
        negative_ttl: float = 10.0,
        cold_wait: float = 0.25,
        refresh_ahead: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        tick: float | None = 1.0,
        max_workers: int = 4,
        compact_tables: bool = False,
    ) -> None:
        self.client = client
        self.compact_tables = compact_tables
        self.ttl, self.max_stale, self.negative_ttl = ttl, max_stale, negative_ttl
        self.cold_wait, self.refresh_ahead, self.clock = cold_wait, refresh_ahead, clock
        self._hot: dict[str, SiteRules] = {}
        self.rules_for: Callable[[str], SiteRules | None] = self._hot.get
        self._entries: TTLCache[str, _Entry] = TTLCache(maxsize, ttl=max_stale + ttl, timer=clock)
        self._aliases: dict[str, str] = {}
        self._inflight: dict[str, Future[None]] = {}
        self._lock = threading.RLock()
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="edgefilter-rules")
        self._closed = threading.Event()
        self.fetches = 0  # number of fetches started, for tests and metrics
        if tick is not None:
            ticker = threading.Thread(
                target=self._tick, args=(tick,), name="edgefilter-rules-ticker", daemon=True
            )
            ticker.start()

    # --- the slow path ------------------------------------------------------------------

    def resolve(self, site: str) -> SiteRules | Reason | None:
        """Rules for a site the hot dict missed: None for an unknown site, or
        ``Reason.rules_unavailable`` when none are known (see the module docstring).

        Called from a thread with no running event loop, a cold site waits up to
        ``cold_wait``; called from an event loop it never blocks (``aensure`` first).
        """
        if not isinstance(site, str) or not site:
            return None
        now = self.clock()
        entry = self._entry(site)
        wait = 0.0 if _in_event_loop() else self.cold_wait
        if entry is not None and entry.rules is not None:
            future = self._refresh(entry.key)
            if now >= entry.fetched_at + self.ttl:  # expired, not just due: worth a short wait
                wait_futures([future], timeout=wait)
            return self._answer(site)
        if entry is not None and now < entry.missing_until:
            return None
        wait_futures([self._refresh(site)], timeout=wait)
        return self._answer(site)

    async def aensure(self, site: str, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) until the site's rules are fetched or failed to be."""
        entry = self._entry(site)
        if entry is not None and self._settled(entry):
            return
        future = asyncio.wrap_future(self._refresh(entry.key if entry else site))
        await asyncio.wait([future], timeout=timeout)

    def ensure(self, site: str, timeout: float | None = None) -> None:
        """``aensure`` for threads: block until the fetch is done (or ``timeout``)."""
        entry = self._entry(site)
        if entry is None or not self._settled(entry):
            wait_futures([self._refresh(entry.key if entry else site)], timeout=timeout)

    def _settled(self, entry: _Entry) -> bool:
        """Fresh rules, a remembered 404, or a failure still backing off: nothing to fetch."""
        now = self.clock()
        return now < entry.refresh_at or now < entry.missing_until

    def _answer(self, site: str) -> SiteRules | Reason | None:
        entry = self._entry(site)
        if entry is None:
            return Reason.rules_unavailable
        if entry.rules is not None and self.clock() < entry.fetched_at + self.max_stale:
            self._publish(entry)
            return entry.rules
        if self.clock() < entry.missing_until:
            return None
        return Reason.rules_unavailable

    def _entry(self, site: str) -> _Entry | None:
        with self._lock:
            return self._entries.get(self._aliases.get(site, site))

    # --- fetching -----------------------------------------------------------------------

    def _refresh(self, key: str) -> Future[None]:
        """The fetch in flight for ``key``, started if there is none (single flight)."""
        with self._lock:
            future = self._inflight.get(key)
            if future is None:
                future = self._executor.submit(self._fetch, key)
                self._inflight[key] = future
                self.fetches += 1
            return future

    def _fetch(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key) or _Entry(key)
        try:
            fetched = self.client.fetch_config(key, entry.fetched)
        except SiteNotFoundError:
            self._forget(entry)
        except SitesApiError as error:
            self._failed(entry, error)
        except Exception as error:  # a bug must not kill the refresher: treat as an outage
            logger.exception("site %s: unexpected error while fetching rules", key)
            self._failed(entry, error)
        else:
            self._store(entry, fetched)
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _store(self, entry: _Entry, fetched: FetchedConfig) -> None:
        now = self.clock()
        if not (fetched.not_modified and entry.rules is not None):
            entry.rules = compile_rules(fetched.config, compact=self.compact_tables)
        config = fetched.config
        names = {entry.key, str(config.site_id) if config.site_id is not None else None, config.id}
        entry.aliases = frozenset(name for name in names if name)
        entry.fetched, entry.fetched_at, entry.failures = fetched, now, 0
        entry.refresh_at = now + self.refresh_ahead * self.ttl
        entry.missing_until = NEVER
        if entry.outage_logged:
            logger.info("site %s: rules refreshed again after an outage", entry.key)
            entry.outage_logged = False
        with self._lock:
            self._entries[entry.key] = entry  # renews the TTLCache expiry
            for alias in entry.aliases:
                self._aliases[alias] = entry.key
            self._publish(entry)

    def _forget(self, entry: _Entry) -> None:
        """A 404: drop the site's rules and remember it is missing for a while."""
        if entry.rules is not None:
            logger.warning("site %s: the API says it no longer exists; rules dropped", entry.key)
        with self._lock:
            for alias in entry.aliases:
                self._hot.pop(alias, None)
            entry.rules, entry.fetched, entry.aliases = None, None, frozenset({entry.key})
            entry.missing_until = self.clock() + self.negative_ttl
            self._entries[entry.key] = entry

    def _failed(self, entry: _Entry, error: Exception) -> None:
        """Keep the last good rules (if any), back off with jitter, log once per outage."""
        now = self.clock()
        entry.failures += 1
        backoff = min(self.ttl, min(1.0, self.ttl / 10) * 2 ** (entry.failures - 1))
        entry.refresh_at = now + backoff * random.uniform(0.5, 1.0)
        if not entry.outage_logged:
            entry.outage_logged = True
            logger.warning(
                "site %s: rules refresh failed (%s); %s",
                entry.key,
                error,
                "serving the last good rules" if entry.rules else "no rules known yet",
            )
        with self._lock:
            if entry.key not in self._entries:
                self._entries[entry.key] = entry

    def _publish(self, entry: _Entry) -> None:
        if entry.rules is not None:
            with self._lock:
                for alias in entry.aliases or {entry.key}:
                    self._hot[alias] = entry.rules

    # --- maintenance ----------------------------------------------------------------------

    def maintain(self) -> None:
        """Take due, expired and evicted sites out of the hot dict (the ticker calls this)."""
        now = self.clock()
        with self._lock:
            self._entries.expire()
            live = {alias for entry in self._entries.values() for alias in entry.aliases}
            for alias in [alias for alias in self._aliases if alias not in live]:
                del self._aliases[alias]
            for alias in [alias for alias in self._hot if not self._keeps(alias, live, now)]:
                del self._hot[alias]

    def _keeps(self, alias: str, live: set[str], now: float) -> bool:
        """Whether the hot dict keeps ``alias``: live, not due unless fetching, not too stale."""
        key = self._aliases.get(alias, alias)
        entry = self._entries.get(key)
        if entry is None or alias not in live or now >= entry.fetched_at + self.max_stale:
            return False
        return now < entry.refresh_at or key in self._inflight

    def _tick(self, interval: float) -> None:
        while not self._closed.wait(interval):
            try:
                self.maintain()
            except Exception:  # keep ticking whatever happens
                logger.exception("rules cache maintenance failed")

    def __len__(self) -> int:
        """Sites the cache holds."""
        return len(self._entries)

    def close(self) -> None:
        """Stop the ticker and the fetch workers (the client stays open)."""
        self._closed.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
