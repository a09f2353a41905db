"""The cached bot detector."""

from __future__ import annotations

import pytest

from edgefilter import BotDetector

from .conftest import CHROME, GOOGLEBOT


class CountingDetector(BotDetector):
    """Counts uncached verdicts."""

    def __init__(self, *, cache_size: int = 100) -> None:
        super().__init__(cache_size=cache_size)
        self.calls = 0

    def detect(self, ua: str) -> bool:
        self.calls += 1
        return super().detect(ua)


@pytest.mark.parametrize(
    ("ua", "is_bot"),
    [
        (CHROME, False),
        (CHROME.encode("latin-1"), False),
        (GOOGLEBOT, True),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True),
        # empty, blank or missing: a bot
        ("", True),
        ("   ", True),
        (None, True),
        (42, True),
    ],
)
def test_is_bot(ua: object, is_bot: bool) -> None:
    """Known browsers are people, known crawlers and missing user agents are bots."""
    assert BotDetector().is_bot(ua) is is_bot


def test_verdicts_are_cached() -> None:
    """The second verdict for a string comes from the cache."""
    detector = CountingDetector()
    assert [detector.is_bot(CHROME) for _ in range(3)] == [False] * 3
    assert detector.calls == 1


def test_cache_is_bounded() -> None:
    """Past its size the cache evicts, so a stream of new strings cannot grow it forever."""
    detector = CountingDetector(cache_size=2)
    for ua in ("a", "b", "c", "a"):
        detector.is_bot(f"Mozilla/5.0 {ua}")
    assert detector.calls == 4


def test_huge_user_agent_is_cut_before_detection() -> None:
    """Only the first 512 characters are examined and cached."""
    detector = CountingDetector()
    huge = GOOGLEBOT + "x" * 1_000_000
    assert detector.is_bot(huge) is True
    assert detector.is_bot(GOOGLEBOT + "x" * (512 - len(GOOGLEBOT))) is True
    assert detector.calls == 1
