"""Bot verdicts for user-agent strings: layered, compiled once, cached per string.

For web analytics every non-human page view is a bot. ``BotDetector.classify(ua)`` answers
the family of bot (``FAMILIES``: ``crawler``, ``ai``, ``preview``, ``monitor``,
``automation``, ``library``, ``scanner``, ``empty``) or None for a person. Evidence
decides, and guesswork only where there is none; cheapest first:

1. the verdict cache, a plain dict (bounded: the older half goes when it fills);
2. empty, blank or very short strings: ``empty``;
3. bot evidence. Before it is searched, the device-model slot of an Android platform
   comment is cut out (``DEVICE_SLOT``: "M bot 54", "Spider 8" and "Google TV" name
   phones and TVs) and known false positives are blanked (``EXCEPTIONS``). Then our own
   tokens (``TOKENS``, one RE2 search with a named group per family: scanners and
   injection payloads, AI fetchers and coding agents, link previewers, monitors and
   diagnostics agents, headless renderers and automation, HTTP libraries and tools, bot,
   crawl and spider words, contact URLs), the crawler list of the maintained
   ``crawler-user-agents`` package (one RE2 set, minus ``DEBATABLE_CRAWLER_PATTERNS``,
   which match ordinary browsers; its tags give the family) and ``IMPOSTORS`` (browser-like
   text no browser sends);
4. browser evidence: ``BROWSER_EVIDENCE`` (rendering engines, browser families, WebView
   and app-framework markers, feature-phone and WAP browsers, UC Browser's own formats,
   TV, set-top box and console platforms, text browsers), uap-core's device catalogue
   (brands and models, from the maintained ``ua-parser-builtins`` package) and uap-core's
   client families, less every family a known bot matches (``people_patterns``, against
   crawler-user-agents' instances; a regex listing many browsers is judged family by
   family, so its one bot does not cost the others): any of these, and it is a person;
5. only what neither recognises falls to the shape score (``SHAPE_WEIGHTS``): "Mozilla/5.0"
   with no engine, "(compatible; Name/1.0)" alone, a bare "Name/1.0" count against, a
   platform, a device word, a screen size or a media app's word for; at or below
   ``SHAPE_BOT_SCORE`` it is a bot (``crawler`` when it claims to be Mozilla, else
   ``library``).

The compiled layers (``Layers``) are built once per process from the installed packages
(``default_layers``, about a second) and shared; ``build_layers`` builds them from other
data, which is how benchmarks/bench_bots.py leaves one source out.

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

import functools
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import re2

from ._errors import ConfigError

MAX_UA_LENGTH: Final = 512  # Rybbit keeps 512 characters; nothing past that decides
MIN_UA_LENGTH: Final = 5
DEFAULT_CACHE_SIZE: Final = 10_000
MIN_CACHE_SIZE: Final = 1
FAMILIES: Final = (
    "crawler",
    "ai",
    "preview",
    "monitor",
    "automation",
    "library",
    "scanner",
    "empty",
)

# Our patterns, by family (RE2 syntax, matched case-insensitively anywhere in the string).
# Earlier families win when several match. Each one has a case in tests/test_bots.py.
TOKENS: Final[dict[str, tuple[str, ...]]] = {
    # security scanners and injection payloads (first: they hide inside browser strings)
    "scanner": (
        r"\(\) ?\{ ?:; ?\}",  # shellshock
        r"<script",
        r"\$\{jndi:",
        # Log4Shell disguised: nested or other lookups ("${${lower:j}ndi:", "${::-j}")
        r"\$\{[^}]{0,40}\$\{|\$\{(?:lower|upper|env|sys|date|java|base64|::-)",
        r"\{\{[^}]{0,40}\}\}|[$#]\{\d+ ?\* ?\d+\}|<%=",  # template injection
        r"\bunion(?: all)? select\b",
        r"['\"]\s*(?:or|and)\s+['\"]?\w+['\"]?\s*=\s*['\"]?\w",  # ' OR '1'='1, " AND 1=1
        r"/etc/passwd",
        r"\bsleep\(\d",
        r"waitfor delay",
        r"\.\./\.\./",
        r"\bnmap\b",
        r"nikto",
        r"sqlmap",
        r"\bnuclei\b",
        r"wpscan",
        r"acunetix",
        r"checker\b",
        r"proxy ?check",
    ),
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
        r"copilot",
        r"\bcodex(?:\b|_)",  # "OpenAI Codex/0.46", "codex_cli_rs/0.46.0"
        r"\bdevin\b",
        r"\bcline\b",
        r"\baider\b",
        r"windsurf",
        r"opencode",
        r"gemini-cli",
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
        r"^whatsapp(?:/[\d.]+(?:[ /][a-z])?)?$",  # its link fetcher; the app's own client says more
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
        r"^microsoft office\b",  # Office checks a link before it opens the browser
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
        r"jiankong",  # "monitoring" in pinyin
        r"diagnostic",
        r"heartbeat",
        r"\bprobe\b",
        r"measurement",
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
        r"webthumb",
        r"websnapr",
        r"zombie\.js",
        r"(?-i:\(KHTML, like Gecko\) [a-z][\w-]* Safari/)",  # a renderer's tag, no version
        r"transcoder",
        r"\.translate\b",
    ),
    "library": (
        r"\bcurl\b",
        r"wget",
        r"python",
        r"aiohttp",
        r"httpx",
        r"okhttp",
        r"go-http",
        r"(?:^|[\s(;])java/\d",  # the JDK's "Java/1.8.0_151", not "Java/ASVM/1.1", "SEMC-Java/2"
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
        r"\boffline\b",
        r"feed",
        r"\brss|rss\b",
        r"\blavf/",  # FFmpeg's libavformat
        r"^url/emacs",  # Emacs' url.el
        r"\breeder/",  # feed readers that do not say "feed" or "rss"
        r"netnewswire",
        r"\breadkit/",
        r"akregator",
        r"newsboat",
        r"liferea",
        r"indy library",
        r"zgrab",
        r"openvas",
        r"web services client",
        r"http ?client",
        r"http ?request",
        r"\bnode/v\d",
        r"\bnpm/\d",
        r"\bgo/go\d",
        r"\bdocker/\d",
        r"kubectl",
        r"\bgradle/",
        r"\bsiege/",
        r"\bhttping\b",
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
        r"webhook",
        r"tester\b",
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
        r"prospect",  # lead-prospecting tools
        r"verif",
        r"\boptimizer\b",
        r"analy[sz]er\b",
        r"resolver",
        r"inspect",
        r"datanyze",
        r"batch",
    ),
}
# Known false positives of TOKENS, blanked out before they are searched.
EXCEPTIONS: Final = (
    r"cubot",  # CUBOT phones
    r"user[-_ ]?agent",  # UAs that quote their own header name ("USER AGENT", "User-agent:")
    # Google the device brand, not Google the crawler's operator: "Google TV", "Google
    # Nexus 4", "google Pixel 6", "Galaxy Nexus google", "clientidbase=android-google"
    r"\bgoogle[ _-]?(?:tv|nexus|pixel|chromecast|android)\b|\b(?:nexus|pixel)\b[\w ]* google\b",
    r"android-google\b",
    # an Electron desktop app names itself where Chrome's string has nothing: "(KHTML, like
    # Gecko) Notion/2.3.2 Chrome/120.0.0.0 Electron/28.1.0" (and Claude's, Windsurf's...:
    # the crawler list and the AI tokens name some of them)
    r"\(khtml, like gecko\) [\w.-]+/[\w.-]+ chrome/[\d.]+ electron/\d",
    r"safari(?: |%20)technology(?: |%20)preview",
    r"\bsogou(?:mse|mobilebrowser)\b",  # Sogou's browsers (the crawler list has "Sogou")
    r"\blibwww-fm/|\blibwww/[\d.]+(?:_mosaic| modified)|^amaya/[\d.]+ libwww",  # text browsers
)
# Positive evidence of a person's client (RE2, case-sensitive unless marked): rendering
# engines, browser families, WebView and app-framework markers, feature-phone and WAP
# browsers, TV, set-top box, console and text browsers. Anything that matches none of these,
# no device of uap-core's catalogue and no bot token falls to the shape score.
BROWSER_EVIDENCE: Final = (
    # engines and the browser families that name them (anywhere: apps prefix their name)
    r"AppleWebKit/|\bGecko/|Trident/|Presto/|\bKHTML\b|\bGoanna/|\bEdgeHTML|\bMSIE[ +]\d",
    r"\bOpera [\d.]+\b|\bGecko (?:Galeon|Epiphany|K-Meleon)/",  # old Opera and Gecko browsers
    r"\b(?:Chrome|Chromium|CriOS|Firefox|FxiOS|Safari|Opera|OPR|Edge?|SamsungBrowser)/\d",
    r"\bQtWebEngine/|\bQtWebKit/|\bArora/|\bMidori/|\bEpiphany/|\bNetSurf/|\bDillo/",
    r"\bKonqueror/|(?i:^(?:lynx|links|elinks|w3m|amaya|ibrowse|amigavoyager)\b)|Mosaic/",
    # app frameworks and WebViews (Android, Cronet, iOS and macOS apps, Electron, React Native)
    r"\bDalvik/|\bCronet/|\bExoPlayer|\bCFNetwork/|\bDarwin/\d|\bElectron/\d",
    r"; wv\)|\bwebview\b(?i:)|\bFBAN/|\bFBAV/|\bInstagram \d|\bLine/\d|\bMicroMessenger/",
    r"\bAndroid[ /][\d.]+|\b(?:iPhone|iPad|iPod)(?:\d|;| OS| Simulator|\b)|\biOS[ /]\d",
    r"\b(?:iPadOS|watchOS|tvOS|visionOS|HarmonyOS|OpenHarmony|KaiOS|Tizen|Sailfish)\b",
    # feature phones, WAP and Java ME browsers, UC Browser's own formats
    r"(?i:\bMIDP-?\d|\bCLDC|\bUP\.Browser|\bUP\.Link|\bWAP|\bMAUI|\bMRE[/\\]|\bBREW)",
    r"(?i:\bNetFront|\bObigo|\bTeleca|\bDorado|\bOpera Mini|\bUCWEB|\bUCBrowser|\bDoCoMo/)",
    r"(?i:^KDDI-|^Vodafone/|^SoftBank/|^J-PHONE/|^(?:SAMSUNG|SEC|SIE|SAGEM|LG|MOT|PANTECH)-)",
    r"(?i:\bWILLCOM|\bDDIPOCKET|\bemobile/|^portalmmm/)",  # Japanese carriers, i-mode
    r"(?i:^(?:BlackBerry|Nokia|SonyEricsson|ALCATEL|HTC|Huawei|ZTE|Lenovo|Micromax))",
    r"\bdv\(|\bpr\(UCBrowser",  # UC Browser's internal "dv(...);pr(...)" format
    r"(?i:\bbrowser\b)",  # "nook browser/1.0", "Aplix_SANYO_browser/1.03"
    # smart TVs, set-top boxes, consoles, cars
    r"(?i:\bHbbTV|\bSmartTV|\bSMART-TV|\bWeb0S|\bwebOS|\bNetCast|\bRoku|\bCrKey|\bAFT[A-Z])",
    r"(?i:\bPlayStation|\bPS Vita\b|\bNintendo|\bXbox|\bBRAVIA|\bVIZIO|\bViziOS|\bTV Bro\b)",
    r"\bCE-HTML\b|\bANTGalio|\bOpera TV|\bSonos/|\bBrightSign/|\bAppleTV|\bQuest \d",
    r"^(?i:Apple-i(?:Phone|Pad|Pod)|iTunes/|Opera Mini)",
)
# Browser-like text (plain substrings) no browser sends, looked for after the tokens (which
# name the bot when they can) and before the browser evidence: they are a ``crawler``.
IMPOSTORS: Final = ("like Gecko; compatible",)  # "(KHTML, like Gecko; compatible; Name/1.0)"
COMMON_BROWSER_PREFIXES: Final = ("Mozilla/5.0 (", "Mozilla/4.0 (")
# The device-model slot of an Android platform comment: blanked before the bot tokens and
# the crawler list are searched, so "M bot 54", "Spider 8" or "Google TV" name a device.
DEVICE_SLOT: Final = r"(Android [\d.]+;(?: ?U;)?(?: ?[a-z]{2}[-_][A-Za-z]{2};)?) ?[^;)]+"
# What the shape score weighs, for strings with neither bot tokens nor browser evidence.
SHAPE_WEIGHTS: Final[tuple[tuple[str, int], ...]] = (
    (r"^Mozilla/5\.0", -2),  # claims a modern browser, yet names no engine or browser
    (r"^Mozilla/[\d.]+ \(compatible;?[^;)]*\)?$", -2),  # "Mozilla/5.0 (compatible; Name/1.0)"
    (r"^Mozilla/[\d.]+ [\w.-]+", -2),  # "Mozilla/5.0 Name/1.0": a product after Mozilla
    (r"^[\w .-]+/v?[\d.]+\S*(?: \([^)]*\))?$", -2),  # "Name/1.0 (details)"
    (r"^Mozilla/[\d.]+\S* \([^)]*\)$", 2),  # ... but for Mozilla the rules above decide
    (r"^Mozilla/[1-4]\.\d+\S* \(", 2),  # an old browser: Mozilla 1-4 and a platform comment
    # platforms, a version glued on or not ("AmigaOS4.0", "FreeBSD2.2.8")
    (r"(?i:\b(?:Linux|Windows|Win\d+|WinNT|X11|Mac|Macintosh|PPC|68K|Unix|BSD|Ubuntu)\b)", 1),
    (r"(?i:\b(?:CrOS|SunOS|IRIX|(?:Free|Net|Open)BSD)[\d.]*\b)", 1),
    (r"(?i:\b(?:BeOS|Haiku|RISC OS|AmigaOS|MorphOS|OS/2|Inferno)[\d.]*\b)", 1),
    (r"(?i:\b(?:x64|x86|amd64|arm64)\b)", 1),
    (r"(?i:\b(?:phone|mobile|tablet|tv|watch)\b)", 2),
    (r"\b\d{3,4}[x*]\d{3,4}\b", 2),  # a screen size
    (r"(?i:\b(?:ios|android|osx|macos|tvos|watchos|win32nt|wtos|palm os|meego)\b)", 1),
    # media and podcast apps name what they are
    (r"(?i:player|music|radio|podcast|\bpod|pod\b|cast\b|\bfm\b|\bvlc\b|\btv\b|video)", 3),
)
SHAPE_BOT_SCORE: Final = 0  # a score at or below this is a bot
# crawler-user-agents patterns that match ordinary browsers: an Android build id, Facebook's
# in-app browser, VS Code and Trae (Electron editors: the Electron exception clears them too,
# but left in the set they cost every verdict 4%, compare_bots.py), the Blackboard Learn
# app's web view (Blackboard's SafeAssign bot is caught by its shape); and bare words that
# name devices or apps as well as a bot: "HTC Butterfly", "ViewSonic", HTC's "speedy", a
# handset's "L008/1.0", WhatsApp's own app (its link fetcher is a token). Every bot these
# patterns stand for is still caught by the other layers (tests/test_bots.py checks their
# instances).
DEBATABLE_CRAWLER_PATTERNS: Final = frozenset(
    {r"AP3A\.240617\.008", r"MetaIAB Facebook", r"Code\/1\.", r"Trae\/", "Blackboard"}
    | {"Butterfly", "Sonic", "speedy", r"008\/", "WhatsApp"}
)
CRAWLER_TAG_FAMILIES: Final = {
    "ai-crawler": "ai",
    "social-preview": "preview",
    "monitoring": "monitor",
    "browser-automation": "automation",
    "http-library": "library",
}


# uap-core's two catch-alls of four-letter prefixes ("^(1207|3gso|...|your|...)"), from a
# list of WAP-era handsets: they match any string that starts with "blac" or "your".
GENERIC_PREFIXES: Final = ("^(1207|", "^(talk|")

SET_MAX_MEM: Final = 128 << 20
# Patterns per RE2 set of the browser evidence (uap-core's families and devices). One set of
# the 624 device patterns builds one DFA whose states multiply: a never-seen 500-character
# string cost 0.8 ms median and 9 ms at worst there; sets of 100 cost 0.3 ms and 1.7 ms, and
# ordinary user agents the same 5 us median and half the p99. Each set is one call (0.6 us),
# so the crawler list, which every browser's string meets, stays one set.
SET_CHUNK: Final = 100
# How half of uap-core's device patterns end: they need one of its two literals to match.
BUILD_SUFFIX: Final = r"(?: Build|\) AppleWebKit)"
# A uap-core pattern listing many client families is a list of bots when more than this
# share of its families match known bots (bot lists: 17% to 37%; browser and player
# lists: 5% to 8%, and 12% to 14% for the two short ones of seven and eight families).
MAX_BOT_SHARE_OF_LIST: Final = 0.10

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


def _options(*, case_sensitive: bool, max_mem: int = 64 << 20) -> Any:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = max_mem
    return options


def _compile_tokens() -> Any:
    groups = (f"(?P<{family}>{'|'.join(patterns)})" for family, patterns in TOKENS.items())
    return re2.compile("|".join(groups), _options(case_sensitive=False))


def _compile(pattern: str, *, case_sensitive: bool = True) -> Any:
    return re2.compile(pattern, _options(case_sensitive=case_sensitive))


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
    """The crawler-user-agents patterns as one RE2 set: the family of the first that matches."""

    def __init__(self, patterns: list[tuple[str, str]]) -> None:
        # one set: every browser's string is searched here, and each set is a call
        self.set = _PatternSet([pattern for pattern, _ in patterns], chunk=len(patterns))
        self.families = [patterns[number][1] for number in self.set.kept]

    def family(self, ua: str) -> str | None:
        first = self.set.first(ua)
        return None if first is None else self.families[first]


def load_device_catalogue() -> tuple[list[str], list[str]]:
    """uap-core's patterns from the installed ``ua-parser-builtins`` package: its client
    families (browsers, apps, media players, libraries and bots alike) and its device
    catalogue (brands, models, TVs, consoles, feature phones) without the ``Spider``
    patterns, which call Amazon's Silk browser and Sogou's a bot (the bot layers above cover
    what they add); empty when the package is missing."""
    try:
        from ua_parser.utils import fa_simplifier  # noqa: PLC0415  # only when built
        from ua_parser_builtins.matchers import MATCHERS  # noqa: PLC0415
    except ImportError:
        return [], []
    families = [fa_simplifier(matcher.regex) for matcher in MATCHERS[0]]
    devices = []
    for matcher in MATCHERS[2]:
        if matcher.family == "Spider" or matcher.regex.startswith(GENERIC_PREFIXES):
            continue
        pattern = fa_simplifier(matcher.regex)
        devices.append(f"(?i:{pattern})" if matcher.flags & re.IGNORECASE else pattern)
    return families, devices


def _structure(pattern: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """Each character of ``pattern`` from ``start`` that is neither escaped nor in a
    character class, with its group depth: a ``(`` at the depth it opens from, a ``)`` at
    the depth it closes to."""
    depth, index, in_class = 0, start, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        else:
            depth -= char == ")"
            yield index, char, depth
            depth += char == "("
        index += 1


def _group_end(pattern: str, start: int) -> int:
    """The index of the ``)`` closing the group opened at ``start``, or -1 (escapes and
    character classes skipped)."""
    for index, char, depth in _structure(pattern, start):
        if char == ")" and depth == 0:
            return index
    return -1


def _top_level_splits(body: str) -> list[str]:
    """``body`` cut at its own ``|`` (not those of nested groups or classes)."""
    parts, begun = [], 0
    for index, char, depth in _structure(body):
        if char == "|" and depth == 0:
            parts.append(body[begun:index])
            begun = index + 1
    return [*parts, body[begun:]]


def _first_group_families(pattern: str) -> tuple[str, list[str], str] | None:
    """``pattern`` as (what precedes the first group's alternatives, the alternatives, what
    follows them), or None when its first group has no ``|`` of its own."""
    start = pattern.find("(")
    while start > 0 and pattern[start - 1] == "\\":
        start = pattern.find("(", start + 1)
    if start < 0:
        return None
    inner = start + (3 if pattern.startswith("(?:", start) else 1)
    if pattern.startswith("?", inner):  # a named group, a look-around or a flag group
        return None
    end = _group_end(pattern, start)
    if end < 0:
        return None
    parts = _top_level_splits(pattern[inner:end])
    return (pattern[:inner], parts, pattern[end:]) if len(parts) > 1 else None


def family_alternatives(pattern: str) -> list[str]:
    """``pattern`` as one pattern per alternative of its first group: uap-core lists many
    families in one regex (``(bingbot|Bolt|...|Sleipnir|...)/(\\d+)``), and a known bot
    that matches one of them (bingbot) is no evidence against the others. The
    alternatives together match what ``pattern`` matches."""
    split = _first_group_families(pattern)
    if split is None:
        return [pattern]
    head, families, tail = split
    return [f"{head}{family}{tail}" for family in families]


def people_patterns(patterns: list[str], bots: list[str]) -> list[str]:
    """The patterns that match none of ``bots``: a client family that a known bot also
    matches is no evidence of a person. A many-family pattern (``family_alternatives``)
    is judged family by family when at most ``MAX_BOT_SHARE_OF_LIST`` of its families
    match a known bot (a list of browsers or players that names a bot or two: it is kept
    without them, still one pattern), and as a whole otherwise (a list of bots and
    libraries, whose other members are bots too)."""
    kept = []
    for pattern in patterns:
        parts = family_alternatives(pattern)
        known = _PatternSet(parts)
        bad = {known.patterns[index] for ua in bots for index in known.matching(ua)}
        if not bad:
            kept.append(pattern)
        elif len(parts) > 1 and len(bad) <= MAX_BOT_SHARE_OF_LIST * len(parts):
            head, families, tail = _first_group_families(pattern) or ("", [], "")
            good = [name for name, part in zip(families, parts, strict=True) if part not in bad]
            kept.append(f"{head}{'|'.join(good)}{tail}")
    return kept


def load_crawler_instances() -> list[str]:
    """The real crawler user agents the crawler-user-agents package lists (``instances``)."""
    try:
        data = resources.files("crawleruseragents").joinpath("crawler-user-agents.json")
        entries = json.loads(data.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError, ValueError):
        return []
    return [ua for entry in entries for ua in entry.get("instances") or [] if isinstance(ua, str)]


def _compiled_sets(patterns: list[str], chunk: int) -> tuple[list[int], list[tuple[int, Any]]]:
    """The indexes of the patterns RE2 takes (any other is skipped, the rest kept), and
    those patterns as RE2 sets of at most ``chunk`` each, with the position (among the
    kept) of each set's first pattern."""
    kept: list[int] = []
    sets: list[tuple[int, Any]] = []
    for number, pattern in enumerate(patterns):
        if not sets or len(kept) - sets[-1][0] == chunk:
            # room for RE2's lazily built DFA, or it falls back to the NFA
            options = _options(case_sensitive=True, max_mem=SET_MAX_MEM)
            sets.append((len(kept), re2.Set.SearchSet(options)))
        try:
            sets[-1][1].Add(pattern)
        except Exception:  # a pattern RE2 cannot take: skip it, keep the rest
            if len(kept) == sets[-1][0]:
                sets.pop()
            continue
        kept.append(number)
    for _, compiled in sets:
        compiled.Compile()
    return kept, sets


