"""The proxy's own endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

- ``GET /healthz``: 200 ``{"status": "ok"}`` while the process answers.
- ``GET /readyz``: 200 ``{"status": "ready"}`` once the GeoIP and ASN databases' walks have
  ended (compiled or failed: a failed walk falls back to direct lookups) and the rules
  source can decide: a ``RulesCache`` probes the Sites API with ``check()``, at most
  ``timeout`` seconds, one probe answering every request for ``PROBE_MEMO`` seconds (and
  those made while it runs); a ``RulesFeed`` is ready once it holds a state (from the feed or its
  snapshot file), and stays ready through an outage, deciding from the last good state
  (``edgefilter_rules_stale_seconds`` says how old); else 503 ``{"status": "unavailable",
  "reason": ...}``. The error itself goes to the log, once per change of state, not into
  the answer. The same shapes as ``serve-api``'s.
- ``GET /metrics``: Prometheus text (needs ``prometheus-client``, the ``prometheus`` extra;
  without it 501 with a message naming the extra): the decision counters
  (``edgefilter_decisions_total{site,reason}``), the rules cache's ``stats()``
  (``edgefilter_rules_fetches_total{outcome}``, ``edgefilter_rules_cold_waits_total``,
  ``edgefilter_rules_pending_refusals_total``, ``edgefilter_rules_outages_total``, and
  gauges such as ``edgefilter_rules_sites_held``, ``edgefilter_rules_failing``,
  ``edgefilter_rules_stale_sites`` and ``edgefilter_rules_stale_seconds``) or the rules
  feed's (``edgefilter_rules_feed_requests_total``,
  ``edgefilter_rules_feed_answers_total{kind}`` of kind snapshot, delta or not_modified,
  ``edgefilter_rules_feed_failures_total``, ``..._sites_compiled_total``,
  ``..._sites_deleted_total``, ``..._snapshot_saves_total`` and ``..._snapshot_loads_total``
  of its file; gauges ``edgefilter_rules_feed_version``, ``edgefilter_rules_feed_ready``
  and, named as the cache's, ``edgefilter_rules_sites_held``, ``edgefilter_rules_failing``
  and ``edgefilter_rules_stale_seconds``), and the relay's
  (``edgefilter_upstream_answers_total{status}``,
  ``edgefilter_upstream_failures_total{kind}``,
  ``edgefilter_client_disconnects_total``). Counters live per process: with several
  workers each answers for itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any, Final

from .._counters import DecisionCounters
from .._errors import ApiAuthError
from .._feed import COUNTERS as FEED_COUNTERS
from .._feed import RulesFeed
from .._filter import EdgeFilter
from ..middleware import Receive, Scope, Send
from ._relay import RelayCounters, answer_json

logger = logging.getLogger("edgefilter")

READY_TIMEOUT: Final = 5.0
# Seconds one probe of the Sites API answers /readyz for (and while it runs, every request
# waits for it): /readyz is public, and each probe is a request to the API with our key.
PROBE_MEMO: Final = 1.0
Unready = tuple[str | None, BaseException | None]  # why not ready (and the error), or None
METRICS_MISSING: Final = "metrics need prometheus-client: pip install 'edgefilter[prometheus]'"
# RulesCache.stats() keys that count events (the others are sizes: gauges).
_CACHE_COUNTERS: Final = ("cold_waits", "pending_refusals", "outages")
# RulesFeed.stats() counters that count answers, as one metric labelled by kind.
_FEED_ANSWERS: Final = {"snapshots": "snapshot", "deltas": "delta", "not_modified": "not_modified"}
# RulesFeed.stats() gauges that mean what the cache's of the same name mean.
_SHARED_GAUGES: Final = ("sites_held", "failing", "stale_seconds")


class ProxyHealth:
    """The proxy's ``/healthz``, ``/readyz`` and ``/metrics`` (see the module docstring)."""

    def __init__(
        self,
        edge_filter: EdgeFilter,
        decisions: DecisionCounters,
        relay: RelayCounters,
        *,
        timeout: float = READY_TIMEOUT,
    ) -> None:
        self.edge_filter = edge_filter
        self.decisions = decisions
        self.relay = relay
        self.timeout = timeout
        self._failing: str | None = None
        self._probe: tuple[asyncio.AbstractEventLoop, float, asyncio.Future[Unready]] | None = None
        self.registry = _registry(edge_filter, decisions, relay)

    async def healthz(self, _scope: Scope, _receive: Receive, send: Send) -> None:
        """GET /healthz"""
        await answer_json(send, 200, {"status": "ok"})

    async def readyz(self, _scope: Scope, _receive: Receive, send: Send) -> None:
        """GET /readyz"""
        reason, error = await self.unready_reason()
        if reason is None:
            if self._failing is not None:
                self._failing = None
                logger.info("readyz: ready again")
            await answer_json(send, 200, {"status": "ready"})
            return
        if self._failing != reason:
            self._failing = reason
            logger.warning("readyz: %s%s", reason, f": {error}" if error else "")
        await answer_json(send, 503, {"status": "unavailable", "reason": reason})

    async def unready_reason(self) -> tuple[str | None, BaseException | None]:
        """Why the proxy is not ready (and the error behind it), or None."""
        for kind, resolver in (("GeoIP", self.edge_filter.geoip), ("ASN", self.edge_filter.asn_db)):
            if resolver is not None and not resolver.walk_ended:
                return f"the {kind} database is still being read", None
        source = self.edge_filter.source
        if isinstance(source, RulesFeed):
            return await _feed_unready_reason(source)
        probe = getattr(source, "check", None)
        if probe is None:
            return None, None
        loop = asyncio.get_running_loop()
        memo = self._probe
        stale = memo is not None and memo[2].done() and loop.time() - memo[1] > PROBE_MEMO
        if memo is None or memo[0] is not loop or stale:
            memo = (loop, loop.time(), asyncio.ensure_future(self._probe_api(probe)))
            self._probe = memo
        return await asyncio.shield(memo[2])

    async def _probe_api(self, probe: Callable[[], object]) -> Unready:
        """One probe of the Sites API (the source's ``check``), at most ``timeout`` seconds."""
        try:  # the sync probe, in a thread: the source's own pool, closed with the source
            await asyncio.wait_for(asyncio.to_thread(probe), self.timeout)
        except TimeoutError:
            return f"the Sites API did not answer within {self.timeout:g} s", None
        except ApiAuthError as error:
            return "the Sites API refused the key", error
        except Exception as error:  # any failure to fetch is "not ready", never a 500
            return f"the Sites API cannot be reached ({type(error).__name__})", error
        return None, None

    async def metrics(self, _scope: Scope, _receive: Receive, send: Send) -> None:
        """GET /metrics"""
        if self.registry is None:
            await answer_json(send, 501, {"success": False, "error": METRICS_MISSING})
            return
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415

        content = generate_latest(self.registry)
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode("ascii")),
            (b"content-length", str(len(content)).encode("ascii")),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def _feed_unready_reason(feed: RulesFeed) -> tuple[str | None, BaseException | None]:
    """Why a rules feed cannot decide yet (no state held), or None: never waits for it."""
    if feed.stats()["ready"]:
        return None, None
    try:  # check(0) raises the first read's failure, or TimeoutError while it is pending
        await asyncio.to_thread(feed.check, 0)
    except TimeoutError:
        return "the rules feed holds no rules yet", None
    except ApiAuthError as error:
        return "the Sites API refused the key", error
    except Exception as error:
        return f"the rules feed cannot be read ({type(error).__name__})", error
    return None, None


