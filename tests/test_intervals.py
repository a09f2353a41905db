"""Compiled address tables against the naive ``ipaddress`` scan, their oracle."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter import AddressTable, IntervalTable
from edgefilter._intervals import compile_entries, family_tables, layer_intervals, subtract
from edgefilter._layout import BY_BYTE, WIDE

from .oracle import Address, fold, naive_excluded
from .strategies import addresses, entry_lists


@pytest.mark.parametrize(
    ("intervals", "bounds"),
    [
        # empty
        ([], ()),
        # one interval
        ([(5, 9)], (5, 10)),
        # overlapping, nested and adjacent intervals merge; order does not matter
        ([(5, 9), (7, 12)], (5, 13)),
        ([(1, 100), (5, 9)], (1, 101)),
        ([(10, 19), (0, 9)], (0, 20)),
        # a gap of one value keeps them apart
        ([(0, 9), (11, 19)], (0, 10, 11, 20)),
    ],
)
def test_interval_table_merges(intervals: list[tuple[int, int]], bounds: tuple[int, ...]) -> None:
    """Intervals are sorted and merged into flat bounds."""
    assert IntervalTable.from_intervals(intervals).bounds == bounds


@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 20)), max_size=20), st.integers(-5, 230)
)
def test_interval_table_agrees_with_naive_membership(
    spans: list[tuple[int, int]], value: int
) -> None:
    """A value is in the table exactly when some input interval holds it."""
    intervals = [(first, first + length) for first, length in spans]
    table = IntervalTable.from_intervals(intervals)
    assert (value in table) == any(first <= value <= last for first, last in intervals)
    assert list(table) == sorted(table)
    assert len(table) == len(list(table))


small_spans = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 8)).map(lambda span: (span[0], sum(span))),
    max_size=8,
)


@given(small_spans, small_spans)
def test_subtract_keeps_exactly_the_values_outside_the_taken_table(
    intervals: list[tuple[int, int]], taken: list[tuple[int, int]]
) -> None:
    """``subtract`` leaves each value of the intervals that the taken table lacks, once."""
    table = IntervalTable.from_intervals(taken)
    parts = subtract(intervals, table)
    kept = [value for first, last in parts for value in range(first, last + 1)]
    expected = [
        value
        for first, last in intervals
        for value in range(first, last + 1)
        if not any(low <= value <= high for low, high in taken)
    ]
    assert kept == expected
    assert all(first <= last for first, last in parts)


@given(st.lists(small_spans, max_size=4))
def test_layer_intervals_names_the_first_layer_holding_each_value(
    layers: list[list[tuple[int, int]]],
) -> None:
    """Layered intervals are disjoint and sorted, and each value's layer is the first table
    that holds it."""
    spans = layer_intervals(IntervalTable.from_intervals(layer) for layer in layers)
    assert spans == sorted(spans)
    assert all(last < first for (_, last, _), (first, _, _) in itertools.pairwise(spans))
    for value in range(-1, 71):
        holders = [i for i, layer in enumerate(layers) if any(a <= value <= b for a, b in layer)]
        found = [layer for first, last, layer in spans if first <= value <= last]
        assert found == holders[:1], value


def test_compile_entries_keeps_every_bad_entry_with_its_reason_in_order() -> None:
    """Entries compile to intervals per family; each bad one comes back, in order, with why."""
    intervals, rejected = compile_entries(["10.0.0.0/8", None, "::1", "1.2.3.9-1.2.3.4"])
    assert intervals == [(4, 0x0A000000, 0x0AFFFFFF), (6, 1, 1)]
    assert [entry for entry, _ in rejected] == [None, "1.2.3.9-1.2.3.4"]
    assert "not a string" in rejected[0][1]
    assert "reversed range" in rejected[1][1]
    assert family_tables(intervals) == (
        IntervalTable.from_intervals([(0x0A000000, 0x0AFFFFFF)]),
        IntervalTable.from_intervals([(1, 1)]),
    )


def entry_span(entry: str) -> tuple[Address, Address]:
    """The first and last address an entry names, by ``ipaddress`` alone."""
    text = entry.strip()
    if "*" in text:
        fixed = [octet for octet in text.split(".") if octet != "*"]
        text = ".".join(fixed + ["0"] * (4 - len(fixed))) + f"/{8 * len(fixed)}"
    if "/" in text:
        network = ipaddress.ip_network(text, strict=False)
        return network[0], network[-1]
    if "-" in text:
        first, last = (ipaddress.ip_address(side.strip()) for side in text.split("-"))
        return first, last
    address = ipaddress.ip_address(text)
    return address, address


def neighbours(address: Address) -> list[Address]:
    """The address and the ones just before and after it, within its family."""
    top = 2 ** (32 if address.version == 4 else 128) - 1
    kind = type(address)
    return [
        kind(value)
        for value in (int(address) - 1, int(address), int(address) + 1)
        if 0 <= value <= top
    ]


def boundary_hits(entries: list[str]) -> list[Address]:
    """Addresses just inside and outside each entry's edges, where off-by-one bugs live,
    and at the edges of the compiled table's merged intervals."""
    hits = []
    for entry in entries:
        hits += (hit for edge in entry_span(entry) for hit in neighbours(edge))
    table, _ = AddressTable.from_entries(entries)
    for family, kind in ((table.ipv4, ipaddress.IPv4Address), (table.ipv6, ipaddress.IPv6Address)):
        for first, last in family:
            hits += (*neighbours(kind(first)), *neighbours(kind(last)))
    return hits


