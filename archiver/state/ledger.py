"""The local ledger (SQLite): which calls are done, which wait for a retry, and the cursor.

The ledger only makes restarts cheap. The bucket is the truth: each run matches a day to the
bucket's sidecars before its calls are considered, so a lost ledger costs one listing per day
and never a duplicate, and a call lost from the bucket is archived again. A ledger remembers
which store it belongs to and refuses to serve another.

All methods are synchronous and fast (indexed lookups, one small transaction each); the
archiving path calls them from its event loop thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from archiver.errors import ConfigError
from archiver.state.base import Transaction
from archiver.state.calls import DoneCalls
from archiver.state.days import DayFiles
from archiver.state.progress import Progress
from archiver.state.retries import Retries
from archiver.state.schema import SCHEMA, SCHEMA_VERSION


class Ledger:
    """One SQLite file, by concern: ``calls`` (done calls, matched to the bucket),
    ``retries`` (parked, failing and quarantined calls), ``days`` (closing days), ``progress``
    (the cursor, the nightly verify's place, the latest poll, status). Open with :meth:`open`;
    close with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, path: Path | None = None) -> None:
        self._db = connection
        self.path = path
        self.calls = DoneCalls(connection)
        self.retries = Retries(connection)
        self.days = DayFiles(connection)
        self.progress = Progress(connection)

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

    def _transaction(self) -> Transaction:
        return Transaction(self._db)
