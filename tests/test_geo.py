"""Country lookups against MaxMind's test databases, and broken databases."""

from __future__ import annotations

import csv
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from edgefilter import ConfigError, CountryResolver, GeoIPError

from .conftest import DATA

EXPECTED = DATA / "geo" / "expected_lookups.tsv"


def expected_rows() -> list[dict[str, str]]:
    """Every (database, address, country) row of the expected-lookups table."""
    with EXPECTED.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("database", ["GeoLite2-City-Test.mmdb", "GeoIP2-Country-Test.mmdb"])
def test_country_matches_expected_lookups(database: str) -> None:
    """Every probe gets the ``country`` ISO code MaxMind's source data names, or None."""
    rows = [row for row in expected_rows() if row["db"] == database]
    assert len(rows) > 400
    with CountryResolver(DATA / "geo" / database) as resolver:
        for row in rows:
            assert resolver.country(row["ip"]) == (row["country_iso"] or None), row


def alias_forms(ip: str) -> list[str]:
    """The address, and for IPv4 its mapped, IPv4-compatible, 6to4 and Teredo forms."""
    address = ipaddress.ip_address(ip)
    if address.version == 6:
        return [ip]
    value = int(address)
    aliases = [
        0xFFFF << 32 | value,
        value,
        0x2002 << 112 | value << 80,
        0x2001_0000 << 96 | value << 64,
    ]
    return [ip] + [str(ipaddress.IPv6Address(alias)) for alias in aliases]


@pytest.mark.parametrize("database", ["GeoLite2-City-Test.mmdb", "GeoIP2-Country-Test.mmdb"])
def test_country_tables_agree_with_direct_lookups(database: str) -> None:
    """For each country, table membership is exactly "the record says this country"."""
    rows = [row for row in expected_rows() if row["db"] == database]
    probes = [form for row in rows for form in alias_forms(row["ip"])]
    with CountryResolver(DATA / "geo" / database) as resolver:
        assert resolver.wait_compiled(timeout=30)
        direct = {ip: resolver.country(ip) for ip in probes}
        for country in {code for code in direct.values() if code}:
            table = resolver.table_for(frozenset({country}))
            assert table is not None
            for ip in probes:
                assert (ip in table) == (direct[ip] == country), (country, ip)


def test_tables_are_none_until_compiled(city_db: Path) -> None:
    """Without the walk, table_for answers None and callers use direct lookups; waiting
    for the walk answers at once that there is none (no timeout: a walk would end True)."""
    with CountryResolver(city_db, compile_tables=False) as resolver:
        assert not resolver.wait_compiled()
        assert resolver.table_for(frozenset({"GB"})) is None


@pytest.mark.parametrize(
    "ip",
    [None, "", "garbage", b"\x00", 12, "1.2.3.4.5", "fe80::1%eth0", "x" * 10_000],
)
def test_country_of_odd_input_is_none(city_db: Path, ip: object) -> None:
    """A lookup never raises; odd input has no country."""
    with CountryResolver(city_db) as resolver:
        assert resolver.country(ip) is None


@pytest.mark.parametrize(
    "name", ["GeoIP2-City-Test-Invalid-Node-Count.mmdb", "libmaxminddb-metadata-marker-only.mmdb"]
)
def test_corrupt_database_raises_at_open(name: str) -> None:
    """A database that cannot be read fails at open, with GeoIPError naming the file."""
    with pytest.raises(GeoIPError, match=name):
        CountryResolver(DATA / "geo" / "bad" / name)


def test_missing_database_raises_geoip_error(tmp_path: Path) -> None:
    """A missing file is a GeoIPError, which is also an OSError."""
    with pytest.raises(OSError, match="cannot open GeoIP database"):
        CountryResolver(tmp_path / "missing.mmdb")


def test_undecodable_record_answers_none() -> None:
    """A record the database cannot decode is no country, not an exception."""
    with CountryResolver(DATA / "geo" / "bad" / "GeoIP2-City-Test-Broken-Double-Format.mmdb") as r:
        assert r.country("81.2.69.160") is None


class FsPath:
    """An os.PathLike that is not a pathlib.Path."""

    def __init__(self, path: str | bytes) -> None:
        self.path = path

    def __fspath__(self) -> str | bytes:
        return self.path


@pytest.mark.parametrize(
    "make", [str, bytes, lambda path: FsPath(str(path)), lambda path: FsPath(bytes(path))]
)
def test_any_path_form_opens(city_db: Path, make: Callable[[Path], object]) -> None:
    """Text, bytes and any os.PathLike open the database; ``path`` is its text."""
    with CountryResolver(make(city_db)) as resolver:  # type: ignore[arg-type]
        assert resolver.path == str(city_db)
        assert resolver.country("81.2.69.160") == "GB"


@pytest.mark.parametrize("path", [None, 42, ["a.mmdb"]])
def test_a_path_that_is_no_path_is_refused(path: object) -> None:
    """Anything else is a ConfigError naming it, before any file is touched."""
    with pytest.raises(ConfigError, match=f"path {re.escape(repr(path))}"):
        CountryResolver(path)  # type: ignore[arg-type]
