"""Verifying the archive as an auditor would, with read access to the bucket alone.

Verification needs nothing but the store: every sidecar is read; its recording must exist with
the size and SHA-256 the sidecar states (the store's own checksum is used where it keeps one,
``ChecksumMode=ENABLED`` on S3; otherwise, or with ``--deep``, or for a ``--sample``, the bytes
are read and hashed); every recording must have a sidecar; every day's manifests must match.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.audit.history import describe
from archiver.core import dayfiles, keys, seal
from archiver.core.clock import Clock, SystemClock
from archiver.core.outcome import removed_by_erasure
from archiver.core.sidecar import SCHEMA
from archiver.errors import CallError, ObjectInColdStorage
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT, DayListing, archive_days, day_listings
from archiver.store.seals import ChainReader

log = structlog.get_logger("archiver.audit.verify")

# A record of a day that has day files goes in the day's next manifest on the archiver's next
# poll or backfill; one stored longer ago than this and in no manifest was missed by them.
MANIFEST_GRACE = timedelta(days=1)
# The daily expire removes a day within a day of its passing retention.keep; one kept two days
# past it was missed.
EXPIRY_GRACE = timedelta(days=2)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the archive, named by call (when there is one) and key."""

    key: str
    what: str
    call_id: str | None = None

    def __str__(self) -> str:
        return (f"call {self.call_id}: " if self.call_id else "") + f"{self.what} ({self.key})"


