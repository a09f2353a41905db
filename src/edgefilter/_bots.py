"""Bot verdicts for user-agent strings: layered, compiled once, cached per string.

For web analytics every non-human page view is a bot. ``BotDetector.classify(ua)`` answers
the family of bot (``crawler``, ``ai``, ``preview``, ``monitor``, ``automation``,
``library``, ``empty``) or None for a person, from these layers, cheapest first:

1. the verdict cache, a plain dict (bounded: the older half goes when it fills);
2. empty, blank or very short strings: ``empty``;
3. our own tokens (``TOKENS``), one RE2 search with a named group per family: bot, crawl
   and spider words, AI fetchers, link previewers, monitors, headless and automation
   markers, HTTP libraries and command-line tools, contact URLs; when they match, known
   false positives (``EXCEPTIONS``: phone models and apps whose names contain "bot", ...)
   are blanked out and the tokens searched again;
4. the shape: a string that does not look like any browser, app web view or feature
   phone (``BROWSER_SHAPES``) is a ``library``;
5. the crawler list of the maintained ``crawler-user-agents`` package, read from the
   package at start-up and compiled into one RE2 set (minus ``DEBATABLE_CRAWLER_PATTERNS``,
   which match ordinary browsers); its tags give the family.

RE2 (``google-re2``) matches all alternatives in one linear pass: with Python's ``re`` the
same token list cost about 100 us per user agent here, with RE2 a few.

What is read as a user agent (nothing here ever raises, whatever it is given):

- a ``str`` as it is; a ``str`` subclass as its plain text (none of its own methods run);
- ``bytes``, ``bytearray`` and ``memoryview`` (and their subclasses) decoded as Latin-1, as
  HTTP headers are;
- lone surrogates (``"Googlebot\\ud800"``, which no UTF-8 header can carry but Python text
  can): classified on the text with each surrogate replaced by U+FFFD, so the example is
  still a ``crawler``; the verdict is cached under the original text;
- anything else (None, numbers, containers, a released ``memoryview``): ``empty``, a bot;
- text that a ``detect`` override fails on: ``empty``, and not cached.
"""

from __future__ import annotations

import itertools
import json
import threading
from importlib import resources
from typing import Any, Final

import re2

from ._errors import ConfigError

MAX_UA_LENGTH: Final = 512  # Rybbit keeps 512 characters; nothing past that decides
MIN_UA_LENGTH: Final = 5
DEFAULT_CACHE_SIZE: Final = 10_000
MIN_CACHE_SIZE: Final = 1
FAMILIES: Final = ("crawler", "ai", "preview", "monitor", "automation", "library", "empty")

