"""Finding calls in the archive by what an auditor knows of them: a number, a time, an id.

A closed day is read from its ``calls*.csv`` (one object, however many calls); a record no CSV
lists yet (today's calls, a revision waiting for its addendum) is read from its sidecar. So the
answer covers every call stored now, through each call's current revision. Reads the bucket only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.core import dayfiles, keys, numbers
from archiver.core.dayfiles import CallEntry
from archiver.core.identity import CALL_ID_RE
from archiver.errors import CallError
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT, DayListing, archive_days, list_day

log = structlog.get_logger("archiver.audit.catalog")

STATUSES = ("archived", "none", "missing", "rejected", "superseded", "erased")
DIRECTIONS = ("inbound", "outbound", "local")


def parse_statuses(text: str) -> frozenset[str]:
    """The outcomes a comma-separated *text* names; ValueError naming any unknown one."""
    statuses = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = statuses - set(STATUSES)
    if unknown:
        raise ValueError(f"unknown outcome {', '.join(sorted(unknown))} (known: {', '.join(STATUSES)})")
    return statuses


@dataclass(frozen=True)
class Query:
    """What ``find`` looks for; every given filter must match. *statuses* None: every outcome but
    ``superseded`` (a record replaced by another call's, which is found itself)."""

    number: str | None = None  # source or destination, in any common form
    extension: str | None = None  # source or destination, exactly
    direction: str | None = None
    statuses: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    country_code: str = "84"

    def matches(self, entry: CallEntry) -> bool:
        if self.number is not None and not (
            numbers.same_number(entry.source, self.number, self.country_code)
            or numbers.same_number(entry.destination, self.number, self.country_code)
        ):
            return False
        if self.extension is not None and self.extension not in (entry.source, entry.destination):
            return False
        if self.direction is not None and entry.direction != self.direction:
            return False
        status = entry.recording_status or ""
        if (status not in self.statuses) if self.statuses is not None else status == "superseded":
            return False
        start = _start(entry)
        if start is not None:  # a start that does not parse is matched by its day alone
            if self.since is not None and start < self.since:
                return False
            if self.until is not None and start >= self.until:
                return False
        return True


@dataclass(frozen=True)
class Found:
    """One call as ``find`` reports it: its current record, and where that record is."""

    day: date
    entry: CallEntry
    key: str  # the current record's sidecar

    def as_dict(self) -> dict[str, object]:
        return {
            "day": self.day.isoformat(),
            **{column: getattr(self.entry, column) for column in dayfiles.CSV_COLUMNS},
            "sidecar_key": self.key,
        }


@dataclass
class CallFiles:
    """Everything the archive holds of one call: its day, each record (revision) and its audio."""

    call_id: str
    listing: DayListing  # the day's folder

    @property
    def day(self) -> date:
        return self.listing.day

    @property
    def records(self) -> dict[int, str]:
        """Revision -> sidecar key, in order (1 is the first record)."""
        return dict(sorted(self.listing.revisions.get(self.call_id, {}).items()))

    @property
    def audio(self) -> list[str]:
        return sorted(self.listing.audio.get(self.call_id, []))

    @property
    def current_key(self) -> str:
        """The sidecar of the call's current record (its highest revision)."""
        return self.listing.sidecars[self.call_id]


class Catalog:
    """Reads the archive under *prefix* of *store*; dates are read in *tz*."""

    def __init__(self, store: Store, prefix: str, tz: ZoneInfo, *, concurrency: int = 8) -> None:
        self._store = store
        self._prefix = prefix
        self._tz = tz
        self._concurrency = concurrency

    async def days(self, since: datetime | None = None, until: datetime | None = None) -> list[date]:
        """The archive's days that can hold calls started in [since, until), oldest first."""
        first = since.astimezone(self._tz).date() if since else None
        last = (until - timedelta(microseconds=1)).astimezone(self._tz).date() if until else None
        return [
            d
            for d in await archive_days(self._store, self._prefix)
            if (first is None or d >= first) and (last is None or d <= last)
        ]

    async def find(
        self, query: Query, *, days: list[date] | None = None, progress: Callable[[int], object] | None = None
    ) -> list[Found]:
        """Every call that matches *query*, by start time (over *days*, or the days of its range)."""
        chosen = days if days is not None else await self.days(query.since, query.until)
        found: list[Found] = []
        limiter = anyio.CapacityLimiter(self._concurrency)

        async def one(day: date) -> None:
            async with limiter:
                found.extend(f for f in await self.day_calls(day) if query.matches(f.entry))
            if progress is not None:
                progress(1)

        async with anyio.create_task_group() as tg:
            for day in chosen:
                tg.start_soon(one, day)
        return sorted(found, key=lambda f: (f.entry.start, f.entry.call_id))

    async def day_calls(self, day: date, listing: DayListing | None = None) -> list[Found]:
        """Every call of *day* through its current record (*listing*: the day's, if already made)."""
        listing = listing or await list_day(self._store, self._prefix, day)
        listed: dict[tuple[str, int], CallEntry] = {}
        for number, files in sorted(listing.sets.items()):
            if files.csv is None:
                continue
            try:
                rows = dayfiles.parse_calls_csv(await self._store.read(files.csv, MANIFEST_LIMIT))
            except (ValueError, CallError) as exc:  # the sidecars say the same; read them instead
                log.warning("catalog.csv_unreadable", key=files.csv, set=number, error=str(exc))
                continue
            for row in map(CallEntry.from_csv_row, rows):
                listed[(row.call_id, row.revision)] = row
        out = []
        for call_id, key in sorted(listing.sidecars.items()):
            revision = max(listing.revisions[call_id])
            entry = listed.get((call_id, revision))
            if entry is None:
                try:
                    entry = CallEntry.from_sidecar(call_id, await self._store.read(key, SIDECAR_LIMIT))
                except (ValueError, CallError) as exc:  # verify names it; find still lists the call
                    log.warning("catalog.sidecar_unreadable", key=key, error=str(exc))
                    entry = CallEntry(call_id=call_id, sidecar_sha256="", revision=revision)
            out.append(Found(day, entry, key))
        return out

    async def locate(self, call_id: str, *, near: Iterable[date] = ()) -> CallFiles | None:
        """The day folder holding *call_id*, or None.

        Days *near* (and, for a time-based UUID, the days around the time it carries) are looked
        at first; then every day of the archive, newest first, a listing of that call's prefix
        in each (one request per day).
        """
        if not CALL_ID_RE.match(call_id):
            raise ValueError(f"{call_id!r} is not a call id (a UUID, or rf-/nr- and 32 hex digits)")
        first = [*near, *self._uuid_days(call_id)]
        archive = await archive_days(self._store, self._prefix)
        order = list(dict.fromkeys([d for d in first if d in set(archive)] + sorted(archive, reverse=True)))

        async def look(day: date, hits: list[date]) -> None:
            async for _ in self._store.list_keys(keys.day_prefix(self._prefix, day) + call_id + "."):
                hits.append(day)
                break

        for start in range(0, len(order), self._concurrency):
            hits: list[date] = []
            async with anyio.create_task_group() as tg:
                for day in order[start : start + self._concurrency]:
                    tg.start_soon(look, day, hits)
            if hits:
                listing = await list_day(self._store, self._prefix, min(hits))
                return CallFiles(call_id, listing)
        return None

    def _uuid_days(self, call_id: str) -> list[date]:
        """For a time-based (version 1) UUID, as FreeSWITCH makes them: the days around its time."""
        try:
            value = uuid.UUID(call_id)
        except ValueError:
            return []
        if value.version != 1:
            return []
        moment = datetime(1582, 10, 15, tzinfo=UTC) + timedelta(microseconds=value.time // 10)
        day = moment.astimezone(self._tz).date()
        return [day, day - timedelta(days=1), day + timedelta(days=1)]


def _start(entry: CallEntry) -> datetime | None:
    try:
        start = datetime.fromisoformat(entry.start)
    except ValueError:
        return None
    return start if start.tzinfo else None
