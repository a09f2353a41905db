"""The offline demo: decide a sample traffic file against sample site configs."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .._decisions import Reason
from .._filter import EdgeFilter
from .._rules import SiteConfig

NO_VALUE = "-"  # how the traffic file writes a missing address


@dataclass(frozen=True, slots=True)
class Hit:
    """One line of a traffic file: a hit and the reason it is expected to get."""

    site: str
    ip: str | None
    user_agent: str
    expected: Reason
    path: str | None = None


def load_sites(path: Path) -> dict[str, SiteConfig]:
    """Site configs from a JSON file ``{"sites": [<Sites API site object>, ...]}``."""
    document = json.loads(path.read_text(encoding="utf-8"))
    configs = [SiteConfig.from_api(site) for site in document["sites"]]
    return {str(config.site_id): config for config in configs}


def load_traffic(path: Path) -> list[Hit]:
    """Hits from a TSV file with columns ``site, ip, user_agent, expected`` and an optional
    ``path`` (the payload's ``pathname``; empty or missing: none)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            Hit(
                site=row["site"],
                ip=None if row["ip"] == NO_VALUE else row["ip"],
                user_agent=row["user_agent"],
                expected=Reason(row["expected"]),
                path=row.get("path") or None,
            )
            for row in rows
        ]


def run_offline_demo(
    data_dir: Path, geoip: Path, *, asn_db: Path | None = None, repeat: int = 2000
) -> int:
    """Decide every hit, print counts by reason against the expected ones; 0 when all agree.

    ``asn_db`` defaults to the packaged ASN test database (the sample excludes an ASN)."""
    if asn_db is None:
        from . import TEST_ASN  # noqa: PLC0415

        asn_db = TEST_ASN
    sites = load_sites(data_dir / "sites.json")
    traffic = load_traffic(data_dir / "traffic.tsv")
    edge_filter = EdgeFilter(sites, geoip=str(geoip), asn_db=str(asn_db))
    for site_id in sites:
        rules = edge_filter.source.rules_for(site_id)
        for entry, reason in rules.rejected if rules else ():
            print(f"site {site_id}: rejected {entry!r}: {reason}")
    expected = Counter(hit.expected for hit in traffic)
    actual: Counter[Reason] = Counter()
    wrong = []
    for hit in traffic:
        decision = edge_filter.should_track(hit.site, hit.ip, hit.user_agent, path=hit.path)
        actual[decision.reason] += 1
        if decision.reason != hit.expected:
            wrong.append((hit, decision.reason))
    elapsed = _time_replay(edge_filter, traffic, repeat)
    print(f"\n{'reason':<18}{'expected':>10}{'decided':>10}")
    for reason in Reason:
        if expected[reason] or actual[reason]:
            mark = "" if expected[reason] == actual[reason] else "  MISMATCH"
            print(f"{reason.value:<18}{expected[reason]:>10}{actual[reason]:>10}{mark}")
    for hit, reason in wrong:
        print(f"MISMATCH site={hit.site} ip={hit.ip} expected={hit.expected} got={reason}")
    decisions = repeat * len(traffic)
    print(
        f"\n{decisions} decisions replayed in {elapsed:.3f} s: "
        f"{decisions / elapsed:,.0f} per second"
    )
    print("all decisions as expected" if not wrong else f"{len(wrong)} decisions differ")
    return 1 if wrong else 0


def _time_replay(edge_filter: EdgeFilter, traffic: list[Hit], repeat: int) -> float:
    should_track = edge_filter.should_track
    hits = [(hit.site, hit.ip, hit.user_agent, hit.path) for hit in traffic] * repeat
    start = time.perf_counter()
    for site, ip, user_agent, path in hits:
        should_track(site, ip, user_agent, path=path)
    return time.perf_counter() - start