# Our patterns, by family (RE2 syntax, matched case-insensitively anywhere in the string).
# Earlier families win when several match. Each one has a case in tests/test_bots.py.
TOKENS: Final[dict[str, tuple[str, ...]]] = {
    "ai": (
        r"gptbot",
        r"chatgpt",
        r"oai-searchbot",
        r"claude",
        r"anthropic",
        r"perplexity",
        r"ccbot",
        r"bytespider",
        r"amazonbot",
        r"google-extended",
        r"cohere-ai",
        r"diffbot",
        r"youbot",
        r"meta-external",
        r"ai2bot",
        r"timpibot",
        r"omgili",
        r"imagesift",
        r"applebot",
        r"petalbot",
        r"\bai[-_ ]?(?:agent|crawler|bot)",
        r"mistralai",
        r"newsai",
        r"manus-user",
    ),
    "preview": (
        r"facebookexternalhit",
        r"facebookcatalog",
        r"facebot",
        r"twitterbot",
        r"slackbot",
        r"slack-imgproxy",
        r"discordbot",
        r"telegrambot",
        r"whatsapp/",
        r"linkedinbot",
        r"skypeuripreview",
        r"pinterestbot",
        r"redditbot",
        r"embedly",
        r"iframely",
        r"vkshare",
        r"bitlybot",
        r"tumblr/",
        r"preview",
        r"unfurl",
        r"onebox",
        r"metadata",
        r"link ?check",
        r"validator",
        r"favicon",
        r"\b(?:word|excel|powerpoint)/\d",
    ),
    "monitor": (
        r"uptime",
        r"pingdom",
        r"statuscake",
        r"site24x7",
        r"newrelic",
        r"datadog",
        r"monitor",
        r"nagios",
        r"zabbix",
        r"check_http",
        r"freshping",
        r"hetrix",
        r"catchpoint",
        r"synthetic",
        r"health-?check",
        r"prometheus",
        r"blackbox",
        r"exporter",
        r"dareboost",
        r"debugbear",
        r"neustar wpm",
        r"ghost inspector",
        r"\brigor\b",
        r"observatory",
        r"securityheaders",
        r"hardenize",
    ),
    "automation": (
        r"headless",
        r"phantomjs",
        r"puppeteer",
        r"playwright",
        r"selenium",
        r"webdriver",
        r"lighthouse",
        r"page ?speed",
        r"gtmetrix",
        r"\bptst\b",
        r"slimerjs",
        r"htmlunit",
        r"cypress",
        r"wkhtmlto",
        r"prerender",
        r"rendertron",
        r"\bsplash\b",
        r"screenshot",
        r"webcapture",
    ),
    "library": (
        r"\bcurl\b",
        r"wget",
        r"python",
        r"aiohttp",
        r"httpx",
        r"okhttp",
        r"go-http",
        r"java/",
        r"^java",
        r"httpclient",
        r"http[_-]client",
        r"libwww",
        r"\blwp",
        r"axios",
        r"node-fetch",
        r"node\.js",
        r"undici",
        r"guzzle",
        r"\bphp",
        r"\bruby",
        r"faraday",
        r"postman",
        r"insomnia",
        r"rest-?client",
        r"restsharp",
        r"reqwest",
        r"hackney",
        r"dart:io",
        r"scrapy",
        r"colly",
        r"mechanize",
        r"httpie",
        r"winhttp",
        r"urllib",
        r"libcurl",
        r"\bperl\b",
        r"powershell",
        r"download ?manager",
        r"downloader",
        r"qqdownload",
        r"webcopy",
        r"sitesucker",
        r"httrack",
        r"offline",
        r"feed",
        r"\brss",
        r"indy library",
        r"zgrab",
        r"openvas",
        r"web services client",
        r"^[\w.-]+/[\d.]+$",
    ),
    "crawler": (
        r"bot\b",
        r"bot[/_;:\s\-.)]",
        r"crawl",
        r"spider",
        r"slurp",
        r"scrap",
        r"archiv",
        r"index(?:er|ing)",
        r"fetch",
        r"scan",
        r"\bseo\b",
        r"audit",
        r"https?://",
        r"www\.",
        r"[\w.-]@[a-z0-9-]+\.[a-z]",
        r"(?-i:\.(?:com|org|net|io)\b)",
        r"agent\b",
        r"robot",
        r"harvest",
        r"extract",
        r"parser",
        r"reader",
        r"webhook",
        r"\btest",
        r"google[-_ ]",
        r"-google\b",
        r"googlemessages",
        r"mediapartners",
        r"grub-client",
        r"teoma",
        r"heimdall",
        r"survey",
        r"netcraft",
        r"backlink",
        r"verif",
        r"\boptimizer\b",
        r"resolver",
        r"inspect",
        r"datanyze",
        r"batch",
    ),
}
# Known false positives of TOKENS, blanked out before they are searched.
EXCEPTIONS: Final = (
    r"cubot",  # CUBOT phones
    r"user-agent",  # UAs that quote their own header name
    r"safari(?: |%20)technology(?: |%20)preview",
    r"^(?:opera|apple-i\w+)/[\d.]+$",  # old Opera and iPod media players name only themselves
)
# What people's user agents look like: browsers, web views, feature phones, iOS apps.
BROWSER_SHAPES: Final = (
    r"^Mozilla/\d",
    r"^Opera/\d",
    r"^Opera Mini",
    r"\bDalvik/",  # Android apps, at the start or after the app's own name
    r"^UCWEB",
    r"^UC ?Browser",
    r"^(?:BlackBerry|Nokia|SAMSUNG-|SonyEricsson|LG-|MOT-|ALCATEL|HTC|Huawei|ZTE|Lenovo)",
    r"^(?:Micromax|MAUI|NetFront|Obigo)",
    r"^(?:Konqueror|ELinks|Lynx|w3m|Dillo|NetSurf)/",
    r"^Links ",
    r"^Apple-i(?:Phone|Pad|Pod)",
    r"^[^/]*/[^ ]* Profile/MIDP",
    r"\bAndroid/[\d.]+ .*Release/",
    r"\bCFNetwork/[\d.]+ Darwin/",  # iOS and macOS apps
    r"\((?:iPhone|iPad|iPod)\b|\biPhone OS\b",  # app frameworks that name the device
    r"^iTunes/",
)
COMMON_BROWSER_PREFIXES: Final = ("Mozilla/", "Opera/")  # BROWSER_SHAPES' usual case, cheaply

