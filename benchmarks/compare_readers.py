"""The candidates for the compiled reader, measured in one run (issue 17): the pure-Python
reader compiled by mypyc and by Cython (pure-Python mode, the same source), the C extension
``edgefilter._speedups``, and pytricia's lookup, per address string on packed tables.

Not run by ``make bench`` (it compiles two throwaway modules): ``python
benchmarks/compare_readers.py``, with mypy's mypyc installed (the dev extra) and Cython when
it is (``pip install cython``; its column is left out otherwise).
"""

from __future__ import annotations

import importlib
import ipaddress
import random
import shutil
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

import pytricia

from _common import print_table
from edgefilter import AddressTable, _speedups

SIZES = (10, 1_000, 100_000)
SEED = 5
# The hot path's pure reader of a packed table, as a module the compilers take unchanged.
READER = """
import socket
from bisect import bisect_right
from typing import Any

_inet_pton = socket.inet_pton
MAPPED = bytes(10) + b"\\xff\\xff"


def layer_of_text(table: Any, ip: object) -> int:
    if type(ip) is not str:
        return -2
    try:
        if ":" in ip:
            packed = _inet_pton(socket.AF_INET6, ip)
            if packed.startswith(MAPPED):
                packed = packed[12:]
        else:
            packed = _inet_pton(socket.AF_INET, ip)
    except (OSError, ValueError):
        return -2
    if len(packed) == 4:
        buckets, shift = table.buckets4, table.shift4
    else:
        buckets, shift = table.buckets6, table.shift6
    if shift == -1:
        bucket = buckets[packed[0] << 8 | packed[1]]
    else:
        bucket = buckets[packed[0] >> shift]
    index: int = bisect_right(bucket, packed)
    if index & 1:
        return int(bucket[index][-1])
    return -1
"""


def build(folder: Path) -> dict[str, Callable[[object, object], int]]:
    """The reader as plain Python, and compiled by each compiler that is installed."""
    readers = {}
    for name, command in (
        ("pure Python", None),
        ("mypyc", [sys.executable, "-m", "mypyc", "reader_mypyc.py"]),
        ("Cython", [shutil.which("cythonize") or "cythonize", "-3", "-q", "-i"]),
    ):
        module = {"pure Python": "reader_pure", "mypyc": "reader_mypyc", "Cython": "reader_cy"}
        source = folder / f"{module[name]}.py"
        source.write_text(READER)
        if command is not None:
            argv = command if name == "mypyc" else [*command, source.name]
            try:
                built = subprocess.run(
                    argv, check=False, cwd=folder, capture_output=True, text=True
                )
            except OSError as error:  # no cythonize on the path
                print(f"{name}: not built ({error})")
                continue
            if built.returncode != 0:
                print(f"{name}: not built ({built.stderr.strip()[-200:]})")
                continue
        readers[name] = importlib.import_module(module[name]).layer_of_text
    return readers


def main() -> int:
    """Print the table; exit 0."""
    rng = random.Random(SEED)
    ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(2_000)]
    with tempfile.TemporaryDirectory() as folder:
        sys.path.insert(0, folder)
        readers = build(Path(folder))
        readers["C extension"] = _speedups.layer_of_text
        rows = []
        for size in SIZES:
            entries = [
                f"{ipaddress.IPv4Address(rng.getrandbits(32))}/{rng.randint(16, 32)}"
                for _ in range(size)
            ]
            table = AddressTable.from_entries(entries, compact=False)[0]
            tree = pytricia.PyTricia(32)
            for entry in entries:
                tree[str(ipaddress.ip_network(entry, strict=False))] = 1
            answers = {name: [read(table, ip) for ip in ips] for name, read in readers.items()}
            assert len({tuple(each) for each in answers.values()}) == 1, "readers disagree"
            calls: dict[str, Callable[[], object]] = {
                name: lambda read=read, table=table: [read(table, ip) for ip in ips]
                for name, read in readers.items()
            }
            calls["pytricia"] = lambda lookup=tree.get: [lookup(ip) for ip in ips]
            best: dict[str, float] = {}
            for _ in range(15):  # interleaved rounds, best of each
                for name, call in calls.items():
                    ns = timeit.timeit(call, number=3) / (3 * len(ips)) * 1e9
                    best[name] = min(best.get(name, float("inf")), ns)
            rows.append(
                [f"{size:,}"]
                + [f"{best[name]:.0f} ns ({best[name] / best['pytricia']:.2f}x)" for name in best]
            )
    print("Reading an address string and searching a packed table (x: / pytricia, same run):\n")
    print_table(["entries", *best], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
