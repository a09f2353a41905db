"""should_track from a string against a pytricia- and a py-radix-based should_track; IP
membership from a string, and compiling tables: edgefilter against C tries and friends.

First, whole decisions (issue 17's goal: the compiled reader within 1.0x of pytricia): one
site with N mixed IPv4/IPv6 entries, three countries and three ASNs layered in (the test
databases' networks), bots blocked with warm verdicts; hits half random (IPv4, IPv6, and
IPv4-mapped IPv6), half inside the databases' networks. The trie-based should_track does the
same work as ours in the plainest way: a dict for the site, one trie per family holding every
rule's networks with its decision (IPv4 ones also as ``::ffff:a.b.c.d`` so mapped addresses
are folded), then the bot verdict. edgefilter runs with the compiled reader (its default
layout, compact) and with the pure-Python one (packed), swapped between interleaved rounds.

Every peer runs in this process on the same seeded data: random IPv4 CIDRs (/16-/32),
lookups of seeded IPv4 strings (mostly misses: with /8s among 100,000 random CIDRs, every
/8 block would be covered and every lookup a hit, so shorter prefixes are left out; the
share of hits is printed). Peers: pytricia and py-radix (C Patricia
tries), netaddr.IPSet, and the naive scan over ``ipaddress`` networks (what Rybbit does).
Neither trie folds ``::ffff:a.b.c.d`` onto IPv4; ours does, and the timing includes that.
Also: memory of 10,000 sites of 100 entries and 1,000 of 1,000 (tracemalloc and RSS).
"""

from __future__ import annotations

import gc
import ipaddress
import json
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import maxminddb
import netaddr
import pytricia
import radix

import edgefilter
from _common import ASN_DB, CITY_DB, fmt_ns, per_call_ns, print_table, use_reader
from edgefilter import (
    AddressTable,
    AsnResolver,
    CountryResolver,
    EdgeFilter,
    SiteConfig,
    compile_rules,
)
from edgefilter._decisions import (
    BOT,
    EXCLUDED_ASN,
    EXCLUDED_COUNTRY,
    EXCLUDED_IP,
    INVALID_IP,
    TRACKED,
    Decision,
    Reason,
)
from edgefilter._tables import DEFAULT_COMPACT

SIZES = (10, 1_000, 100_000)
LOOKUPS = 20_000
ROUNDS = 5
SEED = 11
MEMORY_SHAPES = ((10_000, 100), (1_000, 1_000))
_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


def entries_for(size: int, rng: random.Random) -> list[str]:
    """Seeded random IPv4 CIDR entries."""
    return [
        f"{ipaddress.IPv4Address(rng.getrandbits(32))}/{rng.randint(16, 32)}" for _ in range(size)
    ]


def builders() -> dict[str, Callable[[list[str]], Callable[[str], object]]]:
    """Peer name -> build(entries) -> lookup(ip)."""

    def ours(entries: list[str]) -> Callable[[str], object]:
        return AddressTable.from_entries(entries)[0].__contains__

    def ours_compact(entries: list[str]) -> Callable[[str], object]:
        return AddressTable.from_entries(entries, compact=True)[0].__contains__

    def tricia(entries: list[str]) -> Callable[[str], object]:
        tree = pytricia.PyTricia(32)
        for entry in entries:
            tree[str(ipaddress.ip_network(entry, strict=False))] = True
        return tree.__contains__

    def py_radix(entries: list[str]) -> Callable[[str], object]:
        tree = radix.Radix()
        for entry in entries:
            tree.add(str(ipaddress.ip_network(entry, strict=False)))
        return tree.search_best

    def ipset(entries: list[str]) -> Callable[[str], object]:
        return netaddr.IPSet(entries).__contains__

    return {
        "edgefilter": ours,
        "edgefilter compact": ours_compact,
        "pytricia": tricia,
        "py-radix": py_radix,
        "netaddr.IPSet": ipset,
    }


def parse_only(ip: str) -> bool:
    """The pure-Python floor: a function call that reads the address as ours does, and stops."""
    try:
        if ":" in ip:
            _inet_pton(_AF_INET6, ip)
        else:
            _inet_pton(_AF_INET, ip)
    except (OSError, TypeError, ValueError):
        return False
    return False


def lookup_ns(lookup: Callable[[str], object], ips: list[str]) -> float:
    """Nanoseconds per lookup, one pass."""
    return per_call_ns(lookup, [(ip,) for ip in ips], repeats=1)


