"""Calls not done yet: parked (waiting for their recording), failing (the cursor waits for
them), and quarantined (set aside after failing run after run; the cursor passes them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from archiver.core.parking import PendingCall, SetAside
from archiver.state.base import Part


class Retries(Part):
    """The ``pending``, ``failures``, ``strikes`` and ``quarantine`` tables."""

    def pending(self, call_id: str) -> PendingCall | None:
        row = self._db.execute("SELECT * FROM pending WHERE call_id=?", (call_id,)).fetchone()
        return _pending(row) if row else None

    def park(self, call: PendingCall) -> None:
        """Schedule *call* for another try at ``call.next_attempt``."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    call.call_id,
                    call.day.isoformat(),
                    json.dumps(call.row, ensure_ascii=False),
                    call.attempts,
                    call.first_attempt.timestamp(),
                    call.last_attempt.timestamp(),
                    call.next_attempt.timestamp(),
                    call.deadline.timestamp(),
                    json.dumps(call.last_error, ensure_ascii=False),
                ),
            )
            self._db.execute("DELETE FROM failures WHERE call_id=?", (call.call_id,))

    def due(self, now: datetime, limit: int = 10_000) -> Iterator[PendingCall]:
        """Parked calls whose next try is due, soonest first."""
        rows = self._db.execute(
            "SELECT * FROM pending WHERE next_attempt <= ? ORDER BY next_attempt LIMIT ?", (now.timestamp(), limit)
        ).fetchall()
        return (_pending(row) for row in rows)

    def count_pending(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def overdue(self, now: datetime) -> timedelta:
        """How far past its deadline (the end of the call plus ``download.missing_after``) the most
        overdue waiting call is: such a call should have been recorded missing at its last try."""
        deadline = self._db.execute("SELECT min(deadline) FROM pending").fetchone()[0]
        return max(timedelta(0), now - datetime.fromtimestamp(deadline, UTC)) if deadline is not None else timedelta(0)

    def record_failure(self, call_id: str, day: date, error: str, now: datetime) -> int:
        """Record that *call_id* failed in this run; how many runs in a row it has failed."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                (call_id, day.isoformat(), error, now.timestamp()),
            )
            self._db.execute(
                "INSERT INTO strikes VALUES (?, 1) ON CONFLICT (call_id) DO UPDATE SET count = count + 1", (call_id,)
            )
            return int(self._db.execute("SELECT count FROM strikes WHERE call_id=?", (call_id,)).fetchone()[0])

    def quarantine(self, call_id: str, day: date, row: Any, error: str, *, now: datetime, retry_in: timedelta) -> int:
        """Set *call_id* aside until ``now + retry_in``; it no longer counts as failing. Its failures so far."""
        with self._transaction():
            found = self._db.execute("SELECT failures, since FROM quarantine WHERE call_id=?", (call_id,)).fetchone()
            failures, since = (found[0] + 1, found[1]) if found else (1, now.timestamp())
            self._db.execute(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    call_id,
                    day.isoformat(),
                    json.dumps(row, ensure_ascii=False),
                    failures,
                    error,
                    since,
                    (now + retry_in).timestamp(),
                ),
            )
            self._db.execute("DELETE FROM failures WHERE call_id=?", (call_id,))
            return int(failures)

    def due_quarantined(self, now: datetime, limit: int = 1000) -> list[SetAside]:
        """Quarantined calls whose next try is due, soonest first."""
        rows = self._db.execute(
            "SELECT call_id, day, row FROM quarantine WHERE next_attempt <= ? ORDER BY next_attempt LIMIT ?",
            (now.timestamp(), limit),
        ).fetchall()
        return [_set_aside(r) for r in rows]

    def quarantined_on(self, days: list[date]) -> list[SetAside]:
        """The quarantined calls filed under *days*."""
        wanted = {d.isoformat() for d in days}
        rows = self._db.execute("SELECT call_id, day, row FROM quarantine ORDER BY day, call_id").fetchall()
        return [_set_aside(r) for r in rows if r[1] in wanted]

    def is_quarantined(self, call_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM quarantine WHERE call_id=?", (call_id,)).fetchone() is not None

    def count_quarantined(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    def failures(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._db.execute("SELECT call_id, error FROM failures ORDER BY at")]


def _set_aside(row: tuple[Any, ...]) -> SetAside:
    return SetAside(call_id=row[0], day=date.fromisoformat(row[1]), row=json.loads(row[2]))


def _pending(row: tuple[Any, ...]) -> PendingCall:
    def ts(value: float) -> datetime:
        return datetime.fromtimestamp(value, UTC)

    return PendingCall(
        call_id=row[0],
        day=date.fromisoformat(row[1]),
        row=json.loads(row[2]),
        attempts=row[3],
        first_attempt=ts(row[4]),
        last_attempt=ts(row[5]),
        next_attempt=ts(row[6]),
        deadline=ts(row[7]),
        last_error=json.loads(row[8]),
    )
