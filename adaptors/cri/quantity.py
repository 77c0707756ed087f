"""Kubernetes quantities and the bandwidth annotations (bits/s) they carry."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Literal

from cri_net.network.capabilities import CAP_BANDWIDTH, AnnotationError, Bandwidth, show, type_name
from .reading import (BANDWIDTH_BURST, EGRESS_BANDWIDTH_ANNOTATION, EGRESS_BANDWIDTH_MISSPELT_ANNOTATION, INGRESS_BANDWIDTH_ANNOTATION, MAX_BANDWIDTH_BPS, MAX_QUANTITY, MIN_BANDWIDTH_BPS, _BINARY_SUFFIX, _DECIMAL_SUFFIX, _MAX_QUANTITY_DIGITS, _QUANTITY_RE, annotation_value)

logger = logging.getLogger("cri_net.network")


def parse_quantity(text: str, key: str = "quantity") -> int:
    """Parse a Kubernetes resource.Quantity ("10M", "1Mi", "1.5k", "1e3", "100m") to an int.

    Kubernetes' grammar (no surrounding whitespace): an optionally signed decimal number, then
    a decimal SI suffix (m k M G T P E), a binary suffix (Ki .. Ei) or an exponent (e3, E-2).
    Fractions are rounded up, as Kubernetes' Quantity.Value() does; negative values, garbage
    and values above 2**63-1 raise `AnnotationError(key, ...)`.
    """
    if not isinstance(text, str):
        raise AnnotationError(key, f"quantity must be a string, got {type_name(text)}")
    if not text:
        raise AnnotationError(key, "quantity is empty")
    m = _QUANTITY_RE.fullmatch(text)
    if m is None or not (m["int"] or m["frac"]):
        raise AnnotationError(key, f"{show(text)} is not a quantity (like 10M, 1Mi, 1.5k or 1e3)")
    int_part, frac_part, suffix = m["int"], m["frac"] or "", m["suffix"] or ""
    digits = (int_part + frac_part).lstrip("0")
    if not digits:
        return 0  # zero, whatever its sign, suffix or exponent
    if m["sign"] == "-":
        raise AnnotationError(key, f"{show(text)} is negative")
    exp10 = -len(frac_part)
    stripped = digits.rstrip("0")
    exp10 += len(digits) - len(stripped)
    digits = stripped
    if len(digits) > _MAX_QUANTITY_DIGITS:
        raise AnnotationError(key, f"quantity has more than {_MAX_QUANTITY_DIGITS} significant digits")
    binary = 0
    if suffix in _BINARY_SUFFIX:
        binary = _BINARY_SUFFIX[suffix]
    elif suffix in _DECIMAL_SUFFIX:
        exp10 += _DECIMAL_SUFFIX[suffix]
    else:  # exponent: e3, E-2, e+05
        exp_digits = suffix[1:].lstrip("+-").lstrip("0") or "0"
        negative_exp = suffix[1] == "-"
        if len(exp_digits) > 6:
            if negative_exp:
                return 1  # a positive value times 10**-huge: rounds up to 1
            raise AnnotationError(key, f"quantity is larger than {MAX_QUANTITY}")
        exp10 += -int(exp_digits) if negative_exp else int(exp_digits)
    magnitude = len(digits) + exp10  # value < 10**magnitude (before a binary suffix <= 2**60)
    if magnitude > 40:
        raise AnnotationError(key, f"quantity is larger than {MAX_QUANTITY}")
    if magnitude < -40:
        return 1
    value = Fraction(int(digits)) * Fraction(10) ** exp10 * 2 ** (10 * binary)
    result = -(-value.numerator // value.denominator)  # ceiling
    if result > MAX_QUANTITY:
        raise AnnotationError(key, f"quantity is larger than {MAX_QUANTITY}")
    return result


def bandwidth_rate(key: str, value: str) -> int:
    rate = parse_quantity(value, key)
    if not MIN_BANDWIDTH_BPS <= rate <= MAX_BANDWIDTH_BPS:
        raise AnnotationError(key, f"{show(value)} is {rate} bits/s, out of range 1k..1P "
                                   f"({MIN_BANDWIDTH_BPS}..{MAX_BANDWIDTH_BPS})")
    return rate


def _egress_value(annotations: Mapping[str, str] | None, pod: str) -> tuple[str, str] | None:
    """(key, value) of the egress annotation, honouring iSulad's misspelt alias."""
    canonical = annotation_value(annotations, EGRESS_BANDWIDTH_ANNOTATION)
    alias = annotation_value(annotations, EGRESS_BANDWIDTH_MISSPELT_ANNOTATION)
    if alias is None:
        return None if canonical is None else (EGRESS_BANDWIDTH_ANNOTATION, canonical)
    logger.warning("deprecated annotation key kubernetes.io/engress-bandwidth (misspelt), "
                   "use kubernetes.io/egress-bandwidth",
                   extra={"fields": {"key": EGRESS_BANDWIDTH_MISSPELT_ANNOTATION, "pod": pod}})
    if canonical is None:
        return EGRESS_BANDWIDTH_MISSPELT_ANNOTATION, alias
    if canonical != alias:
        raise AnnotationError(EGRESS_BANDWIDTH_MISSPELT_ANNOTATION,
                              f"{show(alias)} conflicts with {EGRESS_BANDWIDTH_ANNOTATION}={show(canonical)}; "
                              f"remove the deprecated key")
    return EGRESS_BANDWIDTH_ANNOTATION, canonical


def parse_bandwidth(annotations: Mapping[str, str] | None, *, pod: str = "") -> Bandwidth | None:
    """The `bandwidth` capability from the Kubernetes bandwidth annotations, None when unset.

    Rates are bits/s between 1k and 1P; a set direction gets burst 4294967295 (containerd's
    choice, effectively "no burst limit"); an unset direction is not sent, fixing iSulad's
    all-zero capability. `pod` only labels the deprecation warning for the misspelt key.
    """
    ingress = annotation_value(annotations, INGRESS_BANDWIDTH_ANNOTATION)
    egress = _egress_value(annotations, pod)
    if ingress is None and egress is None:
        return None
    fields: dict[str, int] = {}
    if ingress is not None:
        fields["ingress_rate"] = bandwidth_rate(INGRESS_BANDWIDTH_ANNOTATION, ingress)
        fields["ingress_burst"] = BANDWIDTH_BURST
    if egress is not None:
        fields["egress_rate"] = bandwidth_rate(*egress)
        fields["egress_burst"] = BANDWIDTH_BURST
    return Bandwidth(**fields)


def insert_bandwidth(value: str, capabilities: Mapping[str, Any],
                     direction: Literal["ingress", "egress"] = "ingress") -> dict[str, Any]:
    """Seed API: parse one bandwidth annotation value and set that direction in `bandwidth`.

    Returns a new capability dict; the other direction, if present, is kept.
    """
    if direction not in ("ingress", "egress"):
        raise AnnotationError("direction", f"must be 'ingress' or 'egress', not {show(direction)}")
    key = INGRESS_BANDWIDTH_ANNOTATION if direction == "ingress" else EGRESS_BANDWIDTH_ANNOTATION
    rate = bandwidth_rate(key, annotation_value({key: value}, key) or "")
    bw = dict(capabilities.get(CAP_BANDWIDTH) or {})
    bw[f"{direction}Rate"] = rate
    bw[f"{direction}Burst"] = BANDWIDTH_BURST
    out = dict(capabilities)
    out[CAP_BANDWIDTH] = Bandwidth.model_validate(bw).model_dump()
    return out
