"""edgefilter: decide at the edge of an analytics ingest pipeline whether a hit is tracked."""

from ._bots import BotDetector
from ._errors import ConfigError, EdgeFilterError, GeoIPError
from ._filter import Decision, EdgeFilter, Reason, RulesSource, StaticRules
from ._geo import CountryResolver
from ._intervals import AddressTable, IntervalTable
from ._rules import SiteConfig, SiteRules, compile_rules

__all__ = [
    "AddressTable",
    "BotDetector",
    "ConfigError",
    "CountryResolver",
    "Decision",
    "EdgeFilter",
    "EdgeFilterError",
    "GeoIPError",
    "IntervalTable",
    "Reason",
    "RulesSource",
    "SiteConfig",
    "SiteRules",
    "StaticRules",
    "compile_rules",
]
