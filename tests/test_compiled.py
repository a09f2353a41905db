"""The compiled reader (``edgefilter._speedups``) gives the pure reader's answers, on every
input class the suite knows: addresses in every form, odd hits, hostile and huge values,
large indexed and compact tables, and whole decisions with countries, ASNs, patterns and
bots layered in. ``make test`` runs this file on a compiled build with
``EDGEFILTER_REQUIRE_COMPILED=1``, where a missing build fails instead of skipping."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgefilter
from edgefilter import (
    AddressTable,
    AsnResolver,
    BotDetector,
    CountryResolver,
    Decision,
    EdgeFilter,
    SiteConfig,
    SiteRules,
    _filter,
    _layout,
    compile_rules,
)
from edgefilter._decisions import (
    BOT,
    EXCLUDED_COUNTRY,
    EXCLUDED_HOSTNAME,
    EXCLUDED_IP,
    EXCLUDED_PATH,
    EXCLUDED_USER_AGENT,
    TRACKED,
)
from edgefilter._patterns import GlobMatcher, SubstringMatcher
from edgefilter._tables import pure_layer_of_text

from .compiled_module import speedups_or_skip
from .conftest import ASN_DB, CITY_DB
from .hostile import any_values
from .readers import both, database_addresses, outcome, text_hits
from .strategies import addresses, entry_lists
from .test_layout import LARGE_SHAPES, hit_forms, large, large_probes, value_text

_speedups = speedups_or_skip()

ROOT = Path(__file__).resolve().parents[1]
SITE = "1"
USER_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "Googlebot/2.1", "", "qa-probe"]


def test_the_compiled_reader_is_active() -> None:
    """Built and not turned off, it answers the hot path, and ``edgefilter.compiled`` says so."""
    assert edgefilter.compiled is True
    assert _filter._layer_of_text is _speedups.layer_of_text
    assert _filter._decision_of_hit is _speedups.decision_of_hit


@given(entry_lists, entry_lists, st.booleans(), st.lists(text_hits(), max_size=8))
def test_layer_of_text_answers_as_the_pure_reader(
    first: list[str], second: list[str], compact: bool, hits: list[object]
) -> None:
    """On packed and compact tables, layered or not, the C reader's layer (or its "ask
    Python") is the pure reader's, and ``in`` agrees with it."""
    table = AddressTable.from_entries(first, compact=compact)[0]
    layered = AddressTable.layered(table, AddressTable.from_entries(second)[0])
    for each in (table, layered):
        for hit in hits:
            assert _speedups.layer_of_text(each, hit) == pure_layer_of_text(each, hit), hit
            compiled, pure = both(lambda each=each, hit=hit: hit in each)
            assert compiled is pure, hit


@settings(max_examples=300)
@given(large_probes())
def test_layer_of_text_answers_as_the_pure_reader_on_large_tables(
    probe: tuple[str, object],
) -> None:
    """On tables indexed by one byte, by two, compact with an index, and layered."""
    name, hit = probe
    table = large(name)[0]
    assert _speedups.layer_of_text(table, hit) == pure_layer_of_text(table, hit), (name, hit)


@pytest.mark.parametrize("name", sorted(LARGE_SHAPES))
def test_every_edge_of_a_large_table_has_the_pure_readers_layer(name: str) -> None:
    """Each interval's first and last address and its neighbours, of both families, in
    every large shape: the same layer (the edges where a search goes wrong first)."""
    table, _, edges = large(name)
    texts = [value_text(value) for value in edges]
    assert _speedups.layers_of_texts(table, texts) == [
        pure_layer_of_text(table, text) for text in texts
    ]


def test_large_probes_cover_every_table_shape() -> None:
    """The large tables include each form the C reader searches."""
    shapes = {(large(name)[0].shift4, large(name)[0].shift6) for name in LARGE_SHAPES}
    assert {_layout.BY_BYTE, _layout.WIDE, _layout.COMPACT} <= {s for pair in shapes for s in pair}


