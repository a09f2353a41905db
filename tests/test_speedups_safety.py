"""The compiled reader (``edgefilter._speedups``) stays memory safe and never raises when the
Python objects it reads are odd or change under it: what it borrows is held while Python
code it may run (an attribute hook, a key's ``__hash__``, a finalizer the garbage collector
calls) could free it, the slot offsets it is bound to belong to the class it reads, and a
table's fields that are not what ``_layout`` builds are left to Python. Each test here
failed on the reader before its fix (several as a use after free that ASAN names; see the
report of the review, branch wt-crev). Skipped when the compiled reader is not built."""

from __future__ import annotations

import array
import gc
import sys
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import AddressTable, SiteConfig, SiteRules, _filter, _layout, compile_rules
from edgefilter._patterns import GlobMatcher, SubstringMatcher
from edgefilter._tables import pure_layer_of_text

from .compiled_module import speedups_or_skip
from .hostile import any_values

_speedups = speedups_or_skip()

FIELDS = ("buckets4", "shift4", "buckets6", "shift6", "compact4", "compact_index4", "compact6")
ASK = _layout.ASK_PYTHON
WANTED = (
    b"user-agent",
    b"x-forwarded-for",
    b"content-length",
    b"content-encoding",
    b"authorization",
    b"origin",
)


def ten_slash_eight(*, compact: bool = False) -> AddressTable:
    """A table of 10.0.0.0/8."""
    return AddressTable.from_entries(["10.0.0.0/8"], compact=compact)[0]


def copied(kind: type[AddressTable], table: AddressTable) -> AddressTable:
    """An instance of ``kind`` (a subclass) with the fields of ``table``."""
    made = kind.__new__(kind)
    for name in (*FIELDS, "bound_count"):
        object.__setattr__(made, name, getattr(table, name))
    return made


def test_a_table_its_rules_drop_while_it_is_read_is_held() -> None:
    """``excluded_ips`` not exactly an AddressTable is read by getattr, which runs its
    hooks; one that replaces the rules' table must not free the table being read: the
    reader holds its own reference (it read the next field of a freed table, a use after
    free). The count is held against one of ``layer_of_text``, whose caller holds two."""
    plain = ten_slash_eight()
    counts: list[int] = []

    class Dropping(AddressTable):
        __slots__ = ()

        def __getattribute__(self, name: str) -> object:
            if name == "shift4":
                if holder:
                    object.__setattr__(holder.pop(), "excluded_ips", plain)  # its reference
                counts.append(sys.getrefcount(self))
            return object.__getattribute__(self, name)

    holder: list[SiteRules] = []
    table = copied(Dropping, plain)
    assert _speedups.layer_of_text(table, "10.1.2.3") == 0  # held by table and the call
    rules = SiteRules(excluded_ips=table, needs_ip=True)
    holder.append(rules)
    del table
    assert _speedups.layer_of_hit(rules, None, "10.1.2.3") == 0
    by_caller, by_reader = counts
    assert by_reader == by_caller - 1


def test_the_layers_dict_is_held_while_the_key_is_hashed() -> None:
    """The layers key's ``__hash__`` (Python code) may replace ``country_layers``: the dict
    being searched is held by the reader meanwhile (it searched a freed dict)."""
    table = ten_slash_eight()
    rules = SiteRules(excluded_ips=table, excluded_countries=frozenset({"US"}), needs_ip=True)
    base = sys.getrefcount(rules.country_layers)
    held: list[int] = []

    class Key:
        def __hash__(self) -> int:
            held.append(sys.getrefcount(rules.country_layers))
            return 1

    rules.country_layers[Key()] = table
    held.clear()
    assert _speedups.layer_of_hit(rules, Key(), "10.1.2.3") == _layout.UNLAYERED
    assert held == [base + 1]  # the rules' reference and the reader's own


