"""``AddressTable``: a set of IPv4 and IPv6 addresses in layers, searched with ``bisect``.

It compiles entries and intervals with ``_intervals`` into the byte layout that ``_layout``
defines and documents, and holds the reference reader of that layout, ``layer_of_packed``.
"""

from __future__ import annotations

import logging
import os
import socket
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from . import _layout
from ._addresses import MAPPED_PACKED_PREFIX, V4, V6, Interval, pack_address, parse_hit_address
from ._intervals import (
    IntervalTable,
    LayeredInterval,
    Rejected,
    compile_entries,
    family_tables,
    layer_intervals,
)
from ._layout import (
    ASK_PYTHON,
    COMPACT,
    COMPACT_LAYER_MASK,
    COMPACT_PROBE,
    COMPACT_TAG_BITS,
    LAYER_BYTE,
    MAX_LAYERS,
    OUTSIDE,
    OUTSIDE_LAYER,
    RECORD6,
    WIDE,
    bucket_bounds,
    bucket_of,
    compact_bounds,
    compact_index,
    compact_key,
    compact_records,
    pack_intervals,
    record_index,
    uncompact_bounds,
    uncompact_records,
    unpack_intervals,
)

logger = logging.getLogger("edgefilter")
_inet_pton = socket.inet_pton
_from_bytes = int.from_bytes
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6


