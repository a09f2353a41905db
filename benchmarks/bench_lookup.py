"""IP membership from a string, and compiling tables: edgefilter against C tries and friends.

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
import random
import resource
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import netaddr
import pytricia
import radix

from _common import fmt_ns, per_call_ns, print_table
from edgefilter import AddressTable, SiteConfig, compile_rules

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
        SiteConfig(site_id=i, excluded_ips=tuple(entries_for(entries, rng))) for i in range(sites)
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
                    "compact" if compact else "packed (default)",
                    f"{traced / 2**20:.1f} MiB",
                    f"{traced / sites:,.0f} B",
                    f"{int(child.stdout) / 2**20:.1f} MiB",
                ]
            )
    print("\nCompiled sites in memory (RSS: growth in a fresh process, without tracemalloc):\n")
    headers = ["sites x entries", "tables", "tracemalloc", "per site", "RSS growth"]
    print_table(headers, rows)


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
    lookups(random.Random(SEED))
    memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
