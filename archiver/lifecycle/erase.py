"""``archiver erase``: removing one call's recordings on request, with a record that says so.

A data subject's request or a court order asks for a call's recording to go. The call's record
stays (the CDR is the call log the archive must keep); its recordings go, every version of
each, and a revision says what became of them: ``recording.status`` ``erased``, the reason,
the time, and the size and SHA-256 of each object removed. The revision is written first, so a
recording is never gone without its record; an erase interrupted after it is finished by the
next (the call is erased already: only what is left is removed). On a closed day, an addendum
manifest and its seal take in the revision at once.

Object Lock decides first, before anything is written: COMPLIANCE retention and legal holds
refuse the erase (the lock's end, or the hold, is named); GOVERNANCE retention is lifted only
with ``--bypass-governance``. Then, on S3, the removal itself is tried on a throwaway object (the
credentials may lack s3:DeleteObjectVersion, or s3:BypassGovernanceRetention): a refusal is an
EraseNotPermitted, and nothing is written. The addendum's seal states the archive's zone
(:mod:`archiver.archive.zone`), never another.

An encrypted recording (``storage.encryption``) is erased by destroying its key instead
(crypto-shredding): every version of its key objects (and labels) in the keys store, listed in
the revision before they are removed, with the recording's ciphertext digest. The recording is
not touched, so no lock on it stands in the way; it stays, intact and unreadable. Before anything
is written, the keys store must show that it deletes (a probe object written and removed there).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from archiver.archive.dayclose import DayCloser
from archiver.archive.seal import Sealer
from archiver.archive.zone import archive_zone
from archiver.audit.catalog import Catalog
from archiver.config.models import DEFAULT_TIMEZONE
from archiver.core import dayfiles, keys, sidecar
from archiver.core.clock import Clock
from archiver.core.outcome import Erased, RemovedObject, Shredded, removed_by_erasure, shredded_by_erasure
from archiver.errors import (
    ArchiverError,
    FatalError,
    ObjectExists,
    ObjectInColdStorage,
    StoreAccessError,
    StoreUnavailable,
    TransientError,
)
from archiver.state.ledger import Ledger
from archiver.store import Hold, Store, StoredVersion, put_bytes
from archiver.store.keys import KeyStore
from archiver.store.listing import SIDECAR_LIMIT, list_day
from archiver.store.s3 import S3Store

log = structlog.get_logger("archiver.erase")


class EraseRefused(ArchiverError):
    """Object Lock (or the call's state) does not let the erase go ahead; nothing was written."""


class EraseNotPermitted(EraseRefused, FatalError):
    """The store's credentials may not carry the removal out (a permission a person must grant:
    exit 2, as every refused permission); nothing was written."""


@dataclass
class EraseReport:
    call_id: str
    day: str
    revision_key: str  # the erasure record (written now, or by an earlier erase)
    removed: list[RemovedObject] = field(default_factory=list)  # what the record says was removed
    shredded: list[Shredded] = field(default_factory=list)  # encrypted recordings whose keys go
    versions_removed: int = 0
    key_versions_removed: int = 0
    already_erased: bool = False
    dry_run: bool = False
    held: list[Hold] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "day": self.day,
            "revision_key": self.revision_key,
            "removed": [r.to_json() for r in self.removed],
            "crypto_shredded": [r.to_json() for r in self.shredded],
            "versions_removed": self.versions_removed,
            "key_versions_removed": self.key_versions_removed,
            "already_erased": self.already_erased,
            "dry_run": self.dry_run,
            "held": [str(h) for h in self.held],
        }


