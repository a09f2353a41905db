"""Hypothesis strategies: addresses in every text form, and excluded-IP entries of every kind."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

V4_MAX = 2**32 - 1
V6_MAX = 2**128 - 1
MAPPED_FIRST = 0xFFFF << 32

v4_values = st.one_of(
    st.integers(0, V4_MAX), st.sampled_from([0, 1, 0x7F000001, 0x0A000000, V4_MAX - 1, V4_MAX])
)
v6_values = st.one_of(
    st.integers(0, V6_MAX),
    st.integers(0, V4_MAX).map(lambda value: MAPPED_FIRST | value),  # ::ffff:a.b.c.d
    st.sampled_from([0, 1, MAPPED_FIRST - 1, MAPPED_FIRST, MAPPED_FIRST | V4_MAX, V6_MAX]),
)


def v4_text(value: int) -> str:
    """Dotted-quad text of an IPv4 value."""
    return str(ipaddress.IPv4Address(value))


@st.composite
def v6_text(draw: st.DrawFn, value: int) -> str:
    """One of the valid text forms of an IPv6 value: compressed, exploded, upper, mapped."""
    address = ipaddress.IPv6Address(value)
    forms = [address.compressed, address.exploded, address.compressed.upper()]
    if address.ipv4_mapped is not None:
        forms += [f"::ffff:{address.ipv4_mapped}", f"::FFFF:{address.ipv4_mapped}"]
        forms.append(f"0:0:0:0:0:ffff:{address.ipv4_mapped}")
    return draw(st.sampled_from(forms))


v4_addresses = v4_values.map(v4_text)
v6_addresses = v6_values.flatmap(v6_text)
addresses = st.one_of(v4_addresses, v6_addresses)

v4_cidrs = st.builds(lambda text, prefix: f"{text}/{prefix}", v4_addresses, st.integers(0, 32))
v6_cidrs = st.builds(lambda text, prefix: f"{text}/{prefix}", v6_addresses, st.integers(0, 128))


@st.composite
def ranges(draw: st.DrawFn) -> str:
    """An inclusive range ``first-last`` of one family (mapped forms count as IPv4)."""
    if draw(st.booleans()):
        first, last = sorted((draw(v4_values), draw(v4_values)))
        return f"{v4_text(first)}-{v4_text(last)}"
    first, last = sorted((draw(v6_values), draw(v6_values)))
    mapped = (first >> 32 == 0xFFFF) + (last >> 32 == 0xFFFF)
    if mapped == 1:  # one side folds to IPv4, the other not: not a one-family range
        first = last
    return f"{draw(v6_text(first))} - {draw(v6_text(last))}"


@st.composite
def wildcards(draw: st.DrawFn) -> str:
    """An IPv4 wildcard with 0 to 4 trailing ``*`` octets."""
    octets = v4_text(draw(v4_values)).split(".")
    stars = draw(st.integers(0, 4))
    return ".".join(octets[: 4 - stars] + ["*"] * stars)


entries = st.one_of(addresses, v4_cidrs, v6_cidrs, ranges(), wildcards())
entry_lists = st.lists(entries, max_size=12)