def _registry(edge_filter: EdgeFilter, decisions: DecisionCounters, relay: RelayCounters) -> Any:
    """A registry of the proxy's metrics; None without prometheus-client."""
    try:
        from prometheus_client import CollectorRegistry  # noqa: PLC0415
    except ImportError:
        return None
    registry = CollectorRegistry(auto_describe=True)
    decisions.register_prometheus(registry)
    source = edge_filter.source
    stats = getattr(source, "stats", None)
    if isinstance(source, RulesFeed):
        registry.register(_FeedCollector(source.stats))
    elif callable(stats):
        registry.register(_CacheCollector(stats))
    registry.register(_RelayCollector(relay))
    return registry


class _CacheCollector:
    """``RulesCache.stats()`` as Prometheus metrics."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def describe(self) -> list[Any]:
        return []  # collected fresh on each scrape; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        stats: dict[str, float] = self.stats()
        fetches = CounterMetricFamily(
            "edgefilter_rules_fetches", "Rules fetches by outcome", labels=["outcome"]
        )
        for name, value in sorted(stats.items()):
            if name.startswith("fetches_"):
                fetches.add_metric([name.removeprefix("fetches_")], value)
            elif name in _CACHE_COUNTERS:
                yield CounterMetricFamily(
                    f"edgefilter_rules_{name}", f"Rules cache {name.replace('_', ' ')}", value
                )
            else:
                yield GaugeMetricFamily(
                    f"edgefilter_rules_{name}", f"Rules cache {name.replace('_', ' ')}", value
                )
        yield fetches


class _FeedCollector:
    """``RulesFeed.stats()`` as Prometheus metrics."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        stats: dict[str, float] = self.stats()
        answers = CounterMetricFamily(
            "edgefilter_rules_feed_answers",
            "Rules feed reads answered, by kind: snapshot, delta, not_modified (304)",
            labels=["kind"],
        )
        for name, value in sorted(stats.items()):
            words = name.replace("_", " ")
            if name in _FEED_ANSWERS:
                answers.add_metric([_FEED_ANSWERS[name]], value)
            elif name in FEED_COUNTERS:
                yield CounterMetricFamily(
                    f"edgefilter_rules_feed_{name}", f"Rules feed {words}", value
                )
            elif name in _SHARED_GAUGES:
                yield GaugeMetricFamily(f"edgefilter_rules_{name}", f"Rules feed {words}", value)
            else:
                yield GaugeMetricFamily(
                    f"edgefilter_rules_feed_{name}", f"Rules feed {words}", value
                )
        yield answers


class _RelayCollector:
    """``RelayCounters`` as Prometheus metrics."""

    def __init__(self, counters: RelayCounters) -> None:
        self.counters = counters

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415

        counts = self.counters.snapshot()
        answers = CounterMetricFamily(
            "edgefilter_upstream_answers", "Upstream answers by status class", labels=["status"]
        )
        failures = CounterMetricFamily(
            "edgefilter_upstream_failures",
            "Upstream failures: unavailable, timeout, broken mid-answer",
            labels=["kind"],
        )
        disconnects = 0
        for (kind, label), count in sorted(counts.items()):
            if kind == "answer":
                answers.add_metric([label], count)
            elif kind == "failure":
                failures.add_metric([label], count)
            else:
                disconnects += count
        yield answers
        yield failures
        yield CounterMetricFamily(
            "edgefilter_client_disconnects", "Clients gone mid-answer", disconnects
        )
