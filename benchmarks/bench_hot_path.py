"""should_track per call against the naive Rybbit-style loop, measured in the same run.

The naive baseline is what Rybbit does for each hit: parse the address with ``ipaddress``,
scan every excluded network, decode the GeoIP record with maxminddb, and parse the user agent
with user-agents (uncached: the hits cycle through more distinct user agents than
ua-parser's own cache holds). Ours is ``EdgeFilter.should_track`` with warm bot verdicts.

Four sites per size: "ip only" has only excluded IPs; "ip + 3 countries" adds three
excluded countries (layered into the site's IP table: one search answers both rules);
"ip + 3 countries + bots" adds blockBots; "same, compact tables" compiles that site with
``compact=True`` (IPv4 bounds in one array of ints, for many sites in little memory).
Hits: 1,000 seeded addresses, mostly misses, half of them inside networks of the test
GeoIP database so that the naive loop really decodes records.
"""

from __future__ import annotations

import ipaddress
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import maxminddb
import user_agents

from _common import CITY_DB, fmt_ns, per_call_ns, print_table
from edgefilter import CountryResolver, EdgeFilter, SiteConfig, compile_rules

SIZES = (10, 1_000, 100_000)
COUNTRIES = ("CN", "RU", "KP")
HITS = 1_000
ROUNDS = 15
SHAPES = ("ip only", "ip + 3 countries", "ip + 3 countries + bots", "same, compact tables")
SEED = 20261126


def random_entries(rng: random.Random, count: int) -> list[str]:
    """Excluded-IP entries: nine in ten IPv4 CIDRs /16-/32, one in ten IPv6 /32-/64."""
    entries = []
    for _ in range(count):
        if rng.random() < 0.9:
            prefix = rng.randint(16, 32)
            entries.append(f"{ipaddress.IPv4Address(rng.getrandbits(32))}/{prefix}")
        else:
            entries.append(f"{ipaddress.IPv6Address(rng.getrandbits(128))}/{rng.randint(32, 64)}")
    return entries


def geo_addresses() -> list[str]:
    """One address inside each network of the test GeoIP database."""
    with maxminddb.open_database(str(CITY_DB)) as reader:
        return [
            str(network[1] if network.num_addresses > 1 else network[0]) for network, _ in reader
        ]


def random_hits(rng: random.Random) -> list[str]:
    """Seeded hit addresses: half random IPv4/IPv6, half inside the GeoIP test networks."""
    inside = geo_addresses()
    hits = []
    for index in range(HITS):
        if index % 2:
            hits.append(rng.choice(inside))
        elif rng.random() < 0.8:
            hits.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
        else:
            hits.append(str(ipaddress.IPv6Address(rng.getrandbits(128))))
    return hits


def browser_user_agents(rng: random.Random) -> list[str]:
    """Distinct real-looking browser user agents, more than ua-parser caches."""
    return [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{rng.randint(90, 131)}.0.{rng.randint(1000, 6999)}.{rng.randint(0, 200)} "
        "Safari/537.36"
        for _ in range(HITS)
    ]


class NaiveRybbit:
    """The per-hit loop Rybbit runs: linear scan, record decode, user-agent parse."""

    def __init__(self, entries: list[str], countries: tuple[str, ...], block_bots: bool) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]
        self.countries = set(countries)
        self.block_bots = block_bots
        self.reader: Any = maxminddb.open_database(str(CITY_DB))

    def should_track(self, ip: str, ua: str) -> bool:
        address = ipaddress.ip_address(ip)
        if any(address in network for network in self.networks):
            return False
        if self.countries:
            record = self.reader.get(ip) or {}
            if record.get("country", {}).get("iso_code") in self.countries:
                return False
        return not (self.block_bots and user_agents.parse(ua).is_bot)


@dataclass
class Scenario:
    """One site shape at one size: its filter, the naive loop, and the hits."""

    size: int
    shape: str
    calls: list[tuple[object, ...]]
    should_track: Callable[..., object]
    naive: NaiveRybbit
    pairs: list[tuple[str, str]]
    ours_ns: float = float("inf")


def build(
    size: int, shape: str, pairs: list[tuple[str, str]], resolver: CountryResolver
) -> Scenario:
    """Compile the site, warm the bot verdicts, and check both sides agree on every hit."""
    entries = random_entries(random.Random(SEED + size), size)
    compact = "compact" in shape
    countries = COUNTRIES if "countries" in shape or compact else ()
    bots = "bots" in shape or compact
    config = SiteConfig(excluded_ips=tuple(entries), excluded_countries=countries, block_bots=bots)
    rules = compile_rules(config, compact=compact)
    edge_filter = EdgeFilter({"1": rules}, geoip=resolver)
    assert edge_filter.prepare(rules)  # countries layered now, not on the background thread
    naive = NaiveRybbit(entries, countries, bots)
    for ip, ua in pairs:
        assert bool(edge_filter.should_track("1", ip, ua)) == naive.should_track(ip, ua), (ip, ua)
    calls: list[tuple[object, ...]] = [("1", ip, ua) for ip, ua in pairs] * 20
    return Scenario(size, shape, calls, edge_filter.should_track, naive, pairs)


def naive_ns(scenario: Scenario, repeats: int = 3) -> float:
    """The naive loop's median time per hit, each run on hits not used before: ua-parser
    caches its answers, and a run over user agents it has seen would time the cache."""
    count = max(20, min(len(scenario.pairs) // repeats, 200_000 // scenario.size))
    runs = [
        per_call_ns(
            scenario.naive.should_track, scenario.pairs[run * count : (run + 1) * count], repeats=1
        )
        for run in range(repeats)
    ]
    return statistics.median(runs)


def main() -> int:
    """Print the table; exit 0."""
    rng = random.Random(SEED)
    resolver = CountryResolver(CITY_DB)
    resolver.wait_compiled()
    pairs = list(zip(random_hits(rng), browser_user_agents(rng), strict=True))
    scenarios = [build(size, shape, pairs, resolver) for shape in SHAPES for size in SIZES]
    for _ in range(ROUNDS):  # interleaved rounds, best of each: noise only ever adds time
        for scenario in scenarios:
            ns = per_call_ns(scenario.should_track, scenario.calls, repeats=1)
            scenario.ours_ns = min(scenario.ours_ns, ns)
    rows = []
    for scenario in scenarios:
        theirs = naive_ns(scenario)
        shape = scenario.shape
        ratio = f"{theirs / scenario.ours_ns:,.0f}x"
        rows.append([shape, f"{scenario.size:,}", fmt_ns(scenario.ours_ns), fmt_ns(theirs), ratio])
    print(f"should_track per call, Python {sys.version.split()[0]}, {HITS} seeded hits\n")
    print_table(["site", "entries", "edgefilter", "naive (Rybbit-style)", "speed-up"], rows)
    ours = {(scenario.shape, scenario.size): scenario.ours_ns for scenario in scenarios}
    flat = ours[SHAPES[0], SIZES[-1]] / ours[SHAPES[0], SIZES[0]]
    print(f"\n100,000-entry / 10-entry should_track (ip only): {flat:.2f}x")
    for size in SIZES:
        ratio = ours[SHAPES[1], size] / ours[SHAPES[0], size]
        print(f"{size:,} entries: with 3 countries / without: {ratio:.2f}x")
    for size in SIZES:
        ratio = ours[SHAPES[3], size] / ours[SHAPES[2], size]
        print(f"{size:,} entries: compact / packed tables: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