def test_the_ips_of_a_batch_are_read_as_passed() -> None:
    """``layers_of_texts`` reads a snapshot of its list: a table's attribute hook that
    changes the list (or empties it: a use after free) changes nothing it answers."""
    plain = ten_slash_eight()

    class Changing(AddressTable):
        __slots__ = ()

        def __getattribute__(self, name: str) -> object:
            ips[:] = ["11.0.0.1"] * len(ips)
            return object.__getattribute__(self, name)

    class Emptying(AddressTable):
        __slots__ = ()

        def __getattribute__(self, name: str) -> object:
            ips.clear()
            gc.collect()
            return object.__getattribute__(self, name)

    for kind in (Changing, Emptying):
        ips = [f"10.0.0.{index}" for index in range(50)]
        assert _speedups.layers_of_texts(copied(kind, plain), ips) == [0] * 50


def test_a_slot_of_another_class_is_not_bound() -> None:
    """A class whose ``verdicts`` (or a table's or rules' field) is the slot descriptor of
    an unrelated class: refused, not read at that class's offset (out of bounds)."""

    class Wide:
        __slots__ = (*(f"field{index}" for index in range(32)), "verdicts")

    class Borrowing:
        __slots__ = ()
        verdicts = Wide.__dict__["verdicts"]

    borrowing_table = type(
        "BorrowingTable",
        (),
        {"__slots__": (), **{name: Wide.__dict__["field0"] for name in FIELDS}},
    )

    try:
        with pytest.raises(TypeError, match="verdicts"):
            _speedups.bind_checks((Borrowing,), _filter._CHECKS)
        constants = {name: getattr(_layout, name) for name in dir(_layout) if name.isupper()}
        with pytest.raises(TypeError, match="buckets4"):
            _speedups.bind(borrowing_table, constants)
    finally:  # bound again, as at import
        _speedups.bind_checks((GlobMatcher, SubstringMatcher), _filter._CHECKS)
        _speedups.bind(AddressTable, constants)


@pytest.mark.parametrize("shift", [2**63, 2**100, -(2**100)], ids=["2**63", "2**100", "-2**100"])
def test_a_shift_past_a_c_long_is_left_to_python(shift: int) -> None:
    """A table's shift too big for a C long: "ask Python", not SystemError (the overflow was
    read as -1, WIDE, with its exception left set)."""
    table = copied(type("Table", (AddressTable,), {"__slots__": ()}), ten_slash_eight())
    object.__setattr__(table, "shift4", shift)
    object.__setattr__(table, "shift6", shift)
    for ip in ("10.1.2.3", "2001:db8::1"):
        assert _speedups.layer_of_text(table, ip) == ASK
        assert _speedups.layer_of_packed(table, bytes(4 if "." in ip else 16)) == ASK
    rules = SiteRules(excluded_ips=table, needs_ip=True)
    assert _speedups.decision_of_hit(rules, None, "10.1.2.3") is False
    assert _speedups.decision_of_hit(rules, None, "10.1.2.3", "", None, None, {}) is False


def test_a_layout_constant_past_a_c_long_is_refused() -> None:
    """bind with a constant too big for a C long: ValueError, not SystemError."""
    constants = {name: getattr(_layout, name) for name in dir(_layout) if name.isupper()}
    try:
        with pytest.raises(ValueError, match="WIDE"):
            _speedups.bind(AddressTable, {**constants, "WIDE": 2**100})
    finally:
        _speedups.bind(AddressTable, constants)


def odd_compact_fields(table: AddressTable) -> Iterator[tuple[str, object, object]]:
    """compact4 and compact_index4 values of another type or alignment than _layout's."""
    values, index = table.compact4, table.compact_index4
    assert values is not None and index is not None
    yield "doubles", array.array("d", [float(value) for value in values]), index
    yield "signed", array.array("q", values), index
    yield "float index", values, array.array("f", [float(offset) for offset in index])
    raw = values.tobytes()
    yield "misaligned", memoryview(b"\0" + raw)[1:].cast("Q"), index
    misaligned_index = memoryview(b"\0" + index.tobytes())[1:].cast("I")
    yield "misaligned index", values, misaligned_index


