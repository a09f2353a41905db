"""Uncached bot verdicts of another tree's detector beside this tree's, in one process.

    PYTHONPATH=src .venv/bin/python benchmarks/compare_bots.py OLD/src [rounds]

OLD's ``_bots.py`` (with the ``_errors.py`` it imports) is copied into a temporary package
and imported beside this tree's ``edgefilter``; both detectors answer the same 4,000 labelled
user agents (a seeded sample of the sources bench_bots.py reads), interleaved round by
round, uncached (``detect``). It prints the median per-verdict time of each and new / old,
and how many verdicts differ.
"""

from __future__ import annotations

import importlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _uacorpora import development_sources, evaluation_sources
from edgefilter import BotDetector

SAMPLE = 4000
SEED = 3
DEFAULT_ROUNDS = 9


def old_detector(old_src: Path, folder: Path) -> object:
    """OLD's BotDetector, imported as ``edgefilter_old`` from a copy in ``folder``."""
    package = folder / "edgefilter_old"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name in ("_bots.py", "_errors.py"):
        shutil.copy(old_src / "edgefilter" / name, package / name)
    sys.path.insert(0, str(folder))
    return importlib.import_module("edgefilter_old._bots").BotDetector()


def per_verdict_us(detect: object, uas: list[str]) -> float:
    """Mean microseconds of one uncached verdict over ``uas``."""
    start = time.perf_counter_ns()
    for ua in uas:
        detect(ua)  # type: ignore[operator]
    return (time.perf_counter_ns() - start) / len(uas) / 1000


def main() -> int:
    """Print both trees' costs and new / old; exit 0 (2 when no source could be had)."""
    old_src, rounds = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_ROUNDS
    sources = (development_sources() or []) + evaluation_sources()[0]
    pool = [ua for source in sources for ua in source.bots + source.people]
    if not pool:
        print("no labelled source could be had")
        return 2
    sample = random.Random(SEED).sample(pool, min(SAMPLE, len(pool)))
    with tempfile.TemporaryDirectory() as folder:
        old, new = old_detector(old_src, Path(folder)), BotDetector()
        differ = sum(1 for ua in sample if (old.detect(ua) is None) != (new.detect(ua) is None))  # type: ignore[attr-defined]
        times: dict[str, list[float]] = {"old": [], "new": []}
        for round_ in range(rounds):
            random.Random(round_).shuffle(sample)
            times["old"].append(per_verdict_us(old.detect, sample))  # type: ignore[attr-defined]
            times["new"].append(per_verdict_us(new.detect, sample))
    old_us, new_us = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"{len(sample)} labelled user agents, {rounds} interleaved rounds, uncached verdicts:")
    print(f"  old {old_us:.2f} us, new {new_us:.2f} us per verdict")
    print(f"  new / old: {new_us / old_us:.2f}x")
    print(f"  bot-or-person verdicts that differ: {differ} of {len(sample)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
