"""Sorted, merged interval tables over integers, looked up with one ``bisect``."""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from ._addresses import MAPPED_PACKED_PREFIX, V4, Interval, pack_hit, parse_entry
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


def unpack_bounds(buckets: tuple[tuple[bytes, ...], ...], width: int) -> tuple[int, ...]:
    """The integer bounds behind packed buckets (``bucket_bounds`` and ``pack_bounds`` undone)."""
    top = 1 << (8 * width)
    return tuple(
        top if len(bound) > width else int.from_bytes(bound, "big")
        for bucket in buckets
        for bound in bucket
        if bound
    )


def pack_bounds(bounds: tuple[int, ...], width: int) -> tuple[bytes, ...]:
    """Bounds as fixed-width big-endian bytes, whose order is the order of the integers.

    The one bound that does not fit, ``2**(8 * width)`` (the end of an interval that reaches
    the top address), becomes ``b"\\xff" * width + b"\\x00"``: greater than every address.
    """
    top = 1 << (8 * width)
    return tuple(
        value.to_bytes(width, "big") if value < top else b"\xff" * width + b"\x00"
        for value in bounds
    )


_inet_pton = socket.inet_pton
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6
# Tables with more bounds than this get a first-level index on the top 16 address bits.
BUCKET_THRESHOLD: Final = 512
KEY_BITS: Final = 16
_OUTSIDE: Final[tuple[bytes, ...]] = ()
_INSIDE: Final[tuple[bytes, ...]] = (b"",)  # b"" sorts before every address: one bound passed


def bucket_bounds(packed: tuple[bytes, ...]) -> tuple[tuple[tuple[bytes, ...], ...], int]:
    """Split packed bounds into buckets by the address's first two bytes, and the key shift.

    The hot path finds an address's bucket as ``buckets[(b[0] << 8 | b[1]) >> shift]`` and
    bisects only that bucket: far fewer cache misses than one search over a huge table. Each
    bucket starts with ``b""`` when its first address lies inside an interval, so the parity
    of the bucket-local position is the parity of the global one. Small tables are one
    bucket (``shift`` 16 maps every key to 0), so one code path serves every size.
    """
    if len(packed) <= BUCKET_THRESHOLD:
        return (packed,), KEY_BITS
    buckets: list[tuple[bytes, ...]] = []
    index, count = 0, len(packed)
    while index < count:  # one step per non-empty bucket; empty runs are filled in bulk
        key = packed[index][0] << 8 | packed[index][1]
        end = index
        while end < count and packed[end][0] << 8 | packed[end][1] == key:
            end += 1
        inside = index & 1 == 1  # an odd number of bounds before: inside an interval
        buckets += [_INSIDE if inside else _OUTSIDE] * (key - len(buckets))
        buckets.append(_INSIDE + packed[index:end] if inside else packed[index:end])
        index = end
    buckets += [_OUTSIDE] * ((1 << KEY_BITS) - len(buckets))  # an even count: outside
    return tuple(buckets), 0


@dataclass(frozen=True, slots=True, init=False, repr=False)
class AddressTable:
    """A set of IPv4 and IPv6 addresses: one interval table per family.

    Only the packed form is kept: ``buckets4``/``shift4`` and ``buckets6``/``shift6`` hold
    the bounds as big-endian bytes (see ``bucket_bounds``), so the hot path can ``bisect``
    the output of ``socket.inet_pton`` directly, and a site's rules cost one bytes object
    per bound. ``ipv4`` and ``ipv6`` rebuild the integer ``IntervalTable`` on demand.
    """

    buckets4: tuple[tuple[bytes, ...], ...]
    shift4: int
    buckets6: tuple[tuple[bytes, ...], ...]
    shift6: int
    bound_count: int

    def __init__(
        self, ipv4: IntervalTable = IntervalTable(), ipv6: IntervalTable = IntervalTable()
    ) -> None:
        buckets4, shift4 = bucket_bounds(pack_bounds(ipv4.bounds, 4))
        buckets6, shift6 = bucket_bounds(pack_bounds(ipv6.bounds, 16))
        object.__setattr__(self, "buckets4", buckets4)
        object.__setattr__(self, "shift4", shift4)
        object.__setattr__(self, "buckets6", buckets6)
        object.__setattr__(self, "shift6", shift6)
        object.__setattr__(self, "bound_count", len(ipv4.bounds) + len(ipv6.bounds))

    @property
    def ipv4(self) -> IntervalTable:
        """The IPv4 intervals as integers."""
        return IntervalTable(unpack_bounds(self.buckets4, 4))

    @property
    def ipv6(self) -> IntervalTable:
        """The IPv6 intervals as integers."""
        return IntervalTable(unpack_bounds(self.buckets6, 16))

    def __repr__(self) -> str:
        return f"AddressTable(ipv4={self.ipv4!r}, ipv6={self.ipv6!r})"

    def contains_packed(self, packed: bytes) -> bool:
        """Whether a packed address (4 or 16 bytes, as ``inet_pton`` gives) is in the set."""
        if len(packed) == 4:
            buckets, shift = self.buckets4, self.shift4
        else:
            buckets, shift = self.buckets6, self.shift6
        return bisect_right(buckets[(packed[0] << 8 | packed[1]) >> shift], packed) & 1 == 1

    @classmethod
    def from_intervals(cls, intervals: Iterable[Interval]) -> AddressTable:
        """Merge ``(version, first, last)`` intervals into one table per family."""
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for version, first, last in intervals:
            (v4 if version == V4 else v6).append((first, last))
        return cls(IntervalTable.from_intervals(v4), IntervalTable.from_intervals(v6))

    @classmethod
    def from_entries(
        cls, entries: Iterable[object]
    ) -> tuple[AddressTable, tuple[tuple[object, str], ...]]:
        """Compile address, CIDR, range and wildcard entries; bad ones come back with a reason."""
        intervals: list[Interval] = []
        rejected: list[tuple[object, str]] = []
        for entry in entries:
            try:
                intervals += parse_entry(entry)
            except ConfigError as error:
                rejected.append((entry, str(error)))
        return cls.from_intervals(intervals), tuple(rejected)

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
        return bisect_right(buckets[(packed[0] << 8 | packed[1]) >> shift], packed) & 1 == 1

    def __bool__(self) -> bool:
        return self.bound_count > 0
