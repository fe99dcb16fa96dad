"""Correcting a call's record without overwriting it: ``archiver rearchive``.

A call whose current record says ``missing`` or ``rejected`` (after a PBX outage longer than
``download.missing_after``, or a wrong ``allowed_recording_hosts``), or ``none`` (its link was not
read), has its recording fetched again under today's configuration. When the outcome changes, a
revision is written beside the first record: ``{call_id}.rev{N}.json`` with ``revision``,
``supersedes`` (the key of the record it corrects) and ``reason``; audio it brings goes to
``{call_id}.{ext}`` when the call had none, else ``{call_id}.rev{N}.{ext}``. Earlier records stay
as evidence; nothing is overwritten. A call without a recording that turns out to have had one is
archived under its own call id (its sidecar names the ``nr-`` call in ``supersedes_call``), and
the ``nr-`` call gets a revision with status ``superseded`` pointing at it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from archiver.archive.call import CallArchiver, Parked
from archiver.archive.dayclose import DayCloser
from archiver.archive.outage import StoreOutage
from archiver.core import keys, sidecar
from archiver.core.cdr import Cdr, parse_row, reread
from archiver.core.clock import Clock
from archiver.core.identity import call_id_for_row, legacy_call_id_for_row
from archiver.core.outcome import Missing, Recording, RecordingStatus, Superseded
from archiver.errors import CallError, ObjectExists, RecordingUnavailable, TransientError
from archiver.source.ccall import CcallClient
from archiver.source.fetch import Fetcher
from archiver.source.listed import listed_calls
from archiver.state.ledger import Ledger
from archiver.store import Store, put_bytes
from archiver.store.listing import SIDECAR_LIMIT, DayListing, list_day

log = structlog.get_logger("archiver.archive")

REARCHIVABLE = frozenset({"missing", "rejected", "none"})


@dataclass(frozen=True)
class Revised:
    """A call whose record changed (or, in a dry run, would be read again)."""

    call_id: str
    day: date
    before: str
    after: str | None  # None in a dry run
    key: str  # the revision written, or the one a dry run would write


@dataclass
class RearchiveReport:
    considered: int = 0
    revised: list[Revised] = field(default_factory=list)
    retried: list[Revised] = field(default_factory=list)  # quarantined calls tried again: a first record
    unchanged: list[tuple[str, str]] = field(default_factory=list)  # (call id, status)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (call id, error)

    @property
    def complete(self) -> bool:
        return not self.failed


class Rearchiver:
    """Reads the calls of a range again and writes a revision for each whose outcome changes."""

    def __init__(
        self,
        *,
        client: CcallClient,
        fetcher: Fetcher,
        calls: CallArchiver,
        store: Store,
        ledger: Ledger,
        closer: DayCloser,
        clock: Clock,
        tz: ZoneInfo,
        prefix: str,
        source_info: dict[str, Any],
        outage: StoreOutage,
    ) -> None:
        self._client = client
        self._fetcher = fetcher
        self._calls = calls
        self._store = store
        self._ledger = ledger
        self._closer = closer
        self._clock = clock
        self._tz = tz
        self._prefix = prefix
        self._source_info = source_info
        self._outage = outage

    async def run(
        self, days: list[date], *, statuses: frozenset[str], call_ids: frozenset[str], dry_run: bool
    ) -> RearchiveReport:
        """Re-read the calls of *days* whose current record's status is in *statuses* (or, when
        *call_ids* are named, those calls whatever their status)."""
        report = RearchiveReport()
        for day in days:
            listing = await list_day(self._store, self._prefix, day)
            touched = False
            for call_id, key in sorted(listing.sidecars.items()):
                if call_ids and call_id not in call_ids:
                    continue
                doc = await self._read(key)
                status = str(doc.get("recording", {}).get("status")) if isinstance(doc, dict) else "unreadable"
                if not call_ids and status not in statuses:
                    continue
                if status == "erased":  # erased on request: never fetched back from the PBX
                    report.unchanged.append((call_id, status))
                    continue
                report.considered += 1
                revision = max(listing.revisions[call_id]) + 1
                next_key = keys.sidecar_key(self._prefix, day, call_id, revision)
                if dry_run:
                    report.revised.append(Revised(call_id, day, status, None, next_key))
                    continue
                try:
                    after = await self._revise(call_id, day, doc, status, key, revision, listing)
                except (TransientError, CallError, OSError) as exc:
                    report.failed.append((call_id, str(exc)))
                    log.error("call.rearchive_failed", call_id=call_id, error=str(exc))
                    continue
                if after is None:
                    report.unchanged.append((call_id, status))
                    continue
                touched = True
                report.revised.append(Revised(call_id, day, status, after, next_key))
                log.info("call.revised", call_id=call_id, before=status, after=after, key=next_key)
            touched = await self._retry_quarantined(day, call_ids, dry_run, report) or touched
            if touched:
                await self._closer.write_day_files(day)  # an addendum names the new records
        return report

    async def _retry_quarantined(
        self, day: date, call_ids: frozenset[str], dry_run: bool, report: RearchiveReport
    ) -> bool:
        """Try the day's quarantined calls again now (they have no record yet). True when one was archived."""
        archived = False
        for aside in self._ledger.retries.quarantined_on([day]):
            call_id, filed = aside.call_id, aside.day
            if call_ids and call_id not in call_ids:
                continue
            report.considered += 1
            key = keys.sidecar_key(self._prefix, filed, call_id)
            if dry_run:
                report.retried.append(Revised(call_id, filed, "quarantined", None, key))
                continue
            try:
                outcome = await self._calls.archive(parse_row(aside.row, self._tz), filed, None)
            except (TransientError, CallError, OSError) as exc:
                report.failed.append((call_id, str(exc)))
                continue
            if isinstance(outcome, Parked):
                report.unchanged.append((call_id, "quarantined"))
                continue
            archived = True
            report.retried.append(Revised(call_id, filed, "quarantined", str(outcome.status), key))
        return archived

    async def _read(self, key: str) -> Any:
        try:
            return json.loads(await self._store.read(key, SIDECAR_LIMIT))
        except ValueError:
            return None

    async def _revise(
        self, call_id: str, day: date, doc: Any, before: str, current: str, revision: int, listing: DayListing
    ) -> str | None:
        """Fetch the call's recording again; write a revision when the outcome changed (from *before*,
        the status of its *current* record). Its new status, or None when it stays."""
        if not isinstance(doc, dict) or "cdr" not in doc:
            raise CallError(f"{current} is not a sidecar this archiver can read again")
        cdr = reread(doc["cdr"], self._tz)
        if cdr.recording_url is None and cdr.recording_url_invalid is None:
            return await self._find_recording(call_id, day, current, revision, cdr)
        recording = await self._fetch_again(cdr, day, revision, listing)
        if recording.status == before:
            return None
        reason = f"rearchive: {before} -> {recording.status}, fetched again under the configuration of {self._today()}"
        await self._write_revision(cdr, day, recording, revision, current, reason)
        return str(recording.status)

    async def _fetch_again(self, cdr: Cdr, day: date, revision: int, listing: DayListing) -> Recording:
        # Audio goes to {call_id}.{ext} when the call has none yet, else beside its revision.
        number = revision if listing.audio.get(cdr.call_id) else 1
        try:
            return await self._calls.fetch_recording(cdr, day, audio_revision=number)
        except RecordingUnavailable as exc:
            now = self._clock.now()
            url = str(cdr.recording_url)
            return Missing(url, attempts=1, first_attempt=now, last_attempt=now, gave_up=now, last_error=exc.detail)

    async def _find_recording(self, call_id: str, day: date, current: str, revision: int, old: Cdr) -> str | None:
        """A call archived without a recording: does the API list it with a link now?"""
        since = datetime.combine(day, time(0), self._tz)
        found: Cdr | None = None
        async for _, cdr in listed_calls(self._client, self._tz, since, since + timedelta(days=1)):
            if cdr.recording_url and call_id in (call_id_for_row(cdr.raw), legacy_call_id_for_row(cdr.raw)):
                found = cdr
                break
        if found is None:
            return None  # still listed without a recording (or no longer listed)
        outcome = await self._calls.archive(found, day, None, supersedes_call=current)
        if isinstance(outcome, Parked):
            return None  # its recording is not served yet; the daemon retries it
        target = keys.sidecar_key(self._prefix, found.day(day), found.call_id)
        reason = f"rearchive: the call was found with a recording, as call {found.call_id}"
        await self._write_revision(old, day, Superseded(target), revision, current, reason, call_id=call_id)
        return str(RecordingStatus.SUPERSEDED)

    async def _write_revision(
        self,
        cdr: Cdr,
        day: date,
        recording: Recording,
        revision: int,
        supersedes: str,
        reason: str,
        *,
        call_id: str | None = None,
    ) -> None:
        call_id = call_id or cdr.call_id
        key = keys.sidecar_key(self._prefix, day, call_id, revision)
        body = sidecar.encode(
            sidecar.document(
                cdr,
                recording,
                archived_at=self._clock.now(),
                source=self._source_info,
                revision=sidecar.Revision(revision, supersedes, reason),
                call_id=call_id,  # an nr- call keeps the id it is filed under, whatever its CDR hashes to now
            )
        )

        async def put() -> None:
            try:
                await put_bytes(self._store, key, body, "application/json")
            except ObjectExists:
                log.info("revision.already_stored", key=key)  # a concurrent rearchive wrote it first

        await self._outage.run(put)
        self._ledger.calls.set_status(call_id, str(recording.status))

    def _today(self) -> str:
        return self._clock.now().astimezone(self._tz).date().isoformat()
