"""The header layer against captured browser and client requests, and the client signals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter._errors import ConfigError
from edgefilter._signals import (
    DEFAULT_HEADER_WEIGHTS,
    HEADER_RULES,
    MAX_CACHED_VERDICTS,
    ClientSignals,
    HeaderHeuristics,
    header_map,
    request_key,
)

REQUESTS = Path(__file__).resolve().parents[1] / "data" / "requests"
LAYER = HeaderHeuristics()
CHROME_120 = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
# What Chrome 120 on Windows sends with the tracker's fetch (as captured, versions aside).
BROWSER = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate, br, zstd",
    "accept-language": "en-US,en;q=0.9",
    "sec-fetch-site": "cross-site",
    "sec-fetch-mode": "cors",
    "sec-fetch-dest": "empty",
    "sec-ch-ua": '"Google Chrome";v="120", "Chromium";v="120", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
}


def raw_headers(name: str) -> list[tuple[str, list[tuple[bytes, bytes]]]]:
    """(client, ASGI headers) of each request in a fixture file."""
    document = json.loads((REQUESTS / name).read_text())
    return [
        (each["client"], [(n.lower().encode(), v.encode("latin-1")) for n, v in each["headers"]])
        for each in document["requests"]
    ]


def captured(name: str) -> list[tuple[str, dict[str, str]]]:
    """(client, headers by lower-case name) of each request in a fixture file."""
    document = json.loads((REQUESTS / name).read_text())
    return [
        (each["client"], header_map((n.encode(), v.encode()) for n, v in each["headers"]))
        for each in document["requests"]
    ]


@pytest.mark.parametrize(("client", "headers"), captured("browsers.json"))
def test_captured_browser_requests_break_no_rule(client: str, headers: dict[str, str]) -> None:
    """Every captured Chromium and Firefox request breaks no rule at all (so is no bot)."""
    assert LAYER.findings(headers, headers.get("user-agent")) == ()
    assert not LAYER.is_bot(headers, headers.get("user-agent"))


def test_browser_fixtures_cover_both_engines_desktop_and_mobile() -> None:
    """The browser fixtures hold Chromium and Firefox, desktop and mobile, and a beacon."""
    clients = {client for client, _ in captured("browsers.json")}
    assert {"chromium-linux", "chromium-android-mobile", "chromium-iphone-mobile"} <= clients
    assert {"firefox-linux", "firefox-android-mobile", "firefox-linux-beacon"} <= clients


def test_captured_clients_with_a_chrome_user_agent_are_caught() -> None:
    """Every HTTP client that claims to be Chrome is a bot by its headers alone, except the
    one that copies a browser's headers (and headless Chromium, which is a browser)."""
    caught = {
        client: LAYER.is_bot(headers, headers.get("user-agent"))
        for client, headers in captured("clients.json")
        if client.endswith("-chrome-ua") and not client.startswith("headless")
    }
    assert len(caught) >= 7
    assert all(caught.values()), caught


def test_captured_clients_catch_floor() -> None:
    """At least 12 of the 17 captured client requests are bots by their headers alone, Go's
    two among them."""
    verdicts = {c: LAYER.is_bot(h, h.get("user-agent")) for c, h in captured("clients.json")}
    assert sum(verdicts.values()) >= 12
    assert verdicts["go-net-http"] and verdicts["go-net-http-chrome-ua"]


def without(*names: str, **changes: str) -> dict[str, str]:
    headers = {k: v for k, v in BROWSER.items() if k not in names}
    headers.update({k.replace("_", "-"): v for k, v in changes.items()})
    return headers


