"""A day's records and the recordings they name, checked against what the store holds.

Each record (a call's sidecar, or a revision of it) must be a sidecar document for its call, a
revision must supersede the one before it, and a recording it names must be in the day with the
size and SHA-256 it states. The recordings of a day that no record names, and the records whose
recording is gone, are what the caller reports (an erased call's are accounted for there).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from archiver.audit.findings import Problem, VerifyReport
from archiver.core import dayfiles, revisions
from archiver.core.sidecar import SCHEMA
from archiver.errors import CallError, ObjectInColdStorage
from archiver.store import ObjectInfo, Store
from archiver.store.listing import SIDECAR_LIMIT, DayListing


@dataclass
class DayRecords:
    """What a day's records say, once read."""

    docs: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # file name -> (sha256, document)
    named: dict[str, set[str]] = field(default_factory=dict)  # call id -> the audio keys its records name
    absent: list[tuple[str, str]] = field(default_factory=list)  # (call id, key) named but not in the day


class RecordChecker:
    """Reads and checks records and recordings in *store*; *rng* picks the ``--sample``."""

    def __init__(self, store: Store, *, limiter: anyio.CapacityLimiter, rng: random.Random) -> None:
        self._store = store
        self._limiter = limiter
        self._rng = rng
        # Whether the store's checksum is its own: False where it keeps what the writer sent unchecked.
        self.store_checksums = True

    async def check_day(self, listing: DayListing, report: VerifyReport, *, deep: bool, sample: float) -> DayRecords:
        """Check every record of the day and the recording each names."""
        found = DayRecords()

        async def check(call_id: str, revision: int, key: str) -> None:
            async with self._limiter:
                result = await self._check_record(call_id, revision, key, listing, report, found, deep, sample)
            if result is not None:
                found.docs[key[len(listing.folder) :]] = result
                rec = dayfiles.mapping(result[1].get("recording"))
                if rec.get("status") == "archived":
                    found.named.setdefault(call_id, set()).add(str(rec.get("key")))

        async with anyio.create_task_group() as tg:
            for call_id, revision, key in listing.sidecar_keys():
                tg.start_soon(check, call_id, revision, key)
        report.calls += len(listing.sidecars)
        return found

    async def _check_record(
        self,
        call_id: str,
        revision: int,
        key: str,
        listing: DayListing,
        report: VerifyReport,
        found: DayRecords,
        deep: bool,
        sample: float,
    ) -> tuple[str, dict[str, Any]] | None:
        """Check one record of a call (its first, or a revision) and the recording it names."""
        try:
            raw = await self._store.read(key, SIDECAR_LIMIT)
        except CallError as exc:
            report.problems.append(Problem(key, f"the sidecar cannot be read: {exc}", call_id))
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            report.problems.append(Problem(key, "the sidecar is not valid JSON", call_id))
            return None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("call_id") != call_id:
            report.problems.append(Problem(key, f"the sidecar is not a {SCHEMA} document for this call", call_id))
            return None
        if revision > 1:
            previous = listing.revisions.get(call_id, {}).get(revision - 1)
            if doc.get("revision") != revision or previous is None or doc.get("supersedes") != previous:
                report.problems.append(
                    Problem(
                        key, f"revision {revision} does not supersede revision {revision - 1} of this call", call_id
                    )
                )
        digest = hashlib.sha256(raw).hexdigest()
        rec = dayfiles.mapping(doc.get("recording"))
        if rec.get("status") != "archived":
            return digest, doc
        report.recordings += 1
        if rec.get("key") not in listing.audio.get(call_id, []):
            found.absent.append((call_id, str(rec.get("key"))))  # a problem, unless the call was erased
            return digest, doc
        await self.check_recording(call_id, rec, report, rehash=deep or self._rng.random() < sample)
        return digest, doc

    async def check_recording(self, call_id: str, rec: dict[str, Any], report: VerifyReport, *, rehash: bool) -> None:
        """The recording a record names: its size, then its SHA-256, compared with the store's own
        checksum of the bytes it holds (never the writer's metadata) or, with *rehash* or where the
        store keeps none, with its bytes read and hashed. A recording in cold storage cannot be
        read: the store's checksum must do, and where it keeps none that is a problem."""
        key = str(rec["key"])
        info = await self._store.head(key)
        if info is None:
            report.problems.append(Problem(key, "the recording vanished during the check", call_id))
            return
        if info.size != rec.get("size"):
            report.problems.append(
                Problem(key, f"the recording is {info.size} bytes, the sidecar says {rec.get('size')}", call_id)
            )
            return
        stated = str(rec.get("sha256"))
        if info.stated_sha256 is not None and info.stated_sha256.hex() != stated:
            # The writer's word proves nothing when it agrees; when it disagrees, someone else wrote this.
            report.problems.append(
                Problem(key, "the recording's own metadata gives another SHA-256 than its record", call_id)
            )
            return
        by_store = _store_compares(info, rec) if self.store_checksums else None
        if by_store is False:
            report.problems.append(
                Problem(
                    key, "the store's own checksum of the recording differs from its record: its bytes changed", call_id
                )
            )
            return
        if by_store and not (rehash and not info.cold):
            report.store_checked += 1  # not read: the store's checksum of the bytes it holds agrees
            report.cold += int(rehash)  # wanted reading, but in cold storage
        elif info.cold:
            why = "keeps no checksum of it that its record states" if self.store_checksums else "checks no checksum"
            report.problems.append(
                Problem(
                    key,
                    f"in cold storage, and the store {why}: only its size could be compared (`archiver restore` it, "
                    "then verify again)",
                    call_id,
                )
            )
        else:  # asked to, or nothing of the store's to compare with: read the bytes
            await self._rehash(call_id, key, stated, report)

    async def _rehash(self, call_id: str, key: str, stated: str, report: VerifyReport) -> None:
        try:
            size, digest = await self._store.digest(key)
        except ObjectInColdStorage:  # went cold since the HEAD
            report.problems.append(Problem(key, "went into cold storage while it was being checked", call_id))
            return
        report.rehashed += 1
        report.bytes_rehashed += size
        if digest.hex() != stated:
            report.problems.append(
                Problem(key, "the recording's SHA-256 differs from the sidecar's: its bytes changed", call_id)
            )


