"""Site configs from Sites API JSON, and what they compile into."""

from __future__ import annotations

import logging

import pytest

from edgefilter import ConfigError, SiteConfig, compile_rules

SEED_SITE = {  # the GET /api/sites/:siteId example answer of the seed
    "id": "site_abc123",
    "siteId": 123,
    "name": "My Website",
    "domain": "example.com",
    "createdAt": "2024-01-15T10:30:00.000Z",
    "updatedAt": "2024-01-31T14:00:00.000Z",
    "createdBy": "user_xyz789",
    "organizationId": "org_def456",
    "public": False,
    "saltUserIds": False,
    "blockBots": True,
    "isOwner": True,
    "sessionReplay": True,
    "webVitals": True,
    "trackErrors": True,
    "trackOutbound": True,
    "trackUrlParams": False,
}
SEED_CONFIG_ANSWER = {  # the PUT /api/sites/:siteId/config example answer of the seed
    "success": True,
    "message": "Site configuration updated successfully",
    "config": {
        "public": True,
        "saltUserIds": False,
        "blockBots": True,
        "excludedIPs": [],
        "excludedCountries": ["CN", "RU"],
        "sessionReplay": True,
        "webVitals": True,
        "trackErrors": True,
        "trackOutbound": True,
        "trackUrlParams": False,
    },
}


def test_from_api_reads_the_seed_site_and_keeps_every_field() -> None:
    """A seed site object round-trips through SiteConfig, unknown fields kept."""
    config = SiteConfig.from_api(SEED_SITE)
    assert config.site_id == 123
    assert config.block_bots is True
    assert config.extra == {"isOwner": True}
    lists = ("IPs", "Countries", "Paths", "Hostnames", "UserAgents", "ASNs")
    assert config.to_api() == {**SEED_SITE, **{f"excluded{kind}": [] for kind in lists}}


def test_from_api_unwraps_the_config_answer() -> None:
    """The PUT /config answer's ``config`` is read; the envelope is not kept."""
    config = SiteConfig.from_api(SEED_CONFIG_ANSWER)
    assert config.excluded_countries == ("CN", "RU")
    assert config.public is True
    assert dict(config.extra) == {}


def test_from_api_merges_the_three_reads() -> None:
    """Site, excluded-ips and excluded-countries answers combine into one config."""
    ips = {"success": True, "excludedIPs": ["192.168.1.1", "10.0.0.0/8", "172.16.0.0/12"]}
    countries = {"success": True, "excludedCountries": ["CN", "RU", "KP"]}
    config = SiteConfig.from_api({**SEED_SITE, **ips, **countries})
    rules = compile_rules(config)
    assert rules.excluded_countries == {"CN", "RU", "KP"}
    assert "172.31.255.255" in rules.excluded_ips
    assert rules.site_id == "123"
    assert rules.id == "site_abc123"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"blockBots": "yes"}, "blockBots"),
        ({"siteId": "12"}, "siteId"),
        ({"siteId": True}, "siteId"),
        ({"excludedIPs": "10.0.0.0/8"}, "excludedIPs"),
        ([], "JSON object"),
    ],
)
def test_from_api_rejects_wrong_types(obj: object, message: str) -> None:
    """A field of the wrong type raises ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        SiteConfig.from_api(obj)  # type: ignore[arg-type]


def test_block_bots_defaults_to_true_as_for_a_new_rybbit_site() -> None:
    """A config without blockBots blocks bots."""
    assert compile_rules(SiteConfig.from_api({})).block_bots is True


def test_compile_rejects_bad_entries_and_keeps_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    """Bad IP entries and country codes are reported with reasons; the rest apply."""
    config = SiteConfig(
        excluded_ips=("10.0.0.0/8", "bogus", 42), excluded_countries=("gb", " de ", "XX", 7)
    )
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        rules = compile_rules(config)
    assert rules.excluded_countries == {"GB", "DE"}
    assert "10.1.2.3" in rules.excluded_ips
    assert [entry for entry, _ in rules.rejected] == ["bogus", 42, "XX", 7]
    assert all(repr(entry) in reason for entry, reason in rules.rejected)
    assert "4 rule entries rejected" in caplog.text


def test_rules_are_frozen() -> None:
    """Compiled rules cannot be changed after the fact."""
    rules = compile_rules(SiteConfig())
    with pytest.raises(AttributeError):
        rules.block_bots = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("excluded_ips", "excluded_countries", "needs_ip"),
    [
        ((), (), False),
        (("1.2.3.4",), (), True),
        ((), ("FR",), True),
        (("bogus",), ("XX",), False),
    ],
)
def test_needs_ip_only_when_a_rule_reads_the_address(
    excluded_ips: tuple[str, ...], excluded_countries: tuple[str, ...], needs_ip: bool
) -> None:
    """The hot path skips the address parse when no rule looks at it."""
    config = SiteConfig(excluded_ips=excluded_ips, excluded_countries=excluded_countries)
    assert compile_rules(config).needs_ip is needs_ip
