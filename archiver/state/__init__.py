"""Local state: the SQLite ledger that makes restarts cheap (the bucket stays the truth)."""
