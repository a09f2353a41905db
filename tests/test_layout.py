"""The table layout and its readers: every inline copy agrees with ``layer_of_packed``."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import AddressTable, CountryResolver, Decision, EdgeFilter, SiteRules
from edgefilter._addresses import pack_address, parse_hit_address
from edgefilter._decisions import EXCLUDED_ASN, EXCLUDED_COUNTRY, EXCLUDED_IP, INVALID_IP, TRACKED
from edgefilter._intervals import IntervalTable, layer_intervals
from edgefilter._layout import (
    BY_BYTE,
    COMPACT,
    FLAT,
    LAYER_ASN,
    LAYER_COUNT,
    LAYER_COUNTRY,
    LAYER_IP,
    WIDE,
    bucket_bounds,
    by_layer,
    compact_bounds,
    pack_intervals,
    uncompact_bounds,
    unpack_intervals,
)

from .conftest import CITY_DB
from .strategies import addresses, entry_lists

SITE = "1"
DECISIONS = {LAYER_IP: EXCLUDED_IP, LAYER_COUNTRY: EXCLUDED_COUNTRY, LAYER_ASN: EXCLUDED_ASN}
# Hits that are not an address in inet_pton's form: the lenient parser's inputs and garbage.
ODD_HITS = [None, 1234, b"\xff\xfe", "", "1.2.3", "1.2.3.4.5", "x" * 200, "::ffff:1.2.3.999"]


class OneSite:
    """A rules source holding one site's rules, swapped between examples."""

    def __init__(self) -> None:
        self.sites: dict[str, SiteRules] = {}
        self.rules_for: Callable[[str], SiteRules | None] = self.sites.get

    def resolve(self, site: str) -> SiteRules | None:
        """Nothing beyond ``rules_for``."""
        return None


@cache
def hot_path() -> tuple[OneSite, EdgeFilter, CountryResolver]:
    """One filter over a swappable site; its resolver never walks, so nothing is layered
    behind the test's back: the test stores the layered table itself."""
    resolver = CountryResolver(CITY_DB, compile_tables=False)
    source = OneSite()
    return source, EdgeFilter(source, geoip=resolver), resolver


def site_rules(table: AddressTable, layered: bool, resolver: CountryResolver) -> SiteRules:
    """Rules whose hot-path search is ``table``: as the IP table, or as the site's layered
    table of IPs and countries (which is what ``should_track`` then searches)."""
    if not layered:
        return SiteRules(site_id=SITE, excluded_ips=table, needs_ip=True)
    rules = SiteRules(
        site_id=SITE, excluded_ips=table, excluded_countries=frozenset({"ZZ"}), needs_ip=True
    )
    rules.country_layers[resolver] = table
    return rules


def reference_decision(table: AddressTable, hit: object) -> Decision:
    """The decision ``layer_of_packed``, the reference reader, leads to for a hit."""
    address = parse_hit_address(hit)
    if address is None:
        return INVALID_IP
    layer = table.layer_of_packed(pack_address(address))
    return TRACKED if layer is None else DECISIONS[layer]


def check_agreement(table: AddressTable, layered: bool, hit: object) -> None:
    """``should_track`` and ``in`` answer as ``layer_of_packed`` does for one hit."""
    source, edge_filter, resolver = hot_path()
    source.sites[SITE] = site_rules(table, layered, resolver)
    expected = reference_decision(table, hit)
    assert edge_filter.should_track(SITE, hit, "") is expected, (hit, expected)
    assert (hit in table) is (expected in (EXCLUDED_IP, EXCLUDED_COUNTRY)), (hit, expected)


def hit_forms(text: str) -> list[object]:
    """The forms of one address a hit may carry: text, mapped, bytes, padded, bracketed."""
    address = ipaddress.ip_address(text)
    forms: list[object] = [text, text.encode(), f" {text}\n"]
    if address.version == 4:
        forms.append(f"::ffff:{address}")
    else:
        forms += [f"[{address}]", f"{address}%eth0"]
    return forms


