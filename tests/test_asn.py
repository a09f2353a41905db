"""ASN rules against MaxMind's ASN test database: every network's first and last address."""

from __future__ import annotations

import csv
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefilter import AsnResolver, ConfigError, EdgeFilter, GeoIPError, Reason, SiteConfig
from edgefilter._asn import MAX_ASN, parse_asn

from .conftest import ASN_DB, CHROME, DATA

EXPECTED = DATA / "geo" / "expected_asn_lookups.tsv"


def expected_rows() -> list[tuple[str, str, int]]:
    """``(network, ip, asn)`` for the first and last address of every network of the source."""
    with EXPECTED.open(newline="") as handle:
        return [
            (row["network"], row["ip"], int(row["asn"]))
            for row in csv.DictReader(handle, delimiter="\t")
        ]


ROWS = expected_rows()
ASNS = sorted({asn for _, _, asn in ROWS})


@pytest.fixture(scope="module", params=["layered", "tables apart", "direct lookups"])
def asn_filter(request: pytest.FixtureRequest) -> Iterator[EdgeFilter]:
    """A filter with one site per ASN of the test data (site N+1 excludes ASNS[N]), with its
    ASN rules layered into each site's table, searched apart, or decoded per hit."""
    compiled = request.param != "direct lookups"
    resolver = AsnResolver(ASN_DB, compile_tables=compiled)
    assert not compiled or resolver.wait_compiled(30)
    sites = {
        str(index + 1): SiteConfig(site_id=index + 1, block_bots=False, excluded_asns=(asn,))
        for index, asn in enumerate(ASNS)
    }
    with pytest.MonkeyPatch.context() as patch:
        if request.param != "layered":  # no ASN table is small enough to layer
            patch.setattr("edgefilter._layers.MAX_LAYERED_COUNTRY_BOUNDS", -1)
        edge_filter = EdgeFilter(sites, asn_db=resolver)
        for _, rules in edge_filter.source:  # type: ignore[attr-defined]
            assert edge_filter.prepare(rules) is (request.param == "layered")
            assert bool(rules.country_layers) is (request.param == "layered")
        yield edge_filter


def test_the_expected_answers_cover_the_source() -> None:
    """The TSV holds the first and last address of each of the source's 720 networks."""
    assert len(ROWS) == 2 * 720
    assert len(ASNS) > 50


@pytest.mark.parametrize(("network", "ip", "asn"), ROWS, ids=[f"{n}-{i}" for n, i, _ in ROWS])
def test_every_network_edge_is_excluded_by_its_asn_only(
    asn_filter: EdgeFilter, network: str, ip: str, asn: int
) -> None:
    """The address is excluded for the site excluding its ASN, tracked for the others'."""
    own = str(ASNS.index(asn) + 1)
    other = str((ASNS.index(asn) + 1) % len(ASNS) + 1)
    assert asn_filter.should_track(own, ip, CHROME).reason is Reason.excluded_asn
    assert asn_filter.should_track(other, ip, CHROME).reason is Reason.tracked
    if ipaddress.ip_address(ip).version == 4:
        mapped = f"::ffff:{ip}"
        assert asn_filter.should_track(own, mapped, CHROME).reason is Reason.excluded_asn


@pytest.mark.parametrize(("network", "ip", "asn"), ROWS[::37])
def test_the_resolver_answers_the_source(network: str, ip: str, asn: int) -> None:
    """asn(ip) decodes the record the source JSON gives for the address."""
    with AsnResolver(ASN_DB, compile_tables=False) as resolver:
        assert resolver.asn(ip) == asn


def test_the_walk_holds_every_network() -> None:
    """After the walk, each ASN's table holds exactly the source's edges of its networks."""
    resolver = AsnResolver(ASN_DB)
    assert resolver.wait_compiled(30)
    for _, ip, asn in ROWS:
        table = resolver.table_for(frozenset({asn}))
        assert table is not None and ip in table


@pytest.mark.parametrize("ip", ["192.0.2.1", "not an ip", None, "::"])
def test_an_address_without_a_record_has_no_asn(ip: object) -> None:
    """An address outside the database, or no address, answers None and never raises."""
    with AsnResolver(ASN_DB, compile_tables=False) as resolver:
        assert resolver.asn(ip) is None


def test_a_database_without_asns_is_refused(city_db: Path) -> None:
    """A City database opened as an ASN database is a GeoIPError naming its type."""
    with pytest.raises(GeoIPError, match="GeoLite2-City"):
        AsnResolver(city_db)


@pytest.mark.parametrize(
    ("entry", "asn"),
    [
        # ints and their text; AS prefixes in any case; whitespace trimmed
        (15169, 15169),
        ("15169", 15169),
        ("AS15169", 15169),
        ("as15169", 15169),
        ("As15169", 15169),
        (" AS209 ", 209),
        # the bounds of 32-bit AS numbers
        (1, 1),
        (MAX_ASN, MAX_ASN),
        ("AS4294967295", MAX_ASN),
    ],
)
def test_asn_entries_are_read(entry: object, asn: int) -> None:
    """An AS number as an int or text (with or without AS) is read as its int."""
    assert parse_asn(entry) == asn


@pytest.mark.parametrize(
    "entry",
    [
        # out of range
        0,
        "AS0",
        MAX_ASN + 1,
        "AS4294967296",
        -1,
        # not a number
        "AS",
        "",
        "ASN15169",
        "AS 15169",
        "AS-1",
        "AS15169.5",
        "AS\u0661\u0662",  # Arabic-Indic digits
        "1" * 5000,
        # not an int nor text
        True,
        15169.0,
        None,
        [15169],
    ],
)
def test_bad_asn_entries_are_refused(entry: object) -> None:
    """Anything but an AS number between 1 and 2**32-1 is a ConfigError naming the entry."""
    with pytest.raises(ConfigError, match="excluded ASN"):
        parse_asn(entry)
