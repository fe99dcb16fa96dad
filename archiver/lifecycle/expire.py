"""``archiver expire``: removing what ``retention.keep`` no longer keeps, provably.

A day expires when every call filed under it started longer than ``keep`` ago: the day's end,
in the source's time zone, is ``keep`` or more in the past. Before anything of an expired day is
deleted, one seal records the expiry of each such day (its folder, its manifests' keys and
SHA-256, the policy, the time), so that ``verify`` accounts for the sealed manifests that are
gone. Then every object of the day goes, every version of it; what Object Lock retention or a
legal hold still protects is left and reported, never forced.

Idempotent: a day the chain records as expired is not recorded again, and whatever of it is
still in the bucket (an interrupted run, an object whose retention has ended since) is removed
by the next run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.archive.seal import Sealer
from archiver.core import seal
from archiver.core.clock import Clock
from archiver.store import Hold, Store
from archiver.store.listing import MANIFEST_LIMIT, DayListing, archive_days, list_day

log = structlog.get_logger("archiver.expire")

BATCH_DAYS = 100  # days listed, recorded in one seal, then removed, at a time


@dataclass
class ExpiredDay:
    """One day past retention: what it held, what was removed, and what is held."""

    day: date
    objects: int
    recorded_now: bool  # this run recorded its expiry (False: a seal already did)
    removed: int = 0  # versions and delete markers removed
    held: list[Hold] = field(default_factory=list)


@dataclass
class ExpireReport:
    policy: str
    first_kept: date  # the oldest day retention keeps
    dry_run: bool
    days: list[ExpiredDay] = field(default_factory=list)

    @property
    def held(self) -> list[Hold]:
        return [h for d in self.days for h in d.held]

    def as_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "first_kept_day": self.first_kept.isoformat(),
            "dry_run": self.dry_run,
            "days": [
                {
                    "day": d.day.isoformat(),
                    "objects": d.objects,
                    "recorded_now": d.recorded_now,
                    "removed": d.removed,
                    "held": [str(h) for h in d.held],
                }
                for d in self.days
            ],
        }


class Expirer:
    """Expires the days of the archive under *prefix* that *keep* no longer keeps."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        *,
        tz: ZoneInfo,
        keep: timedelta,
        policy: str,
        clock: Clock,
        sealer: Sealer,
        concurrency: int = 8,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._tz = tz
        self._keep = keep
        self._policy = policy
        self._clock = clock
        self._sealer = sealer
        self._limiter = anyio.CapacityLimiter(concurrency)

    def first_kept(self) -> date:
        """The oldest day whose calls are not all older than ``keep``: a day before it ended
        (at the next midnight, in the source's time zone) at least ``keep`` ago."""
        return (self._clock.now() - self._keep).astimezone(self._tz).date()

    async def run(self, *, dry_run: bool = False) -> ExpireReport:
        first_kept = self.first_kept()
        report = ExpireReport(self._policy, first_kept, dry_run)
        days = [d for d in await archive_days(self._store, self._prefix) if d < first_kept]
        for start in range(0, len(days), BATCH_DAYS):  # an old archive's first expiry: memory stays bounded
            report.days += await self._expire(days[start : start + BATCH_DAYS], dry_run=dry_run)
        return report

    async def _expire(self, days: list[date], *, dry_run: bool) -> list[ExpiredDay]:
        """Record, then remove, *days*: one seal for those not recorded yet."""
        listings = [listing for listing in await self._list(days) if listing.objects]
        recorded = (await self._sealer.chain()).expired()
        outcomes = [ExpiredDay(x.day, len(x.objects), x.folder not in recorded) for x in listings]
        if dry_run or not listings:
            return outcomes
        expiries = [await self._expiry(listing) for listing in listings if listing.folder not in recorded]
        if expiries:  # the record first: a sealed day is never gone without one
            await self._sealer.record_expiry(expiries)
            for expiry in expiries:
                log.info("expire.recorded", day=expiry.day, manifests=len(expiry.manifests), policy=self._policy)
        for listing, outcome in zip(listings, outcomes, strict=True):
            removal = await self._store.remove_folder(listing.folder)  # hidden versions too
            outcome.removed, outcome.held = removal.removed, removal.held
            log.info(
                "expire.day_removed",
                day=listing.day.isoformat(),
                objects=len(listing.objects),
                removed=removal.removed,
                held=len(removal.held),
            )
            for hold in removal.held:
                log.warning("expire.held", day=listing.day.isoformat(), key=hold.key, why=str(hold))
        return outcomes

    async def _list(self, days: list[date]) -> list[DayListing]:
        found: dict[date, DayListing] = {}

        async def one(day: date) -> None:
            async with self._limiter:
                found[day] = await list_day(self._store, self._prefix, day)

        async with anyio.create_task_group() as tg:
            for day in days:
                tg.start_soon(one, day)
        return [found[d] for d in sorted(found)]

    async def _expiry(self, listing: DayListing) -> seal.Expiry:
        """The record of *listing*'s day expiring: its manifests as they are now."""
        manifests = []
        for key in listing.manifests.values():
            raw = await self._store.read(key, MANIFEST_LIMIT)
            manifests.append(seal.Link(key, hashlib.sha256(raw).hexdigest()))
        return seal.Expiry(
            day=listing.day.isoformat(),
            folder=listing.folder,
            manifests=tuple(manifests),
            policy=self._policy,
            at=seal.utc_text(self._clock.now()),
        )
