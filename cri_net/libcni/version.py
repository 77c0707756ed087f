"""CNI spec versions: parsing, comparison and the set this library speaks.

Go libcni treats "" as 0.1.0 and accepts one to three numeric parts; we do the same so that a
config that works with cnitool works here.
"""

from __future__ import annotations

import re
from functools import lru_cache, total_ordering

CURRENT = "1.1.0"
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

_PART = re.compile(r"[+-]?[0-9]+")


@total_ordering
class Version:
    """A parsed CNI version; compares numerically ("0.10.0" > "0.4.0")."""

    __slots__ = ("major", "minor", "micro")

    def __init__(self, major: int, minor: int, micro: int) -> None:
        self.major, self.minor, self.micro = major, minor, micro

    @classmethod
    def parse(cls, text: str) -> "Version":
        """Parse a version string the way Go libcni does; raises ValueError naming the bad part."""
        return _parse(text) if cls is Version else cls._parse_uncached(text)

    @classmethod
    def _parse_uncached(cls, text: str) -> "Version":
        if text == "":
            return cls(0, 1, 0)
        parts = text.split(".")
        if len(parts) >= 4:
            raise ValueError(f"invalid version {text!r}: too many parts")
        nums = []
        for label, part in zip(("major", "minor", "micro"), parts):
            if not _PART.fullmatch(part):
                raise ValueError(f"failed to convert {label} version part {part!r} of {text!r}")
            nums.append(int(part))
        nums += [0] * (3 - len(nums))
        return cls(*nums)

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.micro)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: "Version") -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.micro}"

    def __repr__(self) -> str:
        return f"Version({str(self)!r})"


def parse(text: str) -> Version:
    return Version.parse(text)


def at_least(version: str, minimum: str) -> bool:
    """True when `version` >= `minimum`; raises ValueError for an unparsable version."""
    return Version.parse(version) >= Version.parse(minimum)


def greater_than(version: str, other: str) -> bool:
    return Version.parse(version) > Version.parse(other)


def is_supported(version: str) -> bool:
    """True for the spec versions this library can read and write results for."""
    return (version or "0.1.0") in SUPPORTED_VERSIONS


def newest(versions: list[str]) -> str:
    """The highest of `versions` (numeric comparison)."""
    return max(versions, key=Version.parse)


@lru_cache(maxsize=256)
def _parse(text: str) -> Version:
    """Versions repeat in every file of a conf dir; a parsed one is never changed."""
    return Version._parse_uncached(text)
