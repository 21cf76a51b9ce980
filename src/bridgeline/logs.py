"""Structured logs (structlog): readable in a terminal, JSON lines for machines.

Conference events are logged at debug (the events API and the console show them anyway): the
default level, info, keeps a busy server's log to lifecycle lines and failures, and a call below the
level costs next to nothing (make_filtering_bound_logger turns it into a no-op method).
"""

from __future__ import annotations

import logging
import sys

import structlog

LOG_LEVELS = ("debug", "info", "warning", "error")


def log_level(name: str) -> int:
    """The logging level for a name of LOG_LEVELS (any case); ValueError otherwise."""
    if name.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {name!r} (expected one of: {', '.join(LOG_LEVELS)})")
    return int(getattr(logging, name.upper()))


def configure_logging(log_format: str = "console", level: int = logging.INFO) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
