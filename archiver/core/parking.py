"""Calls waiting for their recording: when to try again, and when to give up. Pure.

A recording link that fails (404 included) is tried again with exponential backoff, from
``initial`` doubling up to ``cap``, until ``missing_after`` has passed since the call ended;
then the call is recorded as missing. A fresh call so gets hours of patience, and a backfill
of old calls gives up on a dead link after its first few quick tries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class PendingCall:
    """A call whose recording was not served yet, parked until ``next_attempt``."""

    call_id: str
    day: date
    row: Any  # the row as the API listed it, parsed again when the call is retried
    attempts: int
    first_attempt: datetime
    last_attempt: datetime
    next_attempt: datetime
    deadline: datetime
    last_error: dict[str, Any]

    def expired(self) -> bool:
        """Whether the last try was at or past the deadline: the call is to be recorded missing."""
        return self.last_attempt >= self.deadline


@dataclass(frozen=True)
class SetAside:
    """A quarantined call: it failed run after run and is tried again on a slow schedule."""

    call_id: str
    day: date
    row: Any  # the row as the API listed it, parsed again when the call is retried


@dataclass(frozen=True)
class ParkingSchedule:
    """How long a call waits between tries of its recording link, and for how long in all."""

    initial: timedelta = timedelta(minutes=1)
    cap: timedelta = timedelta(hours=1)
    missing_after: timedelta = timedelta(hours=24)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the *attempts*-th failed try: initial, doubling, at most cap."""
        return min(self.initial * (1 << (attempts - 1)), self.cap)

    def after_failure(
        self,
        *,
        call_id: str,
        day: date,
        row: Any,
        ended: datetime,
        now: datetime,
        error: dict[str, Any],
        previous: PendingCall | None,
    ) -> PendingCall:
        """The call's record after one more failed try at *now*.

        The deadline is fixed by the first failure (*ended* + ``missing_after``); the next try is
        never scheduled past it, so the try that finds it expired comes on time.
        """
        attempts = (previous.attempts if previous else 0) + 1
        deadline = previous.deadline if previous else ended + self.missing_after
        return PendingCall(
            call_id=call_id,
            day=day,
            row=row,
            attempts=attempts,
            first_attempt=previous.first_attempt if previous else now,
            last_attempt=now,
            next_attempt=min(now + self.backoff(attempts), deadline),
            deadline=deadline,
            last_error=error,
        )
