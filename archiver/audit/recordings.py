"""A day's records and the recordings they name, checked against what the store holds.

Each record (a call's sidecar, or a revision of it) must be a sidecar document for its call, a
revision must supersede the one before it, and a recording it names must be in the day with the
size and SHA-256 it states. The recordings of a day that no record names, and the records whose
recording is gone, are what the caller reports (an erased call's are accounted for there).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

import anyio

from archiver.audit.findings import Problem, VerifyReport
from archiver.core import dayfiles
from archiver.core.sidecar import SCHEMA
from archiver.errors import CallError, ObjectInColdStorage
from archiver.store import Store
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
        """The recording a record names: its size, and its SHA-256 (the store's, or read)."""
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
        if info.sha256 is not None and not rehash:
            if info.sha256.hex() != stated:
                report.problems.append(Problem(key, "the store's checksum differs from the sidecar's sha256", call_id))
            return
        try:
            if info.cold:
                raise ObjectInColdStorage(key, info.storage_class)
            size, digest = await self._store.digest(key)
        except ObjectInColdStorage:
            report.cold += 1  # its size and stored checksum were checked, as far as they go
            return
        report.rehashed += 1
        report.bytes_rehashed += size
        if digest.hex() != stated:
            report.problems.append(
                Problem(key, "the recording's SHA-256 differs from the sidecar's: its bytes changed", call_id)
            )
