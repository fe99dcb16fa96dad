"""Read-only views of the archive: verify it, reconcile it with the API, plan a backfill."""
