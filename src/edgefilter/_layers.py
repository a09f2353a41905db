"""Country rules layered into a site's IP table, built off the hot path.

Once a ``CountryResolver`` has walked its database, a site's excluded IPs (layer 0) and the
addresses of its excluded countries (layer 1) can live in one ``AddressTable``: one search
then answers both rules and names the one that matched. Building that table costs time in
proportion to the site's rules (milliseconds for a thousand entries, about a third of a
second for 100,000), so a hit never waits for it: the first hit of a site schedules it on a
background thread and is answered from the two tables apart, as are the hits that follow
until the layered table is stored in ``SiteRules.country_layers``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from ._geo import CountryResolver
from ._rules import SiteRules
from ._tables import AddressTable

logger = logging.getLogger("edgefilter")

# A country table with more bounds than this is searched on its own rather than copied into
# the table of every site that excludes it (the large countries of a full database).
MAX_LAYERED_COUNTRY_BOUNDS: Final = 4_096


class CountryLayering:
    """Builds and stores layered tables for one resolver, on one background thread."""

    __slots__ = ("_executor", "_lock", "_pending", "geoip")

    def __init__(self, geoip: CountryResolver) -> None:
        self.geoip = geoip
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[int] = set()  # id() of rules with a build queued
        self._lock = threading.Lock()

    def layer(self, rules: SiteRules) -> AddressTable | None:
        """Build and store the layered table of ``rules`` now; None when it cannot be had
        (the walk has not ended, or the countries' table is over the limit)."""
        found = rules.country_layers.get(self.geoip)
        if found is not None:
            return found
        countries = self.geoip.table_for(rules.excluded_countries)
        if countries is None or countries.bound_count > MAX_LAYERED_COUNTRY_BOUNDS:
            return None
        layered = AddressTable.layered(rules.excluded_ips, countries)
        rules.country_layers[self.geoip] = layered
        return layered

    def schedule(self, rules: SiteRules) -> None:
        """Queue ``rules`` for a background build if one can succeed and none is queued."""
        if not self.geoip.compiled or id(rules) in self._pending:
            return
        countries = self.geoip.table_for(rules.excluded_countries)
        if countries is None or countries.bound_count > MAX_LAYERED_COUNTRY_BOUNDS:
            return
        with self._lock:
            if id(rules) in self._pending:
                return
            self._pending.add(id(rules))  # the queued job holds rules: its id stays unique
            self._start().submit(self._build, rules)

    def schedule_all(self, rules: Iterable[SiteRules]) -> None:
        """Layer every site of a fixed source as soon as the walk ends, in the background."""
        with_countries = [each for each in rules if each.excluded_countries]
        if with_countries:
            self._start().submit(self._build_all, with_countries)

    def _start(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgefilter-layers")
        return self._executor

    def _build(self, rules: SiteRules) -> None:
        try:
            self.layer(rules)
        except Exception:  # keep answering from the two tables apart
            logger.exception("site %s: layering its country rules failed", rules.site_id)
        finally:
            self._pending.discard(id(rules))

    def _build_all(self, rules: list[SiteRules]) -> None:
        if self.geoip.wait_compiled():
            for each in rules:
                self._build(each)