@pytest.mark.parametrize(
    ("headers", "ua", "rules"),
    [
        # the browser itself
        (BROWSER, CHROME_120, ()),
        # missing or empty basics
        (without("accept-language"), CHROME_120, ("no_accept_language",)),
        (without(accept_language="*"), CHROME_120, ("no_accept_language",)),
        (without(accept_language="  "), CHROME_120, ("no_accept_language",)),
        (without("accept"), CHROME_120, ("no_accept",)),
        (without("accept-encoding"), CHROME_120, ("no_gzip",)),
        (without(accept_encoding="identity"), CHROME_120, ("no_gzip",)),
        (without(accept_encoding="GZIP"), CHROME_120, ()),
        # Sec-Fetch-*
        (
            without("sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"),
            CHROME_120,
            ("chrome_without_sec_fetch",),
        ),
        (without("sec-fetch-site"), CHROME_120, ("chrome_without_sec_fetch", "partial_sec_fetch")),
        (without("sec-fetch-dest"), CHROME_120, ("partial_sec_fetch",)),
        (without(sec_fetch_mode="navigate"), CHROME_120, ("navigate_on_fetch",)),
        (without(sec_fetch_dest="document"), CHROME_120, ("navigate_on_fetch",)),
        # Chrome 75 predates Sec-Fetch; Chrome 79 on Windows 10 is stale
        (
            without("sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-ch-ua"),
            CHROME_120.replace("120.", "75."),
            ("stale_chrome_modern_os",),
        ),
        (
            without("sec-ch-ua"),
            CHROME_120.replace("120.", "79.").replace("Windows NT 10.0", "Windows NT 6.1"),
            (),
        ),
        (
            without("sec-ch-ua"),
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/79.0.3945.130 Safari/537.36",
            ("stale_chrome_modern_os", "client_hints_contradict"),
        ),
        # headless
        (BROWSER, CHROME_120.replace("Chrome/", "HeadlessChrome/"), ("headless",)),
        (
            without(sec_ch_ua='"HeadlessChrome";v="120", "Chromium";v="120"'),
            CHROME_120,
            ("headless",),
        ),
        # client hints against the user agent
        (without(sec_ch_ua_platform='"Linux"'), CHROME_120, ("client_hints_contradict",)),
        (without(sec_ch_ua_mobile="?1"), CHROME_120, ("client_hints_contradict",)),
        (
            without(sec_ch_ua='"Chromium";v="119", "Google Chrome";v="119"'),
            CHROME_120,
            ("client_hints_contradict",),
        ),
        (
            BROWSER,
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ("client_hints_contradict",),
        ),
        # Android Chrome's "desktop site": a Linux user agent, platform Android, not mobile
        (
            without(sec_ch_ua_platform='"Android"'),
            CHROME_120.replace("Windows NT 10.0; Win64; x64", "X11; Linux x86_64"),
            (),
        ),
        (without(sec_ch_ua_platform='"Fuchsia"'), CHROME_120, ()),  # unknown platform: no check
    ],
)
def test_each_rule(headers: dict[str, str], ua: str, rules: tuple[str, ...]) -> None:
    """Each rule fires on exactly the change it names."""
    assert LAYER.findings(headers, ua) == rules


def test_no_headers_at_all_is_a_bot() -> None:
    """A hit with no headers at all scores past the threshold, whatever its user agent."""
    assert LAYER.is_bot({}, CHROME_120)
    assert LAYER.is_bot({}, "")


def test_contradiction_alone_is_below_the_threshold() -> None:
    """A real Chrome with a user-agent switcher (hints say Linux, the UA says Windows) is not a
    bot: a contradiction alone scores under the threshold."""
    headers = without(sec_ch_ua_platform='"Linux"')
    assert LAYER.score(headers, CHROME_120) < LAYER.threshold


def test_weights_and_threshold_are_configurable() -> None:
    """Weights replace the defaults (a rule left out scores 0) and the threshold is used."""
    strict = HeaderHeuristics(threshold=3, weights={"client_hints_contradict": 3})
    headers = without(sec_ch_ua_platform='"Linux"')
    assert strict.is_bot(headers, CHROME_120)
    assert not strict.is_bot(without("accept-language"), CHROME_120)


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 0},
        {"threshold": True},
        {"threshold": "5"},
        {"weights": {"no_such_rule": 1}},
        {"weights": {"no_accept": -1}},
        {"weights": {"no_accept": 1.5}},
    ],
)
def test_bad_header_options_are_config_errors(options: dict[str, Any]) -> None:
    """A bad threshold or weight is refused when the layer is made."""
    with pytest.raises(ConfigError):
        HeaderHeuristics(**options)


def test_default_weights_name_every_rule() -> None:
    """Every rule has a default weight."""
    assert set(DEFAULT_HEADER_WEIGHTS) == set(HEADER_RULES)


def test_header_map_joins_repeats_and_lowers_names() -> None:
    """ASGI headers become one dict by lower-case name, repeats joined."""
    raw = [(b"Accept", b"a"), (b"accept", b"b"), (b"X-One", b"\xe9")]
    assert header_map(raw) == {"accept": "a, b", "x-one": "é"}


