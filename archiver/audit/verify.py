"""Verifying the archive as an auditor would, with read access to the bucket alone.

Verification needs nothing but the store. The seal chain is read and checked link by link; then
each day: every record and the recording it names (:mod:`.recordings`), what erasures and expiry
records account for (:mod:`.lifecycle`), every object's version history where the store keeps
versions (:mod:`.history`), and the day's manifests against the records and the seals
(:mod:`.manifests`).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.audit import lifecycle
from archiver.audit.encrypted import KeyChecker, rekeys
from archiver.audit.findings import Problem, VerifyReport
from archiver.audit.history import describe
from archiver.audit.manifests import MANIFEST_GRACE, ManifestChecker, check_sealed
from archiver.audit.recordings import RecordChecker, check_revisions
from archiver.core import cdr, keys, seal
from archiver.core.clock import Clock, SystemClock
from archiver.errors import ArchiverError
from archiver.store import Store
from archiver.store.listing import DayListing, archive_days, day_listings, day_of_folder
from archiver.store.seals import ChainReader

__all__ = ["MANIFEST_GRACE", "Problem", "Verifier", "VerifyReport"]

log = structlog.get_logger("archiver.audit.verify")


class Verifier:
    """Checks the archive in *store* under *prefix*. *rng* picks the ``--sample``; *clock* says how
    long ago a record was stored."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        *,
        concurrency: int = 8,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        retention: tuple[timedelta, str, ZoneInfo] | None = None,
        checksum_probe: str | None = None,
        keys: KeyChecker | None = None,
    ) -> None:
        """*retention*: ``retention.keep``, its text, and the zone days are read in; a day past it
        by more than EXPIRY_GRACE that no expiry record names is a problem. *checksum_probe*: a key
        under the control folder where a throwaway object asks the store whether it checks the
        checksums it is sent (:meth:`Store.checksum_kept`); where it keeps them unchecked, every
        recording is read and hashed. None: not asked (a store that refuses writes); its checksums
        are taken as its own. *keys*: the keys of encrypted recordings are checked too
        (``storage.encryption``)."""
        self._retention = retention
        self._probe = checksum_probe
        self._keys = keys
        self._store = store
        self._clock = clock or SystemClock()
        self._prefix = prefix
        self._records = RecordChecker(store, limiter=anyio.CapacityLimiter(concurrency), rng=rng or random.Random())
        self._manifests = ManifestChecker(store, self._clock)
        self._read_call: Callable[[Any], Any] | None = None  # how the archiver reads a stored CDR now

    async def verify(
        self,
        days: list[date] | None,
        *,
        deep: bool = False,
        sample_percent: float = 0.0,
        recorded_seals: tuple[str, ...] = (),
        every_sealed_day: bool = False,
    ) -> VerifyReport:
        """Check *days* (None: the whole archive) and the seal chain.

        *recorded_seals*: SHA-256 digests of seals recorded outside the bucket (a head printed by
        an earlier verify); each must still be a seal of the chain. *every_sealed_day*: of the days
        not checked, each the seals name must still have its folder (one listing a month: a whole
        day deleted is found the night it goes, not when its turn comes).
        """
        report = VerifyReport()
        report.store_checksums = await self._probe_checksums()
        self._records.store_checksums = report.store_checksums != "kept unchecked"
        self._manifests.unsealed = []  # manifests no seal named when the chain was read
        reader = ChainReader(self._store, self._prefix)
        await reader.read_all()
        chain = reader.chain
        report.seals, report.seal_head = chain.length, chain.head
        report.problems += [Problem(key, what) for key, what in chain.problems]
        for recorded in recorded_seals:
            if chain.find(recorded) is None:
                report.problems.append(
                    Problem(
                        seal.folder(self._prefix),
                        f"no seal has the recorded SHA-256 {recorded}: the chain was rewritten since it was recorded",
                    )
                )
        zone = chain.timezone or (self._retention[2].key if self._retention else None)
        tz = seal.known_zone(zone)
        if zone is not None and tz is None:
            report.problems.append(
                Problem(seal.folder(self._prefix), f"the seals state the zone {zone!r}, unknown here")
            )
        self._read_call = None if tz is None else functools.partial(_read_call, tz=tz)
        sealed = chain.sealed()
        sealed_in: dict[str, list[str]] = {}  # day folder -> the sealed manifests in it
        for key in sealed:
            sealed_in.setdefault(key.rsplit("/", 1)[0] + "/", []).append(key)
        rekeys(chain, report)
        expired = lifecycle.expired_in(chain, self._prefix, days, report)
        lifecycle.check_expiry_records(chain, self._retention, self._clock.now(), report)
        if self._retention is not None:
            await lifecycle.check_overdue(self._store, self._prefix, chain, self._clock, self._retention, report)
        present: dict[str, set[str]] = {}  # the manifests an expired day still holds
        async for listing in day_listings(self._store, self._prefix, days):
            if listing.folder in expired:
                if listing.objects:
                    await lifecycle.expired_leftovers(
                        self._store, listing, expired[listing.folder], self._clock.now(), report
                    )
                    present[listing.folder] = set(listing.manifests.values())
                continue
            for key in sealed_in.pop(listing.folder, []):  # a sealed manifest must stay
                if key not in listing.manifests.values():
                    report.problems.append(Problem(key, "a sealed manifest is not in the archive any more"))
            if listing.empty:
                continue
            report.days += 1
            await self._verify_day(listing, report, sealed, deep=deep, sample=sample_percent / 100)
        lifecycle.check_expired_manifests(chain, expired, sealed_in, present, report)
        if days is None:  # the whole archive: a sealed day whose folder is gone lists nothing at all
            for gone in sealed_in.values():
                report.problems += [Problem(k, "a sealed manifest is not in the archive any more") for k in gone]
        elif every_sealed_day and sealed_in:
            held = set(await archive_days(self._store, self._prefix))
            lawful = chain.expired()  # gone under a record, which check_expiry_records weighs every night
            for folder, gone in sorted(sealed_in.items()):
                if folder not in lawful and day_of_folder(self._prefix, folder) not in held:
                    report.problems.append(
                        Problem(
                            folder, f"a sealed day is gone: its folder holds nothing ({len(gone)} sealed manifest(s))"
                        )
                    )
        if self._manifests.unsealed:  # a day closed while this ran? Its seal comes just after its manifest
            await reader.read_newer()
            for key, number, digest in self._manifests.unsealed:
                check_sealed(key, number, digest, reader.chain.sealed().get(key, []), report)
        return report

    async def _probe_checksums(self) -> str:
        if self._probe is None:
            return "not probed"
        try:
            return await self._store.checksum_kept(self._probe)
        except ArchiverError as exc:  # read-only credentials: the writer's check says what the store does
            log.info("verify.checksums_not_probed", error=str(exc))
            return "not probed"

    async def _verify_day(
        self,
        listing: DayListing,
        report: VerifyReport,
        sealed: dict[str, list[tuple[int, str]]],
        *,
        deep: bool,
        sample: float,
    ) -> None:
        found = await self._records.check_day(listing, report, deep=deep, sample=sample)
        check_revisions(listing, found, report, self._read_call)
        erased = lifecycle.check_erasures(listing, found.docs, found.absent, report)
        for call_id, audio_keys in sorted(listing.audio.items()):
            if call_id not in listing.sidecars:
                if await self._store.head(listing.folder + f"{call_id}.json") is not None:
                    continue  # archived while this day was read: its sidecar came after the listing
                report.problems += [
                    Problem(
                        k, "a recording without its sidecar (an interrupted write? `backfill` completes it)", call_id
                    )
                    for k in audio_keys
                ]
                continue
            for extra in sorted(set(audio_keys) - found.named.get(call_id, set())):
                report.problems.append(Problem(extra, "a recording that no record of its call names", call_id))
        for key in listing.strays:
            report.problems.append(Problem(key, "an object that is neither a call's nor a day file"))
        if self._store.versions is not None:
            async for history in self._store.versions.histories(listing.folder):
                what, problem = await describe(self._store.versions, history)
                parsed = keys.parse_call_key(history.key)
                (report.problems if problem else report.history).append(
                    Problem(history.key, what, parsed.call_id if parsed else None)
                )
        if self._keys is not None:
            await self._keys.check_day(listing, found.docs, report)
        gone = {k[len(listing.folder) :]: sha for r in erased.values() for k, sha in r.items()}
        await self._manifests.check_day(listing, found.docs, report, sealed, gone)


def _read_call(stored: Any, *, tz: ZoneInfo) -> Any:
    """What the archiver reads from a stored CDR now: the sidecar's ``call`` object."""
    return cdr.reread(stored, tz).call_summary()
