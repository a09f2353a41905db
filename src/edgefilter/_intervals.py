"""Interval algebra over plain integers: merge, subtract, layer, and entries to intervals.

Nothing here knows how a table is laid out in memory: ``_layout`` packs these intervals
into bytes and arrays, and ``_tables`` holds them in an ``AddressTable``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ._addresses import V4, Interval, parse_entry
from ._errors import ConfigError

LayeredInterval = tuple[int, int, int]  # (first, last, layer), inclusive
Rejected = tuple[tuple[object, str], ...]  # (entry, reason) of each entry that did not compile


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


def family_tables(intervals: Iterable[Interval]) -> tuple[IntervalTable, IntervalTable]:
    """Merge ``(version, first, last)`` intervals into one table per family, IPv4 first."""
    v4: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    for version, first, last in intervals:
        (v4 if version == V4 else v6).append((first, last))
    return IntervalTable.from_intervals(v4), IntervalTable.from_intervals(v6)


def compile_entries(entries: Iterable[object]) -> tuple[list[Interval], Rejected]:
    """The intervals of address, CIDR, range and wildcard entries, and each bad entry with
    the reason it was rejected."""
    intervals: list[Interval] = []
    rejected: list[tuple[object, str]] = []
    for entry in entries:
        try:
            intervals += parse_entry(entry)
        except ConfigError as error:
            rejected.append((entry, str(error)))
    return intervals, tuple(rejected)
