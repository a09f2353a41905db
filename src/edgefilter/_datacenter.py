"""The datacenter layer (opt-in): hits from published cloud ranges and from listed ASNs.

``DatacenterRanges`` compiles every source into one ``AddressTable`` (the interval tables of
``_tables``, laid out as ``_layout`` documents), so a hit costs one ``bisect`` however many
lists and networks are behind it. Its layers say where a range came from:
``LAYER_PUBLISHED`` (files of published ranges: one address, CIDR or range per line, ``#``
comments and blank lines skipped, as the cloud providers' and lord-alfred/ipranges' lists
are written) and ``LAYER_LISTED_ASNS`` (the addresses of the listed AS numbers in an
``AsnResolver``'s database, Rybbit's "bot ASN" layer).

The table is the deployment's, not a site's: it is not copied into each site's layered
table (a full cloud list is about 24,000 bounds), and a site turns the layer off through
its ``blockBots`` (see ``_botlayers``).

A bad line is a ``ConfigError`` naming the file, the line number and the entry; so is an ASN
database whose walk fails, as ASN lists are then unanswerable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ._addresses import pack_address, parse_hit_address
from ._asn import AsnResolver, parse_asn
from ._errors import ConfigError
from ._tables import AddressTable

LAYER_PUBLISHED: Final = 0
LAYER_LISTED_ASNS: Final = 1
DEFAULT_ASN_WAIT: Final = 60.0  # seconds to wait for the ASN database's walk at setup


def read_range_file(path: str | os.PathLike[str]) -> list[str]:
    """The entries of a ranges file; ``ConfigError`` for an unreadable file or a bad line."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"datacenter ranges file {name!r} cannot be read: {error}") from error
    entries: list[str] = []
    numbers: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        entry = line.partition("#")[0].strip()
        if entry:
            entries.append(entry)
            numbers.setdefault(entry, number)
    _, rejected = AddressTable.from_entries(entries)
    if rejected:
        bad, reason = rejected[0]
        raise ConfigError(
            f"datacenter ranges file {name!r} line {numbers.get(str(bad), 0)}: {reason}"
        )
    return entries


@dataclass(frozen=True, slots=True)
class DatacenterRanges:
    """Every datacenter address of a deployment in one table; ``in`` is one search."""

    table: AddressTable
    sources: tuple[str, ...] = ()  # the files read and the number of ASNs, for the log

    @classmethod
    def from_sources(
        cls,
        files: Iterable[str | os.PathLike[str]] = (),
        *,
        entries: Iterable[str] = (),
        asns: Iterable[object] = (),
        asn_db: AsnResolver | None = None,
        asn_wait: float = DEFAULT_ASN_WAIT,
    ) -> DatacenterRanges:
        """Compile ranges ``files`` and ``entries`` (published ranges) and the addresses of
        ``asns`` in ``asn_db`` (waiting up to ``asn_wait`` s for its walk) into one table."""
        if isinstance(files, str | bytes):
            raise ConfigError(f"datacenter files must be a list of paths, not {files!r}")
        names = [os.fspath(each) for each in files]
        published = [entry for name in names for entry in read_range_file(name)]
        extra = list(entries)
        table, rejected = AddressTable.from_entries([*published, *extra])
        if rejected:
            entry, reason = rejected[0]
            raise ConfigError(f"datacenter range {entry!r} is refused: {reason}")
        numbers = frozenset(parse_asn(each) for each in asns)
        sources = [f"file {name}" for name in names]
        if extra:
            sources.append(f"{len(extra)} entries")
        if numbers:
            if asn_db is None:
                raise ConfigError("datacenter ASNs need an ASN database (asn_db)")
            listed = asn_db.table_for(numbers) if asn_db.wait_compiled(asn_wait) else None
            if listed is None:
                raise ConfigError(
                    f"ASN database {asn_db.path!r} could not be walked within {asn_wait} s: "
                    "its datacenter ASNs cannot be compiled"
                )
            table = AddressTable.layered(table, listed)
            sources.append(f"{len(numbers)} ASNs")
        return cls(table, tuple(sources))

    def __contains__(self, ip: object) -> bool:
        """Whether a hit address (any text form, mapped, bytes) is a datacenter's; False for
        None or garbage. Never raises."""
        try:
            return ip in self.table
        except Exception:  # a hostile object: not evidence
            return False

    def layer_of(self, ip: object) -> int | None:
        """``LAYER_PUBLISHED``, ``LAYER_LISTED_ASNS`` or None, for the audit."""
        address = parse_hit_address(ip)
        return None if address is None else self.table.layer_of_packed(pack_address(address))
