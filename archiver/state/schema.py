"""The ledger's tables, and what each version of them changed."""

from __future__ import annotations

# 2: calls without a recording have a stable id; days synced by a version-1 ledger are synced
# again, to learn the current ids of the calls archived under the old ones.
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    status TEXT NOT NULL,
    done_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    call_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    row TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_attempt REAL NOT NULL,
    last_attempt REAL NOT NULL,
    next_attempt REAL NOT NULL,
    deadline REAL NOT NULL,
    last_error TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_next ON pending (next_attempt);
CREATE TABLE IF NOT EXISTS failures (
    call_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS strikes (   -- runs in a row in which a call failed
    call_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (   -- calls that kept failing: set aside, retried slowly
    call_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    row TEXT NOT NULL,
    failures INTEGER NOT NULL,
    error TEXT NOT NULL,
    since REAL NOT NULL,
    next_attempt REAL NOT NULL
) WITHOUT ROWID;
-- Read by no version since every run lists the days it reads (kept for the version-2 migration).
CREATE TABLE IF NOT EXISTS synced_days (day TEXT PRIMARY KEY, synced_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (   -- day-file rows of calls whose day is not closed yet
    call_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    entry TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_day ON entries (day);
CREATE TABLE IF NOT EXISTS days (
    day TEXT PRIMARY KEY,
    done INTEGER NOT NULL DEFAULT 0,     -- calls of the day known done
    covered INTEGER NOT NULL DEFAULT 0   -- calls of the day in its manifests
) WITHOUT ROWID;
"""