def spans(rng: random.Random, version: int, count: int) -> list[tuple[int, int, int]]:
    """Seeded ``(version, first, last)`` spans: short ones, and long ones across buckets."""
    bits = 32 if version == 4 else 128
    low_bits = bits - 16
    result = []
    for _ in range(count):
        start = rng.getrandbits(16) << low_bits | rng.getrandbits(low_bits)
        length = rng.getrandbits(low_bits + 3) if rng.random() < 0.05 else rng.getrandbits(8)
        result.append((version, start, min(start + length, 2**bits - 1)))
    return result


def seeded_table(seed: int, count: int, *, compact: bool = False) -> AddressTable:
    """A table of ``count`` seeded spans per family."""
    rng = random.Random(seed)
    return AddressTable.from_intervals(spans(rng, 4, count) + spans(rng, 6, count), compact=compact)


# Large tables, by name: (table, layered, expected shift4, expected shift6).
LARGE_SHAPES: dict[str, Callable[[], tuple[AddressTable, bool, int, int]]] = {
    "by byte": lambda: (seeded_table(1, 600), False, BY_BYTE, BY_BYTE),
    "wide": lambda: (seeded_table(2, 10_000), False, WIDE, WIDE),
    "compact, indexed": lambda: (seeded_table(3, 600, compact=True), False, COMPACT, COMPACT),
    "layered by byte": lambda: (
        AddressTable.layered(seeded_table(4, 400), seeded_table(5, 400)),
        True,
        BY_BYTE,
        BY_BYTE,
    ),
    "layered wide": lambda: (
        AddressTable.layered(seeded_table(6, 6_000), seeded_table(7, 6_000)),
        True,
        WIDE,
        WIDE,
    ),
    "layered compact": lambda: (
        AddressTable.layered(seeded_table(8, 400, compact=True), seeded_table(9, 400)),
        True,
        COMPACT,
        COMPACT,
    ),
}


@cache
def large(name: str) -> tuple[AddressTable, bool, list[int]]:
    """A large table, whether it is layered, and the edges of its intervals (±1) as IPv4
    values below 2**32 and IPv6 values above it."""
    table, layered, shift4, shift6 = LARGE_SHAPES[name]()
    assert (table.shift4, table.shift6) == (shift4, shift6)
    assert shift4 != COMPACT or table.compact_index4 is not None
    assert not layered or {layer for *_, layer in table.layered_intervals(4)} == {0, 1}
    edges = []
    for version, offset, top in ((4, 0, 2**32 - 1), (6, 2**32, 2**128 - 1)):
        for first, last, _ in table.layered_intervals(version):
            edges += [
                offset + value for value in (first - 1, first, last, last + 1) if value <= top
            ]
    return table, layered, edges


def value_text(value: int) -> str:
    """An edge from ``large`` as address text."""
    if value < 2**32:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value - 2**32))


@st.composite
def large_probes(draw: st.DrawFn) -> tuple[str, object]:
    """A large table's name and a hit for it: an interval's edge or any address, in any
    form a hit carries, or an odd hit."""
    name = draw(st.sampled_from(sorted(LARGE_SHAPES)))
    kind = draw(st.sampled_from(["edge", "address", "odd"]))
    if kind == "odd":
        return name, draw(st.sampled_from(ODD_HITS))
    edges = large(name)[2]
    text = value_text(draw(st.sampled_from(edges))) if kind == "edge" else draw(addresses)
    return name, draw(st.sampled_from(hit_forms(text)))


@settings(max_examples=400)
@given(large_probes())
def test_inline_lookups_agree_with_layer_of_packed(probe: tuple[str, object]) -> None:
    """On tables indexed by one byte, by two, compact and layered, ``should_track``'s and
    ``AddressTable.__contains__``'s inline lookups answer as ``layer_of_packed`` does."""
    name, hit = probe
    table, layered, _ = large(name)
    check_agreement(table, layered, hit)