def lookups(rng: random.Random) -> None:
    """The lookup table and the build-time table."""
    ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(LOOKUPS)]
    build_rows, tables = [], {}
    for size in SIZES:
        entries = entries_for(size, rng)
        times = {}
        for name, build in builders().items():
            start = time.perf_counter()
            tables[name, size] = build(entries)
            times[name] = time.perf_counter() - start
        build_rows.append(
            [
                f"{size:,}",
                *(f"{times[name] * 1000:.1f} ms" for name in times),
                f"{times['edgefilter'] / times['pytricia']:.2f}x",
            ]
        )
    for size in SIZES:
        tables["parse only", size] = parse_only
    best: dict[tuple[str, int], float] = {}
    for _ in range(ROUNDS):  # interleaved rounds, best of each
        for key, lookup in tables.items():
            best[key] = min(best.get(key, float("inf")), lookup_ns(lookup, ips))
    names = [*builders(), "parse only"]
    rows = []
    for size in SIZES:
        hits = sum(1 for ip in ips if tables["edgefilter", size](ip)) / len(ips)
        row = [f"{size:,}", f"{hits:.1%}", *(fmt_ns(best[name, size]) for name in names)]
        row.append(f"{best['edgefilter', size] / best['pytricia', size]:.2f}x")
        row.append(f"{best['parse only', size] / best['pytricia', size]:.2f}x")
        rows.append(row)
    print(
        f"IP membership from a string, per lookup ({LOOKUPS:,} seeded IPv4 strings,"
        f" best of {ROUNDS}):\n"
    )
    headers = ["entries", "hits", *names, "edgefilter / pytricia", "parse only / pytricia"]
    print_table(headers, rows)
    print(
        "\n'parse only' is a Python function that only calls inet_pton as ours does: the"
        " floor of any pure-Python lookup from a string."
    )
    print("\nBuilding the table from entry strings:\n")
    print_table(["entries", *builders(), "edgefilter / pytricia"], build_rows)


UNKNOWN_SITE = Decision(False, Reason.unknown_site)
DECISION_COUNTRIES = ("GB", "CN", "SE")
DECISION_ASNS = (15169, 1221, 7018)
DECISION_HITS = 10_000
DECISION_ROUNDS = 15


def mixed_entries(size: int, rng: random.Random, v6_share: float = 0.5) -> list[str]:
    """Seeded excluded-IP entries: IPv4 CIDRs /16-/32 and IPv6 CIDRs /32-/64."""
    entries = []
    for _ in range(size):
        if rng.random() < v6_share:
            entries.append(f"{ipaddress.IPv6Address(rng.getrandbits(128))}/{rng.randint(32, 64)}")
        else:
            entries.append(f"{ipaddress.IPv4Address(rng.getrandbits(32))}/{rng.randint(16, 32)}")
    return entries


def database_networks() -> tuple[list[Any], list[Any]]:
    """The networks of the excluded countries and of the excluded ASNs, from the test DBs."""
    with maxminddb.open_database(str(CITY_DB)) as reader:
        countries = [
            network
            for network, record in reader
            if (record.get("country") or {}).get("iso_code") in DECISION_COUNTRIES
        ]
    with maxminddb.open_database(str(ASN_DB)) as reader:
        asns = [
            network
            for network, record in reader
            if record.get("autonomous_system_number") in DECISION_ASNS
        ]
    return countries, asns