# crawler-user-agents patterns that match ordinary browsers: an Android build id, Facebook's
# in-app browser, VS Code and Trae (Electron editors), the Blackboard Learn app's web view
# (Blackboard's SafeAssign bot is caught by its shape).
DEBATABLE_CRAWLER_PATTERNS: Final = frozenset(
    {r"AP3A\.240617\.008", r"MetaIAB Facebook", r"Code\/1\.", r"Trae\/", "Blackboard"}
)
CRAWLER_TAG_FAMILIES: Final = {
    "ai-crawler": "ai",
    "social-preview": "preview",
    "monitoring": "monitor",
    "browser-automation": "automation",
    "http-library": "library",
}


# Every surrogate code point to U+FFFD, for str.translate: RE2 takes only valid UTF-8.
_SURROGATES: Final = dict.fromkeys(range(0xD800, 0xE000), 0xFFFD)
_BYTES_LIKE: Final = (bytes, bytearray, memoryview)


def as_user_agent_text(ua: object) -> str | None:
    """``ua`` as plain text (see the module docstring), or None when it is not text.

    Only ``type(ua)`` is inspected and the text is copied by ``join``, so no method that a
    subclass overrides (``__class__``, ``__str__``, ``decode``, ``__bytes__``, ...) is called.
    """
    kind = type(ua)
    if kind is str:
        return ua  # type: ignore[return-value]
    try:
        if issubclass(kind, str):
            return "".join((ua,))  # type: ignore[arg-type]
        if issubclass(kind, _BYTES_LIKE):
            return b"".join((ua,)).decode("latin-1")  # type: ignore[arg-type]
    except Exception:  # a released or non-contiguous memoryview
        return None
    return None


def _options(*, case_sensitive: bool) -> Any:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = 64 << 20
    return options


def _compile_tokens() -> Any:
    groups = (f"(?P<{family}>{'|'.join(patterns)})" for family, patterns in TOKENS.items())
    return re2.compile("|".join(groups), _options(case_sensitive=False))


def load_crawler_patterns() -> list[tuple[str, str]]:
    """``(pattern, family)`` from the installed crawler-user-agents package, minus the
    debatable ones; empty when the package is missing."""
    try:
        data = resources.files("crawleruseragents").joinpath("crawler-user-agents.json")
        entries = json.loads(data.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError, ValueError):
        return []
    patterns = []
    for entry in entries:
        pattern = entry.get("pattern")
        if not isinstance(pattern, str) or pattern in DEBATABLE_CRAWLER_PATTERNS:
            continue
        tags = entry.get("tags") or []
        family = next((CRAWLER_TAG_FAMILIES[t] for t in tags if t in CRAWLER_TAG_FAMILIES), None)
        patterns.append((pattern, family or "crawler"))
    return patterns


class _CrawlerList:
    """The crawler-user-agents patterns as one RE2 set."""

    def __init__(self, patterns: list[tuple[str, str]]) -> None:
        self.families: list[str] = []
        self.set = re2.Set.SearchSet(_options(case_sensitive=True))
        for pattern, family in patterns:
            try:
                self.set.Add(pattern)
            except Exception:  # a pattern RE2 cannot take: skip it, keep the rest
                continue
            self.families.append(family)
        self.set.Compile()

    def family(self, ua: str) -> str | None:
        matches = self.set.Match(ua)
        return self.families[min(matches)] if matches else None


