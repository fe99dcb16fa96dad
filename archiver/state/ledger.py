"""The local ledger (SQLite): which calls are done, which wait for a retry, and the cursor.

The ledger only makes restarts cheap. The bucket is the truth: a day the ledger has not seen
is synced from the bucket's sidecars before its calls are considered, so a lost ledger costs
one listing per day and never a duplicate. A ledger remembers which store it belongs to and
refuses to serve another.

All methods are synchronous and fast (indexed lookups, one small transaction each); the
archiving path calls them from its event loop thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from archiver.core.dayfiles import CallEntry
from archiver.core.outcome import DONE_STATUSES
from archiver.core.parking import PendingCall, SetAside
from archiver.errors import ConfigError
from archiver.state.schema import SCHEMA, SCHEMA_VERSION


class Ledger:
    """One SQLite file. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, path: Path | None = None) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path, *, store_identity: str) -> Ledger:
        """Open or create the ledger at *path* for the store named *store_identity*.

        Raises ConfigError when the file cannot be opened or belongs to another store.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError([f"At 'state.path': cannot open the ledger {path}: {exc}"]) from None
        ledger = cls(db, path)
        ledger._claim(store_identity)
        ledger._migrate()
        return ledger

    def _migrate(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        version = int(row[0]) if row else 1
        if version < 2:
            with self._transaction():
                self._db.execute("DELETE FROM synced_days")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    @classmethod
    def in_memory(cls, *, store_identity: str = "memory") -> Ledger:
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(SCHEMA)
        ledger = cls(db)
        ledger._claim(store_identity)
        return ledger

    def _claim(self, identity: str) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE name='store'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('store', ?)", (identity,))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != identity:
            raise ConfigError(
                [
                    f"At 'state.path': the ledger {self.path} belongs to {row[0]}, not {identity}; "
                    "give each archive its own state.path"
                ]
            )

    def close(self) -> None:
        self._db.close()

    # -- done calls ---------------------------------------------------------------------

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

    # -- closing days (their manifests) ----------------------------------------------------

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
        """Record that *day*'s manifests cover its calls (at least all known done); drop its rows."""
        with self._transaction():
            self._db.execute("UPDATE days SET covered = max(?, done) WHERE day = ?", (covered, day.isoformat()))
            self._db.execute("DELETE FROM entries WHERE day=?", (day.isoformat(),))

    # -- days synced from the bucket -----------------------------------------------------

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

    # -- calls waiting for their recording -----------------------------------------------

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

    # -- failures (not done, not parked: the cursor waits for them) ----------------------

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

    # -- calls set aside after failing run after run (the cursor passes them) ----------------

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

    # -- the daemon's cursor --------------------------------------------------------------

    def cursor(self) -> datetime | None:
        row = self._db.execute("SELECT value FROM meta WHERE name='cursor'").fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def set_cursor(self, moment: datetime) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('cursor', ?)", (moment.astimezone(UTC).isoformat(),))

    # -- where the nightly verify carries on ------------------------------------------------

    def verify_after(self) -> date | None:
        """The last older day the nightly ``verify --older`` read (see ``core.windows.nightly_days``)."""
        row = self._db.execute("SELECT value FROM meta WHERE name='verify_after'").fetchone()
        return date.fromisoformat(row[0]) if row else None

    def set_verify_after(self, day: date) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('verify_after', ?)", (day.isoformat(),))

    # -- what `archiver status` shows -------------------------------------------------------

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

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


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
