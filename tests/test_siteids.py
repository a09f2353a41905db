"""Site ids in one canonical spelling: the two forms Rybbit knows, or nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter._siteids import MAX_SITE_ID, canonical_site_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # numeric siteId
        ("7", "7"),
        ("0", "0"),
        ("007", "7"),
        ("000", "0"),
        (7, "7"),
        (str(MAX_SITE_ID), str(MAX_SITE_ID)),
        ("0" * 40 + "12", "12"),
        # 12-hex id
        ("a1b2c3d4e5f6", "a1b2c3d4e5f6"),
        ("A1B2C3D4E5F6", "a1b2c3d4e5f6"),
        ("123456789012", "123456789012"),  # twelve digits are a siteId
        # not a site id
        ("", None),
        ("0" * 4300 + "1", None),
        (str(MAX_SITE_ID + 1), None),
        (MAX_SITE_ID + 1, None),
        (-1, None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1 ", None),
        ("²", None),
        ("١٢", None),
        ("①", None),
        ("a1b2c3d4e5f", None),
        ("a1b2c3d4e5f6a", None),
        ("g1b2c3d4e5f6", None),
        ("a1b2c3d4e5f\ud800", None),
        (True, None),
        (None, None),
        (1.0, None),
        (b"7", None),
    ],
)
def test_canonical_site_id(value: object, expected: str | None) -> None:
    """Each spelling maps to its canonical id, or to None."""
    assert canonical_site_id(value) == expected


@given(st.integers(0, MAX_SITE_ID), st.integers(0, 40))
def test_zero_padding_does_not_change_the_id(number: int, zeros: int) -> None:
    """Any zero padding within the length limit names the same site."""
    assert canonical_site_id("0" * zeros + str(number)) == str(number)


@given(st.text(max_size=80))
def test_canonical_ids_are_fixed_points(value: str) -> None:
    """A canonical id is its own canonical form, and is one of the two shapes."""
    canonical = canonical_site_id(value)
    if canonical is not None:
        assert canonical_site_id(canonical) == canonical
        assert canonical.isascii()
        assert canonical.isdigit() or len(canonical) == 12
