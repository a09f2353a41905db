"""edgefilter: decide at the edge of an analytics ingest pipeline whether a hit is tracked."""

from ._bots import BotDetector
from ._cache import RulesCache
from ._client import FetchedConfig, SitesApiClient
from ._counters import DecisionCounters
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
from ._rules import SiteConfig, SiteRules, compile_rules
from ._tables import AddressTable

__all__ = [
    "AddressTable",
    "ApiAuthError",
    "ApiRequestError",
    "ApiServerError",
    "ApiTimeoutError",
    "ApiUnreachableError",
    "BotDetector",
    "ConfigError",
    "CountryResolver",
    "Decision",
    "DecisionCounters",
    "EdgeFilter",
    "EdgeFilterError",
    "FetchedConfig",
    "GeoIPError",
    "IntervalTable",
    "MalformedResponseError",
    "Reason",
    "RulesCache",
    "RulesSource",
    "SiteConfig",
    "SiteNotFoundError",
    "SiteRules",
    "SitesApiClient",
    "SitesApiError",
    "StaticRules",
    "compile_rules",
]
