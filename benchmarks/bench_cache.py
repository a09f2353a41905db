"""The live rules cache: refresh cost, hot-path cost against a static source, memory per site.

Runs the reference Sites API on loopback (SQLite in a temporary directory), so the numbers
include real HTTP. The hot-path rows compare ``should_track`` with a ``RulesCache`` in front
against the same rules from a static mapping, interleaved in the same run.
"""

from __future__ import annotations

import gc
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from _common import CITY_DB, fmt_ns, per_call_ns, print_table
from edgefilter import CountryResolver, EdgeFilter, RulesCache, SitesApiClient, compile_rules
from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app

SITES = 500
ENTRIES_PER_SITE = 100
ROUNDS = 7
SEED = 7
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def random_entries(rng: random.Random) -> list[str]:
    """100 random IPv4 /24 networks."""
    return [
        f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24"
        for _ in range(ENTRIES_PER_SITE)
    ]


def fill(client: SitesApiClient, organization_id: str, rng: random.Random) -> list[str]:
    """Create the sites with their excluded IPs; their ids."""
    refs = []
    for index in range(SITES):
        created = client.create_site(organization_id, f"site{index}.example", f"Site {index}")
        client.update_config(
            str(created["siteId"]),
            excludedIPs=random_entries(rng),
            excludedCountries=["CN", "RU", "KP"],
        )
        refs.append(str(created["siteId"]))
    return refs


def time_ms(call: object, refs: list[str]) -> float:
    """Median milliseconds of ``call(ref)`` over the refs."""
    samples = []
    for ref in refs:
        start = time.perf_counter()
        call(ref)  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    """Print the tables; exit 0."""
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as directory:
        app = create_app(f"sqlite:///{Path(directory) / 'sites.db'}")
        organization_id = app.state.store.create_organization("Bench")
        key = app.state.store.create_key(organization_id, "owner")
        with serve_in_thread(app) as url, SitesApiClient(url, key) as client:
            refs = fill(client, organization_id, rng)
            fetched = {ref: client.fetch_config(ref) for ref in refs[:100]}
            cold = time_ms(client.fetch_config, refs[:100])
            conditional = time_ms(lambda ref: client.fetch_config(ref, fetched[ref]), refs[:100])
            compile_ms = time_ms(lambda ref: compile_rules(fetched[ref].config), refs[:100])
            print(f"Refresh cost per site ({ENTRIES_PER_SITE} IP entries, 3 countries), medians:\n")
            print_table(
                ["step", "time"],
                [
                    ["fetch, three reads (200)", f"{cold:.2f} ms"],
                    ["conditional fetch (three 304s)", f"{conditional:.2f} ms"],
                    ["compile_rules", f"{compile_ms:.3f} ms"],
                ],
            )
            gc.collect()
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            cache = RulesCache(client, tick=None)
            for ref in refs:
                cache.ensure(ref)
            gc.collect()
            traced, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"\nMemory: {SITES} cached sites of {ENTRIES_PER_SITE} entries")
            print(
                f"  tracemalloc: {traced / SITES:,.0f} bytes per site (rules, ETag bodies, entry)"
            )
            print(
                f"  peak RSS growth: {(rss_after - rss_before) * 1024 / SITES:,.0f} bytes per site"
            )
            resolver = CountryResolver(CITY_DB)
            resolver.wait_compiled()
            static_rules = {ref: compile_rules(fetched[ref].config) for ref in refs[:100]}
            static = EdgeFilter(static_rules, geoip=resolver)
            cached = EdgeFilter(cache, geoip=resolver)
            calls = [
                (rng.choice(refs[:100]), f"{rng.randrange(1, 224)}.{rng.randrange(256)}.1.1", UA)
                for _ in range(20_000)
            ]
            best = {"static": float("inf"), "cache": float("inf")}
            for _ in range(ROUNDS):
                best["static"] = min(
                    best["static"], per_call_ns(static.should_track, calls, repeats=1)
                )
                best["cache"] = min(
                    best["cache"], per_call_ns(cached.should_track, calls, repeats=1)
                )
            cache.close()
    ratio = best["cache"] / best["static"]
    print(f"\nHot path, should_track per call (best of {ROUNDS} interleaved rounds):\n")
    print_table(
        ["source", "per call", "vs static"],
        [
            ["static mapping", fmt_ns(best["static"]), "1.00x"],
            ["RulesCache (warm)", fmt_ns(best["cache"]), f"{ratio:.2f}x"],
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
