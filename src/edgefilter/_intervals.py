"""Sorted, merged interval tables over integers, looked up with one ``bisect``."""

from __future__ import annotations

import socket
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from ._addresses import MAPPED_PACKED_PREFIX, V4, V6, Interval, pack_hit, parse_entry
from ._errors import ConfigError


@dataclass(frozen=True, slots=True)
class IntervalTable:
    """Non-overlapping inclusive intervals of integers, stored as one flat sorted tuple.

    ``bounds`` is ``(first0, last0 + 1, first1, last1 + 1, ...)`` with every value strictly
    greater than the one before, so ``value`` lies inside an interval exactly when
    ``bisect_right(bounds, value)`` is odd: one C-level binary search, whatever the size.
    """

    bounds: tuple[int, ...] = ()

    @classmethod
    def from_intervals(cls, intervals: Iterable[tuple[int, int]]) -> IntervalTable:
        """Sort and merge inclusive ``(first, last)`` intervals; adjacent ones join too."""
        bounds: list[int] = []
        for first, last in sorted(intervals):
            if bounds and first <= bounds[-1]:
                bounds[-1] = max(bounds[-1], last + 1)
            else:
                bounds += (first, last + 1)
        return cls(tuple(bounds))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and bisect_right(self.bounds, value) & 1 == 1

    def __len__(self) -> int:
        return len(self.bounds) // 2

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """The merged intervals as inclusive ``(first, last)`` pairs, in order."""
        bounds = self.bounds
        for index in range(0, len(bounds), 2):
            yield bounds[index], bounds[index + 1] - 1


LayeredInterval = tuple[int, int, int]  # (first, last, layer), inclusive


def subtract(intervals: Iterable[tuple[int, int]], taken: IntervalTable) -> list[tuple[int, int]]:
    """The parts of inclusive ``intervals`` that lie outside ``taken``."""
    bounds, count = taken.bounds, len(taken.bounds)
    parts: list[tuple[int, int]] = []
    for first, last in intervals:
        cursor, index = first, bisect_right(bounds, first)
        if index & 1:  # first lies inside a taken interval: start after it
            cursor, index = bounds[index], index + 1
        while cursor <= last:
            if index < count and bounds[index] <= last:
                if bounds[index] > cursor:
                    parts.append((cursor, bounds[index] - 1))
                cursor, index = bounds[index + 1], index + 2
            else:
                parts.append((cursor, last))
                break
    return parts


def layer_intervals(layers: Iterable[IntervalTable]) -> list[LayeredInterval]:
    """Disjoint ``(first, last, layer)`` intervals, sorted; an earlier layer wins an overlap."""
    taken = IntervalTable()
    result: list[LayeredInterval] = []
    for layer, table in enumerate(layers):
        result += ((first, last, layer) for first, last in subtract(table, taken))
        taken = IntervalTable.from_intervals([*taken, *table])
    result.sort()
    return result


def pack_intervals(intervals: Iterable[LayeredInterval], width: int) -> tuple[bytes, ...]:
    """Intervals as sorted bounds of big-endian bytes, whose order is the order of addresses.

    An interval ``(first, last, layer)`` packs as its start, ``first`` in ``width`` bytes, and
    its end, ``last`` in ``width`` bytes followed by the byte ``layer``. An address (``width``
    bytes) is below that end exactly when it is at most ``last``, so an address lies inside
    an interval exactly when ``bisect_right(bounds, address)`` is odd, and the bound at that
    index is the interval's end, whose last byte names its layer.
    """
    packed: list[bytes] = []
    for first, last, layer in intervals:
        packed += (first.to_bytes(width, "big"), last.to_bytes(width, "big") + bytes((layer,)))
    return tuple(packed)


def unpack_intervals(
    buckets: tuple[tuple[bytes, ...], ...], width: int
) -> Iterator[LayeredInterval]:
    """The intervals behind packed buckets (``bucket_bounds`` and ``pack_intervals`` undone)."""
    previous, first = b"", 0
    for bucket in buckets:
        for bound in bucket:
            if bound <= previous:  # the b"" marker, or an end repeated to close a bucket
                continue
            previous = bound
            if len(bound) == width:
                first = int.from_bytes(bound, "big")
            else:
                yield first, int.from_bytes(bound[:width], "big"), bound[width]