def check_revisions(
    listing: DayListing, found: DayRecords, report: VerifyReport, read_call: Callable[[Any], Any] | None
) -> None:
    """Each revision must be one the archiver writes of the record it supersedes
    (:func:`archiver.core.revisions.fault`); *read_call* reads a stored CDR as the archiver reads
    it now (None: the archive's zone is not known)."""
    for call_id, records in sorted(listing.revisions.items()):
        for number, key in sorted(records.items()):
            previous = records.get(number - 1)
            if previous is None:
                continue
            before, after = (found.docs.get(k[len(listing.folder) :]) for k in (previous, key))
            if before is None or after is None:
                continue  # unreadable: a problem said already
            wrong = revisions.fault(before[1], after[1], read_call=read_call)
            if wrong:
                report.problems.append(
                    Problem(key, f"revision {number} is not one the archiver writes: {wrong}", call_id)
                )


def _store_compares(info: ObjectInfo, rec: dict[str, Any]) -> bool | None:
    """Whether the store's own checksum of the recording agrees with its record; None when the
    store keeps none the record states (no SHA-256 of its own, or a composite the record lacks)."""
    recorded = rec.get("composite_sha256")
    if info.sha256 is not None:  # a composite the store did not mark as one reads as a SHA-256 too
        return info.sha256.hex() == str(rec.get("sha256")) or base64.b64encode(info.sha256).decode() == recorded
    if info.composite_sha256 is not None and isinstance(recorded, str):
        return info.composite_sha256 == recorded
    return None
