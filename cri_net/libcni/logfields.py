"""Structured log records: fields ride on the record (`extra={"fields": ...}`), so whatever
formatter the application installs (cri-net's key=value or JSON) can print them.

libcni's own logger is a `LazyLogger`: `logging` is imported when there may be a record to
emit, not when libcni is imported, so a short-lived `cri-net cni` call with nothing to say at
WARNING never loads it (~4 ms of imports). Until something imports `logging`, nothing can have
configured it, so the root's default level (WARNING) holds and a record below it is dropped
without asking.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    import logging
    from typing import Any, Callable

#: logging's levels, for callers that do not import it
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

#: (level, setup) of `configure_on_first_use`, until it has run
_pending: tuple[int, Callable[[], None]] | None = None


def configure_on_first_use(setup: Callable[[], None], level: int) -> None:
    """Run `setup` (which installs handlers at `level`) when a LazyLogger first has a record
    at `level` or above; records below it are dropped without importing `logging`. For a
    short-lived application whose only logging goes through libcni (`cri-net cni`). Once
    something has imported `logging` there is nothing to save: `setup` runs at once."""
    global _pending
    if "logging" in sys.modules:
        _pending = None
        setup()
    else:
        _pending = (level, setup)


def _run_pending() -> None:
    global _pending
    if _pending is not None:
        setup, _pending = _pending[1], None
        setup()


class LazyLogger:
    """A named `logging.Logger`, looked up (and `logging` imported) on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    @property
    def logger(self) -> logging.Logger:
        _run_pending()
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return self._logger


def kv(logger: logging.Logger | LazyLogger, level: int, msg: str, exc_info: bool = False, **fields: Any) -> None:
    """Log `msg` with structured `fields` (and the exception being handled, with `exc_info`),
    skipping the work when the level is off."""
    if isinstance(logger, LazyLogger):
        if _pending is not None:
            if level < _pending[0]:
                return
        elif level < WARNING and "logging" not in sys.modules:
            return  # nothing configured logging: the root's default level, WARNING, holds
        logger = logger.logger
    if logger.isEnabledFor(level):
        logger.log(level, msg, exc_info=exc_info, extra={"fields": fields})
