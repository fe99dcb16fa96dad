"""Teaching the ledger what the bucket already holds, a day at a time.

The bucket is the truth: before the calls of a day the ledger has not seen are considered,
the day's sidecars are listed and recorded done. A lost ledger so costs one listing per day,
never a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import structlog

from archiver.core.clock import Clock
from archiver.retry import RetryPolicy
from archiver.state.ledger import Ledger
from archiver.store import Store
from archiver.store.listing import stored_call_ids

log = structlog.get_logger("archiver.archive")


class DaySync:
    """Syncs each day from the store into the ledger, once."""

    def __init__(self, store: Store, ledger: Ledger, *, prefix: str, clock: Clock, retry: RetryPolicy) -> None:
        self._store = store
        self._ledger = ledger
        self._prefix = prefix
        self._clock = clock
        self._retry = retry

    async def sync(self, days: Iterable[date]) -> None:
        """Record the sidecars of each of *days* not synced yet. Raises TransientError past the retries."""
        for day in days:
            if self._ledger.is_day_synced(day):
                continue
            found: set[str] = set()
            async for attempt in self._retry.context():
                with attempt:
                    found = await stored_call_ids(self._store, self._prefix, day)
            self._ledger.record_day_sync(day, found, self._clock.now())
            log.debug("day.synced", day=day.isoformat(), sidecars=len(found))