def test_compact_fields_not_laid_out_by_layout_are_left_to_python() -> None:
    """A compact4 that is not array('Q') (or its index not array('I')), or not aligned:
    "ask Python" (it read a double's bits as bounds, and loaded misaligned words)."""
    entries = [f"{first}.{second}.0.0/16" for first in range(1, 250) for second in (1, 9)]
    table = AddressTable.from_entries(entries, compact=True)[0]
    assert table.compact_index4 is not None
    kind = type("Table", (AddressTable,), {"__slots__": ()})
    for name, values, index in odd_compact_fields(table):
        odd = copied(kind, table)
        object.__setattr__(odd, "compact4", values)
        object.__setattr__(odd, "compact_index4", index)
        assert _speedups.layer_of_text(odd, "4.1.2.3") == ASK, name
    assert _speedups.layer_of_text(table, "4.1.2.3") == pure_layer_of_text(table, "4.1.2.3") == 0


class Finalized:
    """Garbage whose finalizer empties the headers being scanned."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.cycle = self

    def __del__(self) -> None:
        self.headers.clear()


def test_a_finalizer_that_empties_the_headers_mid_scan_frees_nothing_read() -> None:
    """The scan allocates before it reads: a collection its allocation starts may run a
    finalizer that empties the header list, whose values it had borrowed (it then decoded
    freed bytes)."""
    size = int("100")  # values made at run time, freed with the list's pairs
    headers = [(b"user-agent", b"agent " + b"x" * size), (b"origin", b"https://" + b"a" * size)]
    threshold = gc.get_threshold()
    spares = [(index, 1, 2, 3, str(index)) for index in range(4000)]  # no 5-tuple spare
    gc.disable()
    try:
        Finalized(headers)
        gc.set_threshold(1)
        gc.enable()
        scanned = _speedups.scan_headers(headers, WANTED, 1000)
    finally:
        gc.set_threshold(*threshold)
        gc.enable()
    assert headers == [], "the finalizer did not run in the scan: the test proves nothing"
    assert scanned == ("", None, None, None, None)
    del spares


def test_record_of_a_plain_tuple_is_a_plain_tuple() -> None:
    """record(tuple, ...) is tuple(items): no second empty tuple (CPython keeps one; a
    debug build aborts on another)."""
    assert _speedups.record(tuple) == ()
    assert _speedups.record(tuple, 1, "a") == (1, "a")
    assert type(_speedups.record(tuple, 1)) is tuple


def test_a_table_of_odd_shifts_never_raises_in_a_whole_hit() -> None:
    """The whole hit with rules whose table's shift is odd in any way: False (Python reads
    it), never an exception."""
    for shift in (2**64, -(2**64), -3, 9, None, "8", 8.0):
        table = copied(type("Table", (AddressTable,), {"__slots__": ()}), ten_slash_eight())
        object.__setattr__(table, "shift4", shift)
        rules = SiteRules(excluded_ips=table, needs_ip=True, block_bots=True)
        assert _speedups.decision_of_hit(rules, None, "10.1.2.3", "ua", "/", "h", {}) is False


RULES_FIELDS = (
    "excluded_ips",
    "needs_layers",
    "country_layers",
    "needs_ip",
    "has_patterns",
    "excluded_paths",
    "excluded_hostnames",
    "excluded_user_agents",
    "block_bots",
)
BOUNDS = st.binary(min_size=3, max_size=18)
BUCKETS = st.lists(
    st.one_of(st.lists(st.one_of(BOUNDS, any_values), max_size=6).map(tuple), any_values),
    max_size=4,
).map(tuple)
SHIFTS = st.one_of(
    st.sampled_from([-3, -2, -1, 0, 1, 7, 8, 9, 2**63, -(2**63) - 1, 2**100, True]), any_values
)
ARRAYS = st.one_of(
    st.lists(st.integers(0, 2**64 - 1), max_size=8).map(lambda items: array.array("Q", items)),
    st.lists(st.integers(0, 2**32 - 1), min_size=257, max_size=257).map(
        lambda items: array.array("I", items)
    ),
    st.lists(st.integers(0, 2**32 - 1), max_size=8).map(lambda items: array.array("I", items)),
    st.binary(max_size=40),
    st.binary(max_size=40).map(memoryview),
)
FIELD_VALUES = {
    "buckets4": st.one_of(BUCKETS, any_values),
    "buckets6": st.one_of(BUCKETS, any_values),
    "shift4": SHIFTS,
    "shift6": SHIFTS,
    "compact4": st.one_of(ARRAYS, st.none(), any_values),
    "compact_index4": st.one_of(ARRAYS, st.none(), any_values),
    "compact6": st.one_of(st.binary(max_size=40).map(lambda data: data * 17), any_values),
}


@st.composite
def tolerant_dicts(
    draw: st.DrawFn, keys: st.SearchStrategy[object], values: st.SearchStrategy[object]
) -> dict[object, object]:
    """A dict of drawn pairs, those whose key cannot be one (unhashable, hostile) left out."""
    made: dict[object, object] = {}
    for key, value in draw(st.lists(st.tuples(keys, values), max_size=3)):
        try:
            made[key] = value
        except Exception:  # no key (unhashable, hostile): not in this dict
            continue
    return made


@st.composite
def odd_tables(draw: st.DrawFn) -> object:
    """An exact AddressTable (read at its slots' offsets) with some fields replaced by odd
    values, a table of another class, or any value."""
    if draw(st.booleans()):
        return draw(any_values)
    table = AddressTable.from_entries(
        draw(st.sampled_from([["10.0.0.0/8"], ["10.0.0.0/8", "2001:db8::/32"], []])),
        compact=draw(st.booleans()),
    )[0]
    if draw(st.booleans()):
        table = copied(type("Table", (AddressTable,), {"__slots__": ()}), table)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        object.__setattr__(table, name, draw(FIELD_VALUES[name]))
    return table


@st.composite
def odd_rules(draw: st.DrawFn) -> object:
    """Exact SiteRules (read at their slots' offsets) with some fields replaced by odd
    values (a table above among them), or any value."""
    if draw(st.integers(0, 4)) == 0:
        return draw(any_values)
    rules = compile_rules(
        SiteConfig(
            excluded_ips=("10.0.0.0/8",),
            excluded_countries=tuple(draw(st.sampled_from([[], ["US"]]))),
            excluded_paths=("/admin*",),
            excluded_user_agents=("qa",),
            block_bots=draw(st.booleans()),
        )
    )
    for matcher in (rules.excluded_paths, rules.excluded_user_agents):
        if matcher is not None:
            matcher.matches("/blog")
            matcher.matches("qa-bot")
    for name in draw(st.lists(st.sampled_from(RULES_FIELDS), max_size=3, unique=True)):
        value = draw(
            st.one_of(
                odd_tables(),
                st.booleans(),
                tolerant_dicts(st.one_of(st.none(), any_values), odd_tables()),
                st.just(GlobMatcher(["/x*"])),
                any_values,
            )
        )
        object.__setattr__(rules, name, value)
    return rules


IPS = st.one_of(
    st.sampled_from(["10.1.2.3", "11.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"]), any_values
)
DECISIONS = {*_filter._EXCLUSIONS, *_filter._CHECKS, None, False}


@settings(max_examples=300)
@given(odd_tables(), IPS, st.lists(IPS, max_size=4), st.one_of(st.binary(max_size=17), any_values))
def test_every_table_reader_answers_an_int_on_odd_tables(
    table: object, ip: object, ips: list[object], packed: object
) -> None:
    """layer_of_text, layer_of_packed, layers_of_texts: a layer, -1, or -2; never a raise."""
    layers = range(-2, 256)
    assert _speedups.layer_of_text(table, ip) in layers
    assert _speedups.layer_of_packed(table, packed) in layers
    assert all(layer in layers for layer in _speedups.layers_of_texts(table, ips))


@settings(max_examples=300)
@given(
    odd_rules(),
    st.one_of(st.none(), any_values),
    IPS,
    st.lists(
        st.one_of(st.sampled_from(["Mozilla", "qa-bot", "/blog", "/admin/1"]), any_values),
        min_size=3,
        max_size=3,
    ),
    st.one_of(
        tolerant_dicts(
            st.one_of(st.sampled_from(["Mozilla", "qa-bot"]), any_values),
            st.one_of(st.text(max_size=3), any_values),
        ),
        any_values,
    ),
    st.integers(0, 8),
)
def test_the_hit_readers_answer_a_decision_on_odd_rules(
    rules: object, key: object, ip: object, fields: list[object], verdicts: object, arity: int
) -> None:
    """layer_of_hit and decision_of_hit on odd rules, keys, hits and bot verdicts, with any
    number of arguments: a layer or a decision, None or False; never a raise."""
    assert _speedups.layer_of_hit(rules, key, ip) in range(-3, 256)
    assert _speedups.decision_of_hit(rules, key, ip) in DECISIONS
    assert _speedups.decision_of_hit(rules, key, ip, *fields, verdicts) in DECISIONS
    args = [rules, key, ip, *fields, verdicts, None][:arity]
    assert _speedups.decision_of_hit(*args) in DECISIONS


class Record(tuple[object, ...]):
    """A tuple subclass for ``record``."""

    __slots__ = ()


def reference_cases() -> tuple[list[object], dict[str, Callable[[], object]]]:
    """The objects the calls below read, and calls of each entry point down each of its
    paths (answered, left to Python, odd arguments)."""
    table = AddressTable.from_entries(["10.0.0.0/8", "2001:db8::/32"], compact=True)[0]
    derived = copied(type("Table", (AddressTable,), {"__slots__": ()}), table)
    rules = compile_rules(
        SiteConfig(excluded_ips=("10.0.0.0/8",), excluded_paths=("/admin*",), block_bots=True)
    )
    assert rules.excluded_paths is not None
    rules.excluded_paths.matches("/blog")
    layered = compile_rules(SiteConfig(excluded_ips=("10.0.0.0/8",), excluded_countries=("US",)))
    key = object()
    layered.country_layers[key] = table
    bots = {"Mozilla": "", "Googlebot": "google"}
    headers = [(b"user-agent", b"Mozilla"), (b"x-forwarded-for", b"1.2.3.4"), (b"origin", b"o")]
    whole = ("Mozilla", "/blog", None, bots)
    hit = _speedups.decision_of_hit
    cases: dict[str, Callable[[], object]] = {
        "layer_of_text": lambda: _speedups.layer_of_text(table, "10.1.2.3"),
        "layer_of_text derived": lambda: _speedups.layer_of_text(derived, "2001:db8::1"),
        "layer_of_packed": lambda: _speedups.layer_of_packed(table, b"\n\0\0\1"),
        "layers_of_texts": lambda: _speedups.layers_of_texts(derived, ["10.0.0.1", "x"]),
        "layer_of_hit": lambda: _speedups.layer_of_hit(layered, key, "10.1.2.3"),
        "layer_of_hit unhashable": lambda: _speedups.layer_of_hit(layered, [], "10.0.0.1"),
        "excluded ip": lambda: hit(rules, None, "10.1.2.3", *whole),
        "tracked": lambda: hit(rules, None, "11.1.2.3", *whole),
        "layered": lambda: hit(layered, key, "10.1.2.3", *whole),
        "a miss": lambda: hit(rules, None, "11.0.0.1", "?", "/", "", {}),
        "bot": lambda: hit(rules, key, "11.0.0.1", "Googlebot", None, None, bots),
        "odd rules": lambda: hit(object(), key, "11.1.2.3", 1, 2, 3, 4),
        "scan": lambda: _speedups.scan_headers(headers, WANTED, 100),
        "scan repeated": lambda: _speedups.scan_headers(headers * 2, WANTED, 100),
        "record": lambda: _speedups.record(Record, 1, None, "a"),
    }
    touched = [
        table,
        derived,
        rules,
        layered,
        key,
        bots,
        *headers,
        *(v for h in headers for v in h),
    ]
    touched += [rules.excluded_paths, rules.excluded_paths.verdicts, layered.country_layers]
    return touched, cases


@pytest.mark.parametrize("case", sorted(reference_cases()[1]))
def test_no_entry_point_leaks_or_steals_a_reference(case: str) -> None:
    """Each path of each entry point called many times moves no reference count of the
    objects it reads or answers: no leak, no reference given away that it did not own."""
    touched, cases = reference_cases()
    call = cases[case]
    watched = [None, True, False, *_filter._EXCLUSIONS, *_filter._CHECKS, *touched]
    call()
    before = [sys.getrefcount(value) for value in watched]
    for _ in range(2000):
        call()
    assert [sys.getrefcount(value) for value in watched] == before
