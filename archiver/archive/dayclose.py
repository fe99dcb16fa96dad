"""Closing a day: its manifest, CSV and page, once no call can be added to it by a poll.

A day closes ``close_after`` past its end (the poll's lookback), once none of its calls waits
or fails. A call that arrives after its day was closed gets a numbered addendum: written
files are never rewritten. The manifest is written last, as the set's commit marker, and then
sealed (:class:`~archiver.archive.seal.Sealer`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from archiver.archive.seal import Sealer
from archiver.core import dayfiles
from archiver.errors import CallError, ObjectExists, TransientError
from archiver.state.ledger import Ledger
from archiver.store import Store, put_bytes
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT, list_day

log = structlog.get_logger("archiver.archive")


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
        """Write the next set of day files covering every call not in an earlier manifest.

        *known* holds entries of calls whose sidecar this archiver wrote (from the ledger), so
        that only the others are read back from the store.

        Returns how many calls the day's manifests cover now. Create-only: a file that exists
        (left by an interrupted run) is kept, and the manifest, written last, is the set's marker.
        """
        listing = await list_day(self._store, self._prefix, day)
        covered: set[str] = set()
        digests: dict[str, str] = {}  # manifest key -> SHA-256 of its bytes, for the seal
        for key in listing.manifests.values():
            raw = await self._store.read(key, MANIFEST_LIMIT)
            digests[key] = hashlib.sha256(raw).hexdigest()
            covered |= set(dayfiles.parse_manifest(raw.decode()))
        entries = []
        for call_id, _, key in listing.sidecar_keys():  # every record: a revision gets an addendum too
            name = key[len(listing.folder) :]
            if name in covered:
                continue
            entry = (known or {}).get(call_id)
            if entry is None or entry.sidecar_name != name:
                entry = dayfiles.CallEntry.from_sidecar(call_id, await self._store.read(key, SIDECAR_LIMIT))
            entries.append(entry)
        if not entries:
            await self._seal(digests)  # a seal an interrupted run did not write
            return len(listing.sidecars)
        number = max(listing.manifests, default=0) + 1
        manifest_name, csv_name, page_name = dayfiles.file_names(number)
        written = set()
        for name, data, kind in (
            (csv_name, dayfiles.calls_csv(entries), "text/csv; charset=utf-8"),
            (page_name, dayfiles.index_html(day, entries, number=number), "text/html; charset=utf-8"),
            (manifest_name, dayfiles.manifest(entries), "text/plain; charset=utf-8"),
        ):
            key = listing.folder + name
            try:
                await put_bytes(self._store, key, data, kind)
                written.add(key)
            except ObjectExists:
                log.warning("day_file.already_stored", key=key)
                if name == manifest_name:  # seal what an interrupted run left, not what we meant to write
                    data = await self._store.read(key, MANIFEST_LIMIT)
            if name == manifest_name:
                digests[key] = hashlib.sha256(data).hexdigest()
        log.info("day.closed", day=day.isoformat(), set=number, calls=len(entries))
        await self._seal(digests, fresh=written)
        return len(listing.sidecars)

    async def _seal(self, digests: dict[str, str], *, fresh: Collection[str] = ()) -> None:
        """Seal the day's manifests; one this run has just written needs only the chain's head."""
        if self._sealer is not None and digests:
            await self._sealer.seal(digests, fresh=fresh)
