"""Retry policy shared by the API client, the downloader and the stores.

Retries themselves are :mod:`stamina`'s; this module only says what to retry and for how
long, and reads ``Retry-After`` so that a server asking us to wait is obeyed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import stamina

from archiver.errors import RecordingUnavailable, TransientError

MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one operation before giving up (the test suite shortens it)."""

    attempts: int | None = 6
    timeout: float | None = 120.0
    wait_initial: float = 0.5
    wait_max: float = 30.0

    def context(self, on: Callable[[Exception], bool | float] | None = None) -> AsyncIterator[Any]:
        """A :func:`stamina.retry_context` under this policy; *on* decides (default: transient errors)."""
        return stamina.retry_context(
            on=on or backoff_hook,
            attempts=self.attempts,
            timeout=self.timeout,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
        )


def backoff_hook(exc: Exception) -> bool | float:
    """Retry transient errors; wait as long as the server's ``Retry-After`` asked."""
    if isinstance(exc, TransientError | RecordingUnavailable):
        return exc.retry_after if exc.retry_after is not None else True
    return False


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (seconds or an HTTP date), capped at 5 minutes."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# Writes to the archive: a store that does not answer is waited for (up to ten minutes per
# object) rather than given up on, so an outage delays calls instead of failing them.
STORE_PATIENCE = RetryPolicy(attempts=None, timeout=600.0, wait_initial=1.0, wait_max=30.0)
