"""Teaching the ledger what the bucket already holds, a day at a time.

The bucket is the truth: before the calls of a day the ledger has not seen are considered,
the day's sidecars are listed and recorded done. A lost ledger so costs one listing per day,
never a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import partial

import structlog

from archiver.archive.outage import StoreOutage
from archiver.core.clock import Clock
from archiver.state.ledger import Ledger
from archiver.store import Store
from archiver.store.listing import stored_call_ids

log = structlog.get_logger("archiver.archive")


class DaySync:
    """Syncs each day from the store into the ledger, once."""

    def __init__(self, store: Store, ledger: Ledger, *, prefix: str, clock: Clock, outage: StoreOutage) -> None:
        self._store = store
        self._ledger = ledger
        self._prefix = prefix
        self._clock = clock
        self._outage = outage

    async def sync(self, days: Iterable[date]) -> None:
        """Record the sidecars of each of *days* not synced yet. Raises StoreUnavailable past the
        outage's patience."""
        for day in days:
            if self._ledger.calls.is_day_synced(day):
                continue
            found = await self._outage.run(partial(stored_call_ids, self._store, self._prefix, day))
            self._ledger.calls.record_day_sync(day, found, self._clock.now())
            log.debug("day.synced", day=day.isoformat(), sidecars=len(found))