@given(entry_lists, st.lists(addresses, max_size=8), st.booleans())
def test_address_table_agrees_with_ipaddress_scan(
    entries: list[str], extra: list[str], compact: bool
) -> None:
    """Compiled tables, packed or compact, decide every hit as a linear ``ipaddress`` scan."""
    table, rejected = AddressTable.from_entries(entries, compact=compact)
    assert table.compact is compact
    assert rejected == ()
    hits = boundary_hits(entries) + [ipaddress.ip_address(text) for text in extra]
    for hit in hits:
        assert (str(hit) in table) == naive_excluded(entries, hit), (entries, hit)
        mapped = fold(hit)
        if mapped.version == 4:  # the ::ffff: form of an IPv4 hit decides the same
            assert (f"::ffff:{mapped}" in table) == (str(hit) in table)


@given(entry_lists, st.randoms(use_true_random=False))
def test_entry_order_and_duplicates_do_not_matter(entries: list[str], rng: random.Random) -> None:
    """Shuffling and repeating entries compiles the same tables."""
    shuffled = entries + entries[: len(entries) // 2]
    rng.shuffle(shuffled)
    assert AddressTable.from_entries(shuffled)[0] == AddressTable.from_entries(entries)[0]


def test_bad_entries_are_reported_and_the_rest_apply() -> None:
    """A bad entry is rejected with its reason; good entries beside it still compile."""
    table, rejected = AddressTable.from_entries(["10.0.0.0/8", "nonsense", "1.1.1.1/99"])
    assert "10.9.9.9" in table
    assert "11.0.0.0" not in table
    assert "1.1.1.1" not in table  # the rejected entry does not apply
    assert table.ipv4 == IntervalTable.from_intervals([(0x0A000000, 0x0AFFFFFF)])
    assert table.ipv6 == IntervalTable()
    assert [entry for entry, _ in rejected] == ["nonsense", "1.1.1.1/99"]


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(("spans", "shift"), [(2_000, BY_BYTE), (12_000, WIDE)])
def test_bucketed_lookup_agrees_with_plain_bisect(version: int, spans: int, shift: int) -> None:
    """A table large enough for a first-level index (by one byte, or two for the largest)
    answers as a plain int bisect does."""
    rng = random.Random(version)
    bits = 32 if version == 4 else 128
    kind = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    # Spans concentrated in a few two-byte buckets, plus spans crossing bucket edges.
    starts = [
        rng.randrange(0, 1 << 16, 1024) << (bits - 16) | rng.getrandbits(bits - 16)
        for _ in range(spans)
    ]
    starts += [key << (bits - 16) for key in range(0, 1 << 16, 97)]
    intervals = [(version, start, min(start + rng.getrandbits(8), 2**bits - 1)) for start in starts]
    intervals.append((version, 2**bits - 50, 2**bits - 1))
    table = AddressTable.from_intervals(intervals)
    plain = IntervalTable.from_intervals(span[1:] for span in intervals)  # from the input
    assert (table.ipv4 if version == 4 else table.ipv6) == plain
    assert (table.shift4 if version == 4 else table.shift6) == shift
    probes = [rng.getrandbits(bits) for _ in range(5_000)]
    probes += [
        edge + delta for first, last in plain for edge in (first, last) for delta in (-1, 0, 1)
    ]
    for value in probes:
        if 0 <= value < 2**bits:
            assert (str(kind(value)) in table) == (value in plain), hex(value)


def test_large_table_compiles_and_answers() -> None:
    """100,000 entries compile into one table that still answers exactly: inside each
    network, and outside it, at its neighbours and at random addresses."""
    rng = random.Random(7)
    networks = sorted({rng.getrandbits(24) for _ in range(100_000)})  # /24s by number
    entries = [f"{ipaddress.IPv4Address(network << 8)}/24" for network in networks]
    table, rejected = AddressTable.from_entries(entries)
    assert rejected == ()
    excluded = set(networks)
    probes = [rng.getrandbits(32) for _ in range(20_000)]
    for network in networks[::97]:
        first = network << 8
        probes += [first - 1, first, first + 255, first + 256]  # the neighbours are misses
    answers = {}
    for value in probes:
        if 0 <= value < 2**32:
            answers[value] = str(ipaddress.IPv4Address(value)) in table
            assert answers[value] is (value >> 8 in excluded), value
    assert 1_000 < sum(answers.values()) < len(answers) - 1_000  # many hits and many misses
    runs = sum(1 for network in networks if network - 1 not in excluded)
    assert len(table.ipv4) == runs  # adjacent /24s merge, nothing else does


@given(entry_lists, entry_lists, st.lists(addresses, max_size=8), st.booleans())
def test_layered_table_names_the_first_table_holding_each_address(
    first: list[str], second: list[str], extra: list[str], compact: bool
) -> None:
    """In a layered table, packed or compact, an address's layer is the first source table
    that holds it."""
    tables = [
        AddressTable.from_entries(first, compact=compact)[0],
        AddressTable.from_entries(second)[0],
    ]
    layered = AddressTable.layered(*tables)
    assert layered.compact is compact
    hits = boundary_hits(first) + boundary_hits(second)
    hits += [ipaddress.ip_address(text) for text in extra]
    for hit in hits:
        packed = fold(hit).packed
        holders = [i for i, entries in enumerate((first, second)) if naive_excluded(entries, hit)]
        expected = holders[0] if holders else None
        assert layered.layer_of_packed(packed) == expected, (first, second, hit)
        assert layered.contains_packed(packed) == (expected is not None)
    assert layered.ipv4 == IntervalTable.from_intervals([*tables[0].ipv4, *tables[1].ipv4])


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(("count", "index"), [(600, BY_BYTE), (6_000, WIDE)])
def test_bucketed_layered_table_names_layers_across_bucket_edges(
    version: int, count: int, index: int
) -> None:
    """Layers survive the first-level index: spans that cross buckets, and fully covered ones."""
    rng = random.Random(version + 10)
    bits = 32 if version == 4 else 128
    shift = bits - 16

    def spans(count: int) -> list[tuple[int, int, int]]:
        result = []
        for _ in range(count):
            start = rng.getrandbits(16) << shift | rng.getrandbits(shift)
            length = rng.choice([rng.getrandbits(8), rng.getrandbits(shift + 3)])
            result.append((version, start, min(start + length, 2**bits - 1)))
        return result

    sources = [spans(count), spans(count)]
    # The oracle: each source's int intervals, checked against a naive scan in another test.
    plains = [IntervalTable.from_intervals(span[1:] for span in each) for each in sources]
    layered = AddressTable.layered(*(AddressTable.from_intervals(each) for each in sources))
    assert (layered.shift4 if version == 4 else layered.shift6) == index
    probes = [rng.getrandbits(bits) for _ in range(5_000)]
    for first, last, _ in layered.layered_intervals(version):
        probes += [first - 1, first, last, last + 1, (first + last) // 2]
    width = bits // 8
    for value in probes:
        if 0 <= value < 2**bits:
            holders = [i for i, plain in enumerate(plains) if value in plain]
            expected = holders[0] if holders else None
            packed = value.to_bytes(width, "big")
            assert layered.layer_of_packed(packed) == expected, hex(value)


@given(entry_lists)
def test_compact_and_packed_tables_hold_the_same_intervals(entries: list[str]) -> None:
    """The compact form keeps exactly the packed form's intervals and layers."""
    packed = AddressTable.from_entries(entries)[0]
    compact = AddressTable.from_entries(entries, compact=True)[0]
    assert compact.layered_intervals(4) == packed.layered_intervals(4)
    assert compact.ipv4 == packed.ipv4
    assert compact.ipv6 == packed.ipv6
    assert compact.bound_count == packed.bound_count


def test_a_layered_table_holds_at_most_64_tables() -> None:
    """Each layer must fit the bits an end keeps for it; more tables are refused."""
    tables = [AddressTable.from_entries([f"10.0.0.{i}"])[0] for i in range(65)]
    assert AddressTable.layered(*tables[:64]).layered_intervals(4)[-1][2] == 63
    with pytest.raises(ValueError, match="at most 64"):
        AddressTable.layered(*tables)


def test_large_compact_table_searches_by_first_byte_and_agrees() -> None:
    """A compact table over 512 bounds searches one first byte's slice, spans that cross a
    first byte included, and answers as the packed table does."""
    rng = random.Random(5)
    intervals = [
        (4, start, start + rng.getrandbits(16)) for start in range(0, 2**32 - 2**16, 2**21)
    ]
    intervals += [(4, (byte << 24) - 999, (byte << 24) + 999) for byte in range(1, 256, 3)]
    intervals += [(4, 7 << 24, (9 << 24) + 5)]  # one span over a whole first byte
    packed = AddressTable.from_intervals(intervals)
    compact = AddressTable.from_intervals(intervals, compact=True)
    plain = IntervalTable.from_intervals(span[1:] for span in intervals)  # from the input
    assert compact.compact_index4 is not None
    assert compact.ipv4 == packed.ipv4 == plain
    probes = [rng.getrandbits(32) for _ in range(5_000)]
    probes += [byte << 24 | edge for byte in range(256) for edge in (0, 0xFFFFFF)]
    for first, last, _ in packed.layered_intervals(4):
        probes += [first - 1, first, last, last + 1]
    for value in probes:
        if 0 <= value < 2**32:
            address = value.to_bytes(4, "big")
            expected = 0 if value in plain else None
            assert compact.layer_of_packed(address) == expected, value
            assert packed.layer_of_packed(address) == expected, value
