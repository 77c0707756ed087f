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


# ---- identities and node-wide resources (issue 11) -----------------------------------------

#: Pieces that join or split identity fields: NUL (the old id's separator), JSON syntax,
#: separators CNI_ARGS or paths use, digits that could merge with the attempt number.
IDENTITY_PIECES = ["\0", "\0\0", '"', '","', "\\", "[", "]", ",", "0", "1", ";", "=", "/", "é", "\u202e", "a", ""]
identity_text: st.SearchStrategy[str] = st.one_of(
    st.lists(st.sampled_from(IDENTITY_PIECES) | st.text(max_size=3), max_size=6).map("".join),
    proto_text,
)
#: (namespace, name, uid, attempt)
identities = st.tuples(identity_text, identity_text, identity_text, st.integers(0, 3))

#: Special-purpose blocks no pod or bridge range may overlap, and private blocks that are fine.
SPECIAL_BLOCKS = ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "::/8",
                  "fe80::/10", "fec0::/10", "ff00::/8"]
ORDINARY_BLOCKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8", "2001:db8::/32"]


def subnets_in(blocks: list[str], supernets: bool = False) -> st.SearchStrategy[str]:
    """Random subnets inside one of `blocks` (`supernets`: or a block containing it)."""
    import ipaddress

    def pick(block: str, extra: int, index: int, wider: bool) -> str:
        net = ipaddress.ip_network(block)
        if wider:
            return str(net.supernet(new_prefix=max(0, net.prefixlen - 1 - extra % 3)))
        new_prefix = min(net.max_prefixlen - 2, net.prefixlen + extra)
        count = 2 ** (new_prefix - net.prefixlen)
        return str(ipaddress.ip_network((int(net.network_address) + (index % count) * 2 ** (net.max_prefixlen - new_prefix),
                                         new_prefix)))

    return st.builds(pick, st.sampled_from(blocks), st.integers(0, 24), st.integers(0, 2**64),
                     st.booleans() if supernets else st.just(False))


#: Port mappings as the portMappings capability carries them, from a small space so that
#: generated pairs often share a port, protocol or host IP.
wire_mappings = st.fixed_dictionaries(
    {"hostPort": st.sampled_from([80, 8080, 30000]), "containerPort": st.integers(1, 65535)},
    optional={"protocol": st.sampled_from(["tcp", "udp", "sctp", "TCP"]),
              "hostIP": st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1", "10.213.0.1", "::1",
                                         # other spellings of the same addresses (IPv6 has many)
                                         "0::1", "0000:0000::0001", "0::", "0:0:0:0:0:0:0:0", "FD00::1",
                                         "fd00:0::1"])})


def _shifted(parts: tuple[str, str, str, str, int], field: int) -> tuple[tuple[str, str, str, int], ...]:
    """Two identities that differ only in where a NUL splits two neighbouring fields: one
    string once the fields are NUL-joined (the old id's collision)."""
    ns, a, b, c, attempt = parts
    if field == 0:
        return (ns + "\0" + a, b, c, attempt), (ns, a + "\0" + b, c, attempt)
    return (ns, a + "\0" + b, c, attempt), (ns, a, b + "\0" + c, attempt)


#: Pairs of distinct identities: arbitrary ones, and NUL-shifted ones that collided before.
identity_pairs = st.one_of(
    st.tuples(identities, identities),
    st.builds(_shifted, st.tuples(identity_text, identity_text, identity_text, identity_text, st.integers(0, 3)),
              st.integers(0, 1)),
).filter(lambda p: p[0] != p[1])
