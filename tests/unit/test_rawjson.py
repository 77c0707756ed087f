"""cri_net.libcni.rawjson: text-preserving JSON splicing and Go-compatible encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cri_net.libcni import rawjson

FAST = settings(derandomize=True, database=None, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- loads


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a":1}', {"a": 1}),
        (b'{"a":"\xc3\xa9"}', {"a": "é"}),
        ("18446744073709551617", 18446744073709551617),  # no float64 rounding
        ("[1.0e3, 0.10]", [1000.0, 0.1]),
        (' \n\t{"a" : [ ] } \r\n', {"a": []}),
    ],
)
def test_loads_valid(text: Any, expected: Any) -> None:
    assert rawjson.loads(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        "NaN",
        "[1, 2,]",
        "{'a': 1}",
        '{"a":1} x',
        b'{"a":"\xff"}',  # not UTF-8
        "",
    ],
)
def test_loads_rejects(text: Any) -> None:
    with pytest.raises(ValueError):
        rawjson.loads(text)


def test_loads_error_has_position() -> None:
    with pytest.raises(ValueError) as info:
        rawjson.loads('{"a": 1,\n "b" 2}')
    assert "line 2 column" in str(info.value)


# --------------------------------------------------------------------------- object_members


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", []),
        (" {  } ", []),
        ('{"a":1}', [("a", '"a"', "1")]),
        (
            '{ "a" : 1.0e3 , "b":[1, {"c" : 2}] ,"d":"x\\"y"}',
            [("a", '"a"', "1.0e3"), ("b", '"b"', '[1, {"c" : 2}]'), ("d", '"d"', '"x\\"y"')],
        ),
        ('{"\\u006eame":"n"}', [("name", '"\\u006eame"', '"n"')]),  # decoded key, raw key text kept
        ('{"big":18446744073709551617}', [("big", '"big"', "18446744073709551617")]),
        ('{"a":1,"a":2}', [("a", '"a"', "1"), ("a", '"a"', "2")]),  # duplicates reported in order
        ('{\n  "x": null,\n  "y": true,\n  "z": false\n}\n', [("x", '"x"', "null"), ("y", '"y"', "true"), ("z", '"z"', "false")]),
        ('{"é":"ü"}', [("é", '"é"', '"ü"')]),
    ],
)
def test_object_members(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert rawjson.object_members(text) == expected


@pytest.mark.parametrize("text", ["[]", '"x"', "1", "null", " [{}]"])
def test_object_members_rejects_non_object(text: str) -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        rawjson.object_members(text)


# --------------------------------------------------------------------------- array_items


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", []),
        (" [ ] ", []),
        ("[1]", ["1"]),
        ('[ {"type" : "a"} ,\n {"type":"b", "n": 1.50} ]', ['{"type" : "a"}', '{"type":"b", "n": 1.50}']),
        ('[[1,2], "x", null, 18446744073709551617]', ["[1,2]", '"x"', "null", "18446744073709551617"]),
    ],
)
def test_array_items(text: str, expected: list[str]) -> None:
    assert rawjson.array_items(text) == expected


@pytest.mark.parametrize("text", ["{}", '"x"', "1"])
def test_array_items_rejects_non_array(text: str) -> None:
    with pytest.raises(ValueError, match="not a JSON array"):
        rawjson.array_items(text)


# --------------------------------------------------------------------------- splice


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("{}", {}, "{}"),
        ("{}", {"a": 1}, '{"a":1}'),
        ('{"type":"x"}', {}, '{"type":"x"}'),
        # replaced in place, others verbatim, new keys appended in the order given
        (
            '{"cniVersion":"0.3.1","type":"bridge","big":18446744073709551617,"f":1.0e3}',
            {"cniVersion": "1.0.0", "name": "net"},
            '{"cniVersion":"1.0.0","type":"bridge","big":18446744073709551617,"f":1.0e3,"name":"net"}',
        ),
        # whitespace inside values kept, between members dropped
        ('{ "a" : [ 1, 2 ] ,\n "b": 0.10 }', {"c": True}, '{"a":[ 1, 2 ],"b":0.10,"c":true}'),
        # duplicate of a replaced key: only the first slot survives, holding the new value
        ('{"a":1,"b":2,"a":3}', {"a": "x"}, '{"a":"x","b":2}'),
        # escaped key text kept as written
        ('{"\\u006eame":"old"}', {"name": "new"}, '{"\\u006eame":"new"}'),
        # non-ASCII kept as UTF-8 both in kept and injected text
        ('{"é":"ü"}', {"ñ": "ø"}, '{"é":"ü","ñ":"ø"}'),
        # nested objects injected compactly with their insertion order
        ('{"type":"x"}', {"prevResult": {"z": 1, "a": {"y": 2, "b": 3}}}, '{"type":"x","prevResult":{"z":1,"a":{"y":2,"b":3}}}'),
    ],
)
def test_splice(text: str, values: dict[str, Any], expected: str) -> None:
    out = rawjson.splice(text, values)
    assert out == expected
    json.loads(out)


def test_splice_rejects_non_object() -> None:
    with pytest.raises(ValueError):
        rawjson.splice("[1]", {"a": 1})


def test_splice_rejects_nan_value() -> None:
    with pytest.raises(ValueError):
        rawjson.splice("{}", {"a": float("nan")})


# --------------------------------------------------------------------------- dumps / go_dumps


def test_dumps_keeps_order_and_unicode() -> None:
    assert rawjson.dumps({"b": 1, "a": "é<>&"}) == '{"b":1,"a":"é<>&"}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": 2, "c": {"z": None, "y": [True, False]}}, '{"a":2,"b":1,"c":{"y":[true,false],"z":null}}'),
        ("<script>&</script>", '"\\u003cscript\\u003e\\u0026\\u003c/script\\u003e"'),
        ({"<k>": "v&"}, '{"\\u003ck\\u003e":"v\\u0026"}'),  # keys escaped too
        ("é ü 中 😀", '"é ü 中 😀"'),  # non-ASCII kept as UTF-8
        ("\u2028\u2029", '"\\u2028\\u2029"'),  # Go escapes the JS line separators
        ('"\\/', '"\\"\\\\/"'),  # '/' is not escaped
        ("\n\r\t", '"\\n\\r\\t"'),
        ("\x01\x1f", '"\\u0001\\u001f"'),  # lower-case hex like Go
        ("\x7f", '"\x7f"'),
        ([], "[]"),
        ({}, "{}"),
        (18446744073709551617, "18446744073709551617"),
        ({"B": 1, "a": 2, "_": 3, "é": 4, "Z": 5}, '{"B":1,"Z":5,"_":3,"a":2,"é":4}'),  # byte order
    ],
)
def test_go_dumps(value: Any, expected: str) -> None:
    assert rawjson.go_dumps(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": float("-inf")}])
def test_go_dumps_rejects_non_finite(value: Any) -> None:
    with pytest.raises(ValueError):
        rawjson.go_dumps(value)


@pytest.mark.parametrize(
    ("value", "go_text"),
    [
        (1.0, "1"),
        (1500.0, "1500"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1.5, "1.5"),
        (1e21, "1e+21"),
    ],
)
def test_go_dumps_floats_like_go(value: float, go_text: str) -> None:
    """BUG (low): Go's encoding/json formats float64 with strconv 'f' format unless
    abs < 1e-6 or >= 1e21 (then 'e', with "e-07" cleaned to "e-7"); go_dumps uses Python's
    repr ("1.0", "1e+20", "1e-07"), so a float in a cached capabilityArgs/result differs
    byte-wise from what Go libcni writes."""
    assert rawjson.go_dumps(value) == go_text


# --------------------------------------------------------------------------- properties

_keys = st.text(min_size=0, max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=15,
)
_objects = st.dictionaries(_keys, _json, max_size=6)


@FAST
@given(obj=_objects, values=_objects)
def test_splice_property(obj: dict[str, Any], values: dict[str, Any]) -> None:
    out = rawjson.splice(rawjson.dumps(obj), values)
    assert rawjson.loads(out) == {**obj, **values}
    # keys keep the original object's order, new keys are appended
    assert [k for k, _, _ in rawjson.object_members(out)] == list({**obj, **values})


@FAST
@given(obj=_objects, indent=st.sampled_from([None, 0, 2]), values=_objects)
def test_splice_property_pretty_input(obj: dict[str, Any], indent: int | None, values: dict[str, Any]) -> None:
    text = json.dumps(obj, indent=indent, ensure_ascii=bool(indent))
    out = rawjson.splice(text, values)
    assert rawjson.loads(out) == {**obj, **values}
    # untouched members are forwarded byte-for-byte
    kept = {k: raw for k, _, raw in rawjson.object_members(text) if k not in values}
    for k, _, raw in rawjson.object_members(out):
        if k in kept:
            assert raw == kept[k]


@FAST
@given(obj=_objects, indent=st.sampled_from([None, 1, 4]))
def test_object_members_property(obj: dict[str, Any], indent: int | None) -> None:
    text = json.dumps(obj, indent=indent)
    members = rawjson.object_members(text)
    assert [k for k, _, _ in members] == list(obj)
    for key, raw_key, raw_value in members:
        assert json.loads(raw_key) == key
        assert json.loads(raw_value) == obj[key]


@FAST
@given(items=st.lists(_json, max_size=6), indent=st.sampled_from([None, 2]))
def test_array_items_property(items: list[Any], indent: int | None) -> None:
    text = json.dumps(items, indent=indent)
    raw = rawjson.array_items(text)
    assert [json.loads(r) for r in raw] == items


def _sorted_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8")), keys
    return dict(pairs)


def _go_int(text: str) -> Any:
    """Go reads every number as float64, so "-0" is negative zero (Python's int() loses it)."""
    return -0.0 if text == "-0" else int(text)


def _as_go_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_go_numbers(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


@FAST
@given(value=_json)
def test_go_dumps_property(value: Any) -> None:
    text = rawjson.go_dumps(value)
    # Go writes integral floats without a fraction (1e16 -> 10000000000000000), so numbers are
    # compared as Go reads them back: every number a float64.
    assert _as_go_numbers(json.loads(text, object_pairs_hook=_sorted_pairs, parse_int=_go_int)) == _as_go_numbers(value)
    assert not any(c in text for c in "<>&\u2028\u2029")
    # compact and stable: encoding what Go would read back gives the same text
    assert rawjson.go_dumps(_as_go_numbers(json.loads(text, parse_int=_go_int))) == rawjson.go_dumps(_as_go_numbers(value))
    assert "\n" not in text


@pytest.mark.parametrize("text, want", [
    ('{"plugins": [{"a": "]}"}, {"b": [1, {"c": "["}]} ]}', ['{"a": "]}"}', '{"b": [1, {"c": "["}]}']),
    ('{"plugins": [1], "x": {"plugins": [2]}, "plugins": [ {"last": true} ]}', ['{"last": true}']),
    ('{ "plugins" : [ ] }', []),
    ('{"name": "n"}', None),
    ('{"plugins": {"not": "an array"}}', None),
])
def test_member_array_items_takes_the_last_key_and_keeps_raw_text(text: str, want: list[str] | None) -> None:
    assert rawjson.member_array_items(text, "plugins") == want
    if want:
        assert [json.loads(t) for t in want] == json.loads(text)["plugins"]
