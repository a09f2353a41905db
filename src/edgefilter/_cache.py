"""``RulesCache``: each site's compiled rules, fetched from the Sites API and kept fresh.

The hot path reads a plain dict (``rules_for`` is that dict's own ``get``): a cached site
costs exactly what a static mapping costs. Everything else happens off that path:

- **Canonical keys**. A site id enters through ``edgefilter._siteids.canonical_site_id``:
  ``"007"`` is ``"7"``, hex ids are lower-cased, and anything that cannot be a site id is
  an unknown site at once, with no fetch. The numeric ``siteId`` and the 12-hex ``id``
  share one entry once a fetch has named both.
- **Refresh ahead** (stale-while-revalidate). A maintenance pass (``maintain``, run by a
  background ticker) takes sites whose rules are older than ``refresh_ahead * ttl`` out of
  the dict; the next hit for such a site goes through ``resolve``, which puts the current
  rules straight back and starts one background refresh. A hot site never waits; a site
  with no traffic is never fetched again.
- **Two lanes**. Refreshes of sites whose rules are known run on their own workers
  (``max_workers``); first fetches of cold ids run on others (``cold_workers``), at most
  ``cold_queue`` of them queued or running. A cold id past that bound is not queued: it
  answers ``Reason.rules_pending`` and is tried again on a later hit. So a flood of made-up
  ids can neither delay a known site's refresh nor queue work without bound.
- **Single flight**. Any number of concurrent misses for one site, from threads or asyncio
  tasks, share one fetch (one ``concurrent.futures.Future`` per site).
- **Stale-if-error**. When a refresh fails, the last good rules stay in use for up to
  ``max_stale`` seconds past their ``ttl``; retries back off exponentially with jitter,
  capped at ``ttl``, so rules recover within one ``ttl`` after the API is back. Outages are
  logged once (WARNING) when the API starts failing, a refused key once (ERROR, "the API
  refused the key"), and the recovery once (INFO): not once per site per fetch.
- **Negative cache**. A 404 costs one read (the client reads the site before its lists)
  and is remembered for ``negative_ttl`` seconds in a store of its own, bounded by
  ``negative_maxsize``; so is a cold id's failure, until its retry is due. Neither can
  evict a real site: real sites (at most ``maxsize``) are only evicted by real sites.
- **Conditional refresh**. Each read sends ``If-None-Match``; when all three answer 304 the
  entry is renewed without recompiling. ``compact_tables=True`` compiles each site with
  ``compile_rules(config, compact=True)``: more sites per megabyte.

What ``resolve`` answers when it has no rules, by cause:

- None: not a site id, or the API said 404 (within ``negative_ttl``).
- ``Reason.rules_pending``: the API is not known to be failing, but the id's first fetch
  did not answer within ``cold_wait`` seconds (a thread waits that long; an event loop
  never waits: ``aensure`` first), or could not be queued. While the API is known to be
  failing, such an id answers that failure's reason instead.
- ``Reason.rules_unavailable``: the last fetch failed (5xx, timeout, unreachable, malformed).
- ``Reason.rules_unauthorized``: the last fetch was refused (401 or 403). Rybbit answers 403
  for an unknown site too, so there a made-up id answers this rather than None.

``check(*sites)`` / ``acheck(*sites)`` are start-up checks that raise what the API answered
(``ApiAuthError``, ``ApiUnreachableError``, ...) instead of deciding hits with no rules.
``stats()`` counts fetches by outcome, cold waits and refusals, for metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Final

from cachetools import TTLCache

from ._client import FetchedConfig, SitesApiClient
from ._decisions import Reason
from ._errors import ApiAuthError, ConfigError, SiteNotFoundError, SitesApiError
from ._filter import RulesSource, in_event_loop
from ._rules import SiteRules, compile_rules
from ._siteids import canonical_site_id

logger = logging.getLogger("edgefilter")

DEFAULT_MAXSIZE: Final = 10_000
DEFAULT_NEGATIVE_MAXSIZE: Final = 10_000
DEFAULT_COLD_QUEUE: Final = 64
NEVER: Final = float("-inf")
# The start-up probe reads a site that cannot exist: Rybbit's numeric ids start at 1.
PROBE_SITE: Final = "0"
# Counters that ``stats`` reports besides the sizes of the stores.
COUNTERS: Final = (
    "fetches_started",
    "fetches_ok",
    "fetches_not_modified",
    "fetches_not_found",
    "fetches_auth",
    "fetches_outage",
    "cold_waits",
    "pending_refusals",
)
_MAX_DOUBLINGS: Final = 30  # past this the backoff is at its cap anyway; 2**n stays a float


@dataclass(slots=True)
class _Entry:
    """What the cache knows of one real site (one whose fetch once succeeded)."""

    key: str
    rules: SiteRules
    fetched: FetchedConfig
    aliases: frozenset[str]
    fetched_at: float
    refresh_at: float
    failures: int = 0
    failure: Reason | None = None


@dataclass(slots=True)
class _ColdFailure:
    """A cold id whose fetches failed: why, how often, and when to try again."""

    failure: Reason
    failures: int = 0
    refresh_at: float = NEVER


def _backoff(ttl: float, failures: int) -> float:
    """Seconds until the next try after ``failures`` failures in a row: doubling, jittered,
    capped at ``ttl``."""
    base = min(1.0, ttl / 10) * 2.0 ** min(failures - 1, _MAX_DOUBLINGS)
    return min(ttl, base) * random.uniform(0.5, 1.0)


def _reason_for(error: BaseException) -> Reason:
    """The reason a failed fetch gives its hits: refused key, or outage."""
    return (
        Reason.rules_unauthorized if isinstance(error, ApiAuthError) else Reason.rules_unavailable
    )


# --- option checks ---------------------------------------------------------------------------


def _refuse(name: str, value: object, rule: str) -> ConfigError:
    return ConfigError(f"RulesCache option {name}={value!r} is invalid: it must be {rule}")


def _number(name: str, value: object, *, finite: bool = True) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        raise _refuse(name, value, "a number")
    if finite and math.isinf(value):
        raise _refuse(name, value, "a finite number")
    return float(value)


def _at_least(name: str, value: object, low: float, *, finite: bool = True) -> float:
    number = _number(name, value, finite=finite)
    if number < low:
        raise _refuse(name, value, f">= {low:g}")
    return number


def _above(name: str, value: object, low: float) -> float:
    number = _number(name, value)
    if number <= low:
        raise _refuse(name, value, f"> {low:g}")
    return number


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _refuse(name, value, "an int >= 1")
    return value


class _ApiHealth:
    """Whether the API is failing, and why: logs each change once, not each failure.

    A failure changes the state only when it is the first of its site's streak (so one
    site failing on its own cannot make the log flap), and a refusal of a cold id while
    the key works for other sites is that id's own matter (on Rybbit, an unknown site).
    """

    def __init__(self, max_stale: float) -> None:
        self.failing: Reason | None = None
        self.answered = False
        self.max_stale = max_stale
        self._lock = threading.Lock()

    def ok(self) -> None:
        """The API answered as it should (a config, a 304, or a 404)."""
        with self._lock:
            was, self.failing, self.answered = self.failing, None, True
        if was is not None:
            logger.info("the Sites API answers again: rules are fetched and refreshed")

    def failed(self, reason: Reason, error: BaseException, site: str, *, first: bool) -> None:
        """A fetch for ``site`` failed; ``first`` when it is the first of its streak."""
        with self._lock:
            change = self.failing is not reason and (
                self.failing is not None or not self.answered or first
            )
            if change:
                self.failing = reason
        if not change:
            logger.debug("site %s: rules fetch failed (%s)", site, error, extra={"site": site})
        elif reason is Reason.rules_unauthorized:
            status = getattr(error, "status", None)
            logger.error(
                "the API refused the key (%s): sites without rules answer %s until it is fixed%s",
                error,
                reason.value,
                " (Rybbit also answers 403 for a site that does not exist)"
                if status == 403
                else "",
            )
        else:
            logger.warning(
                "the Sites API is failing (%s): sites keep their last good rules for up to "
                "%g s past their ttl, sites without rules answer %s",
                error,
                self.max_stale,
                reason.value,
            )

    def refused_alone(self, error: BaseException, site: str) -> bool:
        """Whether a refusal for cold ``site`` is its own matter: the key works elsewhere."""
        with self._lock:
            alone = self.failing is None and self.answered
        if alone:
            logger.debug("site %s: the API refused access (%s)", site, error, extra={"site": site})
        return alone


class RulesCache(RulesSource):
    """Compiled ``SiteRules`` per site from a ``SitesApiClient``; a ``RulesSource``.

    Every option is checked here (``ConfigError`` names the bad one): ``ttl`` > 0,
    0 < ``refresh_ahead`` <= 1, ``max_stale`` >= 0 (may be ``math.inf``), ``negative_ttl``
    and ``cold_wait`` >= 0, ``tick`` None or > 0, and ``maxsize``, ``negative_maxsize``,
    ``max_workers``, ``cold_workers``, ``cold_queue`` ints >= 1.
    """

    def __init__(
        self,
        client: SitesApiClient,
        *,
        ttl: float = 60.0,
        max_stale: float = 86400.0,
        maxsize: int = DEFAULT_MAXSIZE,
        negative_ttl: float = 10.0,
        negative_maxsize: int = DEFAULT_NEGATIVE_MAXSIZE,
        cold_wait: float = 0.25,
        refresh_ahead: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        tick: float | None = 1.0,
        max_workers: int = 4,
        cold_workers: int = 2,
        cold_queue: int = DEFAULT_COLD_QUEUE,
        compact_tables: bool | None = None,
    ) -> None:
        self.ttl = _above("ttl", ttl, 0)
        self.max_stale = _at_least("max_stale", max_stale, 0, finite=False)
        self.negative_ttl = _at_least("negative_ttl", negative_ttl, 0)
        self.cold_wait = _at_least("cold_wait", cold_wait, 0)
        self.refresh_ahead = _above("refresh_ahead", refresh_ahead, 0)
        if self.refresh_ahead > 1:
            raise _refuse("refresh_ahead", refresh_ahead, "<= 1")
        interval = None if tick is None else _above("tick", tick, 0)
        maxsize = _count("maxsize", maxsize)
        negatives = _count("negative_maxsize", negative_maxsize)
        workers = _count("max_workers", max_workers)
        cold_workers = _count("cold_workers", cold_workers)
        self.cold_queue = _count("cold_queue", cold_queue)
        if not callable(clock):
            raise _refuse("clock", clock, "a callable answering seconds")
        self.client, self.clock, self.compact_tables = (
            client,
            clock,
            None if compact_tables is None else bool(compact_tables),
        )
        self._hot: dict[str, SiteRules] = {}
        self.rules_for: Callable[[str], SiteRules | None] = self._hot.get
        # Real sites, 404s and cold ids' failures each in a store of its own: a flood of
        # made-up ids fills the last two, never the first.
        self._entries: TTLCache[str, _Entry] = TTLCache(
            maxsize, ttl=self.ttl + self.max_stale, timer=clock
        )
        self._missing: TTLCache[str, bool] = TTLCache(negatives, ttl=self.negative_ttl, timer=clock)
        self._cold_failed: TTLCache[str, _ColdFailure] = TTLCache(
            negatives, ttl=2 * self.ttl, timer=clock
        )
        self._aliases: dict[str, str] = {}
        self._inflight: dict[str, Future[BaseException | None]] = {}
        self._cold_in_flight = 0
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.RLock()
        self._refresher = ThreadPoolExecutor(workers, thread_name_prefix="edgefilter-refresh")
        self._cold_fetcher = ThreadPoolExecutor(cold_workers, thread_name_prefix="edgefilter-cold")
        self._health = _ApiHealth(self.max_stale)
        self._closed = threading.Event()
        if interval is not None:
            ticker = threading.Thread(
                target=self._tick, args=(interval,), name="edgefilter-rules-ticker", daemon=True
            )
            ticker.start()

    @property
    def fetches(self) -> int:
        """Fetches started (queued or run), all outcomes together."""
        return self._counts["fetches_started"]

    # --- the slow path ------------------------------------------------------------------

    def resolve(self, site: str) -> SiteRules | Reason | None:
        """Rules for a site the hot dict missed, None for an unknown site, or the reason
        none can be had now (see the module docstring).

        Called from a thread with no running event loop, a cold or expired site waits up
        to ``cold_wait``; called from an event loop it never blocks (``aensure`` first).
        """
        key = canonical_site_id(site)
        if key is None:
            return None
        now = self.clock()
        with self._lock:
            key = self._aliases.get(key, key)
            entry = self._entries.get(key)
            if entry is None:
                if self._cold_settled(key, now):
                    return self._answer(key)
            elif now < entry.refresh_at:  # fresh, or a failed refresh still backing off
                return self._answer(key)
        future = self._refresh(key)
        usable = entry is not None and now < entry.fetched_at + self.ttl
        if future is not None and not usable and not in_event_loop() and self.cold_wait:
            if entry is None:
                self._bump("cold_waits")
            wait_futures([future], timeout=self.cold_wait)
        return self._answer(key)

    def _cold_settled(self, key: str, now: float) -> bool:
        """Whether a cold id has an answer for now: a remembered 404, or a failure whose
        retry is not due yet. Call with the lock held."""
        if key in self._missing:
            return True
        failure = self._cold_failed.get(key)
        return failure is not None and now < failure.refresh_at

    def _answer(self, key: str) -> SiteRules | Reason | None:
        """What the cache has for ``key`` now, without fetching."""
        now = self.clock()
        with self._lock:
            key = self._aliases.get(key, key)
            entry = self._entries.get(key)
            if entry is not None and now < entry.fetched_at + self.ttl + self.max_stale:
                self._publish(entry)
                return entry.rules
            if key in self._missing:
                return None
            if entry is not None and entry.failure is not None:
                return entry.failure
            failure = self._cold_failed.get(key)
        if failure is not None:
            return failure.failure
        return self._health.failing or Reason.rules_pending  # pending only while healthy

    async def aensure(self, site: str, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) until the site's rules are fetched or failed to be.

        Returns at once for what cannot be a site id, a site with nothing to fetch (fresh,
        a remembered 404, a failure still backing off), and a cold id the full cold lane
        cannot take now.
        """
        future = self._fetch_to_wait_for(site)
        if future is not None:
            await asyncio.wait([asyncio.wrap_future(future)], timeout=timeout)

    def ensure(self, site: str, timeout: float | None = None) -> None:
        """``aensure`` for threads: block until the fetch is done (or ``timeout``)."""
        future = self._fetch_to_wait_for(site)
        if future is not None:
            wait_futures([future], timeout=timeout)

    def _fetch_to_wait_for(self, site: str) -> Future[BaseException | None] | None:
        """The fetch that would settle ``site``, started if needed; None when there is
        nothing to wait for (not a site id, settled, or the cold lane is full)."""
        key = canonical_site_id(site)
        if key is None:
            return None
        now = self.clock()
        with self._lock:
            key = self._aliases.get(key, key)
            entry = self._entries.get(key)
            if entry is not None and now < entry.refresh_at:
                return None
            if entry is None and self._cold_settled(key, now):
                return None
        return self._refresh(key)

    # --- fetching -----------------------------------------------------------------------

    def _refresh(self, key: str) -> Future[BaseException | None] | None:
        """The fetch in flight for ``key``, started if there is none (single flight) in
        its lane; None when ``key`` is cold and the cold lane is full (or closed)."""
        with self._lock:
            future = self._inflight.get(key)
            if future is not None:
                return future
            cold = key not in self._entries
            if cold and self._cold_in_flight >= self.cold_queue:
                self._counts["pending_refusals"] += 1
                return None
            executor = self._cold_fetcher if cold else self._refresher
            try:
                future = executor.submit(self._fetch, key, cold)
            except RuntimeError:  # closed
                return None
            if cold:
                self._cold_in_flight += 1
            self._inflight[key] = future
            self._counts["fetches_started"] += 1
            return future

    def _fetch(self, key: str, cold: bool) -> BaseException | None:
        """A worker's fetch: settle ``key`` and leave its lane."""
        try:
            return self._fetch_once(key)
        finally:
            with self._lock:
                self._inflight.pop(key, None)
                if cold:
                    self._cold_in_flight -= 1

    def _fetch_once(self, key: str) -> BaseException | None:
        """Fetch ``key`` once and settle what it answered; the error, if it failed."""
        with self._lock:
            key = self._aliases.get(key, key)
            entry = self._entries.get(key)
        try:
            fetched = self.client.fetch_config(key, None if entry is None else entry.fetched)
        except Exception as error:
            return self._settle_failure(key, error)
        self._store(key, fetched)
        return None

    async def _afetch_once(self, key: str) -> BaseException | None:
        """``_fetch_once`` on the event loop, with the client's async reads."""
        with self._lock:
            key = self._aliases.get(key, key)
            entry = self._entries.get(key)
        try:
            fetched = await self.client.afetch_config(key, None if entry is None else entry.fetched)
        except Exception as error:
            return self._settle_failure(key, error)
        self._store(key, fetched)
        return None

    def _settle_failure(self, key: str, error: Exception) -> BaseException:
        """Record a failed fetch (a 404, a refusal or an outage); the error, to raise."""
        if isinstance(error, SiteNotFoundError):
            self._forget(key)
            return error
        if not isinstance(error, SitesApiError):  # a bug must not kill a worker: an outage
            logger.exception(
                "site %s: unexpected error while fetching rules", key, extra={"site": key}
            )
        self._failed(key, _reason_for(error), error)
        return error

    def _store(self, key: str, fetched: FetchedConfig) -> None:
        """A good answer: compile (unless all 304), publish, and renew the entry."""
        with self._lock:
            old = self._entries.get(key)
        unchanged = fetched.not_modified and old is not None
        if old is not None and unchanged:
            rules = old.rules
        else:
            rules = compile_rules(fetched.config, compact=self.compact_tables)
        config = fetched.config
        names = (key, canonical_site_id(config.site_id), canonical_site_id(config.id))
        aliases = frozenset(name for name in names if name is not None)
        now = self.clock()
        entry = _Entry(key, rules, fetched, aliases, now, now + self.refresh_ahead * self.ttl)
        with self._lock:
            for alias in aliases:
                other = self._aliases.get(alias)
                if other is not None and other != key:  # both id forms fetched: one entry
                    self._entries.pop(other, None)
                self._aliases[alias] = key
                self._missing.pop(alias, None)
                self._cold_failed.pop(alias, None)
            self._entries[key] = entry  # renews the TTLCache expiry
            self._publish(entry)
            self._counts["fetches_not_modified" if unchanged else "fetches_ok"] += 1
        self._health.ok()

    def _forget(self, key: str) -> None:
        """A 404: drop the site's rules and remember for a while that it is missing."""
        with self._lock:
            entry = self._entries.pop(key, None)
            for alias in {key} if entry is None else entry.aliases | {key}:
                self._hot.pop(alias, None)
                if self._aliases.get(alias) == key:
                    del self._aliases[alias]
                self._cold_failed.pop(alias, None)
                self._missing[alias] = True
            self._counts["fetches_not_found"] += 1
        if entry is not None:
            logger.warning(
                "site %s: the API says it no longer exists; rules dropped", key, extra={"site": key}
            )
        self._health.ok()

    def _failed(self, key: str, reason: Reason, error: Exception) -> None:
        """Keep the last good rules (if any) and back off; a cold id's failure is kept in
        its own bounded store, never among the real sites."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            state = entry if entry is not None else self._cold_failed.get(key)
            if state is None:
                state = self._cold_failed[key] = _ColdFailure(reason)
            state.failure, state.failures = reason, state.failures + 1
            state.refresh_at = now + _backoff(self.ttl, state.failures)
            first = state.failures == 1
            self._counts[
                "fetches_auth" if reason is Reason.rules_unauthorized else "fetches_outage"
            ] += 1
        cold_refusal = entry is None and reason is Reason.rules_unauthorized
        if cold_refusal and self._health.refused_alone(error, key):
            return
        self._health.failed(reason, error, key, first=first)

    def _publish(self, entry: _Entry) -> None:
        """Put the entry's rules in the hot dict under each of its ids (lock held)."""
        for alias in entry.aliases:
            self._hot[alias] = entry.rules

    def _bump(self, counter: str) -> None:
        with self._lock:
            self._counts[counter] += 1

    # --- start-up checks ------------------------------------------------------------------

    def check(self, *sites: str) -> None:
        """Check the key and the API at start-up, raising what they answered.

        With ``sites``, fetch each one now, ``max_workers`` at a time (warming the cache):
        ``ApiAuthError`` when the key is refused, ``SiteNotFoundError`` for a site that does
        not exist, and the outage's error (``ApiUnreachableError``, ``ApiTimeoutError``,
        ``ApiServerError``, ``MalformedResponseError``) when the API fails. Without, send
        one probe read of a site that cannot exist: 404 means the key is good, 401 raises
        ``ApiAuthError``. A 403 cannot be told apart (Rybbit answers 403 for an unknown
        site with any key): it is logged and not raised; pass a site to check the key
        against Rybbit.
        """
        keys = self._checked_keys(sites)
        if not keys:
            try:
                self.client.site(PROBE_SITE)
            except SitesApiError as error:
                self._probe_failed(error)
            else:
                self._health.ok()
            return
        fetches = [self._refresher.submit(self._fetch_once, key) for key in keys]
        _raise_first([fetch.result() for fetch in fetches])

    async def acheck(self, *sites: str) -> None:
        """``check`` on the event loop; the sites are fetched concurrently."""
        keys = self._checked_keys(sites)
        if not keys:
            try:
                await self.client.asite(PROBE_SITE)
            except SitesApiError as error:
                self._probe_failed(error)
            else:
                self._health.ok()
            return
        _raise_first(await asyncio.gather(*(self._afetch_once(key) for key in keys)))

    def _checked_keys(self, sites: Iterable[str]) -> list[str]:
        """The sites to check as canonical ids, counted as fetches started."""
        keys = _check_keys(sites)
        with self._lock:
            self._counts["fetches_started"] += len(keys)
        return keys

    def _probe_failed(self, error: SitesApiError) -> None:
        """What the probe's error means: a good key (404), an ambiguous 403, or a failure."""
        if isinstance(error, SiteNotFoundError):
            self._health.ok()
            return
        if isinstance(error, ApiAuthError) and error.status == 403:
            logger.warning(
                "the API answered 403 to a probe for a site that cannot exist (%s): as "
                "Rybbit answers that for any key, the key is not verified; pass site ids "
                "to check() to verify it",
                error,
            )
            return
        self._health.failed(_reason_for(error), error, PROBE_SITE, first=True)
        raise error

    # --- maintenance ----------------------------------------------------------------------

    def maintain(self) -> None:
        """Take due, expired and evicted sites out of the hot dict (the ticker calls this)."""
        now = self.clock()
        with self._lock:
            self._entries.expire()
            self._missing.expire()
            self._cold_failed.expire()
            live = {alias for entry in self._entries.values() for alias in entry.aliases}
            for alias in [alias for alias in self._aliases if alias not in live]:
                del self._aliases[alias]
            for alias in [alias for alias in self._hot if not self._keeps(alias, live, now)]:
                del self._hot[alias]

    def _keeps(self, alias: str, live: set[str], now: float) -> bool:
        """Whether the hot dict keeps ``alias``: live, not due unless fetching, not too stale."""
        key = self._aliases.get(alias, alias)
        entry = self._entries.get(key)
        if entry is None or alias not in live:
            return False
        if now >= entry.fetched_at + self.ttl + self.max_stale:
            return False
        return now < entry.refresh_at or key in self._inflight

    def _tick(self, interval: float) -> None:
        while not self._closed.wait(interval):
            try:
                self.maintain()
            except Exception:  # keep ticking whatever happens
                logger.exception("rules cache maintenance failed")

    def stats(self) -> dict[str, int]:
        """Counters for metrics: fetches by outcome, cold waits, refusals, store sizes.

        ``fetches_*``: started, and settled as ``ok`` (compiled), ``not_modified`` (three
        304s), ``not_found`` (404), ``auth`` (401/403) or ``outage`` (anything else);
        ``cold_waits``: hits that waited for a cold id's fetch; ``pending_refusals``: cold
        ids not queued because the cold lane was full; ``cold_in_flight``: cold fetches
        queued or running; ``sites_held``, ``negative_held`` (404s remembered) and
        ``cold_failures_held``: the sizes of the three stores.
        """
        with self._lock:
            return {
                **self._counts,
                "cold_in_flight": self._cold_in_flight,
                "sites_held": len(self._entries),
                "negative_held": len(self._missing),
                "cold_failures_held": len(self._cold_failed),
            }

    def __len__(self) -> int:
        """Sites the cache holds."""
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        """Stop the ticker and the fetch workers (the client stays open)."""
        self._closed.set()
        self._refresher.shutdown(wait=False, cancel_futures=True)
        self._cold_fetcher.shutdown(wait=False, cancel_futures=True)


def _check_keys(sites: Iterable[str]) -> list[str]:
    """The canonical ids of the sites to check; ``ConfigError`` for one that is no site id."""
    keys: list[str] = []
    for site in sites:
        key = canonical_site_id(site)
        if key is None:
            raise ConfigError(f"{site!r} is not a site id (digits, or 12 hex characters)")
        if key not in keys:
            keys.append(key)
    return keys


def _raise_first(errors: Iterable[BaseException | None]) -> None:
    """Raise the gravest of the checks' errors: a refused key, then an outage, then a 404."""
    found = [error for error in errors if error is not None]
    for kind in (ApiAuthError, Exception):
        for error in found:
            if isinstance(error, kind) and not isinstance(error, SiteNotFoundError):
                raise error
    if found:
        raise found[0]