def decision_hits(rng: random.Random) -> list[tuple[object, ...]]:
    """(site, ip, ua): half random IPv4, IPv6 and mapped, half inside the DBs' networks."""
    inside = []
    for path in (CITY_DB, ASN_DB):
        with maxminddb.open_database(str(path)) as reader:
            inside += [str(network[0]) for network, _ in reader]
    hits: list[tuple[object, ...]] = []
    for index in range(DECISION_HITS):
        draw = rng.random()
        if index % 2:
            ip = rng.choice(inside)
        elif draw < 0.5:
            ip = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        elif draw < 0.65:
            ip = f"::ffff:{ipaddress.IPv4Address(rng.getrandbits(32))}"
        else:
            ip = str(ipaddress.IPv6Address(rng.getrandbits(128)))
        hits.append(("1", ip, f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{index % 40 + 90}.0"))
    return hits


class TrieSite:
    """A site's rules in two pytricia tries (or one py-radix tree), decisions as values."""

    __slots__ = ("block_bots", "v4", "v6")

    def __init__(self, rules: list[tuple[Any, object]], radix_tree: bool) -> None:
        self.block_bots = True
        if radix_tree:
            self.v4 = self.v6 = radix.Radix()
        else:
            self.v4, self.v6 = pytricia.PyTricia(32), pytricia.PyTricia(128, socket.AF_INET6)
        for network, decision in reversed(rules):  # an earlier rule wins: inserted last
            prefixes = [(network.version, str(network))]
            if network.version == 4:
                mapped = f"::ffff:{network.network_address}/{96 + network.prefixlen}"
                prefixes.append((6, mapped))
            for version, prefix in prefixes:
                if radix_tree:
                    self.v4.add(prefix).data["decision"] = decision
                else:
                    (self.v4 if version == 4 else self.v6)[prefix] = decision


def trie_should_track(
    sites: dict[str, TrieSite], verdicts: dict[object, str], radix_tree: bool
) -> Callable[..., object]:
    """should_track over tries: the site, one search from the string, the bot verdict."""

    def tricia(site: object, ip: str, ua: object) -> object:
        rules = sites.get(site)  # type: ignore[call-overload]
        if rules is None:
            return UNKNOWN_SITE
        try:
            found = (rules.v6 if ":" in ip else rules.v4).get(ip)
        except (TypeError, ValueError):
            return INVALID_IP
        if found is not None:
            return found
        return BOT if rules.block_bots and verdicts.get(ua) else TRACKED

    def py_radix(site: object, ip: str, ua: object) -> object:
        rules = sites.get(site)  # type: ignore[call-overload]
        if rules is None:
            return UNKNOWN_SITE
        try:
            node = rules.v4.search_best(ip)
        except (TypeError, ValueError):
            return INVALID_IP
        if node is not None:
            return node.data["decision"]
        return BOT if rules.block_bots and verdicts.get(ua) else TRACKED

    return py_radix if radix_tree else tricia


def decisions() -> None:
    """should_track per hit: edgefilter compiled and pure, pytricia- and py-radix-based."""
    geoip, asn_db = CountryResolver(CITY_DB), AsnResolver(ASN_DB)
    geoip.wait_compiled()
    asn_db.wait_compiled()
    countries, asns = database_networks()
    hits = decision_hits(random.Random(SEED))
    readers = {"compiled": True, "pure": False}
    calls: dict[tuple[str, int], tuple[Callable[..., object], bool]] = {}
    for size in SIZES:
        entries = mixed_entries(size, random.Random(SEED + size))
        config = SiteConfig(
            excluded_ips=tuple(entries),
            excluded_countries=DECISION_COUNTRIES,
            excluded_asns=DECISION_ASNS,
            block_bots=True,
        )
        answers = {}
        for name, reader in readers.items():
            if reader and not edgefilter.compiled:
                continue
            rules = compile_rules(config, compact=name == "compiled")
            edge_filter = EdgeFilter({"1": rules}, geoip=geoip, asn_db=asn_db)
            assert edge_filter.prepare(rules)
            use_reader(reader)
            answers[name] = [edge_filter.should_track(*hit) for hit in hits]
            calls[f"edgefilter {name}", size] = (edge_filter.should_track, reader)
        verdicts = edge_filter.bots.verdicts
        networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]
        rules_list = [
            *((network, EXCLUDED_IP) for network in networks),
            *((network, EXCLUDED_COUNTRY) for network in countries),
            *((network, EXCLUDED_ASN) for network in asns),
        ]
        for radix_tree, name in ((False, "pytricia"), (True, "py-radix")):
            call = trie_should_track({"1": TrieSite(rules_list, radix_tree)}, verdicts, radix_tree)
            calls[name, size] = (call, True)
        use_reader(True)
        pytricia_answers = [calls["pytricia", size][0](*hit) for hit in hits]
        for name, decided in answers.items():
            agree = sum(a is b for a, b in zip(decided, pytricia_answers, strict=True))
            assert agree >= 0.99 * len(hits), (name, size, agree)  # nested prefixes aside
    best: dict[tuple[str, int], float] = {}
    try:
        for _ in range(DECISION_ROUNDS):  # interleaved rounds, best of each
            for key, (call, reader) in calls.items():
                use_reader(reader)
                best[key] = min(best.get(key, float("inf")), per_call_ns(call, hits, repeats=1))
    finally:
        use_reader(True)
    names = sorted(
        {name for name, _ in calls}, key=lambda name: list(calls).index((name, SIZES[0]))
    )
    rows = []
    for size in SIZES:
        row = [f"{size:,}", *(fmt_ns(best[name, size]) for name in names)]
        for name in names:
            if name.startswith("edgefilter"):
                row.append(f"{best[name, size] / best['pytricia', size]:.2f}x")
        rows.append(row)
    print(
        f"should_track from a string, per hit ({DECISION_HITS:,} seeded hits, mixed families,"
        f" 3 countries and 3 ASNs layered, bots; best of {DECISION_ROUNDS}; compiled reader:"
        f" {edgefilter.compiled}):\n"
    )
    ratios = [f"{name} / pytricia" for name in names if name.startswith("edgefilter")]
    print_table(["entries", *names, *ratios], rows)
    print("\nGoal (issue 17): edgefilter compiled / pytricia <= 1.00x at every size.\n")
    rybbit = rybbit_loop_ns(
        {size: mixed_entries(size, random.Random(SEED + size)) for size in SIZES}, hits
    )
    if rybbit is None:
        return
    rows = [
        [f"{size:,}", fmt_ns(rybbit[size]), fmt_ns(best["edgefilter compiled", size]),
         f"{rybbit[size] / best['edgefilter compiled', size]:,.0f}x"]
        for size in SIZES
    ]  # fmt: skip
    print(
        "Rybbit's per-hit loop in Node (benchmarks/rybbit/loop.mjs: its linear scan over the"
        " excluded IPs with the ip-address package; IPs only, no countries, ASNs or bots), on"
        " the same entries and hit addresses, against edgefilter's whole should_track above:\n"
    )
    print_table(["entries", "Rybbit (Node)", "edgefilter compiled", "Rybbit / edgefilter"], rows)
    print()


RYBBIT_LOOP = Path(__file__).resolve().parent / "rybbit"


def rybbit_loop_ns(
    sizes: dict[int, list[str]], hits: list[tuple[object, ...]]
) -> dict[int, float] | None:
    """Nanoseconds per hit of Rybbit's loop in Node, by size; None (said so) without node or
    without its package installed (``make bench`` runs ``npm ci`` in benchmarks/rybbit)."""
    node = shutil.which("node")
    if node is None or not (RYBBIT_LOOP / "node_modules" / "ip-address").is_dir():
        print("Rybbit's loop in Node: skipped (needs node, and npm ci in benchmarks/rybbit)\n")
        return None
    payload = {
        "sizes": {str(size): entries for size, entries in sizes.items()},
        "ips": [hit[1] for hit in hits],
        "rounds": {str(size): 3 if size <= 1_000 else 1 for size in sizes},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as data:
        json.dump(payload, data)
        data.flush()
        argv = [node, str(RYBBIT_LOOP / "loop.mjs"), data.name]
        answer = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    return {int(size): found["ns"] for size, found in json.loads(answer.stdout).items()}


def resident_bytes() -> int:
    """This process's resident set now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return pages * resource.getpagesize()


def compile_sites(sites: int, entries: int, compact: bool) -> Callable[[], list[object]]:
    """A function that compiles seeded configs (made beforehand) of every site."""
    rng = random.Random(SEED)
    configs = [
        SiteConfig(site_id=i, excluded_ips=tuple(mixed_entries(entries, rng))) for i in range(sites)
    ]
    return lambda: [compile_rules(config, compact=compact) for config in configs]


def memory() -> None:
    """Resident cost of compiled sites: tracemalloc here, RSS in a fresh process."""
    rows = []
    for sites, entries in MEMORY_SHAPES:
        for compact in (False, True):
            compile_all = compile_sites(sites, entries, compact)
            gc.collect()
            tracemalloc.start()
            rules = compile_all()
            gc.collect()
            traced, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            del rules
            argv = [sys.executable, __file__, "--rss", str(sites), str(entries), str(compact)]
            child = subprocess.run(argv, capture_output=True, text=True, check=True)
            rows.append(
                [
                    f"{sites:,} x {entries:,}",
                    "compact" if compact else "packed",
                    f"{traced / 2**20:.1f} MiB",
                    f"{traced / sites:,.0f} B",
                    f"{int(child.stdout) / 2**20:.1f} MiB",
                ]
            )
    print(
        "\nCompiled sites in memory, entries half IPv4 and half IPv6 CIDRs (RSS: growth in a"
        f" fresh process, without tracemalloc); default tables here: "
        f"{'compact' if DEFAULT_COMPACT else 'packed'}\n"
    )
    headers = ["sites x entries", "tables", "tracemalloc", "per site", "RSS growth"]
    print_table(headers, rows)
    print("\nGoal (issue 17): 10,000 x 100 compact <= 48 MiB, tracemalloc and RSS.")


def rss_growth(sites: int, entries: int, compact: bool) -> int:
    """Bytes of RSS that compiling the sites adds, configs made beforehand."""
    compile_all = compile_sites(sites, entries, compact)
    gc.collect()
    before = resident_bytes()
    rules = compile_all()
    gc.collect()
    grown = resident_bytes() - before
    del rules
    return grown


def main() -> int:
    """Print the tables; exit 0."""
    if sys.argv[1:2] == ["--rss"]:  # the child process of memory()
        print(rss_growth(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "True"))
        return 0
    decisions()
    lookups(random.Random(SEED))
    memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
