"""Read-only views of a period: what the API lists, against what the bucket holds.

The dry run (``backfill --dry-run``) and ``reconcile`` both walk the API's calls of a period
once, de-duplicated across the overlapping minute of neighbouring windows, and look at the
bucket without writing anything, not even the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archiver.audit.verify import Auditor, stored_call_ids
from archiver.core import dayfiles
from archiver.core.cdr import Cdr, parse_row
from archiver.core.windows import plan_windows
from archiver.source.ccall import CcallClient
from archiver.store import Store


@dataclass
class ReconcileReport:
    """The API's calls against the archive's: what each side has that the other lacks."""

    listed: int = 0
    archived: int = 0
    not_archived: list[tuple[str, str]] = field(default_factory=list)  # (day, call id) the PBX has
    not_listed: list[str] = field(default_factory=list)  # archived, but the PBX no longer lists them
    recordings_missing: list[tuple[str, str]] = field(default_factory=list)  # (call id, last error)
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return not self.not_archived and not self.not_listed


class Survey:
    """Compares the calls of one ccall source with one store. Writes nothing."""

    def __init__(
        self, client: CcallClient, store: Store, *, tz: ZoneInfo, prefix: str = "", concurrency: int = 8
    ) -> None:
        self._client = client
        self._store = store
        self._tz = tz
        self._prefix = prefix
        self._auditor = Auditor(store, prefix, concurrency=concurrency)

    async def plan(self, since: datetime, until: datetime) -> dict[date, dict[str, int]]:
        """The dry run: per day, the calls the API lists and how many are already stored.

        Reads the API and lists the bucket; writes nothing, not even the ledger.
        """
        days: dict[date, dict[str, int]] = {}
        stored: dict[date, set[str]] = {}
        async for day, cdr in self.listed_calls(since, until):
            if day not in stored:
                stored[day] = await stored_call_ids(self._store, self._prefix, day)
            counts = days.setdefault(day, {"calls": 0, "recordings": 0, "stored": 0, "to_archive": 0})
            counts["calls"] += 1
            counts["recordings"] += int(cdr.has_recording)
            done = cdr.call_id in stored[day]
            counts["stored"] += int(done)
            counts["to_archive"] += int(not done)
        return dict(sorted(days.items()))

    async def listed_calls(self, since: datetime, until: datetime) -> AsyncIterator[tuple[date, Cdr]]:
        """Each call the API lists as started in ``[since, until)``, once, with the day it is filed under."""
        previous: set[str] = set()
        for window in plan_windows(since, until, self._tz):
            current: set[str] = set()  # neighbouring windows overlap by a minute; no further
            async for row in self._client.cdr_rows(window.query_from, window.query_to):
                cdr = parse_row(row, self._tz)
                if cdr.call_id in current or cdr.call_id in previous or not cdr.started_within((since, until)):
                    continue
                current.add(cdr.call_id)
                yield cdr.day(window.day), cdr
            previous = current

    async def reconcile(self, since: datetime, until: datetime) -> ReconcileReport:
        """Compare what the API lists for ``[since, until)`` with the archive, both ways. Writes nothing."""
        listed: dict[str, date] = {}
        async for day, cdr in self.listed_calls(since, until):
            listed[cdr.call_id] = day
        report = ReconcileReport(listed=len(listed))
        archived: dict[str, dict[str, Any]] = {}
        day = since.astimezone(self._tz).date()
        while day <= (until - timedelta(microseconds=1)).astimezone(self._tz).date():
            for call_id, doc in (await self._auditor.read_sidecars(day)).items():
                start = _parse_utc(dayfiles.mapping(doc.get("call")).get("start_utc"))
                if start is None or since <= start < until:
                    archived[call_id] = doc
            day += timedelta(days=1)
        report.archived = len(archived)
        report.not_archived = sorted((listed[c].isoformat(), c) for c in set(listed) - set(archived))
        report.not_listed = sorted(set(archived) - set(listed))
        for call_id, doc in sorted(archived.items()):
            rec = dayfiles.mapping(doc.get("recording"))
            report.statuses[str(rec.get("status"))] = report.statuses.get(str(rec.get("status")), 0) + 1
            if rec.get("status") == "missing":
                report.recordings_missing.append((call_id, str(dayfiles.mapping(rec.get("last_error")).get("message"))))
        return report


def _parse_utc(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
