"""Logging: structlog, JSON lines off a terminal (journald), readable colour on one.

Events are dotted, past tense, with their data in fields (``call.archived call_id=…``).
Every value passes through a redactor that replaces the configured secrets with ``***``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Protocol, TextIO, cast

import structlog

from archiver.errors import redact

LEVELS = ("debug", "info", "warning", "error")


class LogStream(Protocol):
    """Where log lines go: a text file, or anything that writes like one."""

    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...
    def isatty(self) -> bool: ...


def configure(
    *,
    level: str = "info",
    json_lines: bool | None = None,
    secrets: Iterable[str] = (),
    stream: LogStream | None = None,
    cache: bool = False,
) -> None:
    """Set up structlog for the whole process. *json_lines* None: JSON unless on a terminal.

    *cache*: each logger is built once, at its first use, instead of at every line (structlog's
    advice for production); only for a process that configures logging once and for good, as a
    command does (tests reconfigure it, to capture what is logged)."""
    out: LogStream = stream or sys.stderr
    if json_lines is None:
        json_lines = not out.isatty()
    hidden = tuple(s for s in secrets if s)

    def redactor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        return {k: _scrub(v, hidden) for k, v in event.items()} if hidden else event

    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json_lines else structlog.dev.ConsoleRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_lines:
        processors.append(structlog.processors.format_exc_info)
    processors += [redactor, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, out)),
        cache_logger_on_first_use=cache,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value
