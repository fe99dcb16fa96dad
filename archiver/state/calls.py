"""Done calls: a call is done when its sidecar is stored (by this archiver, or found in the
bucket when a day is synced from it); done clears whatever retry the call was waiting for."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from archiver.core.dayfiles import CallEntry
from archiver.state.base import Part


class DoneCalls(Part):
    """The ``calls`` table, the day counters it feeds, and the days synced from the bucket."""

    def is_done(self, call_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM calls WHERE call_id=?", (call_id,)).fetchone() is not None

    def mark_done(self, call_id: str, day: date, status: str, now: datetime, entry: CallEntry | None = None) -> None:
        """Record *call_id* as finished (its sidecar is stored); clears pending and failure.

        *entry* is what the day's files will say of the call, kept until the day is closed.
        """
        with self._transaction():
            if entry is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (call_id, day.isoformat(), entry.to_json())
                )
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?)", (call_id, day.isoformat(), status, now.timestamp())
            )
            self._count_done(day, cursor.rowcount)
            for table in ("pending", "failures", "strikes", "quarantine"):
                self._db.execute(f"DELETE FROM {table} WHERE call_id=?", (call_id,))  # noqa: S608 - fixed names

    def set_status(self, call_id: str, status: str) -> None:
        """A revision changed what became of the call: its status is the current record's."""
        self._db.execute("UPDATE calls SET status=? WHERE call_id=?", (status, call_id))

    def count_done(self, status: str | None = None) -> int:
        if status is None:
            return int(self._db.execute("SELECT count(*) FROM calls").fetchone()[0])
        return int(self._db.execute("SELECT count(*) FROM calls WHERE status=?", (status,)).fetchone()[0])

    def _count_done(self, day: date, added: int) -> None:
        if added > 0:
            self._db.execute(
                "INSERT INTO days (day, done) VALUES (?, ?) "
                "ON CONFLICT (day) DO UPDATE SET done = done + excluded.done",
                (day.isoformat(), added),
            )

    def is_day_synced(self, day: date) -> bool:
        return self._db.execute("SELECT 1 FROM synced_days WHERE day=?", (day.isoformat(),)).fetchone() is not None

    def record_day_sync(self, day: date, call_ids: Iterable[str], now: datetime) -> None:
        """Mark every call in *call_ids* (sidecars found in the bucket) done, and the day synced."""
        with self._transaction():
            cursor = self._db.executemany(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, 'stored', ?)",
                ((cid, day.isoformat(), now.timestamp()) for cid in call_ids),
            )
            self._count_done(day, cursor.rowcount)
            self._db.execute("INSERT OR REPLACE INTO synced_days VALUES (?, ?)", (day.isoformat(), now.timestamp()))
