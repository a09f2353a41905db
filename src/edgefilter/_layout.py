"""The byte layout of an ``AddressTable``: what its fields hold, and every reader of them.

A table holds, per family, disjoint ``(first, last, layer)`` intervals (``_intervals``
builds them) in one of two forms, so that the hot path can search the output of
``socket.inet_pton`` with one ``bisect`` and no conversion.

The packed form (``compact=False``). Each interval is two bounds of big-endian
bytes: its start, ``first`` in ``width`` bytes (4 or 16), and its end, ``last`` in ``width``
bytes followed by one byte, its layer (``LAYER_BYTE``, the last). An address of ``width``
bytes sorts below that end exactly when it is at most ``last``, so it lies inside an
interval exactly when ``bisect_right(bounds, address)`` is odd, and the bound at that index
is the interval's end. The bounds are split into buckets by the address's first byte or two
(``bucket_bounds``): ``buckets4``/``buckets6`` hold the buckets, and ``shift4``/``shift6``
say how an address picks its bucket. That field is a shift when it is not negative, and a
tag when it is: ``FLAT`` (every address shifts to bucket 0, the only one) and ``BY_BYTE``
(``buckets[packed[0] >> BY_BYTE]``, 256 buckets) are shifts; ``WIDE`` (``buckets[packed[0]
<< 8 | packed[1]]``, 65,536 buckets) and ``COMPACT`` (IPv4 only: no buckets, the bounds are
in ``compact4``) are tags. One field for both keeps the common case to one test on the hot
path, ``shift < 0``. A bucket that starts inside an interval begins with ``OPEN_BUCKET``
(``b""``, below every address: it keeps the bucket's parity that of the whole table), and one
that ends inside an interval is closed with that interval's end (so the bound found at an
odd index always names the layer).

The compact form (``compact=True``; ``compile_rules``' default with the compiled reader). For
IPv4, ``compact4`` is one ``array('Q')``: a start
is ``first << COMPACT_TAG_BITS`` and an end ``last << COMPACT_TAG_BITS | COMPACT_END |
layer``; an address ``v`` is searched as ``v << COMPACT_TAG_BITS | COMPACT_PROBE``
(``compact_key``), which sorts above every start and below every end of the same value, so
parity and layers work as in the packed form, and an end's layer is ``end &
COMPACT_LAYER_MASK`` (hence at most ``MAX_LAYERS`` layers in any table). Over
``BUCKET_THRESHOLD`` bounds, ``compact_index4`` (``array('I')`` of 257) says where each first
byte's values start: the values of first byte ``b`` (``value >> COMPACT_FIRST_BYTE_SHIFT ==
b``) are ``compact4[compact_index4[b]:compact_index4[b + 1]]``; otherwise it is None. For
IPv6, ``compact6`` is one ``bytes`` of ``RECORD6``-byte records, each a bound's 16 address
bytes and then the tag byte a compact IPv4 bound keeps in its low byte (0 for a start,
``COMPACT_END | layer`` for an end), searched (``record_index``) with the address and
``COMPACT_PROBE``, in bytes' order; ``shift6`` is then ``COMPACT``.

Layers. A site's table layers its rules in the order of the layer numbers: ``LAYER_IP`` (its
excluded IPs), ``LAYER_COUNTRY`` (the addresses of its excluded countries) and ``LAYER_ASN``
(the addresses of its excluded autonomous systems); a later rule takes the next number and
raises ``LAYER_COUNT``. ``by_layer`` turns a mapping from
these numbers into the tuple a reader indexes with the layer it found.

Readers. Whoever changes this layout changes all of these with it:
``AddressTable.layer_of_packed`` (``_tables``), the reference reader of both forms, through
``bucket_of`` and ``compact_key``; ``AddressTable.__contains__``, an inline copy of it after
its own ``inet_pton`` (kept for ``benchmarks/bench_lookup.py``); ``EdgeFilter.should_track``
(``_filter``), an inline copy of its packed part (kept for ``benchmarks/bench_hot_path.py``),
whose ``_EXCLUSIONS`` maps layers to decisions; ``EdgeFilter._decide_compact``, the compact
reader, which calls ``layer_of_packed``; ``_layers.CountryLayering.layer``, which builds a
site's table as ``AddressTable.layered(excluded_ips, countries)``, the order of the layer
numbers; ``unpack_intervals``, ``uncompact_bounds`` and ``uncompact_records`` here, which read
the intervals back; and the compiled reader, ``_speedups.c``, which checks these constants
when it binds (``bind``). ``tests/test_layout.py::test_inline_lookups_agree_with_layer_of_packed``
pins both inline copies to the reference reader on packed, wide, compact and layered tables,
and ``tests/test_compiled.py`` the compiled reader.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, TypeVar

from ._intervals import LayeredInterval

# Layer numbers, named once: the index of a site's rule in its layered table.
LAYER_IP: Final = 0
LAYER_COUNTRY: Final = 1
LAYER_ASN: Final = 2
LAYER_COUNT: Final = 3

# The packed form.
LAYER_BYTE: Final = -1  # the index, in an interval's end, of the byte that names its layer
OPEN_BUCKET: Final = b""  # first bound of a bucket that starts inside an interval
# Tables with more bounds than this get a first-level index on the address's first byte,
# and over WIDE_THRESHOLD on its first two bytes.
BUCKET_THRESHOLD: Final = 512
WIDE_THRESHOLD: Final = 16_384
FLAT: Final = 8  # shift of a table without an index: every first byte maps to bucket 0
BY_BYTE: Final = 0  # shift of a first-byte index
WIDE: Final = -1  # tag of a first-two-bytes index
COMPACT: Final = -2  # tag of IPv4 bounds kept as one array of ints, in ``compact4``
BYTE_BITS: Final = 8
OUTSIDE: Final[tuple[bytes, ...]] = ()  # a bucket wholly outside every interval

# The compact form.
COMPACT_TAG_BITS: Final = 8  # an address's value is shifted above this many tag bits
COMPACT_END: Final = 0x80  # tag of an interval's end
COMPACT_PROBE: Final = 0x40  # tag of a search key: above every start, below every end
COMPACT_LAYER_MASK: Final = 0x3F  # the tag bits of an end that name its layer
MAX_LAYERS: Final = COMPACT_LAYER_MASK + 1
COMPACT_FIRST_BYTE_SHIFT: Final = 24 + COMPACT_TAG_BITS  # value >> this: the first byte
COMPACT_TYPECODE: Final = "Q"
COMPACT_INDEX_TYPECODE: Final = "I"
RECORD6: Final = 17  # bytes of one compact IPv6 bound: the address, then its tag

# What a reader of address text answers besides a layer (``_tables.layer_of_text``).
OUTSIDE_LAYER: Final = -1  # no layer holds the address
ASK_PYTHON: Final = -2  # not plain address text (or an odd table): the lenient Python read
UNLAYERED: Final = -3  # the site's layered table is not built yet (``_speedups.layer_of_hit``)

Value = TypeVar("Value")


def by_layer(values: Mapping[int, Value]) -> tuple[Value, ...]:
    """``values`` as a tuple indexed by layer number; every layer from 0 up must be given."""
    if sorted(values) != list(range(len(values))):
        raise ValueError(f"layers {sorted(values)} are not numbered 0 to {len(values) - 1}")
    return tuple(values[layer] for layer in range(len(values)))


def pack_intervals(intervals: Iterable[LayeredInterval], width: int) -> tuple[bytes, ...]:
    """Intervals as the sorted bounds of the packed form: a start of ``width`` bytes, and an
    end of ``width`` bytes and the layer byte."""
    packed: list[bytes] = []
    for first, last, layer in intervals:
        packed += (first.to_bytes(width, "big"), last.to_bytes(width, "big") + bytes((layer,)))
    return tuple(packed)


def unpack_intervals(
    buckets: tuple[tuple[bytes, ...], ...], width: int
) -> Iterator[LayeredInterval]:
    """The intervals behind packed buckets (``bucket_bounds`` and ``pack_intervals`` undone)."""
    previous, first = OPEN_BUCKET, 0
    for bucket in buckets:
        for bound in bucket:
            if bound <= previous:  # OPEN_BUCKET, or an end repeated to close a bucket
                continue
            previous = bound
            if len(bound) == width:
                first = int.from_bytes(bound, "big")
            else:
                yield first, int.from_bytes(bound[:width], "big"), bound[LAYER_BYTE]


def _first_byte(bound: bytes) -> int:
    return bound[0]


def _first_two_bytes(bound: bytes) -> int:
    return bound[0] << BYTE_BITS | bound[1]


def bucket_bounds(packed: tuple[bytes, ...]) -> tuple[tuple[tuple[bytes, ...], ...], int]:
    """Split packed bounds into buckets by the address's first byte(s), and the shift or tag
    that picks an address's bucket (``FLAT``, ``BY_BYTE`` or ``WIDE``).

    Searching one bucket takes fewer steps and cache misses than one search over a large
    table. Two bytes only for the largest tables: reading a byte of ``bytes`` costs about as
    much in CPython as searching a small bucket, and a two-byte index holds 65,536 entries.
    """
    if len(packed) <= BUCKET_THRESHOLD:
        return (packed,), FLAT
    wide = len(packed) > WIDE_THRESHOLD
    key_of = _first_two_bytes if wide else _first_byte
    buckets: list[tuple[bytes, ...]] = []
    index, count = 0, len(packed)
    while index < count:  # one step per non-empty bucket; empty runs are filled in bulk
        key = key_of(packed[index])
        end = index
        while end < count and key_of(packed[end]) == key:
            end += 1
        bucket = packed[index:end]
        if index & 1:  # an odd number of bounds before: inside the interval ending here
            buckets += [(OPEN_BUCKET, packed[index])] * (key - len(buckets))
            bucket = (OPEN_BUCKET, *bucket)
        else:
            buckets += [OUTSIDE] * (key - len(buckets))
        if end & 1:  # the bucket ends inside an interval: close it with that end
            bucket += (packed[end],)
        buckets.append(bucket)
        index = end
    key_bits = 2 * BYTE_BITS if wide else BYTE_BITS
    buckets += [OUTSIDE] * ((1 << key_bits) - len(buckets))  # outside: an even count
    return tuple(buckets), WIDE if wide else BY_BYTE


def bucket_of(
    buckets: tuple[tuple[bytes, ...], ...], shift: int, packed: bytes
) -> tuple[bytes, ...]:
    """The bucket to search for a packed address, ``shift`` being ``FLAT``, ``BY_BYTE`` or
    ``WIDE`` (the hot path inlines this)."""
    if shift == WIDE:
        return buckets[packed[0] << BYTE_BITS | packed[1]]
    return buckets[packed[0] >> shift]


def compact_bounds(intervals: Iterable[LayeredInterval]) -> array[int]:
    """IPv4 intervals as the one array of the compact form: about a sixth of the memory of
    bytes, but each probe of a search makes an int, so a lookup costs more."""
    values = array(COMPACT_TYPECODE)
    for first, last, layer in intervals:
        end = last << COMPACT_TAG_BITS | COMPACT_END | layer
        values += array(COMPACT_TYPECODE, (first << COMPACT_TAG_BITS, end))
    return values


def compact_index(values: array[int]) -> array[int] | None:
    """Where each first byte's values start in a compact table over ``BUCKET_THRESHOLD``
    bounds (257 offsets, the last the end); None for a smaller table."""
    if len(values) <= BUCKET_THRESHOLD:
        return None
    return array(
        COMPACT_INDEX_TYPECODE,
        (bisect_left(values, byte << COMPACT_FIRST_BYTE_SHIFT) for byte in range(257)),
    )


def compact_key(packed: bytes) -> int:
    """The search key of a packed IPv4 address in a compact table."""
    return int.from_bytes(packed, "big") << COMPACT_TAG_BITS | COMPACT_PROBE


def compact_records(intervals: Iterable[LayeredInterval]) -> bytes:
    """IPv6 intervals as the one ``bytes`` of the compact form: ``RECORD6`` bytes per bound,
    the address and then the tag a compact IPv4 bound keeps in its low byte."""
    return b"".join(
        first.to_bytes(16, "big")
        + b"\x00"
        + last.to_bytes(16, "big")
        + bytes((COMPACT_END | layer,))
        for first, last, layer in intervals
    )


def record_index(records: bytes, packed: bytes) -> int:
    """``bisect_right`` of a packed IPv6 address over compact records (the reference reader;
    the compiled one is ``_speedups``): the key is the address tagged ``COMPACT_PROBE``."""
    key = packed + bytes((COMPACT_PROBE,))
    low, high = 0, len(records) // RECORD6
    while low < high:
        middle = (low + high) // 2
        if key < records[middle * RECORD6 : (middle + 1) * RECORD6]:
            high = middle
        else:
            low = middle + 1
    return low


def uncompact_records(records: bytes) -> Iterator[LayeredInterval]:
    """The intervals behind ``compact_records``."""
    for start in range(0, len(records), 2 * RECORD6):
        first = int.from_bytes(records[start : start + 16], "big")
        end = start + RECORD6
        yield (
            first,
            int.from_bytes(records[end : end + 16], "big"),
            records[end + 16] & COMPACT_LAYER_MASK,
        )


def uncompact_bounds(values: array[int]) -> Iterator[LayeredInterval]:
    """The intervals behind ``compact_bounds``."""
    for index in range(0, len(values), 2):
        end = values[index + 1]
        yield values[index] >> COMPACT_TAG_BITS, end >> COMPACT_TAG_BITS, end & COMPACT_LAYER_MASK
