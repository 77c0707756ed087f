"""One time format in both log formats: ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import json
import logging
import re

from cri_net.log import JSONFormatter, KeyValueFormatter

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(created: float) -> logging.LogRecord:
    r = logging.LogRecord("cri_net.test", logging.WARNING, __file__, 1, "rpc failed", None, None)
    r.created, r.msecs = created, (created - int(created)) * 1000
    r.fields = {"pod": "ns/web", "network": "n1"}  # type: ignore[attr-defined]
    return r


def test_json_and_text_logs_carry_the_same_iso_utc_time():
    r = record(1_700_000_000.25)
    doc = json.loads(JSONFormatter().format(r))
    text_time = re.search(r"time=(\S+)", KeyValueFormatter().format(r)).group(1)  # type: ignore[union-attr]
    assert ISO.match(doc["time"]), doc["time"]
    assert doc["time"] == text_time == "2023-11-14T22:13:20.250Z"
    assert (doc["pod"], doc["network"], doc["level"]) == ("ns/web", "n1", "warning")


def test_a_pod_authors_control_characters_cannot_forge_or_hide_a_text_log_line():
    r = record(1_700_000_000.0)
    evil = "evil\r\x1b[2Klevel:error\x1b[8m\u202e"  # no space, = or quote: those were quoted already
    r.fields = {"pod": f"probe/{evil}", "plain": "ns/wéb"}  # type: ignore[attr-defined]
    line = KeyValueFormatter().format(r)
    assert line.isprintable(), repr(line)  # no CR, LF, ESC or bidi override reaches the terminal
    pod = re.search(r' pod=("(?:[^"\\]|\\.)*")', line).group(1)  # type: ignore[union-attr]
    assert json.loads(pod) == f"probe/{evil}"  # quoted and escaped, nothing lost
    assert " plain=ns/wéb" in line  # printable text stays as it is
