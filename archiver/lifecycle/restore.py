"""``archiver restore``: bringing recordings in an archive tier back to where they can be read.

A recording in GLACIER or DEEP_ARCHIVE (or an archive tier of INTELLIGENT_TIERING) cannot be
played, exported or re-hashed until a copy is restored. For each call this asks the store for
that copy (Standard retrieval: hours, not minutes) and says where the call stands: requested,
in progress, readable until a date, or readable already.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import structlog

from archiver.audit.catalog import Catalog, Query
from archiver.core import dayfiles
from archiver.store import Store
from archiver.store.listing import SIDECAR_LIMIT

log = structlog.get_logger("archiver.restore")


@dataclass(frozen=True)
class RestoreState:
    """Where one call's recording stands."""

    call_id: str
    key: str | None  # the recording, None when the call has none
    state: str  # requested, in progress, readable until …, readable, no recording …

    def as_dict(self) -> dict[str, str | None]:
        return {"call_id": self.call_id, "key": self.key, "state": self.state}


class Restorer:
    def __init__(self, store: Store, catalog: Catalog) -> None:
        self._store = store
        self._catalog = catalog

    async def calls(self, call_ids: list[str], days: int) -> list[RestoreState]:
        """Restore the current recording of each of *call_ids*."""
        out = []
        for call_id in call_ids:
            files = await self._catalog.locate(call_id)
            if files is None:
                out.append(RestoreState(call_id, None, "not in the archive"))
                continue
            entry = dayfiles.CallEntry.from_sidecar(call_id, await self._store.read(files.current_key, SIDECAR_LIMIT))
            out.append(await self._one(call_id, entry, days))
        return out

    async def range(self, days_of: list[date], days: int) -> list[RestoreState]:
        """Restore the recordings of every archived call of *days_of*."""
        found = await self._catalog.find(Query(statuses=frozenset({"archived"})), days=days_of)
        return [await self._one(f.entry.call_id, f.entry, days) for f in found]

    async def _one(self, call_id: str, entry: dayfiles.CallEntry, days: int) -> RestoreState:
        key = entry.recording_key if entry.recording_status == "archived" else None
        if key is None:
            status = entry.recording_status
            return RestoreState(call_id, None, f"no recording to restore (the call's record says {status})")
        info = await self._store.head(key)
        if info is None:
            return RestoreState(call_id, key, "the recording is not in the archive (archiver verify says more)")
        if not info.in_archive_tier:
            return RestoreState(call_id, key, f"readable ({info.storage_class or 'STANDARD'})")
        until = info.restored_until
        if until is not None:
            return RestoreState(call_id, key, f"readable until {until.isoformat(timespec='minutes')}")
        if info.restoring:
            return RestoreState(call_id, key, "in progress")
        await self._store.restore(key, days)
        log.info("recording.restore_requested", call_id=call_id, key=key, days=days, storage_class=info.storage_class)
        after = await self._store.head(key)  # some stores (and moto) restore at once
        if after is not None and after.restored_until is not None:
            ready = after.restored_until.isoformat(timespec="minutes")
            return RestoreState(call_id, key, f"requested; readable until {ready}")
        return RestoreState(call_id, key, f"requested ({info.storage_class}: Standard retrieval takes hours)")
