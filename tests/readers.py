"""Helpers of the differential tests: the pure reader swapped in, and hits of every class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import maxminddb
from hypothesis import strategies as st

from edgefilter import _filter, _tables

from .conftest import ASN_DB, CITY_DB
from .hostile import huge_values, leaves
from .strategies import addresses
from .test_layout import ODD_HITS, hit_forms


@contextmanager
def pure_reader() -> Iterator[None]:
    """The pure-Python reader on the hot path and in ``AddressTable.__contains__``."""
    saved = _filter._layer_of_text, _filter._decision_of_hit, _tables.compiled_layer_of_text
    _filter._layer_of_text = _filter._decision_of_hit = None
    _tables.compiled_layer_of_text = None  # type: ignore[misc]
    try:
        yield
    finally:
        _filter._layer_of_text, _filter._decision_of_hit, _tables.compiled_layer_of_text = saved  # type: ignore[misc]


def outcome(call: Callable[[], Any]) -> Any:
    """What ``call()`` returns, or the type of what it raises (``in`` may raise on a hostile
    hit; the hot path never does)."""
    try:
        return call()
    except Exception as error:
        return type(error)


def both(call: Callable[[], Any]) -> tuple[Any, Any]:
    """The outcome of ``call()`` with the compiled reader, then with the pure one."""
    compiled = outcome(call)
    with pure_reader():
        pure = outcome(call)
    return compiled, pure


def text_hits() -> st.SearchStrategy[object]:
    """Hits in every form: each form of an address, odd hits, hostile and huge values."""
    return st.one_of(
        addresses.flatmap(lambda text: st.sampled_from(hit_forms(text))),
        st.sampled_from(ODD_HITS),
        st.text(alphabet="0123456789abcdefABCDEF:.%[] \x00", max_size=50),
        leaves,
        huge_values(),
    )


@cache
def database_addresses() -> list[str]:
    """The first address of each network of both test databases: countries and ASNs hit."""
    found = []
    for path in (CITY_DB, ASN_DB):
        with maxminddb.open_database(str(path)) as reader:
            found += [str(network[0]) for network, _ in reader]
    return found
