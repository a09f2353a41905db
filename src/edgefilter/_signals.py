"""Two request layers of bot detection: header heuristics and the tracker's client signals.

``HeaderHeuristics`` scores a hit's request headers as Rybbit v2.7 does (a score at or above
``threshold``, 5, is a bot), with the rules measured against the exact headers Chromium and
Firefox send for the tracker's cross-origin ``fetch`` POST (``data/requests/``, re-captured
by ``python -m tests.capture_requests``). Each rule has a name (``HEADER_RULES``) and a
weight (``DEFAULT_HEADER_WEIGHTS``, Rybbit's where it has the rule):

- ``no_accept_language`` (3): no ``Accept-Language``, an empty one or ``*`` (Node's
  ``fetch`` sends ``*``; no browser does);
- ``no_accept`` (2): no ``Accept``;
- ``no_gzip`` (2): no ``Accept-Encoding``, or one without ``gzip``;
- ``chrome_without_sec_fetch`` (2): a Chrome >= 76 user agent without ``Sec-Fetch-Site``
  (Chromium sends it to every potentially trustworthy URL: HTTPS, loopback);
- ``partial_sec_fetch`` (2): some ``Sec-Fetch-*`` headers but not ``Site``, ``Mode`` and
  ``Dest`` together, as every browser sends them (Node's ``fetch`` sends ``Mode`` alone);
- ``navigate_on_fetch`` (2): ``Sec-Fetch-Mode: navigate`` (or ``Sec-Fetch-Dest:
  document``): a page load, not the tracker's ``fetch`` or beacon;
- ``stale_chrome_modern_os`` (2): Chrome < 80 claiming Windows 10 or later, or macOS
  10.15 or later;
- ``headless`` (3): ``HeadlessChrome`` in the user agent or in ``Sec-CH-UA``;
- ``client_hints_contradict`` (3): ``Sec-CH-UA`` headers that contradict the user agent (a
  platform the user agent does not name, ``?1`` mobile on a desktop user agent, a Chromium
  version other than the user agent's Chrome version, or client hints with a user agent
  that is not Chromium's); Rybbit has no such rule. Alone it never reaches the threshold:
  a user-agent switcher in a real Chrome sends exactly that.

``ClientSignals`` reads the payload's ``_bs`` (Rybbit's tracker: a weighted score 0 to 10;
at or above ``score_threshold``, 3, a bot) and ``_bsm`` (a bitmask 0 to 1023 of what its
script saw). The client can lie, so they only ever add evidence: a low score never clears a
hit that another layer flags, and ``_bsm`` flags a hit alone only for the bits an operator
names in ``mask`` (none by default). A value of the wrong type or out of range is ignored.

Nothing here raises on a hit: headers and payloads of any shape map to findings or none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ._errors import ConfigError

HEADER_RULES: Final = (
    "no_accept_language",
    "no_accept",
    "no_gzip",
    "chrome_without_sec_fetch",
    "partial_sec_fetch",
    "navigate_on_fetch",
    "stale_chrome_modern_os",
    "headless",
    "client_hints_contradict",
)
DEFAULT_HEADER_WEIGHTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "no_accept_language": 3,
        "no_accept": 2,
        "no_gzip": 2,
        "chrome_without_sec_fetch": 2,
        "partial_sec_fetch": 2,
        "navigate_on_fetch": 2,
        "stale_chrome_modern_os": 2,
        "headless": 3,
        "client_hints_contradict": 3,
    }
)
DEFAULT_HEADER_THRESHOLD: Final = 5
SEC_FETCH_HEADERS: Final = ("sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")
FIRST_SEC_FETCH_CHROME: Final = 76  # Chrome sends Sec-Fetch-* from version 76
FIRST_FROZEN_OS_CHROME: Final = 80  # Rybbit: an older Chrome on a newer OS is stale
MAX_UA_SCAN: Final = 1024  # only the user agent's first characters are searched

_CHROME: Final = re.compile(r"(?:Headless)?Chrome/(\d{1,4})\.")
_MODERN_OS: Final = re.compile(r"Windows NT (?:1\d|[2-9]\d)\.|Mac OS X 1(?:0_1[5-9]|[1-9]_)")
_BRAND_VERSION: Final = re.compile(r'"([^"]*)"\s*;\s*v\s*=\s*"(\d{1,4})')
# sec-ch-ua-platform -> the user-agent tokens any of which that platform's browsers send.
_PLATFORM_TOKENS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "windows": ("Windows",),
        "macos": ("Macintosh", "Mac OS X"),
        "linux": ("Linux", "X11"),
        "android": ("Android", "Linux", "X11"),  # "request desktop site" sends a Linux UA
        "chrome os": ("CrOS",),
        "chromium os": ("CrOS",),
    }
)

# Rybbit's client signals: _bs is a score 0..10, _bsm a bitmask 0..1023.
DEFAULT_CLIENT_SCORE_THRESHOLD: Final = 3
MAX_CLIENT_SCORE: Final = 10
MAX_CLIENT_MASK: Final = 1023


# The headers the layer reads, by their ASGI name, and their slot in a request's key.
READ_HEADERS: Final = (
    "user-agent",
    "accept",
    "accept-language",
    "accept-encoding",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-ch-ua",
    "sec-ch-ua-platform",
    "sec-ch-ua-mobile",
)
_SLOTS: Final = {name.encode("latin-1"): slot for slot, name in enumerate(READ_HEADERS)}
MAX_CACHED_VERDICTS: Final = 10_000  # past it the verdict cache starts over
RawHeaders = Sequence[tuple[bytes, bytes]]


def request_key(raw: RawHeaders) -> tuple[bytes | None, ...]:
    """The values of the headers the layer reads (``READ_HEADERS``), in one pass over ASGI
    ``scope["headers"]`` (lower-case names), undecoded; a repeated one joined by ``", "``."""
    values: list[bytes | None] = [None] * len(READ_HEADERS)
    for name, value in raw:
        slot = _SLOTS.get(name)
        if slot is not None:
            found = values[slot]
            values[slot] = value if found is None else found + b", " + value
    return tuple(values)


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI ``scope["headers"]`` as one dict by lower-case name (a repeated header's values
    joined with ``", "``), decoded as Latin-1; the shape ``HeaderHeuristics`` reads."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _unquoted(value: str) -> str:
    return value.strip().strip('"').strip().lower()


def _hints_contradict(headers: Mapping[str, str], ua: str, chrome: int | None) -> bool:
    """Whether the ``Sec-CH-UA`` headers contradict the user agent."""
    brands = headers.get("sec-ch-ua")
    platform = headers.get("sec-ch-ua-platform")
    mobile = headers.get("sec-ch-ua-mobile")
    if brands is None and platform is None and mobile is None:
        return False
    if chrome is None:  # client hints from an engine whose user agent is not Chromium's
        return True
    if platform is not None:
        tokens = _PLATFORM_TOKENS.get(_unquoted(platform))
        if tokens is not None and not any(token in ua for token in tokens):
            return True
    if mobile is not None and mobile.strip() == "?1" and "Mobile" not in ua and "Android" not in ua:
        return True
    if brands is not None:
        for brand, version in _BRAND_VERSION.findall(brands):
            if brand == "Chromium" and int(version) != chrome:
                return True
    return False


@dataclass(frozen=True, slots=True)
class HeaderHeuristics:
    """The header layer: ``score`` of a hit's headers, a bot at or over ``threshold``.

    ``weights`` maps rule names (``HEADER_RULES``) to points; a rule it leaves out scores 0.
    """

    threshold: int = DEFAULT_HEADER_THRESHOLD
    weights: Mapping[str, int] = field(default_factory=lambda: DEFAULT_HEADER_WEIGHTS)
    _verdicts: dict[tuple[bytes | None, ...], bool] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise ConfigError(f"header threshold {self.threshold!r} is not an int")
        if self.threshold <= 0:
            raise ConfigError(f"header threshold {self.threshold!r} must be positive")
        unknown = sorted(set(self.weights) - set(HEADER_RULES))
        if unknown:
            raise ConfigError(
                f"header weights name rules {unknown!r} that are not {', '.join(HEADER_RULES)}"
            )
        for name, weight in self.weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise ConfigError(f"header weight {weight!r} of {name!r} is not an int >= 0")
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))

    def findings(self, headers: Mapping[str, str], ua: object) -> tuple[str, ...]:
        """The rules a hit's headers (lower-case names, as ``header_map`` gives) break."""
        agent = ua[:MAX_UA_SCAN] if isinstance(ua, str) else ""
        found: list[str] = []
        language = headers.get("accept-language")
        if language is None or language.strip() in ("", "*"):
            found.append("no_accept_language")
        if headers.get("accept") is None:
            found.append("no_accept")
        if "gzip" not in headers.get("accept-encoding", "").lower():
            found.append("no_gzip")
        match = _CHROME.search(agent)
        chrome = int(match.group(1)) if match else None
        fetch_headers = sum(name in headers for name in SEC_FETCH_HEADERS)
        if (
            chrome is not None
            and chrome >= FIRST_SEC_FETCH_CHROME
            and "sec-fetch-site" not in headers
        ):
            found.append("chrome_without_sec_fetch")
        if 0 < fetch_headers < len(SEC_FETCH_HEADERS):
            found.append("partial_sec_fetch")
        mode = headers.get("sec-fetch-mode", "").strip().lower()
        if mode == "navigate" or headers.get("sec-fetch-dest", "").strip().lower() == "document":
            found.append("navigate_on_fetch")
        if chrome is not None and chrome < FIRST_FROZEN_OS_CHROME and _MODERN_OS.search(agent):
            found.append("stale_chrome_modern_os")
        if "HeadlessChrome" in agent or "HeadlessChrome" in headers.get("sec-ch-ua", ""):
            found.append("headless")
        if _hints_contradict(headers, agent, chrome):
            found.append("client_hints_contradict")
        return tuple(found)

    def score(self, headers: Mapping[str, str], ua: object) -> int:
        """The points of the rules the headers break."""
        weights = self.weights
        return sum(weights.get(rule, 0) for rule in self.findings(headers, ua))

    def is_bot(self, headers: Mapping[str, str], ua: object) -> bool:
        """Whether the headers score at or over the threshold. Never raises."""
        try:
            return self.score(headers, ua) >= self.threshold
        except Exception:  # a hostile mapping: no evidence
            return False

    def is_bot_request(self, raw: RawHeaders) -> bool:
        """``is_bot`` over ASGI ``scope["headers"]`` (its ``User-Agent`` the user agent),
        cached by the values of the headers it reads: a browser sends the same ones on
        every hit. Never raises."""
        try:
            key = request_key(raw)
            verdict = self._verdicts.get(key)
            if verdict is None:
                headers = {
                    name: value.decode("latin-1")
                    for name, value in zip(READ_HEADERS, key, strict=True)
                    if value is not None
                }
                verdict = self.is_bot(headers, headers.get("user-agent", ""))
                if len(self._verdicts) >= MAX_CACHED_VERDICTS:
                    self._verdicts.clear()
                self._verdicts[key] = verdict
            return verdict
        except Exception:  # headers that are not ASGI's pairs of bytes: no evidence
            return False


