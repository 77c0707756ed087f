"""cri_net.libcni.version: parsing and comparing CNI spec versions like Go's pkg/version.

Go reference: pkg/version/plugin.go ParseVersion / GreaterThanOrEqualTo (libcni v1.3):
"" means 0.1.0, one to three parts split on ".", each part parsed with strconv.Atoi
(so an optional sign is accepted), four or more parts are "too many parts".
"""

from __future__ import annotations

import pytest

from cri_net.libcni import version
from cri_net.libcni.version import CURRENT, SUPPORTED_VERSIONS, Version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (0, 1, 0)),  # no version declared == 0.1.0
        ("1", (1, 0, 0)),
        ("1.2", (1, 2, 0)),
        ("0.4.0", (0, 4, 0)),
        ("1.1.0", (1, 1, 0)),
        ("0.10.0", (0, 10, 0)),
        ("10.20.30", (10, 20, 30)),
        ("007.01.0", (7, 1, 0)),  # Atoi accepts leading zeros
        ("+1.-2", (1, -2, 0)),  # ... and a sign, like strconv.Atoi
    ],
)
def test_parse_valid(text: str, expected: tuple[int, int, int]) -> None:
    v = Version.parse(text)
    assert (v.major, v.minor, v.micro) == expected
    assert version.parse(text) == v
    assert str(v) == "%d.%d.%d" % expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1.2.3.4", "too many parts"),
        ("0.4.0.0", "too many parts"),
        ("1.2.3.4.5", "too many parts"),
        ("abc", "major"),
        ("x.1.0", "major"),
        ("1.x", "minor"),
        ("1.2.x", "micro"),
        ("1..2", "minor"),  # empty part
        ("1.", "minor"),
        (".1", "major"),
        (" 1", "major"),  # no whitespace trimming
        ("1.0.0-rc1", "micro"),
        ("v1.0.0", "major"),
        ("1.0.0 ", "micro"),
        ("１.0.0", "major"),  # full-width digit: Atoi only takes ASCII digits
    ],
)
def test_parse_invalid_names_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        Version.parse(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0.10.0", "0.4.0"),  # numeric, not lexicographic
        ("0.4.0", "0.3.1"),
        ("0.3.1", "0.3.0"),
        ("1.0.0", "0.4.0"),
        ("1.1.0", "1.0.0"),
        ("2", "1.99.99"),
        ("1.10", "1.9"),
        ("0.2.0", ""),  # "" is 0.1.0
        ("0.1.1", ""),
    ],
)
def test_ordering_is_numeric(a: str, b: str) -> None:
    assert Version.parse(a) > Version.parse(b)
    assert Version.parse(b) < Version.parse(a)
    assert version.greater_than(a, b)
    assert not version.greater_than(b, a)
    assert version.at_least(a, b)
    assert not version.at_least(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [("", "0.1.0"), ("1", "1.0.0"), ("1.0", "1.0.0"), ("0.4", "0.4.0"), ("01.1.0", "1.1.0")],
)
def test_equal_spellings(a: str, b: str) -> None:
    assert Version.parse(a) == Version.parse(b)
    assert hash(Version.parse(a)) == hash(Version.parse(b))
    assert version.at_least(a, b) and version.at_least(b, a)
    assert not version.greater_than(a, b) and not version.greater_than(b, a)


def test_version_not_equal_to_other_types() -> None:
    assert Version.parse("1.0.0") != "1.0.0"
    assert repr(Version.parse("1")) == "Version('1.0.0')"


@pytest.mark.parametrize("func", [version.at_least, version.greater_than])
@pytest.mark.parametrize(("a", "b"), [("abc", "1.0.0"), ("1.0.0", "1.2.3.4"), ("1.x", "1")])
def test_compare_invalid_raises(func, a: str, b: str) -> None:
    with pytest.raises(ValueError):
        func(a, b)


@pytest.mark.parametrize("v", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", ""])
def test_is_supported(v: str) -> None:
    assert version.is_supported(v)


@pytest.mark.parametrize("v", ["0.5.0", "1.2.0", "2.0.0", "1.0", "1", "0.4", "abc", "9.9.9", "0.0.0"])
def test_is_not_supported(v: str) -> None:
    # support is by exact spelling: "1.0" is not "1.0.0" (Go's result registry compares strings)
    assert not version.is_supported(v)


def test_constants() -> None:
    assert CURRENT == "1.1.0"
    assert SUPPORTED_VERSIONS == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert version.newest(list(SUPPORTED_VERSIONS)) == CURRENT
    assert list(SUPPORTED_VERSIONS) == sorted(SUPPORTED_VERSIONS, key=Version.parse)


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (["0.4.0", "0.10.0", "0.3.1"], "0.10.0"),
        (["1.0.0"], "1.0.0"),
        (["0.3.1", "1.1.0", "1.0.0"], "1.1.0"),
        (["1", "0.9.9"], "1"),  # returns the spelling given
    ],
)
def test_newest(versions: list[str], expected: str) -> None:
    assert version.newest(versions) == expected
