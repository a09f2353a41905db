"""Site configs as the Sites API spells them, and the immutable rules they compile into."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar

from ._asn import parse_asn
from ._countries import normalize_country
from ._errors import ConfigError
from ._patterns import GlobMatcher, SubstringMatcher, compile_globs, compile_substrings
from ._tables import DEFAULT_COMPACT, AddressTable

logger = logging.getLogger("edgefilter")
T = TypeVar("T", bound=Hashable)

# The site flags, declared once: API field name -> (attribute and column name, the value a
# new site gets). SiteConfig, the server's store, its answers and its OpenAPI spec derive
# theirs from here. The defaults are the values of the seed's example answers for a site
# created with only domain, name and blockBots.
SITE_FLAGS: Final[Mapping[str, tuple[str, bool]]] = MappingProxyType(
    {
        "public": ("public", False),
        "saltUserIds": ("salt_user_ids", False),
        "blockBots": ("block_bots", True),
        "sessionReplay": ("session_replay", True),
        "webVitals": ("web_vitals", True),
        "trackErrors": ("track_errors", True),
        "trackOutbound": ("track_outbound", True),
        "trackUrlParams": ("track_url_params", False),
    }
)

# API field name -> (attribute name, accepted Python type). Order is the order to_api writes.
_SCALAR_FIELDS: Final[dict[str, tuple[str, type | tuple[type, ...]]]] = {
    "siteId": ("site_id", int),
    "id": ("id", str),
    "name": ("name", str),
    "domain": ("domain", str),
    "organizationId": ("organization_id", str),
    "createdBy": ("created_by", str),
    "createdAt": ("created_at", str),
    "updatedAt": ("updated_at", str),
    "type": ("type", str),
    **{api_name: (attribute, bool) for api_name, (attribute, _) in SITE_FLAGS.items()},
}
# Rybbit v2.7's site types; a mobile site skips the user-agent bot check.
SITE_TYPES: Final = ("web", "mobile")
MOBILE: Final = "mobile"
# API list field name -> attribute name, in the order to_api writes them. The last four are
# read from endpoints of their own (see ``SitesApiClient.fetch_config``).
_LIST_FIELDS: Final = {
    "excludedIPs": "excluded_ips",
    "excludedCountries": "excluded_countries",
    "excludedPaths": "excluded_paths",
    "excludedHostnames": "excluded_hostnames",
    "excludedUserAgents": "excluded_user_agents",
    "excludedASNs": "excluded_asns",
}
# Envelope keys of API answers; not part of a site's config.
_ENVELOPE: Final = frozenset({"success", "message", "config"})


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """One site's configuration, field for field as the Sites API returns it.

    Rule lists keep their entries exactly as given (bad ones included), so ``compile_rules``
    can report each bad entry instead of losing it. Fields the API did not send are None,
    except ``block_bots``, which defaults to True as it does for a new Rybbit site. Fields this
    class does not know are kept in ``extra``.
    """

    site_id: int | None = None
    id: str | None = None
    name: str | None = None
    domain: str | None = None
    organization_id: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    public: bool | None = None
    salt_user_ids: bool | None = None
    block_bots: bool = True
    session_replay: bool | None = None
    web_vitals: bool | None = None
    track_errors: bool | None = None
    track_outbound: bool | None = None
    track_url_params: bool | None = None
    type: str | None = None
    excluded_ips: tuple[object, ...] = ()
    excluded_countries: tuple[object, ...] = ()
    excluded_paths: tuple[object, ...] = ()
    excluded_hostnames: tuple[object, ...] = ()
    excluded_user_agents: tuple[object, ...] = ()
    excluded_asns: tuple[object, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> SiteConfig:
        """Build from Sites API JSON: a site object, a config object, or an answer wrapping one.

        The answers of ``GET /api/sites/:siteId``, ``PUT .../config`` (its ``config``),
        ``GET .../excluded-ips``, ``.../excluded-countries``, ``.../excluded-paths``,
        ``.../excluded-hostnames``, ``.../excluded-user-agents`` and ``.../excluded-asns``
        are all accepted, and so is their union. A field of the wrong type raises
        ``ConfigError`` naming it.
        """
        if not isinstance(obj, Mapping):
            raise ConfigError(f"a site config must be a JSON object, not {type(obj).__name__}")
        inner = obj.get("config")
        merged = {**obj, **inner} if isinstance(inner, Mapping) else dict(obj)
        values: dict[str, Any] = {}
        for api_name, (attribute, kind) in _SCALAR_FIELDS.items():
            value = merged.get(api_name)
            if value is None:
                continue
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"site config field {api_name!r} has invalid value {value!r}")
            values[attribute] = value
        for api_name, attribute in _LIST_FIELDS.items():
            entries = merged.get(api_name)
            if entries is None:
                continue
            if not isinstance(entries, list | tuple):
                raise ConfigError(f"site config field {api_name!r} is not a list: {entries!r}")
            values[attribute] = tuple(entries)
        known = _SCALAR_FIELDS.keys() | _LIST_FIELDS.keys() | _ENVELOPE
        extra = {key: value for key, value in merged.items() if key not in known}
        return cls(**values, extra=MappingProxyType(extra))

    def to_api(self) -> dict[str, Any]:
        """The config as Sites API JSON, with the fields that are set."""
        result: dict[str, Any] = {}
        for api_name, (attribute, _) in _SCALAR_FIELDS.items():
            value = getattr(self, attribute)
            if value is not None:
                result[api_name] = value
        for api_name, attribute in _LIST_FIELDS.items():
            result[api_name] = list(getattr(self, attribute))
        result.update(self.extra)
        return result


@dataclass(frozen=True, slots=True)
class SiteRules:
    """A site's rules compiled for the hot path. Immutable; share it freely across threads.

    ``rejected`` lists every entry that could not be compiled, as ``(entry, reason)``; all
    other entries apply. ``needs_ip`` is true when any rule looks at the client address.
    ``block_bots`` is whether the user-agent bot check applies: the site's ``blockBots``,
    false for a mobile site (``mobile``), as Rybbit's mobile sites skip the user-agent
    layers. ``excluded_paths``, ``excluded_hostnames`` (globs) and ``excluded_user_agents``
    (substrings) are one matcher each, None when the site has no such rule; ``has_patterns``
    says whether any is set, so that a site without them costs one attribute test.
    ``domain`` is the site's domain as the middleware's ``check_origin`` compares origins
    with it (lower case, no ``www.``), None when the config names none.

    ``country_layers`` is filled by ``EdgeFilter`` once its databases' tables are ready:
    per filter (its GeoIP resolver, or its GeoIP and ASN resolvers), the excluded IPs
    (layer 0), the excluded countries' addresses (layer 1) and the excluded ASNs' addresses
    (layer 2) in one ``AddressTable``, so that these rules cost one search. It is a memo,
    not part of the rules' value: equality and ``repr`` ignore it.
    """

    site_id: str | None = None
    id: str | None = None
    excluded_ips: AddressTable = AddressTable()
    excluded_countries: frozenset[str] = frozenset()
    block_bots: bool = False
    needs_ip: bool = False
    rejected: tuple[tuple[object, str], ...] = ()
    excluded_asns: frozenset[int] = frozenset()
    excluded_paths: GlobMatcher | None = None
    excluded_hostnames: GlobMatcher | None = None
    excluded_user_agents: SubstringMatcher | None = None
    mobile: bool = False
    domain: str | None = None
    has_patterns: bool = field(default=False, init=False)
    needs_layers: bool = field(default=False, init=False, compare=False, repr=False)
    country_layers: dict[object, AddressTable] = field(
        default_factory=lambda: _NO_LAYERS, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        patterns = (self.excluded_paths, self.excluded_hostnames, self.excluded_user_agents)
        object.__setattr__(self, "has_patterns", any(patterns))
        if self.excluded_countries or self.excluded_asns:  # only these need their own memo
            object.__setattr__(self, "needs_layers", True)
            object.__setattr__(self, "country_layers", {})


# Shared by every site without country or ASN rules; nothing is ever stored in it.
_NO_LAYERS: Final[dict[object, AddressTable]] = {}


def compile_rules(config: SiteConfig, *, compact: bool | None = None) -> SiteRules:
    """Compile a config into ``SiteRules``; bad entries are reported in ``rejected``, not raised.

    ``compact=True`` keeps the IP rules in the compact form (see ``AddressTable``): about a
    third of the memory; ``False`` the packed form. The default, None, is compact when the
    compiled reader is active (it searches both forms alike) and packed on pure Python
    (where compact costs about twice as much per lookup): ``DEFAULT_COMPACT``.
    """
    if compact is None:
        compact = DEFAULT_COMPACT
    excluded_ips, rejected_ips = AddressTable.from_entries(config.excluded_ips, compact=compact)
    rejected: list[tuple[object, str]] = list(rejected_ips)
    countries = _compiled_set(config.excluded_countries, normalize_country, rejected)
    asns = _compiled_set(config.excluded_asns, parse_asn, rejected)
    paths, rejected_paths = compile_globs("path", config.excluded_paths)
    hostnames, rejected_hostnames = compile_globs("hostname", config.excluded_hostnames)
    user_agents, rejected_agents = compile_substrings("user agent", config.excluded_user_agents)
    rejected += rejected_paths + rejected_hostnames + rejected_agents
    if config.type is not None and config.type not in SITE_TYPES:
        rejected.append((config.type, f"site type {config.type!r} is not web or mobile: web"))
    mobile = config.type == MOBILE
    rules = SiteRules(
        site_id=None if config.site_id is None else str(config.site_id),
        id=config.id,
        excluded_ips=excluded_ips,
        excluded_countries=countries,
        block_bots=config.block_bots and not mobile,
        needs_ip=bool(excluded_ips or countries or asns),
        rejected=tuple(rejected),
        excluded_asns=asns,
        excluded_paths=paths or None,
        excluded_hostnames=hostnames or None,
        excluded_user_agents=user_agents or None,
        mobile=mobile,
        domain=_bare_domain(config.domain),
    )
    _log_rejected(rules)
    return rules


def _bare_domain(domain: str | None) -> str | None:
    """A site's domain as origins are compared with it: lower case, no ``www.``, no dot at
    the end; None when the site names none."""
    if not domain or not domain.strip():
        return None
    return domain.strip().lower().rstrip(".").removeprefix("www.") or None


# The rejected entries last logged per site: a refresh that compiles the same ones again
# logs nothing (Rybbit has no ETags, so every refresh recompiles). Bounded: past
# REJECTED_MEMORY sites the oldest is forgotten, and at worst logged once more.
REJECTED_MEMORY: Final = 10_000
_logged_rejected: dict[object, tuple[tuple[object, str], ...]] = {}
_logged_lock: Final = threading.Lock()


def _log_rejected(rules: SiteRules) -> None:
    """Warn about a site's rejected entries once per change of them, not once per compile."""
    site = rules.site_id or rules.id
    with _logged_lock:
        if _logged_rejected.get(site) == rules.rejected:
            return
        if not rules.rejected:
            _logged_rejected.pop(site, None)
            return
        if len(_logged_rejected) >= REJECTED_MEMORY:
            del _logged_rejected[next(iter(_logged_rejected))]
        _logged_rejected[site] = rules.rejected
    logger.warning(
        "site %s: %d rule entries rejected: %s",
        site,
        len(rules.rejected),
        "; ".join(reason for _, reason in rules.rejected[:5]),
        extra={"site": site},
    )


def _compiled_set(
    entries: tuple[object, ...],
    parse: Callable[[object], T],
    rejected: list[tuple[object, str]],
) -> frozenset[T]:
    """The entries ``parse`` reads; each it refuses (a ``ConfigError``) goes to ``rejected``."""
    kept: set[T] = set()
    for entry in entries:
        try:
            kept.add(parse(entry))
        except ConfigError as error:
            rejected.append((entry, str(error)))
    return frozenset(kept)
