"""Path, hostname and user-agent exclusions against a literal transliteration of Rybbit's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter._patterns import (
    MAX_CACHED_VERDICTS,
    compile_globs,
    compile_substrings,
)


def rybbit_glob(pattern: str, value: str) -> bool:
    """Rybbit's glob, stated plainly: ``*`` is any run, the rest literal, anchored at both
    ends, case-insensitive (no fnmatch, no regex)."""
    parts = pattern.strip().lower().split("*")
    text = value.lower()
    if len(parts) == 1:
        return text == parts[0]
    head, *middle, tail = parts
    if not text.startswith(head) or not text.endswith(tail):
        return False
    position, end = len(head), len(text) - len(tail)
    if end < position:
        return False
    for part in middle:
        found = text.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


def rybbit_substring(entries: list[str], value: str) -> bool:
    """Rybbit's user-agent rule: the value contains an entry, case-insensitively."""
    text = value.lower()
    return any(entry.strip().lower() in text for entry in entries if entry.strip())


# Characters that regex engines treat specially, plus the glob's own star and some Unicode.
SPECIAL = "*.+?()[]{}|^$\\/-"
pattern_chars = st.one_of(
    st.sampled_from([*SPECIAL, "a", "b", "A", "/", "é", "ß", "İ", "K", "\n"]),
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffd"),
)
patterns = st.text(pattern_chars, min_size=1, max_size=12).filter(lambda p: p.strip())
values = st.one_of(
    st.text(pattern_chars, max_size=30),
    st.text(st.characters(), max_size=30),  # lone surrogates included
)


@given(st.lists(patterns, min_size=1, max_size=8), st.lists(values, max_size=10))
def test_globs_agree_with_rybbit(entries: list[str], probes: list[str]) -> None:
    """The compiled glob matcher answers exactly what Rybbit's rule answers."""
    matcher, rejected = compile_globs("path", entries)
    assert rejected == []
    for probe in [*probes, *entries, *(e.replace("*", "xyz") for e in entries)]:
        expected = any(rybbit_glob(entry, probe) for entry in entries)
        assert matcher.matches(probe) is expected, (entries, probe)
        assert matcher.matches(probe) is expected  # the cached verdict too


@given(st.lists(patterns, min_size=1, max_size=8), st.lists(values, max_size=10))
def test_substrings_agree_with_rybbit(entries: list[str], probes: list[str]) -> None:
    """The compiled substring matcher answers exactly what Rybbit's rule answers."""
    matcher, rejected = compile_substrings("user agent", entries)
    assert rejected == []
    for probe in [*probes, *(f"x{e.upper()}y" for e in entries)]:
        expected = rybbit_substring(entries, probe)
        assert matcher.matches(probe) is expected, (entries, probe)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        # Rybbit's own examples
        ("/admin*", "/admin", True),
        ("/admin*", "/admin/x", True),
        ("/admin*", "/ADMIN/X", True),
        ("*.internal.example", "a.internal.example", True),
        ("*.internal.example", "internal.example", False),
        # anchored at both ends
        ("/admin", "/admin/x", False),
        ("/admin", "/x/admin", False),
        ("*admin", "/x/admin", True),
        # metacharacters are literal
        ("/a.c", "/abc", False),
        ("/a.c", "/a.c", True),
        ("/a+", "/aa", False),
        ("/(x)", "/(x)", True),
        ("/[ab]", "/a", False),
        ("/a?", "/ab", False),
        ("/a\\b", "/a\\b", True),
        ("/a.c*", "/abc", False),
        ("/a.c*", "/a.cd", True),
        ("*/a+", "/aa", False),
        ("*[ab]", "/a", False),
        ("*[ab]", "/[ab]", True),
        ("/a?*", "/ab", False),
        ("*(x|y)", "x", False),
        ("*\\d", "7", False),
        ("*.internal.example", "a.internal.example.evil", False),
        ("/admin*", "/x/admin/y", False),
        # star matches slashes, line breaks and nothing
        ("/a*z", "/a/b/c/z", True),
        ("/a*z", "/a\nz", True),
        ("/a*z", "/az", True),
        ("**", "", True),
        # trimmed entries
        ("  /admin  ", "/admin", True),
    ],
)
def test_glob_cases(pattern: str, value: str, expected: bool) -> None:
    """Each case answers as Rybbit's rule says (and as the oracle says)."""
    matcher, _ = compile_globs("path", [pattern])
    assert matcher.matches(value) is expected
    assert rybbit_glob(pattern, value) is expected


