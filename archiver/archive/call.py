"""Archiving one call: its recording (if any), then its sidecar, then the ledger.

A call is *done* when its sidecar is stored. A recording the link does not serve yet parks
the call with a retry time until ``download.missing_after`` past its end; then the call is
stored as missing. Every write is create-only: a taken sidecar key means an earlier run got
there first (its document counts), a taken audio key is kept only if its bytes are the ones
served now.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.archive.encrypt import Ciphertext, Encryptor
from archiver.archive.outage import StoreOutage
from archiver.core import dayfiles, keys, sidecar
from archiver.core.audio import CONTENT_TYPES
from archiver.core.cdr import Cdr
from archiver.core.clock import Clock
from archiver.core.outcome import Archived, NoRecording, Recording, Rejected, utc_text
from archiver.core.parking import ParkingSchedule, PendingCall
from archiver.errors import ArchiveConflict, ObjectExists, RecordingError, RecordingRejected, RecordingUnavailable
from archiver.source.fetch import Download, Fetcher
from archiver.state.ledger import Ledger
from archiver.store import Store, put_bytes

log = structlog.get_logger("archiver.archive")


@dataclass(frozen=True)
class Parked:
    """The call waits for its recording until ``next_attempt``; it is not done."""

    next_attempt: datetime


CallOutcome = Recording | Parked


def archived(key: str, download: Download, source_url: str, composite_sha256: str | None = None) -> Archived:
    """The record of a verified download stored under *key* (*composite_sha256*: the store's
    checksum of it, when it went up in parts)."""
    return Archived(
        key=key,
        size=download.size,
        sha256=download.sha256.hex(),
        format=download.format,
        source_url=source_url,
        audio=download.audio.as_dict() if download.audio else None,
        fetched_from=download.url,
        trailing_bytes=download.trailing_bytes,
        composite_sha256=composite_sha256,
    )


class CallArchiver:
    """Archives single calls of one source into one store.

    ``source_info`` goes into each sidecar's ``source`` member. *downloads* bounds how many
    recordings come down at once (the runner has more calls in flight than that, so that one
    call's upload overlaps the next one's download).
    """

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        store: Store,
        ledger: Ledger,
        clock: Clock,
        tz: ZoneInfo,
        prefix: str,
        schedule: ParkingSchedule,
        outage: StoreOutage,
        downloads: anyio.CapacityLimiter,
        source_info: dict[str, Any],
        storage_class: str = "STANDARD",
        encryptor: Encryptor | None = None,
    ) -> None:
        """*encryptor*: recordings are encrypted before they are stored (``storage.encryption``)."""
        self._fetcher = fetcher
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._tz = tz
        self._prefix = prefix
        self._schedule = schedule
        self._outage = outage  # store steps wait out an outage there
        self._downloads = downloads
        self._source_info = source_info
        self._storage_class = storage_class  # of each recording (records stay STANDARD)
        self._encryptor = encryptor

    async def archive(
        self, cdr: Cdr, day: date, pending: PendingCall | None, *, supersedes_call: str | None = None
    ) -> CallOutcome:
        """Store the call's audio (if any) then its sidecar, and record it done; or park it.

        *supersedes_call* names the sidecar of an unrecorded call this one turned out to be.

        Raises TransientError (the store did not answer past its retries), CallError (a
        conflict in the bucket), FatalError, or OSError (the local buffer).
        """
        recording: Recording
        if not cdr.has_recording:
            recording = NoRecording()
        else:
            try:
                recording = await self.fetch_recording(cdr, day)
            except RecordingUnavailable as exc:
                record = self._park(cdr, day, pending, exc)
                if not record.expired():
                    return Parked(record.next_attempt)
                # Never a permanent "missing" over audio a crashed run already stored for the call.
                stored = await self._outage.run(partial(self._stored_audio, cdr, day, record))
                recording = stored or sidecar.missing(str(cdr.recording_url), record)
        entry = await self._store_sidecar(cdr, day, recording, supersedes_call)
        self._ledger.calls.mark_done(cdr.call_id, day, recording.status, self._clock.now(), entry)
        return recording

    async def fetch_recording(self, cdr: Cdr, day: date, *, audio_revision: int = 1) -> Recording:
        """A recorded call's recording: fetched, verified and stored create-only (Archived, its audio
        under revision *audio_revision*'s key), or refused by policy (Rejected).

        Raises RecordingUnavailable when the link does not serve one now: the caller parks the
        call or records it missing. Raises ArchiveConflict when the key holds other bytes.
        """
        url = cdr.recording_url
        if url is None:
            return Rejected(cdr.recording_value, {"kind": "invalid_link", "message": cdr.recording_url_invalid})
        try:
            async with self._downloads:
                download = await self._fetcher.fetch(url)
        except RecordingRejected as exc:
            return Rejected(url, exc.detail)
        with download:
            if self._encryptor is not None:
                key = keys.audio_key(self._prefix, day, cdr.call_id, download.format, audio_revision, encrypted=True)
                put = partial(self._store_audio, key, call_id=cdr.call_id, check_existing=False)
                return await self._encryptor.store(key, download, url, put)
            key = keys.audio_key(self._prefix, day, cdr.call_id, download.format, audio_revision)
            return archived(key, download, url, await self._store_audio(key, download, call_id=cdr.call_id))

    async def _stored_audio(self, cdr: Cdr, day: date, record: PendingCall) -> Archived | None:
        """The audio an earlier run stored for this call and never finished (a crash between the
        audio and the sidecar), read back and verified as a download is; None when there is none.

        Raises ArchiveConflict when the object there is not a whole recording.
        """
        url = str(cdr.recording_url)
        for fmt in CONTENT_TYPES:
            found = await self._stored_encrypted(
                keys.audio_key(self._prefix, day, cdr.call_id, fmt, encrypted=True), url
            )
            if found is not None:
                log.warning("call.completed_from_store", call_id=cdr.call_id, key=found.key, attempts=record.attempts)
                why = (
                    f"stored, encrypted, by an earlier run that did not finish the call; the link has not served the "
                    f"recording since ({record.attempts} tries until {utc_text(record.last_attempt)}); the archiver "
                    "holds no key to check its audio: the plaintext's size and SHA-256 are as its key's label states "
                    "them (`verify --decrypt` proves them)"
                )
                return dataclasses.replace(found, completed_from_store=why)
            key = keys.audio_key(self._prefix, day, cdr.call_id, fmt)
            info = await self._store.head(key)
            if info is None:
                continue
            try:
                download = await self._fetcher.take(self._store.stream(key), url=url)
            except RecordingError as exc:
                raise ArchiveConflict(f"{key} holds bytes that are not a whole recording: {exc}") from None
            with download:
                if download.format != fmt:
                    raise ArchiveConflict(f"{key} holds {download.format.upper()} audio under a .{fmt} name")
                why = (
                    f"stored by an earlier run that did not finish the call; the link has not served the recording "
                    f"since ({record.attempts} tries until {utc_text(record.last_attempt)})"
                )
                log.warning("call.completed_from_store", call_id=cdr.call_id, key=key, attempts=record.attempts)
                stored = archived(key, download, url, info.composite_sha256)
                return dataclasses.replace(stored, completed_from_store=why)
        return None

    async def _stored_encrypted(self, key: str, url: str) -> Archived | None:
        """The encrypted recording an earlier run stored under *key*, as its key's label describes
        it; None when there is none."""
        if await self._store.head(key) is None:
            return None
        if self._encryptor is None:
            raise ArchiveConflict(
                f"{key} holds an encrypted recording an earlier run stored, and storage.encryption is not configured: "
                "its key cannot be looked up; nothing was written"
            )
        return await self._encryptor.earlier(key, url)

    def _park(self, cdr: Cdr, day: date, pending: PendingCall | None, exc: RecordingUnavailable) -> PendingCall:
        """The call's record after this failed try; parked in the ledger unless past its deadline."""
        # A call whose start does not parse ended, at the latest, about when its filing day did.
        ended = cdr.end_utc() or datetime.combine(day + timedelta(days=1), dt_time(0), self._tz)
        record = self._schedule.after_failure(
            call_id=cdr.call_id,
            day=day,
            row=cdr.row,
            ended=ended,
            now=self._clock.now(),
            error=exc.detail,
            previous=pending,
        )
        if record.expired():
            log.warning("call.missing", call_id=cdr.call_id, attempts=record.attempts, error=str(exc))
            return record
        self._ledger.retries.park(record)
        log.info(
            "call.parked",
            call_id=cdr.call_id,
            attempts=record.attempts,
            next_attempt=record.next_attempt.isoformat(),
            error=str(exc),
        )
        return record

    async def _store_audio(
        self, key: str, download: Download | Ciphertext, *, call_id: str, check_existing: bool = True
    ) -> str | None:
        """Store the download (or its ciphertext) create-only; the store's composite checksum of it
        (see Store.put). A taken key is checked here (*check_existing*), else raised as ObjectExists."""
        content_type = CONTENT_TYPES[download.format] if isinstance(download, Download) else "application/octet-stream"

        async def put() -> str | None:
            try:
                return await self._store.put(
                    key,
                    download.file,
                    size=download.size,
                    sha256=download.sha256,
                    content_type=content_type,
                    metadata={"call-id": call_id},
                    storage_class=self._storage_class,
                )
            except ObjectExists:
                if not check_existing or not isinstance(download, Download):
                    raise
                return await self._check_existing_audio(key, download)

        return await self._outage.run(put)

    async def _check_existing_audio(self, key: str, download: Download) -> str | None:
        """An audio object without its sidecar: keep it only if it has the same bytes, read and
        hashed (a checksum in the object's metadata, or one a store keeps unchecked, is only its
        writer's word). Returns the store's composite checksum of it."""
        info = await self._store.head(key)
        if info is None:
            raise ArchiveConflict(f"{key} was reported as existing but cannot be found")
        digest = (await self._store.digest(key))[1] if info.size == download.size else None
        if info.size != download.size or digest != download.sha256:
            raise ArchiveConflict(
                f"{key} already holds {info.size} bytes that differ from the recording now served "
                f"({download.size} bytes, sha256 {download.sha256.hex()[:16]}…); nothing was overwritten"
            )
        log.info("recording.already_stored", key=key)
        return info.composite_sha256

    async def _store_sidecar(
        self, cdr: Cdr, day: date, recording: Recording, supersedes_call: str | None = None
    ) -> dayfiles.CallEntry:
        """Store the sidecar create-only; returns what the day's files will say of the call,
        from the bytes now in the store (an earlier run's, if it got there first)."""
        key = keys.sidecar_key(self._prefix, day, cdr.call_id)
        doc = sidecar.document(
            cdr, recording, archived_at=self._clock.now(), source=self._source_info, supersedes_call=supersedes_call
        )
        data = sidecar.encode(doc)

        async def put() -> dayfiles.CallEntry:
            try:
                await put_bytes(self._store, key, data, "application/json")
            except ObjectExists:
                log.info("sidecar.already_stored", key=key, call_id=cdr.call_id)
                return dayfiles.CallEntry.from_sidecar(cdr.call_id, await self._store.read(key))
            return dayfiles.CallEntry.from_document(cdr.call_id, doc, data)

        return await self._outage.run(put)
