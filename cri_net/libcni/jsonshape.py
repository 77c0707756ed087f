"""Typed reading of decoded JSON, and the immutable value base of libcni's documents.

Go libcni decodes configs and results into typed structs and fails on a wrong type. These
helpers make the same checks on what `json.loads` returns, each naming the field's path
(`ips.0.address`) in a `FieldError`, so a caller can say what is wrong and where. Plain
functions and classes, not pydantic or dataclasses: `cri-net cni` imports every libcni type
for one plugin run, and building those models cost it more than the run itself.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any

Path = tuple  # of str | int: the keys and indices from the document's root


class FieldError(ValueError):
    """A field that is missing or has the wrong type or value; `path` locates it."""

    def __init__(self, path: Path, reason: str, missing: bool = False) -> None:
        self.path, self.reason, self.missing = tuple(path), reason, missing
        super().__init__(f"{self.where}: {reason}")

    @property
    def where(self) -> str:
        return ".".join(str(p) for p in self.path)


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _wrong(value: Any, path: Path, want: str) -> FieldError:
    return FieldError(path, f"must be {want}, not {json_kind(value)}")


def string(value: Any, path: Path) -> str:
    if isinstance(value, str):
        return value
    raise _wrong(value, path, "a string")


def integer(value: Any, path: Path) -> int:
    """A JSON integer (not a boolean, not a float, as Go's int)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _wrong(value, path, "an integer")


def optional_integer(value: Any, path: Path) -> int | None:
    """Go's *int: null is absent, 0 is a value."""
    return None if value is None else integer(value, path)


def boolean(value: Any, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    raise _wrong(value, path, "a boolean")


def obj(value: Any, path: Path) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _wrong(value, path, "an object")


def array(value: Any, path: Path) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise _wrong(value, path, "an array")


def strings(value: Any, path: Path) -> list[str]:
    """An array of strings."""
    return [string(item, (*path, i)) for i, item in enumerate(array(value, path))]


def required(doc: dict[str, Any], key: str, path: Path) -> Any:
    try:
        return doc[key]
    except KeyError:
        raise FieldError((*path, key), "missing", missing=True) from None


class Value:
    """An immutable document with named fields, compared and hashed by them.

    Subclasses list their fields in `_fields` and set them in `__init__` through
    `self.__dict__` (assignment is refused afterwards); `replace()` copies with changes.
    """

    _fields: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(self.__dict__[f] for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={self.__dict__[f]!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def replace(self, **changes: Any) -> Any:
        """A copy with `changes` (field name -> value); unknown names raise TypeError."""
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def model_copy(self, update: dict[str, Any] | None = None) -> Any:
        """`replace(**update)`, under the name these types had as pydantic models."""
        return self.replace(**(update or {}))