def _number(value: Any, high: int) -> int | None:
    """An integral JSON number between 0 and ``high``, or None (bools and others too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= high or value != int(value):
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class ClientSignals:
    """The client-signal layer: Rybbit's tracker's ``_bs`` score and ``_bsm`` bitmask."""

    score_threshold: int = DEFAULT_CLIENT_SCORE_THRESHOLD
    mask: int = 0

    def __post_init__(self) -> None:
        threshold = self.score_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int):
            raise ConfigError(f"client score threshold {threshold!r} is not an int")
        if not 1 <= threshold <= MAX_CLIENT_SCORE:
            raise ConfigError(
                f"client score threshold {threshold!r} is not between 1 and {MAX_CLIENT_SCORE}"
            )
        if isinstance(self.mask, bool) or not isinstance(self.mask, int):
            raise ConfigError(f"client signal mask {self.mask!r} is not an int")
        if not 0 <= self.mask <= MAX_CLIENT_MASK:
            raise ConfigError(f"client signal mask {self.mask!r} is not between 0 and 1023")

    def is_bot(self, payload: object) -> bool:
        """Whether the payload's signals say bot: ``_bs`` at or over the threshold, or a
        ``_bsm`` bit of ``mask``. Anything else (no signals, wrong types) is no evidence."""
        if not isinstance(payload, dict):
            return False
        score = _number(payload.get("_bs"), MAX_CLIENT_SCORE)
        if score is not None and score >= self.score_threshold:
            return True
        if self.mask:
            bits = _number(payload.get("_bsm"), MAX_CLIENT_MASK)
            return bits is not None and bits & self.mask != 0
        return False
