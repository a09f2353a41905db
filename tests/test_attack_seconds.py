"""Attacker's review of ``as_seconds`` (678f1cb): a number of seconds too large for a float
is refused with the option's ConfigError, not an OverflowError from ``math.isfinite``."""

from __future__ import annotations

import pytest

from edgefilter import ConfigError, EdgeFilter, RulesFeed, SitesApiClient
from edgefilter._deadline import body_timeout_option
from edgefilter._seconds import as_seconds
from edgefilter.proxy import create_proxy_app

HUGE = 10**400  # an int past float's range: math.isfinite raises OverflowError on it


def test_an_int_too_large_for_a_float_is_no_number_of_seconds() -> None:
    assert as_seconds(HUGE) is None
    assert as_seconds(HUGE, zero=True) is None


def test_each_option_refuses_it_with_its_config_error() -> None:
    with pytest.raises(ConfigError, match="body_timeout"):
        body_timeout_option(HUGE)
    with (
        SitesApiClient("http://api.invalid", "k" * 32) as client,
        pytest.raises(ConfigError, match="wait"),
    ):
        RulesFeed(client, wait=HUGE, start=False)
    with pytest.raises(ConfigError, match="upstream_timeout"):
        create_proxy_app("http://upstream.invalid", EdgeFilter({}), upstream_timeout=HUGE)
