"""Teaching the ledger what the bucket holds, a day at a time, once per run.

The bucket is the truth and the ledger only makes restarts cheap: before the calls of a day are
considered, the day's sidecars are listed. A call the bucket holds is done (a lost ledger costs
one listing per day, never a duplicate); a call the ledger had done whose sidecar is gone is
forgotten, so that the run archives it again (a repair). On a versioned bucket, what was
deleted is first put back from the version it had: the same bytes, already sealed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import partial

import structlog

from archiver.archive.outage import StoreOutage
from archiver.core import keys
from archiver.core.clock import Clock
from archiver.errors import ObjectInColdStorage, StoreAccessError
from archiver.state.ledger import Ledger
from archiver.store import ARCHIVE_TIERS, Store, VersionAudit
from archiver.store.listing import call_ids_of, list_day, unmanifested

log = structlog.get_logger("archiver.archive")


class DaySync:
    """Syncs each day from the store into the ledger, once per run (per instance)."""

    def __init__(self, store: Store, ledger: Ledger, *, prefix: str, clock: Clock, outage: StoreOutage) -> None:
        self._store = store
        self._ledger = ledger
        self._prefix = prefix
        self._clock = clock
        self._outage = outage
        self._synced: set[date] = set()
        self._put_back_allowed = True

    async def sync(self, days: Iterable[date]) -> None:
        """Match the ledger to the bucket for each of *days* not synced by this run yet. Raises
        StoreUnavailable past the outage's patience."""
        for day in days:
            if day in self._synced:
                continue
            listed_at = self._clock.now()
            await self._outage.run(partial(self._put_back, day))
            listing = await self._outage.run(partial(list_day, self._store, self._prefix, day))
            found = await self._outage.run(partial(call_ids_of, self._store, listing))
            gone = self._ledger.calls.match_bucket(day, found, listed_at)
            loose = await self._outage.run(partial(unmanifested, self._store, listing))
            if loose:  # a record written while the day closed: the day's next close writes its addendum
                self._ledger.days.reopen(day)
                log.warning("day.records_unmanifested", day=day.isoformat(), records=len(loose), first=loose[0])
            if gone:
                log.warning(
                    "day.calls_lost",
                    day=day.isoformat(),
                    calls=len(gone),
                    call_ids=gone[:20],
                    hint="their records are not in the bucket any more: archived again while the PBX serves them",
                )
            self._synced.add(day)
            log.debug("day.synced", day=day.isoformat(), sidecars=len(found), forgotten=len(gone))

    async def _put_back(self, day: date) -> None:
        """On a versioned bucket, make every deleted object of *day* current again from the version
        the delete marker hides: the bytes it was archived and sealed with."""
        versions = self._store.versions
        if versions is None or not self._put_back_allowed:
            return
        try:
            await self._put_back_day(versions, day)
        except StoreAccessError as exc:  # s3:ListBucketVersions or GetObjectVersion not granted
            self._put_back_allowed = False
            log.warning(
                "day.put_back_unavailable",
                error=str(exc),
                hint="deleted calls are archived again from the PBX instead; grant s3:ListBucketVersions, "
                "s3:GetObjectVersion to put back the sealed bytes",
            )

    async def _put_back_day(self, versions: VersionAudit, day: date) -> None:
        async for history in versions.histories(keys.day_prefix(self._prefix, day)):
            kept = history.deleted
            if kept is None:
                continue
            try:
                if kept.storage_class in ARCHIVE_TIERS:
                    raise ObjectInColdStorage(history.key, kept.storage_class)
                await versions.put_back(history.key, kept)
            except ObjectInColdStorage:  # a copy needs a readable source: that version restored first
                log.warning(
                    "object.put_back_cold",
                    key=history.key,
                    version_id=kept.version_id,
                    storage_class=kept.storage_class,
                    hint="restore that version (aws s3api restore-object --version-id), then backfill the day again",
                )
                continue
            parsed = keys.parse_call_key(history.key)
            log.warning(
                "object.put_back",
                key=history.key,
                call_id=parsed.call_id if parsed else None,
                deleted_at=history.versions[-1].at.isoformat(),
                version_id=kept.version_id,
            )