@given(
    st.dictionaries(
        st.sampled_from([*BROWSER, "user-agent", "x-other"]) | st.text(max_size=20),
        st.text(max_size=60),
    ),
    st.one_of(st.none(), st.integers(), st.text(max_size=200), st.sampled_from([CHROME_120])),
)
def test_score_is_the_sum_of_its_findings_and_never_raises(
    headers: dict[str, str], ua: Any
) -> None:
    """Any headers and user agent: the score is the weights of the findings, each at most once."""
    found = LAYER.findings(headers, ua)
    assert len(set(found)) == len(found)
    assert set(found) <= set(HEADER_RULES)
    assert LAYER.score(headers, ua) == sum(DEFAULT_HEADER_WEIGHTS[rule] for rule in found)
    assert LAYER.is_bot(headers, ua) == (LAYER.score(headers, ua) >= 5)


@pytest.mark.parametrize("name", ["browsers.json", "clients.json"])
def test_is_bot_request_agrees_with_is_bot(name: str) -> None:
    """Over ASGI headers (cached), the verdict is the one over the decoded headers."""
    layer = HeaderHeuristics()
    for (_, raw), (_, headers) in zip(raw_headers(name), captured(name), strict=True):
        expected = layer.is_bot(headers, headers.get("user-agent", ""))
        assert layer.is_bot_request(raw) is expected
        assert layer.is_bot_request(list(raw)) is expected  # from the cache


def test_request_key_reads_only_its_headers_and_joins_repeats() -> None:
    """The key holds the read headers' raw values, a repeat joined, others ignored."""
    key = request_key([(b"accept", b"a"), (b"x-other", b"z"), (b"accept", b"b")])
    assert key[1] == b"a, b" and key.count(None) == len(key) - 1


def test_the_verdict_cache_is_bounded() -> None:
    """However many distinct header sets, the cache holds at most its bound."""
    layer = HeaderHeuristics()
    for number in range(MAX_CACHED_VERDICTS + 10):
        layer.is_bot_request([(b"user-agent", str(number).encode())])
    assert len(layer._verdicts) <= MAX_CACHED_VERDICTS


@pytest.mark.parametrize("raw", [None, [(b"accept",)], 12, [(b"user-agent", 5)]])
def test_odd_raw_headers_are_no_evidence(raw: Any) -> None:
    """Headers that are not ASGI's pairs of bytes never raise and are not a bot."""
    assert HeaderHeuristics().is_bot_request(raw) is False


SIGNALS = ClientSignals()


@pytest.mark.parametrize(
    ("payload", "bot"),
    [
        # the documented threshold: _bs >= 3
        ({"_bs": 3}, True),
        ({"_bs": 10}, True),
        ({"_bs": 3.0}, True),
        ({"_bs": 2}, False),
        ({"_bs": 0}, False),
        # out of range or the wrong type: no evidence
        ({"_bs": 11}, False),
        ({"_bs": -1}, False),
        ({"_bs": 3.5}, False),
        ({"_bs": "5"}, False),
        ({"_bs": True}, False),
        ({"_bs": math.inf}, False),
        ({"_bs": math.nan}, False),
        ({"_bs": None}, False),
        # _bsm alone counts only for bits of the mask, none by default
        ({"_bsm": 1023}, False),
        ({"_bs": 0, "_bsm": 1023}, False),
        ({}, False),
        ([], False),
        (None, False),
    ],
)
def test_client_signals(payload: object, bot: bool) -> None:
    """Rybbit's _bs threshold is the only default verdict; odd values are no evidence."""
    assert SIGNALS.is_bot(payload) is bot


def test_client_signal_mask_and_threshold_are_configurable() -> None:
    """A mask names the _bsm bits that count alone; the _bs threshold can move."""
    signals = ClientSignals(score_threshold=5, mask=0b101)
    assert signals.is_bot({"_bsm": 0b100})
    assert not signals.is_bot({"_bsm": 0b010})
    assert not signals.is_bot({"_bsm": 2048})
    assert not signals.is_bot({"_bs": 4})
    assert signals.is_bot({"_bs": 5})


@pytest.mark.parametrize(
    "options",
    [{"score_threshold": 0}, {"score_threshold": 11}, {"mask": 1024}, {"mask": -1}, {"mask": 1.0}],
)
def test_bad_client_options_are_config_errors(options: dict[str, Any]) -> None:
    """A threshold outside 1..10 or a mask outside 0..1023 is refused."""
    with pytest.raises(ConfigError):
        ClientSignals(**options)


@given(st.dictionaries(st.sampled_from(["_bs", "_bsm", "x"]), st.integers() | st.floats()))
def test_client_signals_against_the_plain_rule(payload: dict[str, Any]) -> None:
    """The verdict is exactly: an integral _bs between 3 and 10."""
    score = payload.get("_bs")
    expected = isinstance(score, int | float) and 3 <= score <= 10 and score == int(score)
    assert SIGNALS.is_bot(payload) == expected
