"""Address and entry parsing: tables of edge cases, and agreement with ``ipaddress``."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter import ConfigError
from edgefilter._addresses import pack_address, parse_address, parse_entry, parse_hit_address

from .oracle import fold
from .strategies import addresses

MAPPED = 0xFFFF << 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # IPv4
        ("1.2.3.4", (4, 0x01020304)),
        ("0.0.0.0", (4, 0)),
        ("255.255.255.255", (4, 2**32 - 1)),
        # IPv6, any case, compressed or zero-padded
        ("2001:db8::1", (6, 0x20010DB8 << 96 | 1)),
        ("2001:DB8::1", (6, 0x20010DB8 << 96 | 1)),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", (6, 0x20010DB8 << 96 | 1)),
        ("::", (6, 0)),
        # IPv4-mapped folds to IPv4
        ("::ffff:1.2.3.4", (4, 0x01020304)),
        ("::FFFF:102:304", (4, 0x01020304)),
        ("0:0:0:0:0:ffff:1.2.3.4", (4, 0x01020304)),
        # malformed
        ("1.2.3", None),
        ("1.2.3.256", None),
        ("01.2.3.4", None),
        ("1.2.3.4 ", None),
        ("fe80::1%eth0", None),
        ("", None),
        ("2001:db8::g", None),
    ],
)
def test_parse_address(text: str, expected: tuple[int, int] | None) -> None:
    """Strict address parsing folds mapped addresses and rejects malformed text."""
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("hit", "expected"),
    [
        (" 1.2.3.4\n", (4, 0x01020304)),
        (b"1.2.3.4", (4, 0x01020304)),
        ("[2001:db8::1]", (6, 0x20010DB8 << 96 | 1)),
        ("fe80::1%eth0", (6, 0xFE80 << 112 | 1)),
        (b"\xff\xfe", None),
        (None, None),
        (1234, None),
        ("1" * 10_000, None),
    ],
)
def test_parse_hit_address(hit: object, expected: tuple[int, int] | None) -> None:
    """Hit parsing is lenient about white space, bytes, brackets and zone ids, never raises."""
    assert parse_hit_address(hit) == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        # single addresses
        ("10.0.0.1", [(4, 0x0A000001, 0x0A000001)]),
        ("  10.0.0.1\t", [(4, 0x0A000001, 0x0A000001)]),
        ("::ffff:10.0.0.1", [(4, 0x0A000001, 0x0A000001)]),
        # CIDR, host bits allowed, /0 and full-length prefixes
        ("10.0.0.1/8", [(4, 0x0A000000, 0x0AFFFFFF)]),
        ("0.0.0.0/0", [(4, 0, 2**32 - 1)]),
        ("1.2.3.4/32", [(4, 0x01020304, 0x01020304)]),
        ("2001:db8::1/128", [(6, 0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 1)]),
        (
            "::ffff:10.0.0.0/104",
            [(6, MAPPED | 0x0A000000, MAPPED | 0x0AFFFFFF), (4, 0x0A000000, 0x0AFFFFFF)],
        ),
        ("::/0", [(6, 0, 2**128 - 1), (4, 0, 2**32 - 1)]),
        # ranges in both families
        ("1.2.3.4-1.2.3.9", [(4, 0x01020304, 0x01020309)]),
        ("1.2.3.4 - 1.2.3.4", [(4, 0x01020304, 0x01020304)]),
        ("2001:db8::1-2001:db8::ff", [(6, 0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 0xFF)]),
        # wildcards
        ("10.1.*.*", [(4, 0x0A010000, 0x0A01FFFF)]),
        ("*.*.*.*", [(4, 0, 2**32 - 1)]),
    ],
)
def test_parse_entry(entry: str, expected: list[tuple[int, int, int]]) -> None:
    """Every entry kind compiles to the interval(s) it names."""
    assert parse_entry(entry) == expected


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("1.2.3.9-1.2.3.4", "reversed range"),
        ("1.2.3.4-2001:db8::1", "mixes IPv4 and IPv6"),
        ("1.2.3.4/33", "out of bounds"),
        ("2001:db8::/129", "out of bounds"),
        ("1.2.3.4/-1", "invalid prefix"),
        ("1.2.3.4/ 8x", "invalid prefix"),
        ("1.2.3.4/", "invalid prefix"),
        ("fe80::1%eth0", "zone id"),
        ("fe80::/64%eth0", "zone id"),
        ("10.*.1.*", "wildcard"),
        ("10.1.*", "wildcard"),
        ("2001:db8::*", "wildcard"),
        ("10.1.300.*", "invalid octet"),
        ("example.com", "not an address"),
        ("", "empty"),
        ("   ", "empty"),
        (None, "not a string"),
        (167772161, "not a string"),
    ],
)
def test_parse_entry_rejects(entry: object, reason: str) -> None:
    """Bad entries raise ConfigError with a reason that names the entry."""
    with pytest.raises(ConfigError, match=reason) as raised:
        parse_entry(entry)
    assert repr(entry) in str(raised.value)


@given(addresses)
def test_parse_address_agrees_with_ipaddress_on_valid_text(text: str) -> None:
    """Every valid text form parses to what ``ipaddress`` says, mapped forms folded."""
    expected = fold(ipaddress.ip_address(text))
    assert parse_address(text) == (expected.version, int(expected))


@given(addresses)
def test_pack_address_packs_as_inet_pton_does(text: str) -> None:
    """A parsed address packs into the bytes ``inet_pton`` gives, mapped forms folded."""
    address = parse_address(text)
    assert address is not None
    assert pack_address(address) == fold(ipaddress.ip_address(text)).packed


@given(st.one_of(st.text(alphabet="0123456789abcdefABCDEF:.x ", max_size=45), addresses))
def test_parse_address_agrees_with_ipaddress_on_any_text(text: str) -> None:
    """On arbitrary text (valid addresses among it), parsing succeeds exactly when
    ``ipaddress`` does, with its value."""
    try:
        expected = fold(ipaddress.ip_address(text))
    except ValueError:
        assert parse_address(text) is None
    else:
        assert parse_address(text) == (expected.version, int(expected))
