"""Decision counters by site and reason, readable from Python and exportable to Prometheus.

Labels stay bounded whatever ids clients send: a known site has one label, its rules' own
id (``rules.site_id``, else ``rules.id``) whichever form of it a hit used, and every hit
whose id did not resolve to rules (``UNRESOLVED_REASONS``: unknown sites, rules pending,
unavailable or unauthorized, invalid payloads) shares the one ``UNKNOWN_SITE_LABEL``.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final

from ._decisions import UNAVAILABLE_REASONS, Reason

UNKNOWN_SITE_LABEL: Final = ""  # unresolved ids share one label: they are attacker-chosen
UNRESOLVED_REASONS: Final = frozenset(
    {Reason.unknown_site, Reason.invalid_payload, *UNAVAILABLE_REASONS}
)


def _value(counter: itertools.count[int]) -> int:
    """How many times ``next`` was called on a count that started at 0 (without bumping it)."""
    return int(repr(counter)[6:-1])


class DecisionCounters:
    """How many hits got each reason, per site label. Thread-safe; cheap to bump."""

    def __init__(self) -> None:
        # One itertools.count per key: next() on it is atomic in CPython, so bumping takes
        # no lock; only a new key does.
        self._counts: dict[tuple[str, Reason], itertools.count[int]] = {}
        self._lock = threading.Lock()

    def add(self, site: str, reason: Reason) -> None:
        """Count one decision; ``site`` is the known site's label, ignored (replaced by
        ``UNKNOWN_SITE_LABEL``) for the unresolved reasons."""
        next(self.counter(site, reason))

    def counter(self, site: str, reason: Reason) -> itertools.count[int]:
        """The count of one ``(site, reason)`` key, made on first use: ``next()`` on it is
        ``add(site, reason)``, for callers that keep it to bump it without the lookup."""
        if reason in UNRESOLVED_REASONS:
            site = UNKNOWN_SITE_LABEL
        counter = self._counts.get((site, reason))
        if counter is None:
            with self._lock:
                counter = self._counts.setdefault((site, reason), itertools.count())
        return counter

    def snapshot(self) -> dict[tuple[str, Reason], int]:
        """A copy of the counts, keyed by ``(site, reason)``."""
        with self._lock:
            counters = list(self._counts.items())
        return {key: _value(counter) for key, counter in counters}

    def by_reason(self) -> Counter[Reason]:
        """Counts summed over sites."""
        totals: Counter[Reason] = Counter()
        for (_, reason), count in self.snapshot().items():
            totals[reason] += count
        return totals

    def register_prometheus(self, registry: Any = None) -> Any:
        """Export as ``edgefilter_decisions_total{site, reason}`` (needs ``prometheus-client``).

        Returns the registered collector. The default registry is prometheus-client's.
        """
        from prometheus_client.core import REGISTRY, CounterMetricFamily  # noqa: PLC0415

        counters = self

        class Collector:
            def collect(self) -> Iterator[Any]:
                family = CounterMetricFamily(
                    "edgefilter_decisions",
                    "Hits decided, by site and reason",
                    labels=["site", "reason"],
                )
                for (site, reason), count in sorted(counters.snapshot().items()):
                    family.add_metric([site, reason.value], count)
                yield family

        collector = Collector()
        (registry or REGISTRY).register(collector)
        return collector