@dataclass
class VerifyReport:
    days: int = 0
    calls: int = 0
    recordings: int = 0
    rehashed: int = 0
    bytes_rehashed: int = 0
    unmanifested: int = 0
    seals: int = 0
    erased: int = 0  # calls whose recordings were erased on request
    cold: int = 0  # recordings in cold storage, not re-hashed (not a problem)
    expired: dict[str, int] = field(default_factory=dict)  # retention policy -> days expired under it
    seal_head: seal.Link | None = None  # the chain's last seal: what an operator records elsewhere
    problems: list[Problem] = field(default_factory=list)
    history: list[Problem] = field(default_factory=list)  # what happened and was made good: no problem

    def as_dict(self) -> dict[str, Any]:
        head = self.seal_head
        return {
            "ok": not self.problems,
            "seals": self.seals,
            "seal_head": None if head is None else {"sequence": self.seals, "key": head.key, "sha256": head.sha256},
            "days": self.days,
            "calls": self.calls,
            "recordings": self.recordings,
            "rehashed": self.rehashed,
            "bytes_rehashed": self.bytes_rehashed,
            "not_yet_in_a_manifest": self.unmanifested,
            "erased": self.erased,
            "in_cold_storage": self.cold,
            "expired_days": self.expired,
            "problems": [{"call_id": p.call_id, "key": p.key, "problem": p.what} for p in self.problems],
            "history": [{"call_id": p.call_id, "key": p.key, "what": p.what} for p in self.history],
        }


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
    ) -> None:
        """*retention*: ``retention.keep``, its text, and the zone days are read in; a day past it
        by more than EXPIRY_GRACE that no expiry record names is a problem."""
        self._retention = retention
        self._store = store
        self._clock = clock or SystemClock()
        self._prefix = prefix
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._rng = rng or random.Random()
        self._unsealed: list[tuple[str, int, str]] = []  # (manifest, set number, SHA-256) to look at again

    async def verify(
        self,
        days: list[date] | None,
        *,
        deep: bool = False,
        sample_percent: float = 0.0,
        recorded_seals: tuple[str, ...] = (),
    ) -> VerifyReport:
        """Check *days* (None: the whole archive) and the seal chain.

        *recorded_seals*: SHA-256 digests of seals recorded outside the bucket (a head printed by
        an earlier verify); each must still be a seal of the chain.
        """
        report = VerifyReport()
        self._unsealed = []  # manifests no seal named when the chain was read
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
        sealed = chain.sealed()
        sealed_in: dict[str, list[str]] = {}  # day folder -> the sealed manifests in it
        for key in sealed:
            sealed_in.setdefault(key.rsplit("/", 1)[0] + "/", []).append(key)
        expired = self._expired_in(chain, days, report)
        await self._check_overdue(chain, report)
        for folder, (number, expiry) in expired.items():  # a sealed manifest of an expired day went with it
            named = {link.key for link in expiry.manifests}
            report.problems += [
                Problem(k, f"a sealed manifest gone, which the expiry record of {expiry.day} does not name")
                for k in sealed_in.pop(folder, [])
                if k not in named
            ]
            report.problems += [  # what expired must be what was sealed: nothing rewritten first
                Problem(
                    link.key,
                    f"the expiry record (seal {number}) gives the manifest another SHA-256 than its seal sealed",
                )
                for link in expiry.manifests
                if sealed.get(link.key) and not chain.sealed_by(link.key, link.sha256)
            ]
        async for listing in day_listings(self._store, self._prefix, days):
            if listing.folder in expired:
                if listing.objects:
                    self._expired_leftovers(listing, expired[listing.folder], report)
                continue
            for key in sealed_in.pop(listing.folder, []):  # a sealed manifest must stay
                if key not in listing.manifests.values():
                    report.problems.append(Problem(key, "a sealed manifest is not in the archive any more"))
            if listing.empty:
                continue
            report.days += 1
            await self._verify_day(listing, report, sealed, deep=deep, sample=sample_percent / 100)
        if days is None:  # the whole archive: a sealed day whose folder is gone lists nothing at all
            for keys in sealed_in.values():
                report.problems += [Problem(k, "a sealed manifest is not in the archive any more") for k in keys]
        if self._unsealed:  # a day closed while this ran? Its seal comes just after its manifest
            await reader.read_newer()
            for key, number, digest in self._unsealed:
                _check_sealed(key, number, digest, reader.chain.sealed().get(key, []), report)
        return report

    def _expired_in(
        self, chain: seal.Chain, days: list[date] | None, report: VerifyReport
    ) -> dict[str, tuple[int, seal.Expiry]]:
        """The days of *days* (None: all) the chain records as expired, counted by policy."""
        wanted = None if days is None else {keys.day_prefix(self._prefix, d) for d in days}
        expired = {f: e for f, e in chain.expired().items() if wanted is None or f in wanted}
        for _, expiry in expired.values():
            report.expired[expiry.policy] = report.expired.get(expiry.policy, 0) + 1
        return expired

    async def _check_overdue(self, chain: seal.Chain, report: VerifyReport) -> None:
        """Days kept past ``retention.keep`` (by more than EXPIRY_GRACE: the daily expire's time to
        come round): personal data held longer than its policy allows is a problem to see."""
        if self._retention is None:
            return
        keep, policy, tz = self._retention
        first_kept = (self._clock.now() - keep - EXPIRY_GRACE).astimezone(tz).date()
        recorded = chain.expired()
        overdue = [
            day
            for day in await archive_days(self._store, self._prefix)
            if day < first_kept and keys.day_prefix(self._prefix, day) not in recorded
        ]
        if overdue:
            report.problems.append(
                Problem(
                    keys.day_prefix(self._prefix, overdue[0]),
                    f"{len(overdue)} day(s), {overdue[0].isoformat()} to {overdue[-1].isoformat()}, are past "
                    f"retention.keep ({policy}) and not expired: run `archiver expire` (is archiver-expire.timer "
                    "enabled?)",
                )
            )

    def _expired_leftovers(self, listing: DayListing, recorded: tuple[int, seal.Expiry], report: VerifyReport) -> None:
        """An expired day that still holds objects: Object Lock keeps them, or an expire was cut
        short. Not a problem; the next ``archiver expire`` removes what it may."""
        number, expiry = recorded
        report.history.append(
            Problem(
                listing.folder,
                f"expired under retention {expiry.policy} (seal {number}, {expiry.at}); {len(listing.objects)} "
                "object(s) remain: under Object Lock retention or a legal hold, or an expire cut short "
                "(`archiver expire` removes them when it may)",
            )
        )

    async def _verify_day(
        self,
        listing: DayListing,
        report: VerifyReport,
        sealed: dict[str, list[tuple[int, str]]],
        *,
        deep: bool,
        sample: float,
    ) -> None:
        docs: dict[str, tuple[str, dict[str, Any]]] = {}  # sidecar file name -> (its sha256, doc)
        named: dict[str, set[str]] = {}  # call id -> the audio keys its records name
        absent: list[tuple[str, str]] = []  # (call id, key) of recordings a record names and the day lacks

        async def check(call_id: str, revision: int, key: str) -> None:
            async with self._limiter:
                result = await self._check_record(
                    call_id, revision, key, listing, report, absent, deep=deep, sample=sample
                )
            if result is not None:
                docs[key[len(listing.folder) :]] = result
                rec = dayfiles.mapping(result[1].get("recording"))
                if rec.get("status") == "archived":
                    named.setdefault(call_id, set()).add(str(rec.get("key")))

        async with anyio.create_task_group() as tg:
            for call_id, revision, key in listing.sidecar_keys():
                tg.start_soon(check, call_id, revision, key)
        report.calls += len(listing.sidecars)
        erased = _erased(listing, docs)
        report.erased += len(erased)
        stated_audio = {  # recording key -> the SHA-256 the record naming it states
            str(rec["key"]): rec.get("sha256")
            for _, doc in docs.values()
            if (rec := dayfiles.mapping(doc.get("recording"))).get("status") == "archived" and rec.get("key")
        }
        for call_id, key in sorted(absent):
            if key not in erased.get(call_id, {}):
                report.problems.append(Problem(key, "the recording the sidecar names is not in the archive", call_id))
        for call_id, removed in sorted(erased.items()):
            for key, sha in sorted(removed.items()):
                if key in stated_audio and stated_audio[key] != sha:
                    report.problems.append(
                        Problem(key, "the erasure record gives the recording another SHA-256 than its record", call_id)
                    )
            for key in sorted(set(listing.audio.get(call_id, [])) & set(removed)):
                report.problems.append(
                    Problem(
                        key,
                        "the call's recordings were erased, but this one is still in the archive "
                        "(an erase cut short: `archiver erase` again finishes it)",
                        call_id,
                    )
                )
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
            for extra in sorted(set(audio_keys) - named.get(call_id, set())):
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
        gone = {k[len(listing.folder) :]: sha for r in erased.values() for k, sha in r.items()}
        await self._verify_manifests(listing, docs, report, sealed, gone)

    async def _check_record(
        self,
        call_id: str,
        revision: int,
        key: str,
        listing: DayListing,
        report: VerifyReport,
        absent: list[tuple[str, str]],
        *,
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
            absent.append((call_id, str(rec.get("key"))))  # a problem, unless the call was erased
            return digest, doc
        await self._check_recording(call_id, rec, report, rehash=deep or self._rng.random() < sample)
        return digest, doc

    async def _check_recording(self, call_id: str, rec: dict[str, Any], report: VerifyReport, *, rehash: bool) -> None:
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

    async def _verify_manifests(
        self,
        listing: DayListing,
        docs: dict[str, tuple[str, dict[str, Any]]],
        report: VerifyReport,
        sealed: dict[str, list[tuple[int, str]]],
        gone: dict[str, str | None],
    ) -> None:
        """*gone*: recordings erased on request (file name -> the SHA-256 the erasure states)."""
        expected: dict[str, str] = {}
        for name, (sidecar_sha, doc) in docs.items():
            expected[name] = sidecar_sha
            rec = doc.get("recording", {})
            if isinstance(rec, dict) and rec.get("status") == "archived":
                expected[str(rec["key"]).rsplit("/", 1)[-1]] = str(rec.get("sha256"))
        for name in gone:
            expected.pop(name, None)
        covered: set[str] = set()
        stated: dict[str, list[tuple[int, str]]] = {}  # file name -> (set number, SHA-256) of each manifest
        for number, key in listing.manifests.items():  # a set without one: the next run writes it
            raw = await self._store.read(key, MANIFEST_LIMIT)
            digest = hashlib.sha256(raw).hexdigest()
            if sealed.get(key):
                _check_sealed(key, number, digest, sealed[key], report)
            else:
                self._unsealed.append((key, number, digest))
            try:
                entries = dayfiles.parse_manifest(raw.decode())
            except (ValueError, UnicodeDecodeError) as exc:
                report.problems.append(Problem(key, f"the manifest does not parse: {exc}"))
                continue
            for name, digest in entries.items():
                covered.add(name)
                stated.setdefault(name, []).append((number, digest))
        for name, statements in sorted(stated.items()):
            if name in gone:  # erased: every manifest must state what the erasure says was removed
                report.problems += [
                    Problem(listing.folder + name, f"manifest {n} gives an erased recording another SHA-256")
                    for n, digest in statements
                    if digest != gone[name]
                ]
                continue
            self._check_statements(listing, name, statements, expected.get(name), docs, report)
        if listing.sets:
            self._report_unmanifested(listing, docs, set(expected) - covered, report)

    def _check_statements(
        self,
        listing: DayListing,
        name: str,
        statements: list[tuple[int, str]],
        current: str | None,
        docs: dict[str, tuple[str, dict[str, Any]]],
        report: VerifyReport,
    ) -> None:
        """The manifests' word on one file: the last must give the SHA-256 it has now. An earlier
        one may differ only for a record archived again after it was lost from the archive (its
        addendum names the new record); a recording archived again must have the sealed bytes."""
        call_id = name.split(".", maxsplit=1)[0]
        if current is None:
            for number, _ in statements:
                report.problems.append(
                    Problem(listing.folder + name, f"manifest {number} lists a file that is not in the archive")
                )
            return
        number, latest = statements[-1]
        if latest != current:
            report.problems.append(Problem(listing.folder + name, f"manifest {number} gives another SHA-256", call_id))
            return
        replaced = [n for n, digest in statements[:-1] if digest != current]
        if not replaced:
            return
        if name not in docs:  # a recording: what was archived again must be what was sealed
            report.problems.append(
                Problem(
                    listing.folder + name,
                    f"archived again with other bytes than manifest {replaced[0]} sealed for it",
                    call_id,
                )
            )
            return
        stored = docs[name][1].get("archived_at")
        report.history.append(
            Problem(
                listing.folder + name,
                f"lost from the archive and archived again from the PBX on {stored}: manifest {number} seals the "
                f"new record, manifest {replaced[0]} the one it replaced",
                call_id,
            )
        )

    def _report_unmanifested(
        self,
        listing: DayListing,
        docs: dict[str, tuple[str, dict[str, Any]]],
        names: set[str],
        report: VerifyReport,
    ) -> None:
        """Files of a day with day files that no manifest covers: a record stored within
        MANIFEST_GRACE waits for the next addendum; an older one was missed, and is a problem."""
        stale = self._clock.now() - MANIFEST_GRACE
        missed = set()
        for name in sorted(names & docs.keys()):
            doc = docs[name][1]
            stored = _time(doc.get("archived_at"))
            if stored is not None and stored < stale:
                rec = dayfiles.mapping(doc.get("recording"))
                missed |= {name, str(rec.get("key", "")).rsplit("/", 1)[-1]}
                report.problems.append(
                    Problem(
                        listing.folder + name,
                        f"in no manifest, though its day has day files and it was stored on {doc['archived_at']}: "
                        f"`archiver backfill --since {listing.day.isoformat()} "
                        f"--until {(listing.day + timedelta(days=1)).isoformat()}` writes the addendum",
                        name.split(".")[0],
                    )
                )
        report.unmanifested += len(names - missed)


def _erased(listing: DayListing, docs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, dict[str, str | None]]:
    """The calls of the day whose current record says ``erased``: call id -> {key removed: the
    SHA-256 the erasure states for it}."""
    out: dict[str, dict[str, str | None]] = {}
    for call_id, key in listing.sidecars.items():
        found = docs.get(key[len(listing.folder) :])
        rec = dayfiles.mapping(found[1].get("recording")) if found else {}
        if rec.get("status") == "erased":
            out[call_id] = {r.key: r.sha256 for r in removed_by_erasure(rec)}
    return out


def _time(value: Any) -> datetime | None:
    """A record's timestamp, or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _check_sealed(key: str, number: int, digest: str, seals: list[tuple[int, str]], report: VerifyReport) -> None:
    """The manifest *key* must be named by a seal, with the SHA-256 its bytes have now."""
    if not seals:
        report.problems.append(
            Problem(
                key,
                f"manifest {number} is in no seal: written after the last seal (the archiver seals it when it "
                "next closes a day) or by someone else",
            )
        )
    elif all(stated != digest for _, stated in seals):
        report.problems.append(
            Problem(key, f"manifest {number} changed after seal {seals[0][0]} sealed it: its bytes were rewritten")
        )
