"""Structured log records: fields ride on the record (`extra={"fields": ...}`), so whatever
formatter the application installs (cri-net's key=value or JSON) can print them."""

from __future__ import annotations

import logging

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any


def kv(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log `msg` with structured `fields`, skipping the work when the level is off."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
