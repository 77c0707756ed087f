"""Hypothesis strategies shared by the bad-input and security suites (issue 6).

Generators lean towards the values that break parsers: names with `/`, `..`, NUL, whitespace,
`;`/`=` (CNI_ARGS separators), non-ASCII and lone surrogates; numbers at and past range
edges; JSON of the wrong type, nested too deeply or with duplicate keys. Everything is plain
data so the same strategies feed the in-process tests, the real `cri-net-cni` executable and
the gRPC requests of the integration suite.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.reliability import scale

#: CNI's well-known error codes (spec 1.1.0 "Error" section).
WELL_KNOWN_CODES = frozenset({1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 999})

#: Pieces that are interesting in names, paths, CNI_ARGS and resolv.conf words.
NASTY_PIECES = ["/", "..", "../", "\0", " ", "\t", "\n", ";", "=", ":", "%", "-", ".", "*", "\\", "$(id)",
                "é", "\u202e", "\ufeff", "eth0", "a", "0", "K8S_POD_NAME", "IgnoreUnknown"]

nasty_text: st.SearchStrategy[str] = st.one_of(
    st.lists(st.sampled_from(NASTY_PIECES) | st.text(max_size=4), max_size=8).map("".join),
    st.text(max_size=24),
)
#: Text valid in protobuf strings (UTF-8: no lone surrogates).
proto_text: st.SearchStrategy[str] = nasty_text.map(lambda s: s.encode("utf-8", "replace").decode("utf-8"))

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), nasty_text,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=12,
)


def deep_json(depth: int) -> str:
    """JSON nested `depth` levels (alternating arrays and objects), valid but pathological."""
    return '{"a":[' * depth + "1" + "]}" * depth


#: Raw JSON-ish text: valid documents, truncations, deep nesting, duplicate keys, non-finite numbers.
raw_json_text: st.SearchStrategy[str] = st.one_of(
    json_values.map(json.dumps),
    json_values.map(json.dumps).flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])),
    st.integers(1, 3000).map(deep_json),
    st.sampled_from(['{"a": 1, "a": 2}', "NaN", "[Infinity]", "1e400", "-0", '"\\ud800"', "[" * 50, "{}" * 3,
                     "\ufeff{}", "null", "true", "[]", '{"": {}}']),
    st.text(max_size=40),
)

# ---- CRI-ish values ------------------------------------------------------------------------

ports = st.one_of(st.integers(-5, 70000), st.sampled_from([0, 1, 65535, 65536, -1, 2**31 - 1, -2**31]))
protocols_json = st.one_of(st.sampled_from(["tcp", "udp", "sctp", "TCP", "Udp", "icmp", "", " tcp", "tcp\0"]),
                           json_values)
host_ips = st.one_of(
    st.sampled_from(["", "0.0.0.0", "127.0.0.1", "::", "::1", "10.213.0.1", "fe80::1%eth0", "fe80::1%a b",
                     "1.2.3.4/32", "256.1.1.1", "localhost", " 127.0.0.1", "127.0.0.1\n"]),
    proto_text,
)


def props(ci: int, full: int, **extra: Any) -> settings:
    """Seeded, deadline-free hypothesis settings sized for CI or the full report."""
    return settings(max_examples=scale(ci, full), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
                    **extra)
