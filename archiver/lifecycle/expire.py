"""``archiver expire``: removing what ``retention.keep`` no longer keeps, provably.

A day expires when every call filed under it started longer than ``keep`` ago: the day's end,
in the zone the archive files its days in, is ``keep`` or more in the past. That zone is the one
the archive's seals state (the configuration's ``source.timezone`` only for an archive whose seals
state none; neither: nothing expires, and the command says what to set). A configuration that names
another zone than the seals, or seals that state two, stop it before anything is recorded.

The steps, a hundred days at a time:

1. **Find** the days past retention from a listing of versions, not of objects: a day whose
   every object hides behind a delete marker (``aws s3 rm --recursive`` on a versioned bucket, an
   expire cut short) is past retention too.
2. **List** each day's versions once; what is removed is exactly what this listing holds.
3. **Record**, in one seal, each day's expiry: its folder, its manifests and the SHA-256 of each
   (as they are now), the policy, the time. A day recorded before whose listing holds a manifest
   its records do not name (an addendum written meanwhile) is recorded again, naming it.
4. **Remove** the listed versions and delete markers. Object Lock retention and legal holds are
   left and reported, never forced; what was written after the listing stays for the next run,
   which records it first.
5. **Destroy the keys** of the day's encrypted recordings (``storage.encryption``), every version,
   but those of a recording a lock kept: it stays readable as long as it stays. Keys an expire cut
   short left behind a day already gone are destroyed by the next, if the seal chain records the
   day expired (never those of a day merely not found).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.archive.seal import Sealer
from archiver.archive.zone import described, settled_zone
from archiver.core import dayfiles, keyobjects, keys, retention, seal
from archiver.core.clock import Clock
from archiver.errors import ConfigError, collapse
from archiver.store import Hold, Store, StoredVersion
from archiver.store.keys import KeyStore
from archiver.store.listing import MANIFEST_LIMIT, archive_days

log = structlog.get_logger("archiver.expire")

BATCH_DAYS = 100  # days listed, recorded in one seal, then removed, at a time


@dataclass
class ExpiredDay:
    """One day past retention: what it held, what was removed, and what is held."""

    day: date
    objects: int  # versions and delete markers listed
    recorded_now: bool  # this run recorded its expiry (False: a seal already did)
    removed: int = 0  # versions and delete markers removed
    held: list[Hold] = field(default_factory=list)
    keys_removed: int = 0  # versions of its recordings' keys destroyed (storage.encryption)


@dataclass
class ExpireReport:
    policy: str
    first_kept: date  # the oldest day retention keeps
    dry_run: bool
    timezone: str = ""  # the zone the days were read in
    days: list[ExpiredDay] = field(default_factory=list)

    @property
    def held(self) -> list[Hold]:
        return [h for d in self.days for h in d.held]

    def as_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "first_kept_day": self.first_kept.isoformat(),
            "timezone": self.timezone,
            "dry_run": self.dry_run,
            "days": [
                {
                    "day": d.day.isoformat(),
                    "objects": d.objects,
                    "recorded_now": d.recorded_now,
                    "removed": d.removed,
                    "held": [str(h) for h in d.held],
                    "key_versions_removed": d.keys_removed,
                }
                for d in self.days
            ],
        }


class Expirer:
    """Expires the days of the archive under *prefix* that *keep* no longer keeps. *tz*: the zone
    the configuration names (None: it names none, and the archive's seals must); *keys*: the keys
    store of encrypted recordings, whose keys go with their days."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        *,
        tz: ZoneInfo | None,
        keep: timedelta,
        policy: str,
        clock: Clock,
        sealer: Sealer,
        concurrency: int = 8,
        keys: KeyStore | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._prefix = prefix
        self._tz = tz
        self._keep = keep
        self._policy = policy
        self._clock = clock
        self._sealer = sealer
        self._limiter = anyio.CapacityLimiter(concurrency)

    async def zone(self) -> ZoneInfo:
        """The zone the archive files its days in: as its seals state it; else as the configuration
        names it. Raises ConfigError where neither does (no day is expired in a zone guessed), where
        the configuration names another than the seals, and where the seals state two."""
        where = described(self._store, self._prefix)
        zone = settled_zone(await self._sealer.chain(), self._tz, where=where)
        if zone is None:
            raise ConfigError(
                [
                    "At 'source.timezone': the archive's seals state no time zone and the configuration names none; "
                    "set it to the zone the archive's days were filed in (nothing expires in a guessed zone)"
                ]
            )
        return zone

    async def run(self, *, dry_run: bool = False) -> ExpireReport:
        tz = await self.zone()
        first_kept = retention.first_kept(self._clock.now(), self._keep, tz)
        report = ExpireReport(self._policy, first_kept, dry_run, tz.key)
        days = [d for d in await archive_days(self._store, self._prefix, hidden=True) if d < first_kept]
        for start in range(0, len(days), BATCH_DAYS):  # an old archive's first expiry: memory stays bounded
            report.days += await self._expire(days[start : start + BATCH_DAYS], tz, dry_run=dry_run)
        if self._keys is not None and not dry_run:  # keys an expire cut short left behind their day
            gone = {d.day for d in report.days}
            # Only of days the archive records expired: a day merely not found (the wrong archive
            # configured) may hold recordings, kept under a lock, that their keys must still open.
            recorded = (await self._sealer.chain()).expired()
            for day in await self._keys.days():
                if day < first_kept and day not in gone and keys.day_prefix(self._prefix, day) in recorded:
                    await self._destroy_keys(day, [])
        return report

    async def _expire(self, days: list[date], tz: ZoneInfo, *, dry_run: bool) -> list[ExpiredDay]:
        """List, record, then remove exactly what was listed, of *days*: one seal for their records."""
        listed = {day: versions for day, versions in (await self._list(days)).items() if versions}
        recorded = (await self._sealer.chain()).expired()
        folders = {day: keys.day_prefix(self._prefix, day) for day in listed}
        outcomes = {day: ExpiredDay(day, len(v), folders[day] not in recorded) for day, v in listed.items()}
        if dry_run or not listed:
            return list(outcomes.values())
        expiries = [await self._expiry(day, folders[day], versions) for day, versions in listed.items()]
        await self._sealer.record_expiry(expiries, self._policy, timezone=tz.key)  # the record first
        for expiry in expiries:
            log.info("expire.recorded", day=expiry.day, manifests=len(expiry.manifests), policy=self._policy)
        for day, versions in listed.items():
            removal = await self._store.remove_versions(versions)  # these, and nothing written since
            outcome = outcomes[day]
            outcome.removed, outcome.held = removal.removed, removal.held
            log.info(
                "expire.day_removed",
                day=day.isoformat(),
                objects=len(versions),
                removed=removal.removed,
                held=len(removal.held),
            )
            for hold in removal.held:
                log.warning("expire.held", day=day.isoformat(), key=hold.key, why=str(hold))
            outcome.keys_removed = await self._destroy_keys(day, removal.held)
        return list(outcomes.values())

    async def _destroy_keys(self, day: date, held: list[Hold]) -> int:
        """Every version of the keys of *day*'s encrypted recordings, but of those still in the
        archive: kept by a lock (*held*), or landed after the listing (a rearchive racing this
        expire), which stay readable as long as they stay. The day's folder is listed again."""
        if self._keys is None:
            return 0
        still = [v.key for v in await self._store.versions_in(keys.day_prefix(self._prefix, day)) if not v.deleted]
        kept = {
            stem
            for key in [*still, *(h.key for h in held)]
            if (stem := keyobjects.stem_of(self._keys.prefix, key)) is not None
        }
        versions = [
            v
            for v in await self._keys.store.versions_in(keys.day_prefix(self._keys.prefix, day))
            if (name := keyobjects.parse(v.key)) is None or name.stem not in kept
        ]
        if not versions:
            return 0
        removal = await self._keys.remove_versions(versions)
        log.info("expire.keys_destroyed", day=day.isoformat(), versions=removal.removed, kept=len(kept))
        return removal.removed

    async def _list(self, days: list[date]) -> dict[date, list[StoredVersion]]:
        found: dict[date, list[StoredVersion]] = {}

        async def one(day: date) -> None:
            async with self._limiter:
                found[day] = await self._store.versions_in(keys.day_prefix(self._prefix, day))

        try:
            async with anyio.create_task_group() as tg:
                for day in days:
                    tg.start_soon(one, day)
        except BaseExceptionGroup as group:  # one error, as the command line maps it (a refusal: exit 2)
            raise collapse(group) from None
        return {d: found[d] for d in sorted(found)}

    async def _expiry(self, day: date, folder: str, versions: list[StoredVersion]) -> seal.Expiry:
        """The record of *day* expiring: each of its manifests as it is now (or, deleted, as the
        version the delete marker hides is)."""
        manifests = []
        for key, version in sorted(_manifest_versions(folder, versions).items()):
            raw = await self._store.read(key, MANIFEST_LIMIT, version_id=version)
            manifests.append(seal.Link(key, hashlib.sha256(raw).hexdigest()))
        return seal.Expiry(
            day=day.isoformat(),
            folder=folder,
            manifests=tuple(manifests),
            policy=self._policy,
            at=seal.utc_text(self._clock.now()),
        )


def _manifest_versions(folder: str, versions: list[StoredVersion]) -> dict[str, str | None]:
    """Each manifest under *folder*: the version that says what it is now (its current one; for a
    manifest behind a delete marker, the last version written before it)."""
    out: dict[str, str | None] = {}
    for version in versions:  # a key's versions come newest first
        name = version.key[len(folder) :]
        if version.deleted or not name.startswith("manifest-sha256") or dayfiles.set_number(name) is None:
            continue
        out.setdefault(version.key, version.version_id)
    return out