_inet_pton = socket.inet_pton
_from_bytes = int.from_bytes
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6
# Tables with more bounds than this get a first-level index on the address's first byte,
# and over WIDE_THRESHOLD on its first two bytes.
BUCKET_THRESHOLD: Final = 512
WIDE_THRESHOLD: Final = 16_384
FLAT: Final = 8  # the shift of a table without an index: every first byte maps to 0
BY_BYTE: Final = 0  # the shift of a first-byte index
WIDE: Final = -1  # marks a first-two-bytes index
COMPACT: Final = -2  # marks IPv4 bounds kept as one array of ints (see ``compact_bounds``)
MAX_LAYERS: Final = 64  # a layer is the low 6 bits of a compact end
_OUTSIDE: Final[tuple[bytes, ...]] = ()


def _first_byte(bound: bytes) -> int:
    return bound[0]


def _first_two_bytes(bound: bytes) -> int:
    return bound[0] << 8 | bound[1]


def bucket_bounds(packed: tuple[bytes, ...]) -> tuple[tuple[tuple[bytes, ...], ...], int]:
    """Split packed bounds into buckets by the address's first byte(s), and the key shift.

    The hot path finds an address's bucket as ``buckets[packed[0] >> shift]`` (or by its
    first two bytes when ``shift`` is ``WIDE``) and bisects only that bucket: fewer steps
    and cache misses than one search over a large table. A bucket that starts inside an
    interval begins with ``b""`` (it sorts before every address: one bound passed), so the
    parity of the bucket-local position is the parity of the global one; a bucket that ends
    inside an interval is closed with that interval's end, so the bound at an odd position
    always names the layer. Small tables are one bucket (``FLAT`` maps every key to 0).
    Two bytes only for the largest tables: reading a byte of ``bytes`` costs about as much
    in CPython as searching a small bucket, and a two-byte index holds 65,536 entries.
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
            buckets += [(b"", packed[index])] * (key - len(buckets))
            bucket = (b"", *bucket)
        else:
            buckets += [_OUTSIDE] * (key - len(buckets))
        if end & 1:  # the bucket ends inside an interval: close it with that end
            bucket += (packed[end],)
        buckets.append(bucket)
        index = end
    buckets += [_OUTSIDE] * ((1 << (16 if wide else 8)) - len(buckets))  # outside: even count
    return tuple(buckets), WIDE if wide else BY_BYTE


def bucket_of(
    buckets: tuple[tuple[bytes, ...], ...], shift: int, packed: bytes
) -> tuple[bytes, ...]:
    """The bucket to search for a packed address (the hot path inlines this)."""
    if shift == WIDE:
        return buckets[packed[0] << 8 | packed[1]]
    return buckets[packed[0] >> shift]


def compact_bounds(intervals: Iterable[LayeredInterval]) -> array[int]:
    """IPv4 intervals as one array of 8-byte ints: about a sixth of the memory of bytes.

    An address ``v`` is searched as ``v << 8 | 0x40``; an interval ``(first, last, layer)``
    is stored as ``first << 8`` and ``last << 8 | 0x80 | layer``. The key lies between the
    two exactly when ``first <= v <= last``, so parity and layer work as in the packed form.
    Each probe of the search makes an int, so a lookup costs more than in bytes.
    """
    values = array("Q")
    for first, last, layer in intervals:
        values += array("Q", (first << 8, last << 8 | 0x80 | layer))
    return values


def compact_index(values: array[int]) -> array[int] | None:
    """For a compact table over ``BUCKET_THRESHOLD`` bounds, where each first byte's keys
    start: ``index[b]`` to ``index[b + 1]`` is the slice to search for a first byte ``b``."""
    if len(values) <= BUCKET_THRESHOLD:
        return None
    return array("I", (bisect_left(values, byte << 32) for byte in range(257)))


def compact_key(packed: bytes) -> int:
    """The search key of a packed IPv4 address in ``compact_bounds``."""
    return int.from_bytes(packed, "big") << 8 | 0x40


def uncompact_bounds(values: array[int]) -> Iterator[LayeredInterval]:
    """The intervals behind ``compact_bounds``."""
    for index in range(0, len(values), 2):
        yield values[index] >> 8, values[index + 1] >> 8, values[index + 1] & 0x3F


@dataclass(frozen=True, slots=True, init=False, repr=False)
class AddressTable:
    """A set of IPv4 and IPv6 addresses: one interval table per family, in layers.

    By default only the packed form is kept: ``buckets4``/``shift4`` and ``buckets6``/
    ``shift6`` hold the bounds as big-endian bytes (see ``pack_intervals`` and
    ``bucket_bounds``), so the hot path can ``bisect`` the output of ``socket.inet_pton``
    directly, and a site's rules cost one bytes object per bound. ``ipv4`` and ``ipv6``
    rebuild the integer ``IntervalTable`` on demand. A table made by ``layered`` also tells,
    for an address inside, which of its source tables holds it first (``layer_of_packed``):
    one search answers several rules.

    ``compact=True`` keeps the IPv4 bounds as one array of ints instead (``compact4``, with
    ``shift4`` set to ``COMPACT``): for many sites in little memory, at some cost per lookup.
    """

    buckets4: tuple[tuple[bytes, ...], ...]
    shift4: int
    buckets6: tuple[tuple[bytes, ...], ...]
    shift6: int
    bound_count: int
    compact4: array[int] | None = field(default=None, hash=False)
    compact_index4: array[int] | None = field(default=None, hash=False)

    def __init__(
        self,
        ipv4: IntervalTable = IntervalTable(),
        ipv6: IntervalTable = IntervalTable(),
        *,
        compact: bool = False,
    ) -> None:
        self._fill(layer_intervals([ipv4]), layer_intervals([ipv6]), compact)

    def _fill(
        self, ipv4: list[LayeredInterval], ipv6: list[LayeredInterval], compact: bool
    ) -> None:
        buckets4: tuple[tuple[bytes, ...], ...]
        if compact:
            buckets4, shift4 = (_OUTSIDE,), COMPACT
            values = compact_bounds(ipv4)
            object.__setattr__(self, "compact4", values)
            object.__setattr__(self, "compact_index4", compact_index(values))
        else:
            buckets4, shift4 = bucket_bounds(pack_intervals(ipv4, 4))
            object.__setattr__(self, "compact4", None)
            object.__setattr__(self, "compact_index4", None)
        buckets6, shift6 = bucket_bounds(pack_intervals(ipv6, 16))
        object.__setattr__(self, "buckets4", buckets4)
        object.__setattr__(self, "shift4", shift4)
        object.__setattr__(self, "buckets6", buckets6)
        object.__setattr__(self, "shift6", shift6)
        object.__setattr__(self, "bound_count", 2 * (len(ipv4) + len(ipv6)))

    @property
    def compact(self) -> bool:
        """Whether the IPv4 bounds are kept as one array of ints."""
        return self.compact4 is not None

    @classmethod
    def layered(cls, *tables: AddressTable) -> AddressTable:
        """The union of ``tables``; an address's layer is the index of the first holding it.
        Compact when the first table is. At most ``MAX_LAYERS`` tables."""
        if len(tables) > MAX_LAYERS:
            raise ValueError(
                f"a layered table holds at most {MAX_LAYERS} tables, not {len(tables)}"
            )
        table = cls.__new__(cls)
        table._fill(
            layer_intervals([each.ipv4 for each in tables]),
            layer_intervals([each.ipv6 for each in tables]),
            bool(tables) and tables[0].compact,
        )
        return table

    def layered_intervals(self, version: int) -> list[LayeredInterval]:
        """The ``(first, last, layer)`` intervals of one family (4 or 6), in order."""
        if version == V4:
            if self.compact4 is not None:
                return list(uncompact_bounds(self.compact4))
            return list(unpack_intervals(self.buckets4, 4))
        return list(unpack_intervals(self.buckets6, 16))

    @property
    def ipv4(self) -> IntervalTable:
        """The IPv4 intervals as integers, layers merged."""
        return IntervalTable.from_intervals(span[:2] for span in self.layered_intervals(V4))

    @property
    def ipv6(self) -> IntervalTable:
        """The IPv6 intervals as integers, layers merged."""
        return IntervalTable.from_intervals(span[:2] for span in self.layered_intervals(V6))

    def __repr__(self) -> str:
        return f"AddressTable(ipv4={self.ipv4!r}, ipv6={self.ipv6!r})"

    def layer_of_packed(self, packed: bytes) -> int | None:
        """The layer holding a packed address (4 or 16 bytes, as ``inet_pton`` gives), or None."""
        if len(packed) == 4:
            values = self.compact4
            if values is not None:
                offsets = self.compact_index4
                if offsets is None:
                    index = bisect_right(values, compact_key(packed))
                else:  # search only the slice of the address's first byte
                    low, high = offsets[packed[0]], offsets[packed[0] + 1]
                    index = bisect_right(values, compact_key(packed), low, high)
                return values[index] & 0x3F if index & 1 else None
            buckets, shift = self.buckets4, self.shift4
        else:
            buckets, shift = self.buckets6, self.shift6
        bucket = bucket_of(buckets, shift, packed)
        index = bisect_right(bucket, packed)
        return bucket[index][-1] if index & 1 else None

    def contains_packed(self, packed: bytes) -> bool:
        """Whether a packed address (4 or 16 bytes, as ``inet_pton`` gives) is in the set."""
        return self.layer_of_packed(packed) is not None

    @classmethod
    def from_intervals(
        cls, intervals: Iterable[Interval], *, compact: bool = False
    ) -> AddressTable:
        """Merge ``(version, first, last)`` intervals into one table per family."""
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for version, first, last in intervals:
            (v4 if version == V4 else v6).append((first, last))
        return cls(
            IntervalTable.from_intervals(v4), IntervalTable.from_intervals(v6), compact=compact
        )

    @classmethod
    def from_entries(
        cls, entries: Iterable[object], *, compact: bool = False
    ) -> tuple[AddressTable, tuple[tuple[object, str], ...]]:
        """Compile address, CIDR, range and wildcard entries; bad ones come back with a reason."""
        intervals: list[Interval] = []
        rejected: list[tuple[object, str]] = []
        for entry in entries:
            try:
                intervals += parse_entry(entry)
            except ConfigError as error:
                rejected.append((entry, str(error)))
        return cls.from_intervals(intervals, compact=compact), tuple(rejected)

    def __contains__(self, ip: object) -> bool:
        """Whether a hit address (any text form, bytes, mapped) is in the set; False if invalid.

        ``inet_pton`` inline first, as in ``should_track``; the lenient parser after.
        """
        try:
            if ":" in ip:  # type: ignore[operator]
                packed = _inet_pton(_AF_INET6, ip)  # type: ignore[arg-type]
                if packed.startswith(MAPPED_PACKED_PREFIX):
                    packed = packed[12:]
                    buckets, shift = self.buckets4, self.shift4
                else:
                    buckets, shift = self.buckets6, self.shift6
            else:
                packed = _inet_pton(_AF_INET, ip)  # type: ignore[arg-type]
                buckets, shift = self.buckets4, self.shift4
        except (OSError, TypeError, ValueError):
            slow = pack_hit(ip)
            return slow is not None and self.contains_packed(slow)
        if shift < 0:
            if shift == WIDE:
                return bisect_right(buckets[packed[0] << 8 | packed[1]], packed) & 1 == 1
            values, offsets = self.compact4, self.compact_index4  # layer_of_packed, inline
            key = _from_bytes(packed, "big") << 8 | 0x40
            if offsets is None:
                return bisect_right(values, key) & 1 == 1  # type: ignore[arg-type]
            low, high = offsets[packed[0]], offsets[packed[0] + 1]
            return bisect_right(values, key, low, high) & 1 == 1  # type: ignore[arg-type]
        return bisect_right(buckets[packed[0] >> shift], packed) & 1 == 1

    def __bool__(self) -> bool:
        return self.bound_count > 0
