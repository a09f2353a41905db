"""Sorted, merged interval tables over integers, looked up with one ``bisect``."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ._addresses import V4, Address, Interval, parse_entry, parse_hit_address
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


@dataclass(frozen=True, slots=True)
class AddressTable:
    """A set of IPv4 and IPv6 addresses: one ``IntervalTable`` per family.

    ``packed4`` and ``packed6`` hold the same bounds as packed bytes, so the hot path can
    ``bisect`` the output of ``socket.inet_pton`` directly, with no integer conversion.
    """

    ipv4: IntervalTable = IntervalTable()
    ipv6: IntervalTable = IntervalTable()
    packed4: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    packed6: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "packed4", pack_bounds(self.ipv4.bounds, 4))
        object.__setattr__(self, "packed6", pack_bounds(self.ipv6.bounds, 16))

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
        """Whether a hit address (any text form, bytes, mapped) is in the set; False if invalid."""
        address = parse_hit_address(ip)
        return address is not None and self.contains_address(address)

    def contains_address(self, address: Address) -> bool:
        """Whether a parsed ``(version, value)`` address is in the set."""
        table = self.ipv4 if address[0] == V4 else self.ipv6
        return bisect_right(table.bounds, address[1]) & 1 == 1

    def __bool__(self) -> bool:
        return bool(self.ipv4.bounds or self.ipv6.bounds)