class _PatternSet:
    """Patterns as RE2 sets: does any of them match, and which?"""

    def __init__(self, patterns: list[str], chunk: int = SET_CHUNK) -> None:
        self.kept, self.sets = _compiled_sets(patterns, chunk)
        self.patterns = [patterns[number] for number in self.kept]

    def matches(self, ua: str) -> bool:
        return any(compiled.Match(ua) for _, compiled in self.sets)

    def first(self, ua: str) -> int | None:
        """The index of the first pattern ``ua`` matches, or None."""
        for start, compiled in self.sets:
            found = compiled.Match(ua)
            if found:
                index: int = start + min(found)
                return index
        return None

    def matching(self, ua: str) -> list[int]:
        """The indexes of the patterns ``ua`` matches."""
        return [
            start + index for start, compiled in self.sets for index in compiled.Match(ua) or ()
        ]


class _DeviceCatalogue:
    """uap-core's device patterns, half of which can only match where a string holds
    ``BUILD_SUFFIX``'s " Build" or ") AppleWebKit": those are searched only then (two
    substring tests), the rest always. The answer is the one set's; never-seen strings
    (an attacker's) cost the half they cannot match no DFA states."""

    def __init__(self, patterns: list[str]) -> None:
        plain = [p for p in patterns if _needs_build_suffix(p) and "(?i" not in p]
        folded = [
            p
            for p in patterns
            if p.startswith("(?i:")
            and _group_end(p, 0) == len(p) - 1
            and _needs_build_suffix(p[4:-1])
            and "(?i" not in p[4:-1]
        ]
        gated = set(plain) | set(folded)
        self.plain, self.folded = _PatternSet(plain), _PatternSet(folded)
        self.rest = _PatternSet([p for p in patterns if p not in gated])
        self.patterns = self.plain.patterns + self.folded.patterns + self.rest.patterns

    def matches(self, ua: str) -> bool:
        if self.rest.matches(ua):
            return True
        if (" Build" in ua or ") AppleWebKit" in ua) and self.plain.matches(ua):
            return True
        lowered = ua.lower()
        return (" build" in lowered or ") applewebkit" in lowered) and self.folded.matches(ua)