class BotDetector:
    """Tells bots from people by the user-agent string; see the module docstring.

    ``is_bot``, ``classify`` and ``verdict`` never raise, whatever ``ua`` is (see the module
    docstring). ``cache_size`` is the most verdicts kept, at least ``MIN_CACHE_SIZE``;
    ``use_crawler_list=False`` skips the crawler-user-agents layer. A bad option is a
    ``ConfigError`` naming it.
    """

    __slots__ = (
        "_crawlers",
        "_exceptions",
        "_lock",
        "_shapes",
        "_tokens",
        "cache_size",
        "verdicts",
    )

    def __init__(
        self, *, cache_size: int = DEFAULT_CACHE_SIZE, use_crawler_list: bool = True
    ) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int):
            raise ConfigError(f"cache_size {cache_size!r} is not an int")
        if cache_size < MIN_CACHE_SIZE:
            raise ConfigError(f"cache_size {cache_size!r} is below the minimum, {MIN_CACHE_SIZE}")
        if not isinstance(use_crawler_list, bool):
            raise ConfigError(f"use_crawler_list {use_crawler_list!r} is not a bool")
        self.cache_size = cache_size
        # ua -> family, "" for a person: the hot path reads this dict directly.
        self.verdicts: dict[object, str] = {}
        self._lock = threading.Lock()
        self._tokens = _compile_tokens()
        self._exceptions = re2.compile("|".join(EXCEPTIONS), _options(case_sensitive=False))
        self._shapes = re2.compile("|".join(BROWSER_SHAPES), _options(case_sensitive=True))
        self._crawlers = _CrawlerList(load_crawler_patterns() if use_crawler_list else [])

    def is_bot(self, ua: object) -> bool:
        """Whether ``ua`` belongs to a bot; cached."""
        try:
            return self.verdicts[ua] != ""
        except Exception:  # a miss, or a ua that is no dict key (unhashable, hostile)
            return self.verdict(ua) != ""

    def classify(self, ua: object) -> str | None:
        """The bot family of ``ua`` (see ``FAMILIES``), or None for a person; cached."""
        try:
            family = self.verdicts[ua]
        except Exception:  # a miss, or a ua that is no dict key (unhashable, hostile)
            family = self.verdict(ua)
        return family or None

    def verdict(self, ua: object) -> str:
        """The family, or "" for a person, computed and cached (the slow path); never raises.

        Only the first ``MAX_UA_LENGTH`` characters decide; a string over four times that is
        answered but not kept. Verdicts are kept under the plain text.
        """
        text = as_user_agent_text(ua)
        if text is None:
            return "empty"
        if text is not ua:  # bytes or a subclass: its plain text may be known already
            known = self.verdicts.get(text)
            if known is not None:
                return known
        family = self._detect_text(text[:MAX_UA_LENGTH])
        if family is None:  # a detect override failed: answer, do not keep
            return "empty"
        if len(text) > 4 * MAX_UA_LENGTH:  # a huge header: answer it, do not keep it
            return family
        with self._lock:
            if len(self.verdicts) >= self.cache_size:
                dropped = max(1, self.cache_size // 2)
                for key in list(itertools.islice(self.verdicts, dropped)):
                    del self.verdicts[key]
            self.verdicts[text] = family
        return family

    def _detect_text(self, text: str) -> str | None:
        """``detect`` as a verdict ("" for a person), surrogates replaced when RE2 refuses
        them; None when ``detect`` fails on the text."""
        try:
            return self.detect(text) or ""
        except UnicodeEncodeError:  # lone surrogates: RE2 takes only UTF-8
            pass
        except Exception:
            return None
        try:
            return self.detect(text.translate(_SURROGATES)) or ""
        except Exception:
            return None

    def detect(self, ua: str) -> str | None:
        """The uncached verdict for one user-agent string: a family, or None."""
        text = ua.strip().strip("\"'")
        if len(text) < MIN_UA_LENGTH:
            return "empty"
        match = self._tokens.search(text)
        if match is not None and self._exceptions.search(text):  # rare: look again without
            match = self._tokens.search(self._exceptions.sub(" ", text))
        if match is not None:
            return str(match.lastgroup)
        if not text.startswith(COMMON_BROWSER_PREFIXES) and not self._shapes.search(text):
            return "library"
        return self._crawlers.family(text)
