"""``reconcile``: the calls the API lists for a period against the calls the archive holds, both ways.

Reads the API and the bucket; writes nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio

from archiver.core import dayfiles, keys
from archiver.core.identity import call_id_for_row
from archiver.source.ccall import CcallClient
from archiver.source.listed import listed_calls
from archiver.store import Store
from archiver.store.listing import read_sidecars
from archiver.store.seals import read_chain


@dataclass
class ReconcileReport:
    """The API's calls against the archive's: what each side has that the other lacks."""

    listed: int = 0
    archived: int = 0
    not_archived: list[tuple[str, str]] = field(default_factory=list)  # (day, call id) the PBX has
    not_listed: list[str] = field(default_factory=list)  # archived, but the PBX no longer lists them
    recordings_missing: list[tuple[str, str]] = field(default_factory=list)  # (call id, last error)
    statuses: dict[str, int] = field(default_factory=dict)
    expired: list[tuple[str, str]] = field(default_factory=list)  # (day, call id) the PBX lists on expired days

    @property
    def consistent(self) -> bool:
        return not self.not_archived and not self.not_listed

    def fill_command(self, config: str, source: str | None = None) -> str | None:
        """The backfill that archives every call the PBX lists and the archive lacks (while the
        PBX still serves it), over just the days they are in; None when none is lacking."""
        if not self.not_archived:
            return None
        first = date.fromisoformat(self.not_archived[0][0])
        last = max(date.fromisoformat(day) for day, _ in self.not_archived)
        only = f" --source {shlex.quote(source)}" if source else ""
        return (
            f"archiver backfill -c {shlex.quote(config)}{only} --since {first.isoformat()} "
            f"--until {(last + timedelta(days=1)).isoformat()}"
        )


async def reconcile(
    client: CcallClient,
    store: Store,
    *,
    tz: ZoneInfo,
    prefix: str,
    since: datetime,
    until: datetime,
    concurrency: int = 8,
) -> ReconcileReport:
    """Compare what the API lists for ``[since, until)`` with the archive, both ways. Writes nothing."""
    limiter = anyio.CapacityLimiter(concurrency)
    listed: dict[str, date] = {}
    async for day, cdr in listed_calls(client, tz, since, until):
        listed[cdr.call_id] = day
    report = ReconcileReport(listed=len(listed))
    gone = (await read_chain(store, prefix, concurrency=concurrency)).expired()  # days removed under retention
    for call_id, day in list(listed.items()):
        if keys.day_prefix(prefix, day) in gone:
            report.expired.append((day.isoformat(), call_id))
            del listed[call_id]
    archived: dict[str, dict[str, Any]] = {}
    day = since.astimezone(tz).date()
    while day <= (until - timedelta(microseconds=1)).astimezone(tz).date():
        for call_id, doc in (await read_sidecars(store, prefix, day, limiter)).items():
            if dayfiles.mapping(doc.get("recording")).get("status") == "superseded":
                continue  # the same call is archived under its own id, with its recording
            start = _parse_utc(dayfiles.mapping(doc.get("call")).get("start_utc"))
            if start is None or since <= start < until:
                archived[_current_id(call_id, doc)] = doc
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


def _current_id(call_id: str, doc: dict[str, Any]) -> str:
    """The id a call has now: a call without a recording archived by an earlier version is stored
    under a hash of its whole row, and is listed by the PBX under its identity fields' hash."""
    if call_id.startswith("nr-") and "cdr" in doc:
        return call_id_for_row(doc["cdr"])
    return call_id


def _parse_utc(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
