"""Bot detection: caught and flagged rates per source, and the cost of a verdict.

Uses the labelled user agents in ../shared/data/ua (see its SOURCES.md) when present, and
says so and skips the accuracy table when it is not. Sources are kept apart so the numbers
show how the rules generalise: crawler-user-agents' own instances are the data its pattern
layer was written from, so the JayBizzle crawler set is the held-out one for that layer.
user-agents (what the core started from) is measured in the same run.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections import Counter

import user_agents

from _common import SHARED_DATA, print_table
from edgefilter import BotDetector

UA_DIR = SHARED_DATA / "ua"
SEED = 3


def load_sources() -> dict[str, list[str]] | None:
    """Bots and browsers split by source, or None without ../shared/data/ua."""
    if not (UA_DIR / "bots.txt").exists():
        return None
    bots = (UA_DIR / "bots.txt").read_text(encoding="utf-8").splitlines()
    browsers = (UA_DIR / "browsers.txt").read_text(encoding="utf-8").splitlines()
    raw = json.loads((UA_DIR / "raw" / "crawler-user-agents.json").read_text(encoding="utf-8"))
    instances = {instance for entry in raw for instance in entry.get("instances", [])}
    fake_lines = (UA_DIR / "raw" / "fake-useragent-browsers.jsonl").read_text(encoding="utf-8")
    fake = {json.loads(line)["useragent"] for line in fake_lines.splitlines() if line}
    return {
        "bots: crawler-user-agents instances": [ua for ua in bots if ua in instances],
        "bots: JayBizzle crawlers (held out)": [ua for ua in bots if ua not in instances],
        "browsers: JayBizzle devices sample": [ua for ua in browsers if ua not in fake],
        "browsers: fake-useragent (2025)": [ua for ua in browsers if ua in fake],
    }


def uncached_us(detect: object, uas: list[str]) -> float:
    """Median microseconds of one uncached verdict."""
    samples = []
    for ua in uas:
        start = time.perf_counter_ns()
        detect(ua)  # type: ignore[operator]
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


def cached_ns(detector: BotDetector, uas: list[str]) -> float:
    """Nanoseconds per cached is_bot, best of five passes."""
    for ua in uas:
        detector.is_bot(ua)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for ua in uas:
            detector.is_bot(ua)
        best = min(best, (time.perf_counter_ns() - start) / len(uas))
    return best


def main() -> int:
    """Print the tables; exit 0."""
    detector = BotDetector()
    sources = load_sources()
    if sources is None:
        print(f"{UA_DIR} is absent: accuracy table skipped (costs below use built-in samples)")
        sample = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{major}.0.0.0 Safari/537.36"
            for major in range(60, 140)
        ]
    else:
        rows = []
        for name, uas in sources.items():
            ours = [detector.detect(ua) for ua in uas]
            theirs = sum(1 for ua in uas if user_agents.parse(ua).is_bot)
            rate = sum(1 for family in ours if family) / len(uas)
            families = Counter(family for family in ours if family).most_common(3)
            rows.append(
                [name, f"{len(uas):,}", f"{rate:.2%}", f"{theirs / len(uas):.2%}", str(families)]
            )
        print("Share classified as bots (caught for bot sources, flagged for browser sources):\n")
        print_table(["source", "UAs", "edgefilter", "user-agents", "top families"], rows)
        sample = random.Random(SEED).sample([ua for uas in sources.values() for ua in uas], 2000)
    ours_us = uncached_us(detector.detect, sample)
    theirs_us = uncached_us(lambda ua: user_agents.parse(ua).is_bot, sample[:300])
    cached = cached_ns(BotDetector(), sample)
    print(f"\nCost per verdict ({len(sample)} sampled UAs, medians):\n")
    print_table(
        ["verdict", "edgefilter", "user-agents (uncached)", "ratio"],
        [
            ["uncached", f"{ours_us:.1f} us", f"{theirs_us:.1f} us", f"{theirs_us / ours_us:.0f}x"],
            ["cached (is_bot)", f"{cached:.0f} ns", "-", "-"],
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