@dataclass(frozen=True, slots=True, init=False, repr=False)
class AddressTable:
    """A set of IPv4 and IPv6 addresses: one interval table per family, in layers.

    By default only the packed form is kept: ``buckets4``/``shift4`` and ``buckets6``/
    ``shift6`` hold the bounds as big-endian bytes (``_layout`` describes every field), so
    the hot path can ``bisect`` the output of ``socket.inet_pton`` directly, and a site's
    rules cost one bytes object per bound. ``ipv4`` and ``ipv6`` rebuild the integer
    ``IntervalTable`` on demand. A table made by ``layered`` also tells, for an address
    inside, which of its source tables holds it first (``layer_of_packed``): one search
    answers several rules.

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
    compact6: bytes | None = None

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
            buckets4, shift4 = (OUTSIDE,), COMPACT
            values = compact_bounds(ipv4)
            object.__setattr__(self, "compact4", values)
            object.__setattr__(self, "compact_index4", compact_index(values))
        else:
            buckets4, shift4 = bucket_bounds(pack_intervals(ipv4, 4))
            object.__setattr__(self, "compact4", None)
            object.__setattr__(self, "compact_index4", None)
        buckets6: tuple[tuple[bytes, ...], ...]
        if compact:
            buckets6, shift6 = (OUTSIDE,), COMPACT
            object.__setattr__(self, "compact6", compact_records(ipv6))
        else:
            buckets6, shift6 = bucket_bounds(pack_intervals(ipv6, 16))
            object.__setattr__(self, "compact6", None)
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
        if self.compact6 is not None:
            return list(uncompact_records(self.compact6))
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
        """The layer holding a packed address (4 or 16 bytes, as ``inet_pton`` gives), or None.

        The reference reader of the layout: every inline copy is tested against it.
        """
        if len(packed) == 4:
            values = self.compact4
            if values is not None:
                offsets = self.compact_index4
                if offsets is None:
                    index = bisect_right(values, compact_key(packed))
                else:  # search only the slice of the address's first byte
                    low, high = offsets[packed[0]], offsets[packed[0] + 1]
                    index = bisect_right(values, compact_key(packed), low, high)
                return values[index] & COMPACT_LAYER_MASK if index & 1 else None
            buckets, shift = self.buckets4, self.shift4
        else:
            records = self.compact6
            if records is not None:
                index = record_index(records, packed)
                return records[index * RECORD6 + 16] & COMPACT_LAYER_MASK if index & 1 else None
            buckets, shift = self.buckets6, self.shift6
        bucket = bucket_of(buckets, shift, packed)
        index = bisect_right(bucket, packed)
        return bucket[index][LAYER_BYTE] if index & 1 else None

    def contains_packed(self, packed: bytes) -> bool:
        """Whether a packed address (4 or 16 bytes, as ``inet_pton`` gives) is in the set."""
        return self.layer_of_packed(packed) is not None

    @classmethod
    def from_intervals(
        cls, intervals: Iterable[Interval], *, compact: bool = False
    ) -> AddressTable:
        """Merge ``(version, first, last)`` intervals into one table per family."""
        return cls(*family_tables(intervals), compact=compact)

    @classmethod
    def from_entries(
        cls, entries: Iterable[object], *, compact: bool = False
    ) -> tuple[AddressTable, Rejected]:
        """Compile address, CIDR, range and wildcard entries; bad ones come back with a reason."""
        intervals, rejected = compile_entries(entries)
        return cls.from_intervals(intervals, compact=compact), rejected

    def __contains__(self, ip: object) -> bool:
        """Whether a hit address (any text form, bytes, mapped) is in the set; False if invalid.

        ``inet_pton`` inline first, as in ``should_track``, then an inline copy of
        ``layer_of_packed`` (a call less per lookup, which ``benchmarks/bench_lookup.py``
        times), pinned to it by ``tests/test_layout.py``'s
        ``test_inline_lookups_agree_with_layer_of_packed``; the lenient parser after. With
        the compiled reader, that one C call first.
        """
        if compiled_layer_of_text is not None:
            layer = compiled_layer_of_text(self, ip)
            if layer != ASK_PYTHON:
                return layer >= 0
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
            address = parse_hit_address(ip)  # bytes, white space, brackets, zone ids
            return address is not None and self.contains_packed(pack_address(address))
        if shift < 0:  # a tag: WIDE, or COMPACT
            if shift == WIDE:
                return bisect_right(buckets[packed[0] << 8 | packed[1]], packed) & 1 == 1
            if len(packed) == 16:
                return self.contains_packed(packed)
            values, offsets = self.compact4, self.compact_index4
            key = _from_bytes(packed, "big") << COMPACT_TAG_BITS | COMPACT_PROBE
            if offsets is None:
                return bisect_right(values, key) & 1 == 1  # type: ignore[arg-type]
            low, high = offsets[packed[0]], offsets[packed[0] + 1]
            return bisect_right(values, key, low, high) & 1 == 1  # type: ignore[arg-type]
        return bisect_right(buckets[packed[0] >> shift], packed) & 1 == 1  # FLAT, BY_BYTE

    def __bool__(self) -> bool:
        return self.bound_count > 0


def pure_layer_of_text(table: AddressTable, ip: object) -> int:
    """The layer of ``table`` holding address text ``ip``, read as the hot path reads it
    (``":" in ip`` picks the family, ``inet_pton`` parses, a mapped address is folded):
    ``OUTSIDE_LAYER`` when none holds it, ``ASK_PYTHON`` when ``ip`` is not a plain ``str``
    that ``inet_pton`` reads. The reference of ``_speedups.layer_of_text``. Never raises."""
    if type(ip) is not str:
        return ASK_PYTHON
    try:
        if ":" in ip:
            packed = _inet_pton(_AF_INET6, ip)
            if packed.startswith(MAPPED_PACKED_PREFIX):
                packed = packed[12:]
        else:
            packed = _inet_pton(_AF_INET, ip)
    except (OSError, ValueError):
        return ASK_PYTHON
    layer = table.layer_of_packed(packed)
    return OUTSIDE_LAYER if layer is None else layer


LayerOfText = Callable[[AddressTable, object], int]


def _compiled_reader() -> LayerOfText | None:
    """``_speedups.layer_of_text`` bound to ``AddressTable``, or None: not built, or
    ``EDGEFILTER_PURE=1``, or built for another layout (logged)."""
    if os.environ.get("EDGEFILTER_PURE") == "1":
        return None
    try:
        from . import _speedups  # noqa: PLC0415  (optional: built by hatch_build.py)
    except ImportError:
        return None
    constants = {name: getattr(_layout, name) for name in dir(_layout) if name.isupper()}
    try:
        _speedups.bind(AddressTable, constants)
    except (TypeError, ValueError) as error:
        logger.warning("edgefilter's compiled reader is not used: %s", error)
        return None
    return _speedups.layer_of_text


# The compiled reader of address text when it is built and not turned off; else None.
compiled_layer_of_text: Final[LayerOfText | None] = _compiled_reader()
DecisionOfHit = Callable[..., object]


def compiled_decision_of_hit(
    rules_class: type,
    decisions: tuple[object, ...],
    *,
    matchers: tuple[type, ...] | None = None,
    checks: tuple[object, ...] = (),
) -> DecisionOfHit | None:
    """``_speedups.decision_of_hit`` with ``rules_class`` (``SiteRules``) and the decision
    of each layer bound, and, when given, the ``matchers`` classes whose cached verdicts it
    reads and the decisions of the ``checks`` after the address (see ``bind_checks``); None
    when the compiled reader is not active: for ``_filter``, which knows them."""
    if compiled_layer_of_text is None:
        return None
    from . import _speedups  # noqa: PLC0415  (there: compiled_layer_of_text is its function)

    _speedups.bind_rules(rules_class, decisions)
    if matchers is not None:
        _speedups.bind_checks(matchers, checks)
    return _speedups.decision_of_hit


# compile_rules' layout when not told: compact costs the compiled reader nothing per lookup.
DEFAULT_COMPACT: Final = compiled_layer_of_text is not None