@settings(max_examples=50)
@given(st.lists(addresses, min_size=1, max_size=20), st.booleans())
def test_a_subclass_of_addresstable_is_read_through_its_attributes(
    texts: list[str], compact: bool
) -> None:
    """A table that is not exactly ``AddressTable`` (no slot offsets): the same answers."""

    class Table(AddressTable):
        __slots__ = ()

    table = AddressTable.from_entries(texts[: len(texts) // 2], compact=compact)[0]
    derived = Table.__new__(Table)
    for name in ("buckets4", "shift4", "buckets6", "shift6", "compact4", "compact_index4"):
        object.__setattr__(derived, name, getattr(table, name))
    object.__setattr__(derived, "compact6", table.compact6)
    object.__setattr__(derived, "bound_count", table.bound_count)
    for text in texts:
        assert _speedups.layer_of_text(derived, text) == pure_layer_of_text(table, text)


@pytest.mark.parametrize(
    "table",
    [
        None,
        object(),
        "10.0.0.0/8",
        type("Fields", (), {"shift4": "8", "buckets4": ()})(),
        type("Fields", (), {"shift4": 8, "buckets4": ((b"\x0a",),)})(),  # an end too short
        type("Fields", (), {"shift4": 3, "buckets4": ()})(),  # a shift with no bucket
        type("Fields", (), {"shift4": -2, "compact4": b"\x00" * 8, "compact_index4": None})(),
        type("Fields", (), {"shift6": -2, "compact6": b"\x00" * 16})(),
    ],
    ids=["none", "object", "text", "shift text", "short end", "no bucket", "bytes", "ragged"],
)
@pytest.mark.parametrize("hit", ["10.1.2.3", "2001:db8::1"])
def test_an_odd_table_is_left_to_python(table: object, hit: str) -> None:
    """An object not laid out as ``_layout`` says: "ask Python" (-2), never an exception."""
    assert _speedups.layer_of_text(table, hit) in (_layout.ASK_PYTHON, _layout.OUTSIDE_LAYER)
    assert _speedups.layers_of_texts(table, [hit]) == [_speedups.layer_of_text(table, hit)]


def test_bind_refuses_a_layout_it_was_not_built_for() -> None:
    """A stale build (another value for a layout constant) is refused, named."""
    constants = {name: getattr(_layout, name) for name in dir(_layout) if name.isupper()}
    with pytest.raises(ValueError, match="COMPACT_PROBE"):
        _speedups.bind(AddressTable, {**constants, "COMPACT_PROBE": 0x41})
    _speedups.bind(AddressTable, constants)  # bound again, as at import


class OneSite:
    """A rules source holding one site's rules, swapped between examples."""

    def __init__(self) -> None:
        self.sites: dict[str, SiteRules] = {}
        self.rules_for: Callable[[str], SiteRules | None] = self.sites.get

    def resolve(self, site: str) -> SiteRules | None:
        """Nothing beyond ``rules_for``."""
        return None


@cache
def decision_filter() -> tuple[OneSite, EdgeFilter]:
    """One filter with both test databases walked; its site is swapped between examples."""
    geoip, asn_db = CountryResolver(CITY_DB), AsnResolver(ASN_DB)
    geoip.wait_compiled()
    asn_db.wait_compiled()
    source = OneSite()
    return source, EdgeFilter(source, geoip=geoip, asn_db=asn_db, bots=BotDetector())


def decision_hits() -> st.SearchStrategy[object]:
    """Text hits, and addresses inside the databases' networks, in every form."""
    inside = st.sampled_from(database_addresses()).flatmap(lambda t: st.sampled_from(hit_forms(t)))
    return st.one_of(text_hits(), inside)


@settings(max_examples=150)
@given(
    entry_lists,
    st.booleans(),
    st.sampled_from(["no layers", "layered", "layers not built"]),
    st.booleans(),
    st.lists(
        st.tuples(
            st.one_of(st.just(SITE), any_values),
            decision_hits(),
            st.one_of(st.sampled_from(USER_AGENTS), any_values),
            st.one_of(st.none(), st.sampled_from(["/admin/1", "/", "/blog"]), any_values),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_should_track_decides_as_the_pure_build(
    entries: list[str],
    compact: bool,
    layers: str,
    block_bots: bool,
    hits: list[tuple[object, object, object, object]],
) -> None:
    """Whole decisions (IPs, countries, ASNs layered or not yet, paths, bots; odd sites,
    addresses and user agents) are the same Decision with either reader."""
    source, edge_filter = decision_filter()
    with_layers = layers != "no layers"
    config = SiteConfig(
        excluded_ips=tuple(entries),
        excluded_countries=("US", "GB", "CN") if with_layers else (),
        excluded_asns=(15169, 1221, 209) if with_layers else (),
        excluded_paths=("/admin*",),
        block_bots=block_bots,
    )
    rules = compile_rules(config, compact=compact)
    if layers == "layered":
        assert edge_filter.prepare(rules)
    source.sites[SITE] = rules
    for site, ip, ua, path in hits:
        if layers == "layers not built":
            rules.country_layers.clear()  # built in the background after a hit: undone
        hit = (site, ip, ua)
        compiled, pure = both(lambda hit=hit, path=path: edge_filter.should_track(*hit, path=path))
        assert isinstance(compiled, Decision)
        assert compiled is pure, (site, ip, ua, path)


PATHS = ["/admin", "/admin/x", "/", "/blog", "/health", "/ADMIN/y"]
HOSTNAMES = ["www.example.com", "a.internal.example", "staging.example.com", "x.example"]
AGENTS = [*USER_AGENTS, "Mozilla/5.0 (compatible; UptimeRobot/2.0)", "internal-qa runner"]


def cached_values(values: list[str]) -> st.SearchStrategy[object]:
    """A hit's path, hostname or user agent: the values above (cached after a first hit)
    and their bytes and ``str``-subclass forms, None, and any value at all."""
    return st.one_of(
        st.sampled_from(values),
        st.sampled_from(values).map(lambda text: text.encode("latin-1")),
        st.sampled_from(values).map(Text),
        st.none(),
        any_values,
    )


class Text(str):
    """A ``str`` subclass: read as its plain value, never through a cache here."""

    __slots__ = ()


def clear_caches(rules: SiteRules, edge_filter: EdgeFilter) -> None:
    """Every verdict the hit could be answered from, forgotten: the next hit misses."""
    for matcher in (rules.excluded_paths, rules.excluded_hostnames, rules.excluded_user_agents):
        if matcher is not None:
            matcher.verdicts.clear()
    edge_filter.bots.verdicts.clear()


@settings(max_examples=150)
@given(
    st.lists(st.sampled_from(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]), max_size=2),
    st.sets(st.sampled_from(["paths", "hostnames", "user agents"])),
    st.booleans(),
    st.sampled_from(["web", "mobile"]),
    st.lists(
        st.tuples(
            st.one_of(st.just(SITE), any_values),
            st.one_of(st.sampled_from(["10.1.2.3", "192.0.2.1", "2001:db8::1", "x"]), any_values),
            cached_values(AGENTS),
            cached_values(PATHS),
            cached_values(HOSTNAMES),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_whole_hits_are_decided_as_the_pure_build_cold_and_warm(
    entries: list[str],
    kinds: set[str],
    block_bots: bool,
    site_type: str,
    hits: list[tuple[object, object, object, object, object]],
) -> None:
    """Path, hostname and user-agent rules (any of them, or none), bots, mobile sites, with
    or without IP rules, on hits of every kind: the compiled hot path on cold caches (each
    miss then filled by Python), the pure one, and the compiled one again on the caches
    they filled, give the same Decision."""
    source, edge_filter = decision_filter()
    config = SiteConfig(
        excluded_ips=tuple(entries),
        excluded_paths=("/admin*", "/health") if "paths" in kinds else (),
        excluded_hostnames=("*.internal.example", "staging.example.com")
        if "hostnames" in kinds
        else (),
        excluded_user_agents=("UptimeRobot", "internal-qa") if "user agents" in kinds else (),
        block_bots=block_bots,
        type=site_type,
    )
    rules = compile_rules(config)
    source.sites[SITE] = rules
    for site, ip, ua, path, hostname in hits:
        hit = (site, ip, ua)
        fields = {"path": path, "hostname": hostname}
        decide = functools.partial(edge_filter.should_track, *hit, **fields)
        clear_caches(rules, edge_filter)
        cold, pure = both(decide)
        warm = outcome(decide)
        assert isinstance(cold, Decision)
        assert cold is pure is warm, (site, ip, ua, path, hostname)


def whole_hit(
    edge_filter: EdgeFilter, rules: object, ip: object, ua: object, path: object, host: object
) -> object:
    """``decision_of_hit`` with the whole hit, as ``should_track`` calls it."""
    key, verdicts = edge_filter._layers_key, edge_filter._bot_verdicts
    return _speedups.decision_of_hit(rules, key, ip, ua, path, host, verdicts)


def pattern_rules(**changes: object) -> SiteRules:
    """A site with an IP rule, one rule of each pattern kind and bots blocked."""
    config = SiteConfig(
        excluded_ips=("10.0.0.0/8",),
        excluded_paths=("/admin*",),
        excluded_hostnames=("*.internal.example",),
        excluded_user_agents=("internal-qa",),
        block_bots=True,
    )
    return compile_rules(dataclasses.replace(config, **changes))  # type: ignore[arg-type]


PERSON = USER_AGENTS[0]


def test_the_whole_hit_is_answered_from_caches_in_the_hot_paths_order() -> None:
    """Once Python has filled the caches, each check is answered in C, the first that
    excludes the hit winning (address, path, hostname, user agent, bots); a miss is None
    (Python makes the checks after the address) until should_track fills it."""
    source, edge_filter = decision_filter()
    rules = pattern_rules()
    source.sites[SITE] = rules
    agent, bot = "internal-qa runner", "Googlebot/2.1"
    hits = [
        ("10.1.2.3", agent, "/admin/1", "a.internal.example", EXCLUDED_IP),
        ("11.1.2.3", agent, "/admin/1", "a.internal.example", EXCLUDED_PATH),
        ("11.1.2.3", agent, "/blog", "a.internal.example", EXCLUDED_HOSTNAME),
        ("11.1.2.3", agent, "/blog", "www.example.com", EXCLUDED_USER_AGENT),
        ("11.1.2.3", bot, "/blog", "www.example.com", BOT),
        ("11.1.2.3", PERSON, "/blog", "www.example.com", TRACKED),
        ("11.1.2.3", PERSON, None, None, TRACKED),  # no path, no hostname: not excluded
    ]
    clear_caches(rules, edge_filter)
    for ip, ua, path, host, decision in hits:
        if decision is not EXCLUDED_IP and path is not None:
            assert whole_hit(edge_filter, rules, ip, ua, path, host) is None  # a miss
        assert edge_filter.should_track(SITE, ip, ua, path=path, hostname=host) is decision
        assert whole_hit(edge_filter, rules, ip, ua, path, host) is decision  # now cached


@pytest.mark.parametrize(
    "field",
    ["ua", "path", "hostname"],
)
@pytest.mark.parametrize(
    "value",
    [b"/blog", Text("/blog"), 7, ["/blog"]],
    ids=["bytes", "a str subclass", "an int", "unhashable"],
)
def test_a_value_that_is_not_plain_text_is_left_to_python(field: str, value: object) -> None:
    """A path, hostname or user agent that is not a plain ``str`` is never looked up in C
    (a subclass's own methods must not run, bytes are read as Latin-1 by ``matches``)."""
    source, edge_filter = decision_filter()
    rules = pattern_rules()
    source.sites[SITE] = rules
    hit = {"ua": PERSON, "path": "/blog", "hostname": "www.example.com"}
    edge_filter.should_track(
        SITE, "11.1.2.3", hit["ua"], path=hit["path"], hostname=hit["hostname"]
    )
    assert whole_hit(edge_filter, rules, "11.1.2.3", *hit.values()) is TRACKED
    hit[field] = value
    assert whole_hit(edge_filter, rules, "11.1.2.3", *hit.values()) is None


def test_a_site_without_patterns_or_address_rules_is_answered_whole() -> None:
    """Without pattern rules only the bot verdict is read; without address rules the
    address is never read (an invalid one is tracked); without bots nothing is read."""
    source, edge_filter = decision_filter()
    plain = compile_rules(SiteConfig(excluded_ips=("10.0.0.0/8",), block_bots=True))
    addressless = pattern_rules(excluded_ips=())
    open_site = compile_rules(SiteConfig(block_bots=False))
    assert not plain.has_patterns and not addressless.needs_ip
    for rules in (plain, addressless, open_site):
        source.sites[SITE] = rules
        edge_filter.should_track(SITE, "11.1.2.3", PERSON, path="/blog", hostname="a.example")
    assert whole_hit(edge_filter, plain, "11.1.2.3", PERSON, "/x", "b.example") is TRACKED
    assert whole_hit(edge_filter, plain, "not an ip", PERSON, "/x", "b.example") is False
    assert whole_hit(edge_filter, addressless, "not an ip", PERSON, "/blog", "a.example") is TRACKED
    assert whole_hit(edge_filter, open_site, None, object(), object(), object()) is TRACKED
    assert whole_hit(edge_filter, plain, "11.1.2.3", "never seen before", None, None) is None


class Globs(GlobMatcher):
    """Not exactly GlobMatcher: its verdicts are not read at the bound offset."""

    __slots__ = ()


def test_odd_rules_are_left_to_python() -> None:
    """Rules the C reader does not know exactly: a matcher of another class, flags that
    are not bools, fields that are missing. Python decides, with the pure build's answer."""
    source, edge_filter = decision_filter()
    rules = pattern_rules()
    source.sites[SITE] = rules
    hit = ("11.1.2.3", PERSON, "/blog", "www.example.com")
    assert edge_filter.should_track(SITE, *hit[:2], path=hit[2], hostname=hit[3]) is TRACKED
    assert whole_hit(edge_filter, rules, *hit) is TRACKED
    globs = Globs(["/admin*"])
    globs.verdicts["/blog"] = False
    derived = dataclasses.replace(rules, excluded_paths=globs)
    assert whole_hit(edge_filter, derived, *hit) is None
    assert whole_hit(edge_filter, Rules(block_bots=1), *hit) is None  # type: ignore[arg-type]
    odd_flag = Rules(needs_ip=0, excluded_ips=rules.excluded_ips)  # type: ignore[arg-type]
    assert whole_hit(edge_filter, odd_flag, "not an ip", *hit[1:]) is False
    assert whole_hit(edge_filter, object(), *hit) is False
    for odd in (odd_flag, Rules(needs_ip=1, excluded_ips=rules.excluded_ips)):  # type: ignore[arg-type]
        source.sites[SITE] = odd
        for ip in ("not an ip", "10.1.2.3", "11.1.2.3"):
            compiled, pure = both(lambda ip=ip: edge_filter.should_track(SITE, ip, PERSON))
            assert compiled is pure, (odd, ip)


def test_bind_checks_refuses_what_it_cannot_read() -> None:
    """A class without a ``verdicts`` slot, or the wrong number of decisions: TypeError."""
    checks = _filter._CHECKS
    with pytest.raises(TypeError, match="verdicts"):
        _speedups.bind_checks((SiteRules,), checks)
    with pytest.raises(TypeError, match="decisions"):
        _speedups.bind_checks((GlobMatcher,), checks[:-1])
    _speedups.bind_checks((GlobMatcher, SubstringMatcher), checks)  # bound again, as at import


class Rules(SiteRules):
    """Not exactly SiteRules: read through its attributes."""

    __slots__ = ()


@pytest.mark.parametrize("derived", [False, True], ids=["SiteRules", "a subclass"])
def test_layer_of_hit_reads_the_table_hits_are_searched_in(derived: bool) -> None:
    """The IP table without layers; with them, the layered table once built (UNLAYERED
    before); odd rules, keys and addresses are left to Python. ``decision_of_hit`` answers
    each layer's decision, None outside, False for the rest."""
    kind = Rules if derived else SiteRules
    table = AddressTable.from_entries(["10.0.0.0/8"])[0]
    plain = kind(excluded_ips=table, needs_ip=True)
    assert _speedups.layer_of_hit(plain, None, "10.1.2.3") == 0
    assert _speedups.layer_of_hit(plain, None, "::ffff:11.1.2.3") == _layout.OUTSIDE_LAYER
    layered = kind(excluded_ips=table, excluded_countries=frozenset({"US"}), needs_ip=True)
    assert layered.needs_layers
    key = object()
    assert _speedups.layer_of_hit(layered, key, "10.1.2.3") == _layout.UNLAYERED
    layered.country_layers[key] = AddressTable.layered(AddressTable(), table)
    assert _speedups.layer_of_hit(layered, key, "10.1.2.3") == 1
    assert _speedups.layer_of_hit(layered, [], "10.1.2.3") == _layout.ASK_PYTHON  # unhashable
    assert _speedups.layer_of_hit(layered, key, " 10.1.2.3") == _layout.ASK_PYTHON
    assert _speedups.layer_of_hit(object(), key, "10.1.2.3") == _layout.ASK_PYTHON
    decisions = [
        _speedups.decision_of_hit(rules, key, ip)
        for rules, ip in ((plain, "10.1.2.3"), (plain, "11.1.2.3"), (layered, "10.1.2.3"))
    ]
    assert decisions == [EXCLUDED_IP, None, EXCLUDED_COUNTRY]
    assert _speedups.decision_of_hit(layered, key, "x") is False
    assert _speedups.decision_of_hit(layered, object(), "10.1.2.3") is False  # not built


def test_decision_probes_reach_every_address_decision() -> None:
    """The addresses drawn above lead to each layer's decision and to tracking and an invalid
    address, so the differential test sees each one go wrong."""
    source, edge_filter = decision_filter()
    config = SiteConfig(
        excluded_ips=("10.0.0.0/8",), excluded_countries=("US", "GB"), excluded_asns=(15169,)
    )
    rules = compile_rules(config, compact=True)
    assert edge_filter.prepare(rules)
    source.sites[SITE] = rules
    hits = [*database_addresses(), "10.1.2.3", "::ffff:10.1.2.3", "x", "192.0.2.1"]
    reasons = {edge_filter.should_track(SITE, hit, USER_AGENTS[0]).reason.value for hit in hits}
    assert reasons >= {"excluded_ip", "excluded_country", "excluded_asn", "tracked", "invalid_ip"}


def built_wheel(tmp_path: Path, environ: dict[str, str]) -> Path:
    """The wheel pip builds from this checkout (offline: the installed backend)."""
    if find_spec("hatchling") is None or find_spec("setuptools") is None:
        pytest.skip("hatchling and setuptools are needed to build a wheel offline")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp_path), str(ROOT)], env=environ, check=True)
    (wheel,) = tmp_path.glob("edgefilter-*.whl")
    return wheel


def test_a_machine_without_a_compiler_builds_a_pure_wheel(tmp_path: Path) -> None:
    """With no working compiler, the wheel still builds: pure Python, for any platform."""
    environ = {**os.environ, "CC": "/bin/false"}
    wheel = built_wheel(tmp_path, environ)
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not [name for name in archive.namelist() if "_speedups" in name and ".so" in name]
        assert "edgefilter/_speedups.c" in archive.namelist()  # the pure wheel keeps the source


def test_a_machine_with_a_compiler_builds_the_compiled_reader_into_its_wheel(
    tmp_path: Path,
) -> None:
    """With one, the wheel holds the compiled module and is tagged for this platform."""
    wheel = built_wheel(tmp_path, dict(os.environ))
    assert not wheel.name.endswith("-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert [name for name in archive.namelist() if name.startswith("edgefilter/_speedups.")]