@given(entry_lists, entry_lists, st.booleans(), st.booleans(), st.lists(addresses, max_size=8))
def test_inline_lookups_agree_with_layer_of_packed_on_small_tables(
    first: list[str], second: list[str], compact: bool, layered: bool, extra: list[str]
) -> None:
    """On small (unindexed) tables, packed or compact, layered or not, the inline lookups
    answer as ``layer_of_packed`` does, at the edges of every interval too."""
    table = AddressTable.from_entries(first, compact=compact)[0]
    if layered:
        table = AddressTable.layered(table, AddressTable.from_entries(second)[0])
    assert table.shift4 == (COMPACT if compact else FLAT)
    texts = list(extra)
    for version, kind in ((4, ipaddress.IPv4Address), (6, ipaddress.IPv6Address)):
        top = 2 ** (32 if version == 4 else 128) - 1
        for first_value, last_value, _ in table.layered_intervals(version):
            edges = (first_value - 1, first_value, last_value, last_value + 1)
            texts += [str(kind(value)) for value in edges if 0 <= value <= top]
    for hit in [*(form for text in texts for form in hit_forms(text)), *ODD_HITS]:
        check_agreement(table, layered, hit)


def test_large_table_probes_reach_every_decision() -> None:
    """The probes drawn for the large tables lead to each layer's decision, to tracking, and
    to an invalid address: the differential test can see each answer go wrong."""
    seen = set()
    for name in LARGE_SHAPES:
        table, _, edges = large(name)
        for value in edges[:: max(1, len(edges) // 500)]:
            seen.add(reference_decision(table, value_text(value)))
        seen.update(reference_decision(table, hit) for hit in ODD_HITS)
    assert seen == {EXCLUDED_IP, EXCLUDED_COUNTRY, TRACKED, INVALID_IP}


def test_by_layer_orders_values_by_layer_number() -> None:
    """A mapping from layer numbers becomes the tuple a reader indexes with a layer."""
    assert by_layer({LAYER_COUNTRY: "country", LAYER_IP: "ip"}) == ("ip", "country")
    assert len(by_layer(DECISIONS)) == LAYER_COUNT


@pytest.mark.parametrize("layers", [{1: "a"}, {0: "a", 2: "b"}, {-1: "a", 0: "b"}])
def test_by_layer_refuses_a_gap_in_the_layer_numbers(layers: dict[int, str]) -> None:
    """A layer left out would make a reader find the wrong value, or none: refused."""
    with pytest.raises(ValueError, match="not numbered"):
        by_layer(layers)


@st.composite
def layered_spans(draw: st.DrawFn, bits: int) -> list[tuple[int, int, int]]:
    """Disjoint layered intervals over ``bits``-bit values, from up to three random tables."""
    top = 2**bits - 1
    values = st.integers(0, top) | st.sampled_from([0, 1, top - 1, top])
    tables = []
    for _ in range(draw(st.integers(1, 3))):
        pairs = draw(st.lists(st.tuples(values, values), max_size=12))
        tables.append(IntervalTable.from_intervals(tuple(sorted(pair)) for pair in pairs))
    return layer_intervals(tables)


@given(layered_spans(32), layered_spans(128))
def test_packed_and_compact_bounds_give_back_their_intervals(
    v4: list[tuple[int, int, int]], v6: list[tuple[int, int, int]]
) -> None:
    """Packing and bucketing, and the compact form, keep every interval and its layer."""
    for spans_, width in ((v4, 4), (v6, 16)):
        buckets, _ = bucket_bounds(pack_intervals(spans_, width))
        assert list(unpack_intervals(buckets, width)) == spans_
    assert list(uncompact_bounds(compact_bounds(v4))) == v4


@pytest.mark.parametrize(("seed", "count"), [(1, 600), (2, 10_000)])
def test_bucketed_bounds_give_back_their_intervals(seed: int, count: int) -> None:
    """Buckets by one byte and by two keep every interval, across bucket edges too."""
    rng = random.Random(seed)
    for version, width in ((4, 4), (6, 16)):
        tables = [
            IntervalTable.from_intervals(span[1:] for span in spans(rng, version, count // 2))
            for _ in range(2)
        ]
        spans_ = layer_intervals(tables)
        assert {layer for *_, layer in spans_} == {0, 1}
        buckets, shift = bucket_bounds(pack_intervals(spans_, width))
        assert shift == (BY_BYTE if count < 1000 else WIDE)
        assert list(unpack_intervals(buckets, width)) == spans_
