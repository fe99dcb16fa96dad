"""Where the archiver is: the daemon's cursor, where the nightly verify carries on, the latest
poll, and everything ``archiver status`` shows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from archiver.core.outcome import DONE_STATUSES
from archiver.state.base import Part


class Progress(Part):
    """The ``meta`` rows of progress, and a summary read across every table."""

    def cursor(self) -> datetime | None:
        row = self._db.execute("SELECT value FROM meta WHERE name='cursor'").fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def set_cursor(self, moment: datetime) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('cursor', ?)", (moment.astimezone(UTC).isoformat(),))

    def verify_after(self) -> date | None:
        """The last older day the nightly ``verify --older`` read (see ``core.windows.nightly_days``)."""
        row = self._db.execute("SELECT value FROM meta WHERE name='verify_after'").fetchone()
        return date.fromisoformat(row[0]) if row else None

    def set_verify_after(self, day: date) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('verify_after', ?)", (day.isoformat(),))

    def record_poll(
        self, at: datetime, *, ok: bool, error: str | None = None, summary: dict[str, Any] | None = None
    ) -> None:
        """Remember the outcome of the daemon's latest poll (and its latest success)."""
        doc = {"at": at.astimezone(UTC).isoformat(), "ok": ok, "error": error, "summary": summary or {}}
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_poll', ?)", (json.dumps(doc),))
            if ok:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_success', ?)", (doc["at"],))

    def status(self, now: datetime) -> dict[str, Any]:
        """Everything the ledger knows about progress, as plain JSON-ready data."""
        meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        cursor = self.cursor()
        counts = dict(self._db.execute("SELECT status, count(*) FROM calls GROUP BY status").fetchall())
        pending = self._db.execute("SELECT count(*), min(next_attempt), min(first_attempt) FROM pending").fetchone()
        failures = [
            {"call_id": r[0], "day": r[1], "error": r[2], "at": datetime.fromtimestamp(r[3], UTC).isoformat()}
            for r in self._db.execute("SELECT call_id, day, error, at FROM failures ORDER BY at")
        ]
        quarantined = [
            {
                "call_id": r[0],
                "day": r[1],
                "failures": r[2],
                "error": r[3],
                "since": datetime.fromtimestamp(r[4], UTC).isoformat(),
                "next_attempt": datetime.fromtimestamp(r[5], UTC).isoformat(),
            }
            for r in self._db.execute(
                "SELECT call_id, day, failures, error, since, next_attempt FROM quarantine ORDER BY since"
            )
        ]
        return {
            "store": meta.get("store"),
            "quarantined": quarantined,
            "cursor": cursor.isoformat() if cursor else None,
            "cursor_lag_seconds": round((now - cursor).total_seconds(), 1) if cursor else None,
            "calls": {k: counts.get(k, 0) for k in (*DONE_STATUSES, "stored")},
            "pending": {
                "count": pending[0],
                "next_attempt": datetime.fromtimestamp(pending[1], UTC).isoformat() if pending[1] else None,
                "oldest_first_attempt": datetime.fromtimestamp(pending[2], UTC).isoformat() if pending[2] else None,
            },
            "failures": failures,
            "last_poll": json.loads(meta["last_poll"]) if "last_poll" in meta else None,
            "last_success": meta.get("last_success"),
        }
