"""What every part of the ledger shares: the SQLite connection, and a transaction on it."""

from __future__ import annotations

import sqlite3


class Part:
    """One concern of the ledger, over the ledger's one connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _transaction(self) -> Transaction:
        return Transaction(self._db)


class Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` when the block raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