@pytest.mark.parametrize("entry", ["", "   ", None, 7, b"/admin"])
def test_bad_entries_are_rejected_with_a_reason(entry: object) -> None:
    """Empty (after trimming) and non-string entries are rejected; the others still apply."""
    matcher, rejected = compile_globs("path", [entry, "/ok"])
    assert [value for value, _ in rejected] == [entry]
    assert "excluded path entry" in rejected[0][1]
    assert matcher.matches("/OK")


@pytest.mark.parametrize("value", [None, 7, 7.5, ["/admin"], {"/admin": 1}, object()])
def test_non_text_values_are_not_excluded(value: object) -> None:
    """A path, hostname or user agent that is neither text nor bytes matches nothing."""
    matcher, _ = compile_globs("path", ["*"])
    assert matcher.matches(value) is False


@pytest.mark.parametrize(
    ("value", "excluded"),
    [
        (b"/ADMIN/x", True),
        (bytearray(b"/admin"), True),
        (memoryview(b"/admin"), True),
        ("/adm\xefn".encode("latin-1"), False),  # decoded as Latin-1: not /admin
        (b"/public", False),
    ],
)
def test_bytes_are_read_as_latin_1(value: object, excluded: bool) -> None:
    """Bytes are matched as their Latin-1 text, as the bot check reads a bytes user agent."""
    matcher, _ = compile_globs("path", ["/admin*"])
    assert matcher.matches(value) is excluded


def test_a_hostile_str_subclass_is_read_as_its_plain_value() -> None:
    """A str subclass whose methods raise is matched as its plain text, never raising."""

    class Hostile(str):
        __slots__ = ()

        def lower(self) -> str:  # type: ignore[override]
            raise RuntimeError("lower")

        def __hash__(self) -> int:
            raise RuntimeError("hash")

    matcher, _ = compile_globs("path", ["/admin*"])
    assert matcher.matches(Hostile("/Admin/x"))
    assert not matcher.matches(Hostile("/public"))
    assert all(type(key) is str for key in matcher.verdicts)


def test_verdict_cache_is_bounded() -> None:
    """However many distinct values arrive, the verdict cache stays within its bound."""
    matcher, _ = compile_substrings("user agent", ["bot"])
    for number in range(3 * MAX_CACHED_VERDICTS):
        matcher.matches(f"agent {number}")
    assert 0 < len(matcher.verdicts) <= MAX_CACHED_VERDICTS
    assert matcher.matches("SomeBot/1.0")


@pytest.mark.parametrize("compile_kind", [compile_globs, compile_substrings])
def test_lone_surrogates_are_judged(compile_kind: object) -> None:
    """Text with lone surrogates (which RE2 cannot encode) is judged, never raises."""
    matcher, _ = compile_kind("kind", ["*bot*"] if compile_kind is compile_globs else ["bot"])  # type: ignore[operator]
    assert matcher.matches("x\ud800BOT\udfff")
    assert not matcher.matches("x\ud800")


def test_a_huge_value_is_judged_and_not_kept() -> None:
    """A value past the cache's length limit is answered but not cached."""
    matcher, _ = compile_substrings("user agent", ["needle"])
    huge = "x" * 100_000 + "NEEDLE"
    assert matcher.matches(huge)
    assert huge not in matcher.verdicts
