"""The request layers of bot detection together: which apply to a hit, and which matched.

Rybbit v2.7 judges a hit with five layers, all evaluated and logged together; so does
``RequestLayers``, over what the middleware sees of the request (see ``BOT_LAYERS``):

- ``user_agent``: the ``BotDetector`` of the ``EdgeFilter`` (the filter's own check; it is
  recorded here when it matched);
- ``headers``: ``HeaderHeuristics`` over the request headers (``_signals``);
- ``client``: ``ClientSignals``, the tracker's ``_bs``/``_bsm`` in the payload (``_signals``);
- ``datacenter``: ``DatacenterRanges``, the client address in published cloud ranges or
  listed ASNs (``_datacenter``), opt-in;
- ``rate``: ``LocalRates`` or ``RedisRates``, sliding windows per site+IP+UA and site+IP
  (``_rates``).

Every request layer is off unless given. Per site: none applies to a site that does not
block bots (``blockBots`` false, or a mobile site, as ``SiteRules.block_bots`` says), and
``sites`` may name, per site id, the layers that apply to it (only layers that are on; a
site it does not name gets all of them).

A hit is a bot when any layer matched; ``judge`` answers the names of all of them, in
``BOT_LAYERS`` order, counts them per site and layer in ``counters`` (labelled by the
site's own id, as ``DecisionCounters`` labels known sites, unless ``label`` is given) and
passes a ``BotEvent`` (one boolean per layer, as Rybbit's ``bot_events`` rows) to
``on_bot``. Nothing here raises on a hit: a failing hook is logged once and ignored.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeVar

from ._datacenter import DatacenterRanges
from ._errors import ConfigError
from ._rates import LocalRates, RateLimits, RedisRates
from ._rules import SiteRules
from ._signals import ClientSignals, HeaderHeuristics, RawHeaders
from ._siteids import canonical_site_id

logger = logging.getLogger("edgefilter")

USER_AGENT: Final = "user_agent"
HEADERS: Final = "headers"
CLIENT: Final = "client"
DATACENTER: Final = "datacenter"
RATE: Final = "rate"
BOT_LAYERS: Final = (USER_AGENT, HEADERS, CLIENT, DATACENTER, RATE)
REQUEST_LAYERS: Final = BOT_LAYERS[1:]
NO_LAYERS: Final[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True)
class BotEvent:
    """One hit some layer called a bot: who sent it and which layers matched."""

    site: str
    client_ip: str | None
    user_agent: str
    layers: tuple[str, ...]

    def flags(self) -> dict[str, bool]:
        """One boolean per layer, every layer named (a ``bot_events`` row)."""
        return {name: name in self.layers for name in BOT_LAYERS}


class HitRequest(NamedTuple):
    """What the request layers read of one hit: its ASGI ``scope["headers"]``, its payload,
    the client address and user agent (as the middleware read them), and its path."""

    headers: RawHeaders
    payload: object
    ip: str | None
    ua: str
    path: object = None


class LayerCounters:
    """How many hits each layer matched, per site label. Thread-safe; cheap to bump."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], itertools.count[int]] = {}
        self._lock = threading.Lock()

    def add(self, site: str, layers: Iterable[str]) -> None:
        """Count one hit for each layer that matched it."""
        for layer in layers:
            counter = self._counts.get((site, layer))
            if counter is None:
                with self._lock:
                    counter = self._counts.setdefault((site, layer), itertools.count())
            next(counter)

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of the counts, keyed by ``(site, layer)``."""
        with self._lock:
            counters = list(self._counts.items())
        return {key: int(repr(counter)[6:-1]) for key, counter in counters}

    def register_prometheus(self, registry: Any = None) -> Any:
        """Export as ``edgefilter_bot_layers_total{site, layer}`` (needs prometheus-client)."""
        from prometheus_client.core import REGISTRY, CounterMetricFamily  # noqa: PLC0415

        counters = self

        class Collector:
            def collect(self) -> Iterator[Any]:
                family = CounterMetricFamily(
                    "edgefilter_bot_layers",
                    "Hits each bot layer matched, by site and layer",
                    labels=["site", "layer"],
                )
                for (site, layer), count in sorted(counters.snapshot().items()):
                    family.add_metric([site, layer], count)
                yield family

        collector = Collector()
        (registry or REGISTRY).register(collector)
        return collector


_Layer = TypeVar("_Layer", HeaderHeuristics, ClientSignals)


def _as_layer(name: str, option: object, kind: type[_Layer]) -> _Layer | None:
    """A layer option: off (None, False), on with the defaults (True), or a ``kind``."""
    if option is None or option is False:
        return None
    if option is True:
        return kind()
    if isinstance(option, kind):
        return option
    raise ConfigError(f"{name} {option!r} is not a bool nor a {kind.__name__}")


def _as_rates(option: object) -> LocalRates | RedisRates | None:
    if option is None or option is False:
        return None
    if option is True:
        return LocalRates()
    if isinstance(option, RateLimits):
        return LocalRates(option)
    if isinstance(option, LocalRates | RedisRates):
        return option
    raise ConfigError(f"rates {option!r} is not a bool, RateLimits, LocalRates nor RedisRates")


class RequestLayers:
    """The request layers a deployment turns on, and the judge of one hit over them."""

    __slots__ = (
        "_hook_failed",
        "_sites",
        "client",
        "counters",
        "datacenter",
        "enabled",
        "headers",
        "on_bot",
        "rates",
    )

    def __init__(
        self,
        *,
        headers: HeaderHeuristics | bool | None = None,
        client: ClientSignals | bool | None = None,
        datacenter: DatacenterRanges | None = None,
        rates: LocalRates | RedisRates | RateLimits | bool | None = None,
        sites: Mapping[object, Iterable[str]] | None = None,
        on_bot: Callable[[BotEvent], object] | None = None,
    ) -> None:
        self.headers = _as_layer("headers", headers, HeaderHeuristics)
        self.client = _as_layer("client", client, ClientSignals)
        if datacenter is not None and not isinstance(datacenter, DatacenterRanges):
            raise ConfigError(f"datacenter {datacenter!r} is not a DatacenterRanges")
        self.datacenter = datacenter
        self.rates = _as_rates(rates)
        if on_bot is not None and not callable(on_bot):
            raise ConfigError(f"on_bot {on_bot!r} is not callable")
        self.on_bot = on_bot
        self.counters = LayerCounters()
        self._hook_failed = False
        on = {
            HEADERS: self.headers is not None,
            CLIENT: self.client is not None,
            DATACENTER: self.datacenter is not None,
            RATE: self.rates is not None,
        }
        self.enabled = frozenset(name for name, is_on in on.items() if is_on)
        self._sites = _site_layers(sites or {}, self.enabled)

    def __bool__(self) -> bool:
        """Whether any request layer is on."""
        return bool(self.enabled)

    @property
    def needs_await(self) -> bool:
        """Whether ``ajudge`` must be awaited (rates in Redis); otherwise ``judge`` answers
        the same without a coroutine."""
        return isinstance(self.rates, RedisRates)

    def layers_for(self, site: str, rules: SiteRules | None) -> frozenset[str]:
        """The request layers that apply to a site's hits (none if it does not block bots)."""
        if rules is None or not rules.block_bots:
            return frozenset()
        return self._sites.get(site, self.enabled)

    def _static(self, layers: frozenset[str], hit: HitRequest) -> list[str]:
        """The names of the layers that matched, rates aside."""
        headers, payload, ip, _, _ = hit
        matched: list[str] = []
        if self.headers is not None and HEADERS in layers and self.headers.is_bot_request(headers):
            matched.append(HEADERS)
        if self.client is not None and CLIENT in layers and self.client.is_bot(payload):
            matched.append(CLIENT)
        if self.datacenter is not None and DATACENTER in layers and ip in self.datacenter:
            matched.append(DATACENTER)
        return matched

    async def ajudge(
        self,
        site: str,
        rules: SiteRules | None,
        hit: HitRequest,
        *,
        user_agent_bot: bool = False,
        label: str | None = None,
    ) -> tuple[str, ...]:
        """The layers that call this hit a bot (``user_agent`` first when the filter's own
        check did); empty for a person. Counts the hit in the rate windows. Never raises."""
        layers = self.layers_for(site, rules)
        matched = self._static(layers, hit) if layers else []
        rates = self.rates
        if rates is not None and RATE in layers:
            ip, ua, path = hit.ip or "", hit.ua, hit.path if isinstance(hit.path, str) else None
            if isinstance(rates, RedisRates):
                anomaly = await rates.ahit(site, ip, ua, path)
            else:
                anomaly = rates.hit(site, ip, ua, path)
            if anomaly:
                matched.append(RATE)
        return self._report(site, rules, hit, matched, user_agent_bot=user_agent_bot, label=label)

    def judge(
        self,
        site: str,
        rules: SiteRules | None,
        hit: HitRequest,
        *,
        user_agent_bot: bool = False,
        label: str | None = None,
    ) -> tuple[str, ...]:
        """``ajudge`` for synchronous callers: Redis rates are counted by their local
        counters (this call never waits on the network)."""
        layers = self.layers_for(site, rules)
        matched = self._static(layers, hit) if layers else []
        rates = self.rates
        if rates is not None and RATE in layers:
            local = rates.local if isinstance(rates, RedisRates) else rates
            path = hit.path if isinstance(hit.path, str) else None
            if local.hit(site, hit.ip or "", hit.ua, path):
                matched.append(RATE)
        return self._report(site, rules, hit, matched, user_agent_bot=user_agent_bot, label=label)

    def _report(
        self,
        site: str,
        rules: SiteRules | None,
        hit: HitRequest,
        matched: list[str],
        *,
        user_agent_bot: bool,
        label: str | None,
    ) -> tuple[str, ...]:
        if user_agent_bot:
            matched.insert(0, USER_AGENT)
        if not matched:
            return NO_LAYERS
        found = tuple(matched)
        if label is None:  # the site's own id, whichever form of it the hit used
            label = (rules.site_id or rules.id or site) if rules is not None else site
        self.counters.add(label, found)
        if self.on_bot is not None:
            try:
                self.on_bot(BotEvent(site, hit.ip, hit.ua, found))
            except Exception:  # an operator's hook must not break the hit
                if not self._hook_failed:
                    self._hook_failed = True
                    logger.exception("on_bot hook failed (logged once)")
        return found

    async def aclose(self) -> None:
        """Close the Redis client, if any."""
        if isinstance(self.rates, RedisRates):
            await self.rates.aclose()


def _site_layers(
    sites: Mapping[object, Iterable[str]], enabled: frozenset[str]
) -> dict[str, frozenset[str]]:
    """Per-site layer sets by canonical site id; ``ConfigError`` for a bad id or layer."""
    if not isinstance(sites, Mapping):
        raise ConfigError(f"sites {sites!r} is not a mapping of site id to layer names")
    chosen: dict[str, frozenset[str]] = {}
    for key, names in sites.items():
        site = canonical_site_id(key)
        if site is None:
            raise ConfigError(f"sites key {key!r} is not a site id (digits or 12 hex)")
        if isinstance(names, str):
            raise ConfigError(f"layers of site {key!r} must be a list of names, not {names!r}")
        layers = frozenset(names)
        unknown = sorted(layers - set(REQUEST_LAYERS))
        if unknown:
            raise ConfigError(
                f"site {key!r} names layers {unknown!r} that are not {', '.join(REQUEST_LAYERS)}"
            )
        off = sorted(layers - enabled)
        if off:
            raise ConfigError(f"site {key!r} names layers {off!r} that are not turned on")
        chosen[site] = layers
    return chosen
