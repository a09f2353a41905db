"""should_track per call on two source trees, interleaved in one run (a before/after check).

    .venv/bin/python benchmarks/compare_trees.py OLD/src NEW/src [rounds]

Each round runs one fresh interpreter per tree (old, then new) with that tree first on the
path, and each prints its best time per call for two sites of 1,000 excluded /24s: "ip only"
and "ip + 3 countries + bots" (layered, warm bot verdict). The table prints the medians and
new / old.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from _common import CITY_DB, print_table

PROBE = f"""
import random, time
from edgefilter import EdgeFilter, SiteConfig
rng = random.Random(7)
def net(): return f"{{rng.randrange(1, 223)}}.{{rng.randrange(256)}}.{{rng.randrange(256)}}"
entries = tuple(net() + ".0/24" for _ in range(1000))
sites = {{"1": SiteConfig(site_id=1, block_bots=False, excluded_ips=entries),
          "2": SiteConfig(site_id=2, block_bots=True, excluded_ips=entries,
                          excluded_countries=("CN", "RU", "KP"))}}
edge = EdgeFilter(sites, geoip={str(CITY_DB)!r})
edge.geoip.wait_compiled(30)
for site in sites: edge.prepare(edge.source.rules_for(site))
ips = [net() + f".{{rng.randrange(256)}}" for _ in range(2000)]
ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
should = edge.should_track
for site in sites:
    for ip in ips: should(site, ip, ua)
    best = float("inf")
    for _ in range(15):
        start = time.perf_counter_ns()
        for ip in ips: should(site, ip, ua)
        best = min(best, (time.perf_counter_ns() - start) / len(ips))
    print(best)
"""
SHAPES = ("ip only", "ip + 3 countries + bots")


def measure(tree: str) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {tree!r})\n" + PROBE],
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(line) for line in done.stdout.split()]


def main() -> None:
    old, new = (str(Path(tree).resolve()) for tree in sys.argv[1:3])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    runs: dict[str, list[list[float]]] = {old: [], new: []}
    for _ in range(rounds):
        for tree in (old, new):
            runs[tree].append(measure(tree))
    rows = []
    for index, shape in enumerate(SHAPES):
        before = statistics.median(run[index] for run in runs[old])
        after = statistics.median(run[index] for run in runs[new])
        rows.append([shape, f"{before:.0f} ns", f"{after:.0f} ns", f"{after / before:.2f}x"])
    print(f"should_track per call, median of {rounds} interleaved rounds:\n")
    print_table(["site", "old", "new", "new / old"], rows)


if __name__ == "__main__":
    main()