def _needs_build_suffix(pattern: str) -> bool:
    """Whether every match of ``pattern`` ends with ``BUILD_SUFFIX``: it ends so, with no
    ``|`` of its own that would make the suffix one branch's only."""
    return pattern.endswith(BUILD_SUFFIX) and len(_top_level_splits(pattern)) == 1


@dataclass(frozen=True)
class Layers:
    """The compiled layers of a detector: immutable, so detectors built alike share them."""

    tokens: Any
    exceptions: Any
    browsers: Any
    device_slot: Any
    shape: _PatternSet
    shape_weights: tuple[int, ...]
    crawlers: _CrawlerList
    families: _PatternSet
    devices: _DeviceCatalogue


def build_layers(
    *,
    crawler_patterns: list[tuple[str, str]],
    known_bots: list[str],
    families: list[str],
    devices: list[str],
) -> Layers:
    """The layers from their data: ``crawler_patterns`` as ``load_crawler_patterns`` gives
    them, ``known_bots`` (real bot user agents: a client family any of them matches is no
    evidence of a person), uap-core's ``families`` and ``devices`` patterns."""
    return Layers(
        tokens=_compile_tokens(),
        exceptions=_compile("|".join(EXCEPTIONS), case_sensitive=False),
        browsers=_compile("|".join(BROWSER_EVIDENCE)),
        # Python's re, anchored where "Android " starts: no nested repetition, so linear, and
        # it reads str as it is (RE2's wrapper re-encodes the whole string for each match)
        device_slot=re.compile(DEVICE_SLOT),
        shape=_PatternSet([pattern for pattern, _ in SHAPE_WEIGHTS]),
        shape_weights=tuple(weight for _, weight in SHAPE_WEIGHTS),
        crawlers=_CrawlerList(crawler_patterns),
        families=_PatternSet(people_patterns(families, known_bots)),
        devices=_DeviceCatalogue(devices),
    )


