"""Closing a day: its manifest, CSV and page, once no call can be added to it by a poll.

A day closes ``close_after`` past its end (the poll's lookback), once none of its calls waits
or fails. A call that arrives after its day was closed gets a numbered addendum: written
files are never rewritten. The manifest is written last, as the set's commit marker, and then
sealed (:class:`~archiver.archive.seal.Sealer`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from archiver.archive.seal import Sealer
from archiver.core import cdr, dayfiles, keys, revisions
from archiver.errors import CallError, ObjectExists, TransientError
from archiver.state.ledger import Ledger
from archiver.store import Store, put_bytes
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT, DayListing, list_day

log = structlog.get_logger("archiver.archive")

# Each round of a close writes a set or finds one another writer wrote; this many rounds means
# the day's folder keeps changing under it, and the close is tried again on the next run.
_MAX_SETS_PER_CLOSE = 50


class DayCloser:
    """Writes the day files of the days the ledger says are complete."""

    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        *,
        prefix: str,
        tz: ZoneInfo,
        close_after: timedelta,
        sealer: Sealer | None = None,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._prefix = prefix
        self._tz = tz
        self._close_after = close_after
        self._sealer = sealer

    async def close_days(self, now: datetime) -> None:
        """Write the day files of every day that closed with calls not yet in one.

        A day whose files cannot be written now stays open, and the next run tries again.
        """
        before = (now - self._close_after).astimezone(self._tz).date()
        for day in self._ledger.days.days_to_close(before):
            try:
                covered = await self.write_day_files(day, self._ledger.days.entries(day))
            except (TransientError, CallError) as exc:
                log.warning("day.close_failed", day=day.isoformat(), error=str(exc))
                continue
            self._ledger.days.set_covered(day, covered)

    async def write_day_files(self, day: date, known: dict[str, dayfiles.CallEntry] | None = None) -> int:
        """Write the next sets of day files until every record of *day* is in a manifest.

        *known* holds entries of calls whose sidecar this archiver wrote (from the ledger), so
        that only the others are read back from the store; a known record whose bytes differ
        from what a manifest states for its name (a call archived again after it was lost) is
        not covered by that manifest, and goes in the next set.

        Other writers may close the same day at the same moment (``--processes``, overlapping
        backfills, a lease handover). The set a number names is whatever its first file, the
        CSV, lists: a writer that finds it stored by another completes that set, then lists
        again and numbers its own calls after it. So every record ends in exactly one manifest.

        Returns how many calls the day's manifests cover, as the last listing shows. Create-only:
        a file that exists is kept, and the manifest, written last, is the set's marker.
        """
        written: set[str] = set()
        for _ in range(_MAX_SETS_PER_CLOSE):
            listing = await list_day(self._store, self._prefix, day)
            stated, digests = await self._manifests(listing)
            pending = await self._pending(listing, stated, known or {})
            if not pending:
                await self._seal(digests, fresh=written)  # seals an interrupted run did not write, too
                return len(listing.sidecars)
            number = max(listing.manifests, default=0) + 1
            manifest_key = await self._write_set(day, listing, number, pending)
            if manifest_key is not None:
                written.add(manifest_key)
        raise TransientError(f"the day files of {day.isoformat()} kept changing while they were written")

    async def _manifests(self, listing: DayListing) -> tuple[dict[str, str], dict[str, str]]:
        """What the day's manifests state (file name -> SHA-256, the latest set's word for a name
        listed twice) and the SHA-256 of each manifest's own bytes, for the seal."""
        stated: dict[str, str] = {}
        digests: dict[str, str] = {}
        for key in listing.manifests.values():  # in set order
            raw = await self._store.read(key, MANIFEST_LIMIT)
            digests[key] = hashlib.sha256(raw).hexdigest()
            try:
                stated.update(dayfiles.parse_manifest(raw.decode()))
            except (ValueError, UnicodeDecodeError) as exc:
                raise CallError(f"{key} does not parse ({exc}); run archiver verify") from None
        return stated, digests

    async def _pending(
        self, listing: DayListing, stated: dict[str, str], known: dict[str, dayfiles.CallEntry]
    ) -> dict[str, dayfiles.CallEntry]:
        """The records no manifest covers yet, by file name (every record: a revision gets an
        addendum too)."""
        pending: dict[str, dayfiles.CallEntry] = {}
        for call_id, revision, key in listing.sidecar_keys():
            name = key[len(listing.folder) :]
            entry = known.get(call_id)
            if entry is not None and entry.sidecar_name != name:
                entry = None
            if name in stated and (entry is None or entry.sidecar_sha256 == stated[name]):
                continue
            entry = entry or await self._entry(listing, call_id, revision, key)
            if entry is not None:
                pending[name] = entry
        return pending

    async def _entry(self, listing: DayListing, call_id: str, revision: int, key: str) -> dayfiles.CallEntry | None:
        """The day files' entry of a record read back from the store; None (and a warning) for one
        the archiver did not write: not a sidecar document, or a revision it never writes
        (:mod:`archiver.core.revisions`). The day's manifests leave it out; ``verify`` names it."""
        raw = await self._store.read(key, SIDECAR_LIMIT)
        try:
            doc = dayfiles.mapping(json.loads(raw))
            previous = listing.revisions.get(call_id, {}).get(revision - 1)
            if revision > 1:
                wrong = "it supersedes no record" if previous is None else await self._revision_fault(previous, doc)
                if wrong:
                    log.warning("day.record_refused", key=key, reason=f"not a revision the archiver writes: {wrong}")
                    return None
            return dayfiles.CallEntry.from_document(call_id, doc, raw)
        except ValueError as exc:
            log.warning("day.record_refused", key=key, reason=f"not a sidecar document: {exc}")
            return None

    async def _revision_fault(self, previous: str, doc: dict[str, Any]) -> str | None:
        before = dayfiles.mapping(json.loads(await self._store.read(previous, SIDECAR_LIMIT)))
        return revisions.fault(before, doc, read_call=lambda stored: cdr.reread(stored, self._tz).call_summary())

    async def _write_set(
        self, day: date, listing: DayListing, number: int, pending: dict[str, dayfiles.CallEntry]
    ) -> str | None:
        """Write set *number*: its CSV, page and manifest. Returns the manifest's key when this
        writer stored it, None when another had (or it was left by an interrupted run)."""
        csv_name, page_name, manifest_name = _names(number)
        entries = list(pending.values())
        data = dayfiles.calls_csv(entries)
        csv_key = listing.folder + csv_name
        try:
            await put_bytes(self._store, csv_key, data, "text/csv; charset=utf-8")
        except ObjectExists:
            stored = await self._store.read(csv_key, MANIFEST_LIMIT)
            if stored != data:  # another writer's set, or an interrupted run's: it is what N names
                entries = await self._adopt(listing, csv_key, stored, pending)
                log.info("day_file.set_taken", key=csv_key, calls=len(entries))
        mine = None
        for name, body, kind in (
            (page_name, dayfiles.index_html(day, entries, number=number), "text/html; charset=utf-8"),
            (manifest_name, dayfiles.manifest(entries), "text/plain; charset=utf-8"),
        ):
            key = listing.folder + name
            try:
                await put_bytes(self._store, key, body, kind)
                mine = key if name == manifest_name else mine
            except ObjectExists:
                log.info("day_file.already_stored", key=key)
        if mine is not None:
            log.info("day.closed", day=day.isoformat(), set=number, calls=len(entries))
        return mine

    async def _adopt(
        self, listing: DayListing, csv_key: str, stored: bytes, pending: dict[str, dayfiles.CallEntry]
    ) -> list[dayfiles.CallEntry]:
        """The entries of the set a stored CSV lists, built from the records it names."""
        try:
            rows = [dayfiles.CallEntry.from_csv_row(row) for row in dayfiles.parse_calls_csv(stored)]
        except (ValueError, UnicodeDecodeError) as exc:
            raise CallError(f"{csv_key} does not parse ({exc}); run archiver verify") from None
        records = {key for _, _, key in listing.sidecar_keys()}
        entries = []
        for row in rows:
            name = row.sidecar_name
            if name in pending:
                entries.append(pending[name])
                continue
            if listing.folder + name not in records:  # stored after our listing, by the writer of that set?
                records = {key for _, _, key in (await list_day(self._store, self._prefix, listing.day)).sidecar_keys()}
            if listing.folder + name not in records:
                raise CallError(f"{csv_key} lists {name}, which is not a record of the day; run archiver verify")
            parsed = keys.parse_call_key(listing.folder + name)
            entry = await self._entry(listing, row.call_id, parsed.revision if parsed else 1, listing.folder + name)
            if entry is None:
                raise CallError(
                    f"{csv_key} lists {name}, which is not a record the archiver writes; run archiver verify"
                )
            entries.append(entry)
        return entries

    async def _seal(self, digests: dict[str, str], *, fresh: Collection[str] = ()) -> None:
        """Seal the day's manifests; one this run has just written needs only the chain's head."""
        if self._sealer is not None and digests:
            await self._sealer.seal(digests, fresh=fresh)


def _names(number: int) -> tuple[str, str, str]:
    """Set *number*'s files in the order they are written: CSV, page, manifest (the marker)."""
    manifest_name, csv_name, page_name = dayfiles.file_names(number)
    return csv_name, page_name, manifest_name
