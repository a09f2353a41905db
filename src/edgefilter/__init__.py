"""edgefilter: decide at the edge of an analytics ingest pipeline whether a hit is tracked.

``import edgefilter`` loads the core only (rules, tables, bots, the hot path: maxminddb,
google-re2, orjson, and the compiled reader when it is built: ``edgefilter.compiled``). The
live-rules names ``RulesCache``, ``RulesFeed``, ``SitesApiClient``, ``FetchedConfig`` and
``FeedAnswer`` are imported on first use, with httpx and cachetools (the ``client`` extra);
the applications live in subpackages (``edgefilter.server``, ``edgefilter.proxy``,
``edgefilter.demo``) with extras of their own.
"""

import importlib as _importlib
import typing as _typing

from ._asn import AsnResolver
from ._botlayers import BotEvent, HitRequest, RequestLayers
from ._bots import BotDetector
from ._counters import DecisionCounters
from ._datacenter import DatacenterRanges
from ._decisions import Decision, Reason
from ._errors import (
    ApiAuthError,
    ApiRequestError,
    ApiServerError,
    ApiTimeoutError,
    ApiUnreachableError,
    ConfigError,
    EdgeFilterError,
    GeoIPError,
    MalformedResponseError,
    SiteNotFoundError,
    SitesApiError,
)
from ._filter import EdgeFilter, RulesSource, StaticRules
from ._geo import CountryResolver
from ._intervals import IntervalTable
from ._rates import LocalRates, RateLimits, RedisRates
from ._rules import SiteConfig, SiteRules, compile_rules
from ._signals import ClientSignals, HeaderHeuristics
from ._tables import AddressTable
from ._tables import compiled_layer_of_text as _compiled_reader

# Whether the compiled reader (``edgefilter._speedups``) answers the hot path: True when it
# was built (a wheel for this platform, or ``make compiled``) and EDGEFILTER_PURE is not 1.
# The pure-Python reader gives the same answers.
compiled: bool = _compiled_reader is not None

if _typing.TYPE_CHECKING:
    from ._cache import RulesCache
    from ._client import FeedAnswer, FetchedConfig, SitesApiClient
    from ._feed import RulesFeed

# Public names whose modules need an extra, by the module that defines them.
_LAZY = {
    "RulesCache": "._cache",
    "RulesFeed": "._feed",
    "SitesApiClient": "._client",
    "FetchedConfig": "._client",
    "FeedAnswer": "._client",
}

__all__ = [
    "AddressTable",
    "ApiAuthError",
    "ApiRequestError",
    "ApiServerError",
    "ApiTimeoutError",
    "ApiUnreachableError",
    "AsnResolver",
    "BotDetector",
    "BotEvent",
    "ClientSignals",
    "ConfigError",
    "CountryResolver",
    "DatacenterRanges",
    "Decision",
    "DecisionCounters",
    "EdgeFilter",
    "EdgeFilterError",
    "FeedAnswer",
    "FetchedConfig",
    "GeoIPError",
    "HeaderHeuristics",
    "HitRequest",
    "IntervalTable",
    "LocalRates",
    "MalformedResponseError",
    "RateLimits",
    "Reason",
    "RedisRates",
    "RequestLayers",
    "RulesCache",
    "RulesFeed",
    "RulesSource",
    "SiteConfig",
    "SiteNotFoundError",
    "SiteRules",
    "SitesApiClient",
    "SitesApiError",
    "StaticRules",
    "compile_rules",
    "compiled",
]


def __getattr__(name: str) -> _typing.Any:
    """Import a live-rules name on first use; name the extra when its stack is missing."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgefilter' has no attribute {name!r}")
    try:
        value = getattr(_importlib.import_module(module, __name__), name)
    except ModuleNotFoundError as error:
        raise ImportError(
            f"edgefilter.{name} needs {error.name!r}: pip install 'edgefilter[client]'"
        ) from error
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
