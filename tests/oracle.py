"""A naive reference: excluded-IP entries matched one by one with the ``ipaddress`` module."""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def fold(address: Address) -> Address:
    """``::ffff:a.b.c.d`` is ``a.b.c.d``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def as_mapped(address: Address) -> ipaddress.IPv6Address | None:
    """The ``::ffff:a.b.c.d`` form of an IPv4 address, None for IPv6."""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address((0xFFFF << 32) | int(address))
    return None


def entry_matches(entry: str, hit: Address) -> bool:
    """Whether one entry excludes the (folded) hit, by ``ipaddress`` alone."""
    text = entry.strip()
    hit = fold(hit)
    if "/" in text or "*" in text:
        network = _network(text)
        mapped = as_mapped(hit)
        return hit in network or (mapped is not None and mapped in network)
    if "-" in text:
        first, last = (fold(ipaddress.ip_address(side.strip())) for side in text.split("-"))
        mapped = as_mapped(hit)
        if first.version == 6 and mapped is not None:  # an IPv6 range may span ::ffff:0:0/96
            return int(first) <= int(mapped) <= int(last)
        return first.version == hit.version and int(first) <= int(hit) <= int(last)
    return fold(ipaddress.ip_address(text)) == hit


def _network(text: str) -> Network:
    if "*" in text:
        octets = text.split(".")
        fixed = [octet for octet in octets if octet != "*"]
        return ipaddress.ip_network(
            ".".join(fixed + ["0"] * (4 - len(fixed))) + f"/{8 * len(fixed)}"
        )
    return ipaddress.ip_network(text, strict=False)


def naive_excluded(entries: list[str], hit: Address) -> bool:
    """Whether any entry excludes the hit: the linear scan the compiled table replaces."""
    return any(entry_matches(entry, hit) for entry in entries)
