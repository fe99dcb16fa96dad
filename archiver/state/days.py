"""Closing days: which days are ready for their day files, the rows those files will hold,
and how much of each day its manifests cover."""

from __future__ import annotations

from datetime import date

from archiver.core.dayfiles import CallEntry
from archiver.state.base import Part


class DayFiles(Part):
    """The ``days`` counters and the day-file ``entries``."""

    def days_to_close(self, before: date) -> list[date]:
        """Days before *before* with calls not yet in a manifest and none waiting or failing."""
        rows = self._db.execute(
            "SELECT day FROM days WHERE done > covered AND day < ? "
            "AND day NOT IN (SELECT day FROM pending) AND day NOT IN (SELECT day FROM failures) "
            "AND day NOT IN (SELECT day FROM quarantine) ORDER BY day",
            (before.isoformat(),),
        ).fetchall()
        return [date.fromisoformat(r[0]) for r in rows]

    def entries(self, day: date) -> dict[str, CallEntry]:
        """The day-file rows kept for *day*'s calls."""
        rows = self._db.execute("SELECT call_id, entry FROM entries WHERE day=?", (day.isoformat(),))
        return {r[0]: CallEntry.from_json(r[1]) for r in rows}

    def set_covered(self, day: date, covered: int) -> None:
        """Record that *day*'s manifests cover *covered* of its calls, as the bucket showed them
        when the day files were written (not what this ledger hoped they would); drop its rows."""
        with self._transaction():
            self._db.execute("UPDATE days SET covered = ? WHERE day = ?", (covered, day.isoformat()))
            self._db.execute("DELETE FROM entries WHERE day=?", (day.isoformat(),))

    def reopen(self, day: date) -> None:
        """*day*'s manifests do not cover every record the bucket holds of it (a revision written
        while the day closed): count it uncovered, so that its next close writes an addendum."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO days (day, done, covered) VALUES (?, 1, 0) "
                "ON CONFLICT (day) DO UPDATE SET covered = 0, done = max(done, 1)",
                (day.isoformat(),),
            )
