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

Then, in the same run, the exclusions of issue 14 against the same site without them:
"100 of each pattern" (100 excluded IPs, paths, hostnames and user agents, blockBots) vs
"ip only" (the same IPs and blockBots), on hits whose path, hostname and user agent are
drawn from a seeded realistic set (about one in twenty excluded); and a site with ASN
rules layered in (the walk done) vs the same site without them, alone and beside three
countries, and vs a site excluding the same networks as IP entries (the same table size:
what the ASN rule itself costs). Both sides of each pair are called the same way, with
path and hostname. ``--exclusions`` prints these rows only, best of 45 rounds (seconds).
"""

from __future__ import annotations

import ipaddress
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import maxminddb
import user_agents

import edgefilter
from _common import ASN_DB, CITY_DB, fmt_ns, per_call_ns, print_table, use_reader
from edgefilter import AsnResolver, CountryResolver, EdgeFilter, SiteConfig, compile_rules

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


PATTERNS = 100
EXCLUDED_ASNS = (15169, 1221, 7018, 209, 237)  # networks of the ASN test database
WORDS = ("blog", "shop", "docs", "news", "products", "account", "search", "help")


def pattern_config(rng: random.Random, with_patterns: bool) -> SiteConfig:
    """100 excluded IPs and blockBots, and 100 patterns of each kind when asked."""
    entries = tuple(random_entries(random.Random(SEED + PATTERNS), PATTERNS))
    if not with_patterns:
        return SiteConfig(excluded_ips=entries, block_bots=True)
    paths = [f"/admin{n}*" if n % 2 else f"/internal/{n}/*/draft" for n in range(PATTERNS - 2)]
    hostnames = [
        f"*.internal{n}.example" if n % 2 else f"staging{n}.example.com" for n in range(98)
    ]
    agents = [f"monitor-{n}/" if n % 2 else f"qa-bot-{rng.randint(0, 10**6)}" for n in range(98)]
    return SiteConfig(
        excluded_ips=entries,
        block_bots=True,
        excluded_paths=(*paths, "/admin*", "/health"),
        excluded_hostnames=(*hostnames, "*.internal.example", "staging.example.com"),
        excluded_user_agents=(*agents, "UptimeRobot", "internal-qa"),
    )


def pattern_hits(rng: random.Random, pairs: list[tuple[str, str]]) -> list[tuple[object, ...]]:
    """(site, ip, ua, path, hostname) per hit; about one in twenty matches a pattern."""
    calls: list[tuple[object, ...]] = []
    for ip, ua in pairs:
        path = f"/{rng.choice(WORDS)}/{rng.randint(1, 400)}"
        hostname = rng.choice(("www.example.com", "example.com", "shop.example.com"))
        agent = ua
        draw = rng.random()
        if draw < 0.02:
            path = f"/admin/{rng.randint(1, 9)}"
        elif draw < 0.035:
            hostname = f"a{rng.randint(1, 9)}.internal.example"
        elif draw < 0.05:
            agent = "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"
        calls.append(("1", ip, agent, path, hostname))
    return calls


def asn_hits(rng: random.Random, resolver: AsnResolver) -> list[tuple[object, ...]]:
    """(site, ip, ua, path, hostname): half the addresses inside ASN test networks."""
    with maxminddb.open_database(str(ASN_DB)) as reader:
        inside = [str(network[0]) for network, _ in reader]
    calls: list[tuple[object, ...]] = []
    for index, ua in enumerate(browser_user_agents(rng)):
        ip = rng.choice(inside) if index % 2 else str(ipaddress.IPv4Address(rng.getrandbits(32)))
        calls.append(("1", ip, ua, "/", "www.example.com"))
    return calls


def asn_networks(asns: tuple[int, ...]) -> list[str]:
    """The networks of the ASN test database whose record names one of ``asns``."""
    with maxminddb.open_database(str(ASN_DB)) as reader:
        return [
            str(network)
            for network, record in reader
            if record.get("autonomous_system_number") in asns
        ]


def keyword_call(edge_filter: EdgeFilter) -> Callable[..., object]:
    """should_track called with path and hostname, as the middleware calls it."""
    should_track = edge_filter.should_track

    def call(site: object, ip: object, ua: object, path: object, hostname: object) -> object:
        return should_track(site, ip, ua, path=path, hostname=hostname)

    return call


def exclusion_scenarios(
    rng: random.Random,
    pairs: list[tuple[str, str]],
    geoip: CountryResolver,
    asn_db: AsnResolver,
) -> list[tuple[str, Callable[..., object], list[tuple[object, ...]]]]:
    """The (name, call, hits) of each exclusion scenario, checked to decide something."""
    hits = pattern_hits(rng, pairs)
    addresses = asn_hits(rng, asn_db)
    shapes: dict[str, tuple[SiteConfig, list[tuple[object, ...]]]] = {
        "100 of each pattern": (pattern_config(rng, True), hits),
        "ip only": (pattern_config(rng, False), hits),
        "ip + 5 ASNs": (
            SiteConfig(excluded_ips=("10.0.0.0/8",), excluded_asns=EXCLUDED_ASNS),
            addresses,
        ),
        "ip, no ASNs": (SiteConfig(excluded_ips=("10.0.0.0/8",)), addresses),
        "ip + the 5 ASNs' networks as IPs": (
            SiteConfig(excluded_ips=("10.0.0.0/8", *asn_networks(EXCLUDED_ASNS))),
            addresses,
        ),
        "ip + 3 countries + 5 ASNs": (
            SiteConfig(
                excluded_ips=("10.0.0.0/8",),
                excluded_countries=COUNTRIES,
                excluded_asns=EXCLUDED_ASNS,
            ),
            addresses,
        ),
        "ip + 3 countries": (
            SiteConfig(excluded_ips=("10.0.0.0/8",), excluded_countries=COUNTRIES),
            addresses,
        ),
    }
    scenarios = []
    for name, (config, calls) in shapes.items():
        rules = compile_rules(config)
        edge_filter = EdgeFilter({"1": rules}, geoip=geoip, asn_db=asn_db)
        assert edge_filter.prepare(rules)  # ASNs and countries layered now
        call = keyword_call(edge_filter)
        dropped = sum(not call(*hit) for hit in calls)
        assert 0 < dropped < len(calls), (name, dropped)
        scenarios.append((name, call, calls * 20))
    return scenarios


def print_exclusions(
    scenarios: list[tuple[str, Callable[..., object], list[tuple[object, ...]]]],
    rounds: int = ROUNDS,
) -> None:
    """Best of interleaved rounds per scenario, and the ratio of each pair."""
    best = dict.fromkeys((name for name, _, _ in scenarios), float("inf"))
    for _ in range(rounds):
        for name, call, calls in scenarios:
            best[name] = min(best[name], per_call_ns(call, calls, repeats=1))
    print("\nExclusions (issue 14), same run, should_track with path and hostname\n")
    print_table(["site", "should_track"], [[name, fmt_ns(ns)] for name, ns in best.items()])
    pairs = (
        ("100 of each pattern", "ip only", "goal <= 1.3x"),
        ("ip + 5 ASNs", "ip, no ASNs", "goal <= 1.1x"),
        ("ip + 5 ASNs", "ip + the 5 ASNs' networks as IPs", "the same table, by ASN"),
        ("ip + 3 countries + 5 ASNs", "ip + 3 countries", "goal <= 1.1x"),
    )
    for with_rules, without, goal in pairs:
        print(f"{with_rules} / {without}: {best[with_rules] / best[without]:.2f}x ({goal})")


BATCH_SITES = 10
BATCH_HITS = 100_000


def print_batch(rng: random.Random, geoip: CountryResolver, asn_db: AsnResolver) -> None:
    """decide_many's decisions per second (warm rules, one core), with the compiled reader
    and the pure one, against a loop of should_track, interleaved rounds."""
    sites = {}
    for site in range(1, BATCH_SITES + 1):
        config = SiteConfig(
            excluded_ips=tuple(random_entries(rng, 100)),
            excluded_countries=COUNTRIES if site % 2 else (),
            excluded_asns=EXCLUDED_ASNS if site % 2 else (),
            block_bots=True,
        )
        sites[str(site)] = compile_rules(config)
    edge_filter = EdgeFilter(sites, geoip=geoip, asn_db=asn_db)
    for rules in sites.values():
        assert edge_filter.prepare(rules)
    agents = browser_user_agents(rng)[:50]
    pool = random_hits(rng)
    hits = [
        (str(rng.randint(1, BATCH_SITES)), rng.choice(pool), rng.choice(agents))
        for _ in range(BATCH_HITS)
    ]
    should_track = edge_filter.should_track
    one_by_one = [should_track(*hit) for hit in hits]
    assert edge_filter.decide_many(hits) == one_by_one
    runs: dict[str, tuple[Callable[[], object], bool]] = {
        "decide_many, compiled": (lambda: edge_filter.decide_many(hits), True),
        "should_track loop, compiled": (lambda: [should_track(*h) for h in hits], True),
        "decide_many, pure": (lambda: edge_filter.decide_many(hits), False),
        "should_track loop, pure": (lambda: [should_track(*h) for h in hits], False),
    }
    best = dict.fromkeys(runs, float("inf"))
    try:
        for _ in range(5):
            for name, (run, reader) in runs.items():
                if reader and not edgefilter.compiled:
                    continue
                use_reader(reader)
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
    finally:
        use_reader(True)
    print(
        f"\nBatch decisions (issue 17), {BATCH_HITS:,} warm hits over {BATCH_SITES} sites of 100"
        " entries (half with 3 countries and 5 ASNs layered), bots blocked, one core\n"
    )
    rows = [[name, f"{BATCH_HITS / seconds / 1e6:.2f} M/s"] for name, seconds in best.items()]
    print_table(["batch", "decisions per second"], rows)
    loop = best["should_track loop, compiled"]
    print(
        f"decide_many / should_track loop (compiled): {loop / best['decide_many, compiled']:.2f}x"
        " the throughput (goal: decide_many compiled >= 2 M/s)"
    )


def main() -> int:
    """Print the tables (with ``--exclusions``, issue 14's exclusion rows only); exit 0."""
    rng = random.Random(SEED)
    resolver = CountryResolver(CITY_DB)
    resolver.wait_compiled()
    pairs = list(zip(random_hits(rng), browser_user_agents(rng), strict=True))
    if "--exclusions" in sys.argv[1:]:
        asn_db = AsnResolver(ASN_DB)
        asn_db.wait_compiled()
        print(f"compiled reader: {edgefilter.compiled}")
        print_exclusions(exclusion_scenarios(rng, pairs, resolver, asn_db), 3 * ROUNDS)
        return 0
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
    print(
        f"should_track per call, Python {sys.version.split()[0]}, {HITS} seeded hits,"
        f" compiled reader: {edgefilter.compiled}\n"
    )
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
    asn_db = AsnResolver(ASN_DB)
    asn_db.wait_compiled()
    print_exclusions(exclusion_scenarios(rng, pairs, resolver, asn_db))
    print_batch(rng, resolver, asn_db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
