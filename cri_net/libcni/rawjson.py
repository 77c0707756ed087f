"""JSON helpers that keep what a plugin receives faithful to what the operator wrote.

Go libcni round-trips every config through `map[string]interface{}`, which reorders keys and
turns every number into a float64 (2**63 becomes 9223372036854775807 -> 9.223372036854776e18).
We instead splice JSON *text*: members we do not touch are forwarded byte-for-byte.

`go_dumps` writes JSON the way Go's encoding/json does (compact, sorted map keys, `<>&`
escaped), which is what makes our cache files identical to Go libcni's.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any

_WS = re.compile(r"[ \t\n\r]*")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON literal {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def loads(data: bytes | str) -> Any:
    """Strict JSON decode (no NaN/Infinity, UTF-8 only); raises ValueError with position."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    try:
        return _DECODER.decode(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _skip_ws(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def object_members(text: str) -> list[tuple[str, str, str]]:
    """(key, raw key text, raw value text) for each member of a JSON object, in order.

    The text must already be valid JSON (call `loads` first for a good error message).
    """
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    i = _skip_ws(text, i + 1)
    members: list[tuple[str, str, str]] = []
    if text[i : i + 1] == "}":
        return members
    while True:
        key, j = scanstring(text, i + 1)
        raw_key = text[i:j]
        j = _skip_ws(text, _skip_ws(text, j) + 1)  # past ':'
        _, k = _DECODER.raw_decode(text, j)
        members.append((key, raw_key, text[j:k]))
        k = _skip_ws(text, k)
        if text[k] == "}":
            return members
        i = _skip_ws(text, k + 1)  # past ','


def member_array_items(text: str, key: str) -> list[str] | None:
    """Raw text of each element of the array under `key` (its last occurrence, as JSON
    semantics and Go take it) in an object; None if absent. Each element is decoded once,
    not once for the array and again for itself: that was a third of a conf dir's load."""
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    i = _skip_ws(text, i + 1)
    found: list[str] | None = None
    if text[i : i + 1] == "}":
        return found
    while True:
        name, j = scanstring(text, i + 1)
        j = _skip_ws(text, _skip_ws(text, j) + 1)  # past ':'
        if name == key and text[j : j + 1] == "[":
            found, k = [], _skip_ws(text, j + 1)
            if text[k] == "]":
                k += 1
            else:
                while True:
                    _, end = _DECODER.raw_decode(text, k)
                    found.append(text[k:end])
                    k = _skip_ws(text, end)
                    if text[k] == "]":
                        k += 1
                        break
                    k = _skip_ws(text, k + 1)
        else:
            _, k = _DECODER.raw_decode(text, j)
        k = _skip_ws(text, k)
        if text[k] == "}":
            return found
        i = _skip_ws(text, k + 1)  # past ','


def array_items(text: str) -> list[str]:
    """Raw text of each element of a JSON array (valid JSON expected)."""
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "[":
        raise ValueError("not a JSON array")
    i = _skip_ws(text, i + 1)
    items: list[str] = []
    if text[i : i + 1] == "]":
        return items
    while True:
        _, k = _DECODER.raw_decode(text, i)
        items.append(text[i:k])
        k = _skip_ws(text, k)
        if text[k] == "]":
            return items
        i = _skip_ws(text, k + 1)


def splice(obj_text: str, values: dict[str, Any]) -> str:
    """Return `obj_text` with `values` set: replaced in place, or appended, others verbatim.

    Duplicate occurrences of a replaced key are dropped (Go would keep the last one; the
    injected value wins either way).
    """
    out: list[str] = []
    done: set[str] = set()
    for key, raw_key, raw_value in object_members(obj_text):
        if key in values:
            if key not in done:
                out.append(f"{raw_key}:{dumps(values[key])}")
                done.add(key)
            continue
        out.append(f"{raw_key}:{raw_value}")
    for key, value in values.items():
        if key not in done:
            out.append(f"{dumps(key)}:{dumps(value)}")
    return "{" + ",".join(out) + "}"


def dumps(value: Any) -> str:
    """Compact JSON, insertion order kept, non-ASCII kept as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
                             # a byte that is not UTF-8 (a surrogate-escaped path): Go writes \ufffd
                             **{chr(c): "\\ufffd" for c in range(0xD800, 0xE000)}})


def go_dumps(value: Any) -> str:
    """JSON exactly as Go's json.Marshal writes a map: compact, keys sorted, <>& escaped,
    floats in Go's notation (1.0 -> 1, 1e20 -> 100000000000000000000, 1e-07 -> 1e-7), and
    each byte of a string that is not UTF-8 (os.fsdecode's surrogates) as \\ufffd."""
    if _plain(value):  # no float, string keys only: the C encoder writes the same bytes, 5x faster
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          sort_keys=True).translate(_GO_ESCAPES)
    return _go(value).translate(_GO_ESCAPES)


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return not isinstance(value, float)


def _go(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_go(value[k])}"
                              for k in sorted(value, key=str)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_go(v) for v in value) + "]"
    if isinstance(value, float):
        return _go_float(value)
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _go_float(f: float) -> str:
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError(f"unsupported float value {f!r}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        return re.sub(r"e-0(\d)$", r"e-\1", repr(f))  # Go: 1e-07 -> 1e-7
    from decimal import Decimal  # floats are rare in a result or runtime args; decimal costs ~2 ms to import

    return format(Decimal(repr(f)).normalize(), "f")