@functools.cache
def default_layers(*, use_crawler_list: bool, use_device_catalogue: bool) -> Layers:
    """The layers from the installed packages, built once per process and shared."""
    families, devices = load_device_catalogue() if use_device_catalogue else ([], [])
    return build_layers(
        crawler_patterns=load_crawler_patterns() if use_crawler_list else [],
        known_bots=load_crawler_instances() if use_crawler_list else [],
        families=families,
        devices=devices,
    )


class BotDetector:
    """Tells bots from people by the user-agent string; see the module docstring.

    ``is_bot``, ``classify`` and ``verdict`` never raise, whatever ``ua`` is (see the module
    docstring). ``cache_size`` is the most verdicts kept, at least ``MIN_CACHE_SIZE``;
    ``use_crawler_list=False`` skips the crawler-user-agents layer (and its instances as
    known bots), ``use_device_catalogue=False`` uap-core's families and devices. A bad
    option is a ``ConfigError`` naming it. The compiled layers are built once per process
    (about a second) and shared by every detector with the same options.
    """

    __slots__ = ("_lock", "cache_size", "layers", "verdicts")

    def __init__(
        self,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        use_crawler_list: bool = True,
        use_device_catalogue: bool = True,
    ) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int):
            raise ConfigError(f"cache_size {cache_size!r} is not an int")
        if cache_size < MIN_CACHE_SIZE:
            raise ConfigError(f"cache_size {cache_size!r} is below the minimum, {MIN_CACHE_SIZE}")
        if not isinstance(use_crawler_list, bool):
            raise ConfigError(f"use_crawler_list {use_crawler_list!r} is not a bool")
        if not isinstance(use_device_catalogue, bool):
            raise ConfigError(f"use_device_catalogue {use_device_catalogue!r} is not a bool")
        self.cache_size = cache_size
        # ua -> family, "" for a person: the hot path reads this dict directly.
        self.verdicts: dict[object, str] = {}
        self._lock = threading.Lock()
        self.layers = default_layers(
            use_crawler_list=use_crawler_list, use_device_catalogue=use_device_catalogue
        )

    def is_bot(self, ua: object) -> bool:
        """Whether ``ua`` belongs to a bot; cached."""
        try:  # the cache for exact text only: a str subclass's __hash__ and __eq__ could
            # lie their way to another string's verdict
            return (self.verdicts[ua] if type(ua) is str else self.verdict(ua)) != ""
        except Exception:  # a miss
            return self.verdict(ua) != ""

    def classify(self, ua: object) -> str | None:
        """The bot family of ``ua`` (see ``FAMILIES``), or None for a person; cached."""
        try:
            family = self.verdicts[ua] if type(ua) is str else self.verdict(ua)
        except Exception:  # a miss
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
        layers = self.layers
        searched = text
        start = text.find("Android ")
        slot = layers.device_slot.match(text, start) if start >= 0 else None  # just the slot
        if slot is not None:  # cut the device's name out, keep what precedes it
            searched = text[: slot.end(1)] + text[slot.end() :]
        family = self._bot_evidence(searched)
        if family is not None and layers.exceptions.search(searched):  # rare: look again
            family = self._bot_evidence(layers.exceptions.sub(" ", searched))
        if family is not None:
            return family
        if any(impostor in text for impostor in IMPOSTORS):
            return "crawler"
        if text.startswith(COMMON_BROWSER_PREFIXES) and (
            "AppleWebKit/" in text or "Gecko/" in text or "Trident/" in text
        ):
            return None  # BROWSER_EVIDENCE's usual case (its engines), cheaply
        if layers.browsers.search(text) or layers.devices.matches(text):
            return None
        if layers.families.matches(text):
            return None
        return self._shape_verdict(text)

    def _bot_evidence(self, text: str) -> str | None:
        """The family our tokens or the crawler list give ``text``, or None."""
        match = self.layers.tokens.search(text)
        if match is not None:
            return str(match.lastgroup)
        return self.layers.crawlers.family(text)

    def _shape_verdict(self, text: str) -> str | None:
        """The shape score's verdict on a string with no bot token and no browser evidence:
        a bot at or below ``SHAPE_BOT_SCORE`` (``crawler`` for a "Mozilla/" string, which
        claims to be a browser, else ``library``), above it a person."""
        layers = self.layers
        score = sum(layers.shape_weights[index] for index in layers.shape.matching(text))
        if score > SHAPE_BOT_SCORE:
            return None
        return "crawler" if text.startswith("Mozilla/") else "library"
