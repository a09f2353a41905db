"""IP addresses as integers: strict parsing of rule entries, lenient parsing of hits.

An address is a pair ``(version, value)``: ``version`` is 4 or 6, ``value`` the address as an
unsigned integer. IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are folded to IPv4 everywhere,
so ``::ffff:1.2.3.4`` and ``1.2.3.4`` are the same address in entries and in hits.

A rule entry is one of: a single address, a CIDR (host bits allowed: ``10.0.0.1/8`` is
``10.0.0.0/8``), an inclusive range ``first-last`` of one family, or an IPv4 wildcard with
trailing ``*`` octets (``10.1.*.*``). It compiles to one inclusive interval; an IPv6 interval
that overlaps the IPv4-mapped block also yields the IPv4 interval it maps to.
"""

from __future__ import annotations

import socket
from typing import Final

from ._errors import ConfigError

V4: Final = 4
V6: Final = 6
V4_BITS: Final = 32
V6_BITS: Final = 128
V4_MAX: Final = (1 << V4_BITS) - 1
V6_MAX: Final = (1 << V6_BITS) - 1
MAPPED_TAG: Final = 0xFFFF  # value >> 32 of every address in ::ffff:0:0/96
MAPPED_FIRST: Final = MAPPED_TAG << V4_BITS
MAPPED_LAST: Final = MAPPED_FIRST | V4_MAX
MAPPED_PACKED_PREFIX: Final = MAPPED_FIRST.to_bytes(16, "big")[:12]
# Longest address text worth parsing: full IPv6 with an embedded IPv4 is 45 characters;
# the slack covers brackets, white space and a zone id that a hit may carry.
MAX_HIT_TEXT: Final = 128

Address = tuple[int, int]
Interval = tuple[int, int, int]  # (version, first, last), inclusive


def parse_address(text: str) -> Address | None:
    """Parse one address in any valid text form, mapped IPv6 folded to IPv4; None if invalid."""
    try:
        if ":" in text:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
            if value >> V4_BITS == MAPPED_TAG:
                return V4, value & V4_MAX
            return V6, value
        return V4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


def pack_address(address: Address) -> bytes:
    """The address as big-endian bytes, 4 for IPv4 and 16 for IPv6, as ``inet_pton`` gives."""
    return address[1].to_bytes(4 if address[0] == V4 else 16, "big")


def parse_hit_address(ip: object) -> Address | None:
    """Parse a hit's address leniently: bytes, white space, brackets and zone ids are accepted.

    This is the slow path behind the hot path's direct ``inet_pton``; None means the hit
    carries no usable address.
    """
    if isinstance(ip, bytes | bytearray):
        try:
            ip = ip.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(ip, str) or len(ip) > MAX_HIT_TEXT:
        return None
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.partition("%")[0]
    return parse_address(text)


def parse_entry(entry: object) -> list[Interval]:
    """Compile one excluded-IP entry into inclusive intervals; ConfigError names a bad entry."""
    if not isinstance(entry, str):
        raise ConfigError(f"excluded IP entry {entry!r} is not a string")
    text = entry.strip()
    if not text:
        raise ConfigError(f"excluded IP entry {entry!r} is empty")
    if "%" in text:
        raise ConfigError(f"excluded IP entry {entry!r} has a zone id, which no hit carries")
    if "/" in text:
        version, first, last = _parse_cidr(entry, text)
    elif "-" in text:
        version, first, last = _parse_range(entry, text)
    elif "*" in text:
        version, first, last = _parse_wildcard(entry, text)
    else:
        version, first = _parse_single(entry, text)
        last = first
    return with_mapped_projection(version, first, last)


def _parse_single(entry: str, text: str) -> Address:
    address = parse_address(text)
    if address is None:
        raise ConfigError(f"excluded IP entry {entry!r} is not an address, CIDR or range")
    return address


def _parse_cidr(entry: str, text: str) -> Interval:
    address_text, _, prefix_text = text.partition("/")
    address_text, prefix_text = address_text.strip(), prefix_text.strip()
    if ":" in address_text:  # parse unfolded: the prefix counts IPv6 bits
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address_text), "big")
        except (OSError, ValueError):
            raise ConfigError(f"excluded IP entry {entry!r} has an invalid address") from None
        bits = V6_BITS
    else:
        address = _parse_single(entry, address_text)
        value, bits = address[1], V4_BITS
    if not (prefix_text.isascii() and prefix_text.isdigit()) or len(prefix_text) > 3:
        raise ConfigError(f"excluded IP entry {entry!r} has an invalid prefix length")
    prefix = int(prefix_text)
    if prefix > bits:
        raise ConfigError(
            f"excluded IP entry {entry!r} has prefix /{prefix}, out of bounds (0-{bits})"
        )
    host_mask = (1 << (bits - prefix)) - 1
    first = value & ~host_mask
    return (V4 if bits == V4_BITS else V6), first, first | host_mask


def _parse_range(entry: str, text: str) -> Interval:
    first_text, _, last_text = text.partition("-")
    first = parse_address(first_text.strip())
    last = parse_address(last_text.strip())
    if first is None or last is None:
        raise ConfigError(f"excluded IP entry {entry!r} is not an address, CIDR or range")
    if first[0] != last[0]:
        raise ConfigError(f"excluded IP entry {entry!r} is a range that mixes IPv4 and IPv6")
    if first[1] > last[1]:
        raise ConfigError(f"excluded IP entry {entry!r} is a reversed range (first after last)")
    return first[0], first[1], last[1]


def _parse_wildcard(entry: str, text: str) -> Interval:
    octets = text.split(".")
    fixed = [octet for octet in octets if octet != "*"]
    if ":" in text or len(octets) != 4 or octets[len(fixed) :] != ["*"] * (4 - len(fixed)):
        raise ConfigError(
            f"excluded IP entry {entry!r} is not an IPv4 wildcard with trailing '*' octets"
        )
    prefix_address = parse_address(".".join(fixed + ["0"] * (4 - len(fixed))))
    if prefix_address is None:
        raise ConfigError(f"excluded IP entry {entry!r} has an invalid octet")
    host_mask = (1 << (8 * (4 - len(fixed)))) - 1
    return V4, prefix_address[1], prefix_address[1] | host_mask


def with_mapped_projection(version: int, first: int, last: int) -> list[Interval]:
    """The interval itself, plus its IPv4 image when an IPv6 interval overlaps ::ffff:0:0/96."""
    intervals = [(version, first, last)]
    if version == V6 and first <= MAPPED_LAST and last >= MAPPED_FIRST:
        intervals.append(
            (V4, max(first, MAPPED_FIRST) - MAPPED_FIRST, min(last, MAPPED_LAST) - MAPPED_FIRST)
        )
    return intervals
