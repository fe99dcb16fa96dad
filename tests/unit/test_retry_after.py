"""A server's Retry-After is obeyed, within reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archiver.errors import ApiUnavailable, ArchiveConflict, RecordingUnavailable, StoreUnavailable
from archiver.retry import MAX_RETRY_AFTER, backoff_hook, retry_after_seconds

NOW = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("5", 5.0),
        ("0.5", 0.5),
        ("-3", 0.0),  # a negative wait is no wait
        ("86400", MAX_RETRY_AFTER),  # capped: a server cannot park the archiver for a day
        ("Sun, 01 Nov 2026 10:00:30 GMT", 30.0),  # an HTTP date
        ("Sun, 01 Nov 2026 09:00:00 GMT", 0.0),  # a date in the past
        ("soon", None),  # unreadable: the policy's own backoff applies
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(value: str | None, seconds: float | None) -> None:
    """Seconds or an HTTP date, never negative, at most five minutes."""
    assert retry_after_seconds(value, NOW) == seconds


@pytest.mark.parametrize(
    ("error", "decision"),
    [
        (ApiUnavailable("x"), True),
        (ApiUnavailable("x", retry_after=7.0), 7.0),
        (StoreUnavailable("x"), True),
        (RecordingUnavailable("x", kind="http_error", retry_after=2.0), 2.0),
        (ArchiveConflict("x"), False),  # a conflict does not pass by itself
        (ValueError("x"), False),  # a bug is not retried
    ],
)
def test_only_transient_errors_are_retried(error: Exception, decision: bool | float) -> None:
    """The hook retries what may pass and waits as long as the server asked."""
    assert backoff_hook(error) == decision
