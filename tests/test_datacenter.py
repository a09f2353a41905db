"""The datacenter layer: published ranges and listed ASNs in one table."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter._asn import AsnResolver
from edgefilter._datacenter import LAYER_LISTED_ASNS, LAYER_PUBLISHED, DatacenterRanges
from edgefilter._errors import ConfigError

from .conftest import ASN_DB, DATA

CIDR = DATA / "cidr"
FILES = sorted(CIDR.glob("*.txt"))
NETWORKS = [
    ipaddress.ip_network(line.strip())
    for path in FILES
    for line in path.read_text().splitlines()
    if line.strip()
]
RANGES = DatacenterRanges.from_sources(FILES)


def test_sample_files_are_shipped() -> None:
    """The sample lists (CC0, lord-alfred/ipranges) are in data/cidr with both families."""
    assert len(FILES) >= 5
    assert {network.version for network in NETWORKS} == {4, 6}


@pytest.mark.parametrize(
    ("ip", "inside"),
    [
        # IPv4: a googlebot range, its edges, and beyond
        ("34.22.85.0", True),
        ("34.22.85.31", True),
        ("34.22.85.32", False),
        ("34.22.84.255", False),
        # IPv6 googlebot
        ("2001:4860:4801:1a::1", True),
        ("2001:4860:4801:19::1", True),
        ("2001:4860:4801:19ff:ffff:ffff:ffff:ffff", False),
        # mapped, odd input
        ("::ffff:66.249.64.1", True),
        ("192.0.2.1", False),
        ("not an address", False),
        ("", False),
        (None, False),
        (b"66.249.64.1", True),
        (12, False),
    ],
)
def test_membership(ip: object, inside: bool) -> None:
    """Addresses of the lists are in, others are not; odd input is not."""
    assert (ip in RANGES) is inside


@given(st.ip_addresses())
def test_table_agrees_with_a_naive_scan(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """One search answers what a scan over every listed network answers."""
    expected = any(ip.version == net.version and ip in net for net in NETWORKS)
    assert (str(ip) in RANGES) is expected


def test_every_listed_network_edge_is_in() -> None:
    """The first and last address of every listed network is in the table."""
    for network in NETWORKS:
        assert str(network[0]) in RANGES and str(network[-1]) in RANGES, network


def test_listed_asns_come_from_the_asn_database() -> None:
    """ASNs are compiled from the ASN database into the same table, in their own layer."""
    with AsnResolver(ASN_DB) as asn_db:
        ranges = DatacenterRanges.from_sources(FILES, asns=["AS15169"], asn_db=asn_db)
    assert "1.0.0.1" in ranges  # 1.0.0.0/24 is AS15169 in MaxMind's test database
    assert "1.0.0.1" not in RANGES
    assert ranges.layer_of("1.0.0.1") == LAYER_LISTED_ASNS
    assert ranges.layer_of("66.249.64.1") == LAYER_PUBLISHED
    assert ranges.layer_of("192.0.2.1") is None
    assert "15169" not in " ".join(ranges.sources) and "1 ASNs" in ranges.sources


def test_entries_are_published_ranges_too() -> None:
    """Entries given inline join the files' ranges."""
    ranges = DatacenterRanges.from_sources(entries=["198.51.100.0/24", "2001:db8::/32"])
    assert "198.51.100.7" in ranges and "2001:db8::1" in ranges and "66.249.64.1" not in ranges


def test_a_bad_line_names_its_file_and_line(tmp_path: Path) -> None:
    """A line that is no address, CIDR or range is refused with its file and number."""
    path = tmp_path / "ranges.txt"
    path.write_text("# a comment\n10.0.0.0/8\n\nnot-a-range\n")
    with pytest.raises(ConfigError, match=r"ranges.txt' line 4: .*not-a-range"):
        DatacenterRanges.from_sources([path])


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    """Comments (whole lines and trailing) and blank lines are not entries."""
    path = tmp_path / "ranges.txt"
    path.write_text("# list\n\n203.0.113.0/24  # test net\n")
    assert "203.0.113.9" in DatacenterRanges.from_sources([path])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: DatacenterRanges.from_sources("ranges.txt"), "list of paths"),
        (lambda: DatacenterRanges.from_sources(["/no/such/file"]), "cannot be read"),
        (lambda: DatacenterRanges.from_sources(asns=[15169]), "ASN database"),
        (lambda: DatacenterRanges.from_sources(asns=["ASX"]), "not an AS number"),
        (lambda: DatacenterRanges.from_sources(entries=["10.0.0.0/33"]), "10.0.0.0/33"),
    ],
)
def test_bad_sources_are_config_errors(call: object, match: str) -> None:
    """Each bad source is refused with a message naming it."""
    with pytest.raises(ConfigError, match=match):
        call()  # type: ignore[operator]
