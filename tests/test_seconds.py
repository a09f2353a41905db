"""The one reading of a duration option that the cache, the feed, the body deadline and
the proxy share."""

from __future__ import annotations

import math

import pytest

from edgefilter import ConfigError, EdgeFilter, RulesFeed, SitesApiClient
from edgefilter._deadline import body_timeout_option
from edgefilter._seconds import as_seconds
from edgefilter.proxy import create_proxy_app

HUGE = 10**400  # an int past float's range


@pytest.mark.parametrize(
    ("value", "zero", "seconds"),
    [
        # numbers above 0, whatever their type
        (1, False, 1.0),
        (0.25, False, 0.25),
        (1e9, False, 1e9),
        # 0 only where the option allows it
        (0, True, 0.0),
        (0.0, False, None),
        (0, False, None),
        # never negative, NaN or infinite
        (-1, True, None),
        (math.nan, True, None),
        (math.inf, True, None),
        (-math.inf, True, None),
        # never an int past float's range (math.isfinite would raise on it)
        (HUGE, False, None),
        (HUGE, True, None),
        # never a bool (an int to Python), text or None
        (True, True, None),
        (False, True, None),
        ("5", True, None),
        (None, True, None),
    ],
)
def test_as_seconds(value: object, zero: bool, seconds: float | None) -> None:
    """A finite int or float above 0 (or at 0 with ``zero``) is seconds; nothing else is."""
    assert as_seconds(value, zero=zero) == seconds


def test_each_option_refuses_a_huge_int_with_its_config_error() -> None:
    """An int too large for a float is each option's ConfigError, not an OverflowError."""
    with pytest.raises(ConfigError, match="body_timeout"):
        body_timeout_option(HUGE)
    with (
        SitesApiClient("http://api.invalid", "k" * 32) as client,
        pytest.raises(ConfigError, match="wait"),
    ):
        RulesFeed(client, wait=HUGE, start=False)
    with pytest.raises(ConfigError, match="upstream_timeout"):
        create_proxy_app("http://upstream.invalid", EdgeFilter({}), upstream_timeout=HUGE)
