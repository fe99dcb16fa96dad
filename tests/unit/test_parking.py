"""A call whose recording is not served is retried with doubling waits until its deadline."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from archiver.core.parking import ParkingSchedule

NOW = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
SCHEDULE = ParkingSchedule(initial=timedelta(minutes=1), cap=timedelta(hours=1), missing_after=timedelta(hours=24))


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [
        (1, timedelta(minutes=1)),
        (2, timedelta(minutes=2)),
        (3, timedelta(minutes=4)),
        (6, timedelta(minutes=32)),
        (7, timedelta(hours=1)),
        (30, timedelta(hours=1)),
    ],
)
def test_the_wait_doubles_up_to_the_cap(attempts: int, wait: timedelta) -> None:
    """1, 2, 4 … minutes, never more than the cap."""
    assert SCHEDULE.backoff(attempts) == wait


def test_the_first_failure_fixes_the_deadline_from_the_end_of_the_call() -> None:
    """The deadline is missing_after past the call's end, and later failures keep it."""
    ended = NOW - timedelta(minutes=5)
    first = SCHEDULE.after_failure(
        call_id="c", day=date(2026, 11, 1), row={}, ended=ended, now=NOW, error={"kind": "not_found"}, previous=None
    )
    assert (first.attempts, first.deadline, first.first_attempt) == (1, ended + timedelta(hours=24), NOW)
    assert first.next_attempt == NOW + timedelta(minutes=1)
    later = NOW + timedelta(hours=3)
    second = SCHEDULE.after_failure(
        call_id="c", day=date(2026, 11, 1), row={}, ended=ended, now=later, error={"kind": "http_error"}, previous=first
    )
    assert (second.attempts, second.deadline, second.first_attempt, second.last_error) == (
        2,
        first.deadline,
        NOW,
        {"kind": "http_error"},
    )
    assert not second.expired()


def test_the_next_try_is_never_after_the_deadline_and_a_try_at_it_gives_up() -> None:
    """A long wait is cut at the deadline, so the call is recorded missing on time, not an hour late."""
    ended = NOW - timedelta(hours=24) + timedelta(seconds=30)
    record = SCHEDULE.after_failure(
        call_id="c", day=date(2026, 11, 1), row={}, ended=ended, now=NOW, error={}, previous=None
    )
    assert record.next_attempt == record.deadline == ended + timedelta(hours=24)
    assert not record.expired()
    at_deadline = SCHEDULE.after_failure(
        call_id="c", day=date(2026, 11, 1), row={}, ended=ended, now=record.deadline, error={}, previous=record
    )
    assert at_deadline.expired()


def test_an_old_call_gives_up_at_its_first_failure() -> None:
    """A backfill of calls older than missing_after records a dead link missing without waiting."""
    record = SCHEDULE.after_failure(
        call_id="c", day=date(2026, 1, 1), row={}, ended=NOW - timedelta(days=300), now=NOW, error={}, previous=None
    )
    assert record.expired()