class Eraser:
    """Erases calls of the archive under *prefix*, in the archive's zone, with a catalog, a day
    closer and a sealer of its own: *tz* is the zone the configuration names (None: it names
    none). Throwaway probes go under *control_prefix* (default ``{prefix}/_archiver``). *keys*:
    the keys store of encrypted recordings (None: storage.encryption is not set)."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        *,
        tz: ZoneInfo | None,
        clock: Clock,
        concurrency: int = 8,
        control_prefix: str | None = None,
        keys: KeyStore | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._prefix = prefix
        self._tz = tz
        self._clock = clock
        self._concurrency = concurrency
        self._control = "/".join(p for p in (prefix, "_archiver") if p) if control_prefix is None else control_prefix
        self._parts: tuple[Catalog, DayCloser] | None = None

    async def _in_zone(self) -> tuple[Catalog, DayCloser]:
        """The catalog and the day closer (its sealer stating the zone), in the archive's zone:
        the seals' (a ConfigError, before anything is written, where the configuration names
        another); the configuration's, else the default, where no seal states one."""
        if self._parts is None:
            settled = await archive_zone(self._store, self._prefix, self._tz, concurrency=self._concurrency)
            tz = settled or ZoneInfo(DEFAULT_TIMEZONE)  # to find the call; a seal never states a guessed zone
            closer = DayCloser(
                self._store,
                Ledger.in_memory(store_identity="erase"),  # write_day_files reads the day from the store
                prefix=self._prefix,
                tz=tz,
                close_after=timedelta(0),  # unused: it closes one given day, never the days that are due
                sealer=Sealer(
                    self._store,
                    self._prefix,
                    self._clock,
                    concurrency=self._concurrency,
                    timezone=settled.key if settled else None,
                ),
            )
            self._parts = (Catalog(self._store, self._prefix, tz, concurrency=self._concurrency), closer)
        return self._parts

    async def erase(self, call_id: str, reason: str, *, bypass_governance: bool, dry_run: bool) -> EraseReport:
        """Erase *call_id*'s recordings. Raises EraseRefused (nothing written) when the call is not
        in the archive, a lock forbids it or the store will not carry the removal out; ConfigError
        (nothing written) when the configuration names another zone than the archive's seals."""
        catalog, _ = await self._in_zone()
        files = await catalog.locate(call_id)
        if files is None:
            raise EraseRefused(f"no call {call_id} in {self._store.description}; nothing was written")
        docs = {n: await self._read(key) for n, key in files.records.items()}
        current_number = max(docs)
        current = docs[current_number]
        rec = dayfiles.mapping(current.get("recording"))
        # Only this call's own recordings, in its day's folder: a record naming another call's (someone
        # wrote it) never makes an erase remove that call's recording.
        folder = keys.day_prefix(self._prefix, files.day)
        stated = {k: v for k, v in _stated(docs).items() if _own(k, call_id, folder)}
        every = sorted({k for k in files.audio if _own(k, call_id, folder)} | set(stated))
        targets = [k for k in every if not k.endswith(keys.ENCRYPTED)]
        # Encrypted: their keys go, not they; only a recording's own (a record naming anything else is not followed).
        sealed = [k for k in every if k not in targets]
        day = files.day.isoformat()
        if sealed and self._keys is None:
            raise EraseRefused(
                f"call {call_id}'s recordings are encrypted, and this configuration sets no storage.encryption: "
                "their keys (in storage.encryption.keys_url) cannot be destroyed; nothing was written"
            )
        if rec.get("status") == "erased":  # an earlier erase: finish what it left
            report = EraseReport(call_id, day, files.current_key, already_erased=True, dry_run=dry_run)
            report.removed = list(removed_by_erasure(rec))
            report.shredded = list(shredded_by_erasure(rec))
            shred = {s.key for s in report.shredded}
            unlisted = [k for k in sealed if k not in shred]
            if unlisted:
                raise EraseRefused(
                    f"call {call_id} is recorded erased in {files.current_key}, but that erasure does not list "
                    f"{', '.join(unlisted)}: its keys were not destroyed by it; run archiver verify (someone else "
                    "wrote a record of the day), and erase the call again once the record is put right; "
                    "nothing was written"
                )
            plain = [k for k in targets if k not in shred]
            left = await self._key_versions(sealed)
            if not dry_run and left:  # first: no lock on a recording stands in the way of its keys
                await self._shred(report, left)
            bypass = await self._check_holds(plain, bypass_governance)
            if not dry_run and plain:
                await self._remove(report, plain, bypass)
            if not dry_run:  # the addendum, if the erase stopped before it
                await self._close_if_closed(files.day)
            return report
        if not every:
            raise EraseRefused(
                f"call {call_id} has no recording in the archive (its record says {rec.get('status')}); "
                "nothing was written"
            )
        next_key = keys.sidecar_key(self._prefix, files.day, call_id, current_number + 1)
        report = EraseReport(call_id, day, next_key, dry_run=dry_run)
        report.removed = [await self._described(key, stated) for key in targets]
        versions = await self._key_versions(sealed)
        for key in sealed:
            described = await self._described(key, stated)
            destroyed = tuple((v.key, v.version_id) for v in versions if not v.deleted and _of(v, key, self._keys))
            report.shredded.append(Shredded(key, described.size, described.sha256, destroyed))
        keyless = [s.key for s in report.shredded if not s.key_objects]
        if keyless:
            raise EraseRefused(
                f"no key of {', '.join(keyless)} is in {self._keys.description if self._keys else 'the keys store'}: "
                "is storage.encryption.keys_url the archive's keys store? (verify names a key that is gone); "
                "nothing was written"
            )
        bypass = await self._check_holds(targets, bypass_governance)
        if dry_run:
            return report
        if sealed:
            await self._check_keys_deletable(versions, sealed[0])
        if targets:
            await self._may_remove(bypass)
        erased = Erased(
            reason=reason,
            erased_at=self._clock.now(),
            removed=tuple(report.removed),
            crypto_shredded=tuple(report.shredded),
        )
        body = sidecar.revised(
            current,
            erased,
            revision=sidecar.Revision(current_number + 1, files.current_key, f"erase: {reason}"),
            archived_at=self._clock.now(),
        )
        try:
            await put_bytes(self._store, next_key, body, "application/json")
        except ObjectExists:
            raise EraseRefused(
                f"{next_key} was written by someone else while this erase ran; run the erase again"
            ) from None
        log.info(
            "call.erased",
            call_id=call_id,
            day=day,
            revision=next_key,
            recordings=len(report.removed),
            crypto_shredded=len(report.shredded),
        )
        if versions:  # first: no lock on a recording stands in the way of its keys
            await self._shred(report, versions)
            # Keys written after the listing (a rekey running beside this erase) go too.
            if later := await self._key_versions(sealed):
                await self._shred(report, later)
        if targets:
            await self._remove(report, targets, bypass)
        await self._close_if_closed(files.day)
        return report

    async def _key_versions(self, recordings: list[str]) -> list[StoredVersion]:
        """Every version of every key object and label of *recordings* (encrypted) in the keys store."""
        if self._keys is None:
            return []
        found: list[StoredVersion] = []
        for key in recordings:
            found += await self._keys.versions_of(self._keys.stem(key))
        return found

    async def _check_keys_deletable(self, versions: list[StoredVersion], recording: str) -> None:
        """Before anything is written: the keys store holds no key under Object Lock, and deletes
        (a probe object beside the recording's keys, written and removed)."""
        assert self._keys is not None
        held = await self._keys.store.holds(sorted({v.key for v in versions}))
        if held:
            raise StoreAccessError(
                "the keys store keeps " + "; ".join(map(str, held)) + ": the bucket of storage.encryption.keys_url "
                "must have no retention and no legal holds (its keys must be deletable); nothing was written"
            )
        probe = f"{self._keys.stem(recording)}.erase-probe-{uuid.uuid4().hex}"
        await self._keys.put(probe, b"archiver erase: may keys be deleted here?\n")
        try:
            probed = await self._keys.remove([probe])
        except StoreAccessError as exc:
            raise StoreAccessError(
                f"the keys store refused to delete (storage.encryption.keys_url: {exc}); the erase destroys keys, so "
                "these credentials need s3:DeleteObject and s3:DeleteObjectVersion there; nothing was written "
                f"(the probe object {probe} is left)"
            ) from None
        if probed.held:
            raise StoreAccessError(
                f"the keys store keeps what is written there ({'; '.join(map(str, probed.held))}): the bucket of "
                "storage.encryption.keys_url must have no default retention (its keys must be deletable); "
                "nothing was written"
            )

    async def _shred(self, report: EraseReport, versions: list[StoredVersion]) -> None:
        """Destroy the listed versions of the keys; the keys store keeping one is a configuration error."""
        assert self._keys is not None
        try:
            removal = await self._keys.remove_versions(versions)
        except StoreAccessError as exc:
            raise StoreAccessError(
                f"the erasure is recorded in {report.revision_key}, but the keys store refused to destroy the keys "
                f"(storage.encryption.keys_url: {exc}): run the erase again once it deletes"
            ) from None
        except TransientError as exc:
            raise StoreUnavailable(
                f"the erasure is recorded in {report.revision_key}, but the keys store did not destroy the keys "
                f"(storage.encryption.keys_url: {exc}): run the erase again"
            ) from None
        report.key_versions_removed += removal.removed
        if removal.held:
            raise StoreAccessError(
                f"the erasure is recorded in {report.revision_key}, but the keys store keeps "
                + "; ".join(map(str, removal.held))
                + ": the bucket of storage.encryption.keys_url must have no retention; lift it, then erase again"
            )
        log.info("call.keys_destroyed", call_id=report.call_id, versions=removal.removed)

    async def _close_if_closed(self, day: date) -> None:
        """A closed day's addendum and seal take in the erasure now. The day is listed again after
        the revision: one that closed while this erase ran is closed again, and its addendum names
        the revision (a listing from before would have missed the day files)."""
        if (await list_day(self._store, self._prefix, day)).sets:
            _, closer = await self._in_zone()
            await closer.write_day_files(day)

    async def _read(self, key: str) -> dict[str, Any]:
        try:
            doc = json.loads(await self._store.read(key, SIDECAR_LIMIT))
        except ValueError:
            raise EraseRefused(f"{key} is not valid JSON; run archiver verify; nothing was written") from None
        if not isinstance(doc, dict):
            raise EraseRefused(f"{key} is not a record this archiver wrote; nothing was written")
        return doc

    async def _described(self, key: str, stated: dict[str, tuple[int | None, str | None]]) -> RemovedObject:
        """What is removed under *key*: as its record states it, else as its bytes are now."""
        if key in stated:
            return RemovedObject(key, *stated[key])
        info = await self._store.head(key)
        if info is not None and info.sha256 is not None:
            return RemovedObject(key, info.size, info.sha256.hex())
        try:
            size, digest = await self._store.digest(key)
        except ObjectInColdStorage:
            return RemovedObject(key, info.size if info else None, None)
        return RemovedObject(key, size, digest.hex())

    async def _check_holds(self, targets: list[str], bypass_governance: bool) -> bool:
        """Refuse where a lock forbids the removal; whether it must bypass GOVERNANCE retention (the
        bypass is sent only then: credentials without s3:BypassGovernanceRetention still erase what
        no lock holds, --bypass-governance or not)."""
        holds = await self._store.holds(targets) if targets else []
        fixed = [h for h in holds if not h.governance_only]
        if fixed:
            raise EraseRefused(
                "Object Lock does not let this call be erased: "
                + "; ".join(map(str, fixed))
                + " (COMPLIANCE retention and legal holds are lifted by nobody here); nothing was written"
            )
        if holds and not bypass_governance:
            raise EraseRefused(
                "; ".join(map(str, holds)) + ": GOVERNANCE retention; erase with --bypass-governance "
                "(needs s3:BypassGovernanceRetention); nothing was written"
            )
        return bool(holds)

    async def _may_remove(self, bypass: bool) -> None:
        """On S3, the removal is tried first on a throwaway object under the control folder
        (``check/erase-<uuid>.txt``, beside ``check``'s probes, apart from leases and claims): no
        lock setting shows credentials without s3:DeleteObjectVersion (or s3:BypassGovernanceRetention),
        and "erased" is written only when the store will carry the erasure out. Raises
        EraseNotPermitted. (A folder's recordings go by the permission the revision is written by.)"""
        if not isinstance(self._store, S3Store):
            return
        try:
            await self._store.may_remove(f"{self._control}/check/erase-{uuid.uuid4()}.txt", bypass_governance=bypass)
        except StoreAccessError as exc:
            log.warning("erase.refused", error=str(exc))
            raise EraseNotPermitted(f"{exc}; grant it, then erase again; nothing was written") from None

    async def _remove(self, report: EraseReport, targets: list[str], bypass_governance: bool) -> None:
        removal = await self._store.remove(targets, bypass_governance=bypass_governance)
        report.versions_removed += removal.removed
        report.held = removal.held
        if removal.held:
            raise EraseRefused(
                "the erasure is recorded, but the store kept "
                + "; ".join(map(str, removal.held))
                + ": run the erase again once it can be removed"
            )


def _stated(docs: dict[int, dict[str, Any]]) -> dict[str, tuple[int | None, str | None]]:
    """The recordings the records name: key -> (size, SHA-256) as stated."""
    out: dict[str, tuple[int | None, str | None]] = {}
    for doc in docs.values():
        rec = dayfiles.mapping(doc.get("recording"))
        if rec.get("status") == "archived" and isinstance(rec.get("key"), str):
            size, sha = rec.get("size"), rec.get("sha256")
            out[rec["key"]] = (size if isinstance(size, int) else None, sha if isinstance(sha, str) else None)
    return out


def _own(key: str, call_id: str, folder: str) -> bool:
    """Whether *key* is one of *call_id*'s recordings, in its day's *folder*."""
    parsed = keys.parse_call_key(key)
    return parsed is not None and parsed.call_id == call_id and key.startswith(folder) and parsed.ext != "json"


def _of(version: StoredVersion, recording: str, keys_store: KeyStore | None) -> bool:
    """Whether *version* is of one of *recording*'s keys."""
    return keys_store is not None and version.key.startswith(keys_store.stem(recording) + ".")
