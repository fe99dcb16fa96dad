"""Done calls: a call is done when its sidecar is stored (by this archiver, or found in the
bucket when a day is synced from it); done clears whatever retry the call was waiting for."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from archiver.core.dayfiles import CallEntry
from archiver.state.base import Part


class DoneCalls(Part):
    """The ``calls`` table, the day counters it feeds, and matching both to the bucket."""

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

    def match_bucket(self, day: date, call_ids: Iterable[str], listed_at: datetime) -> list[str]:
        """Make the ledger's done calls of *day* what the bucket holds: every call in *call_ids*
        (sidecars found in the bucket) is done; a call recorded done before *listed_at* whose
        sidecar is not there any more is forgotten, so that the next run archives it again.

        Returns the forgotten calls. The day counts them neither done nor covered, so that its
        day files are written again (an addendum names the call's new record).
        """
        present = set(call_ids)
        with self._transaction():
            cursor = self._db.executemany(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, 'stored', ?)",
                ((cid, day.isoformat(), listed_at.timestamp()) for cid in present),
            )
            self._count_done(day, cursor.rowcount)
            rows = self._db.execute(
                "SELECT call_id FROM calls WHERE day=? AND done_at<?", (day.isoformat(), listed_at.timestamp())
            ).fetchall()
            gone = sorted(r[0] for r in rows if r[0] not in present)
            for call_id in gone:
                self._db.execute("DELETE FROM calls WHERE call_id=?", (call_id,))
                self._db.execute("DELETE FROM entries WHERE call_id=?", (call_id,))
            if gone:
                self._db.execute(
                    "UPDATE days SET done = max(done - ?, 0), covered = min(covered, max(done - ?, 0)) WHERE day=?",
                    (len(gone), len(gone), day.isoformat()),
                )
        return gone
