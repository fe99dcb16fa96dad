"""Every day of the archive at a glance, from its day files alone: what ``browse``'s calendar shows.

A day's figures come from its folder's listing, its ``calls*.csv`` (the current record of each
call, through the highest revision any CSV lists) and its manifests (their SHA-256 against the
seal chain): never from a call's own objects. A sidecar no CSV lists yet (a call that arrived
after the day closed, before its addendum) is counted as such, not read.

Day files are never rewritten, so a day's summary is kept once made, and made again only when
the seal chain names a manifest of the day it has not seen (an addendum), while the day is not
closed or not all sealed, or in the last week (every minute: where late calls land), or after it
expired (the chain records that too). The
day folders themselves are listed in full every ten minutes and the current and previous month's
every minute, so a page load reads the seals written since the last one and little else.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.core import dayfiles, keys, seal
from archiver.core.clock import Clock
from archiver.core.dayfiles import CallEntry
from archiver.errors import CallError
from archiver.store import ARCHIVE_TIERS, Store
from archiver.store.listing import MANIFEST_LIMIT, DayListing, archive_days, list_day
from archiver.store.seals import ChainReader

log = structlog.get_logger("archiver.audit.daybook")

OUTCOMES = ("archived", "none", "missing", "rejected", "erased", "superseded")
RECHECK = timedelta(minutes=1)  # an open or unsealed day, and the recent months' folders
RESCAN = timedelta(minutes=10)  # every day folder
RECENT = timedelta(days=7)  # days this close to today are read again every RECHECK, however closed
NO_EXTENSION: frozenset[str] = frozenset()

# A day's state, as the calendar colours it.
OPEN, SEALED, UNSEALED, UNREADABLE, EXPIRED, EMPTY = "open", "sealed", "unsealed", "unreadable", "expired", "empty"


@dataclass(frozen=True)
class Figures:
    """Counts of a day's calls (or of some of them): all, and by their current outcome; *cold*:
    recordings in an archive tier, where that is known (None: it is not)."""

    calls: int = 0
    outcomes: Mapping[str, int] = field(default_factory=dict)
    cold: int | None = None

    def __add__(self, other: Figures) -> Figures:
        cold = None if self.cold is None and other.cold is None else (self.cold or 0) + (other.cold or 0)
        return Figures(self.calls + other.calls, dict(Counter(self.outcomes) + Counter(other.outcomes)), cold)


@dataclass(frozen=True)
class DaySummary:
    """One day as its day files state it.

    *figures* are kept by the set of watched extensions each call involves (as source or
    destination; the empty set for calls that involve none), so that the figures of a scope
    narrowed to some extensions are exact without reading the day again.
    """

    day: date
    state: str
    figures: Mapping[frozenset[str], Figures] = field(default_factory=dict)
    manifests: tuple[str, ...] = ()  # keys
    sealed: int = 0  # manifests the chain seals with their current SHA-256
    unlisted: int = 0  # records no CSV lists yet
    problem: str | None = None  # why a day file could not be read
    expiry: seal.Expiry | None = None
    made: datetime | None = None

    def total(self, extensions: frozenset[str] | None = None) -> Figures:
        """The figures of every call (*extensions* None), or of the calls that involve one of
        *extensions*."""
        out = Figures()
        for involved, figures in self.figures.items():
            if extensions is None or involved & extensions:
                out = out + figures
        return out

    @property
    def closed(self) -> bool:
        return bool(self.manifests)


def summarise(
    day: date,
    listing: DayListing,
    csv_rows: Iterable[CallEntry],
    manifest_digests: Mapping[str, str],
    chain: seal.Chain,
    *,
    watched: frozenset[str] = NO_EXTENSION,
    cold: bool = False,
    problem: str | None = None,
    made: datetime | None = None,
) -> DaySummary:
    """A day's summary from its listing, the rows of its CSVs, and its manifests' SHA-256 (key ->
    digest). *cold*: every archived recording is in an archive tier (storage.storage_class says so)."""
    current: dict[str, CallEntry] = {}
    for row in csv_rows:
        if row.call_id not in current or row.revision > current[row.call_id].revision:
            current[row.call_id] = row
    by_extensions: dict[frozenset[str], Counter[str]] = {}
    for row in current.values():
        involved = frozenset({row.source or "", row.destination or ""} & watched) if watched else NO_EXTENSION
        by_extensions.setdefault(involved, Counter())[row.recording_status or "unknown"] += 1
    figures = {
        involved: Figures(sum(c.values()), dict(c), (c["archived"] if cold else None))
        for involved, c in by_extensions.items()
    }
    unlisted = sum(
        1
        for call_id, revisions in listing.revisions.items()
        if call_id not in current or current[call_id].revision < max(revisions)
    )
    sealed = sum(1 for key, digest in manifest_digests.items() if chain.sealed_by(key, digest))
    if problem is not None:
        state = UNREADABLE
    elif manifest_digests:
        state = SEALED if sealed == len(manifest_digests) else UNSEALED
    else:
        state = OPEN if listing.sidecars else EMPTY
    return DaySummary(
        day,
        state,
        figures,
        tuple(sorted(manifest_digests)),
        sealed,
        unlisted,
        problem,
        made=made,
    )


class DayBook:
    """The summaries of one archive's days, kept and brought up to date (see the module's text).

    *seals* is the chain reader the caller shares (and locks: *seals_lock*); *watched* the
    extensions scopes narrow this source to; *cold_class* the storage class recordings are
    written in.
    """

    def __init__(
        self,
        store: Store,
        prefix: str,
        tz: ZoneInfo,
        seals: ChainReader,
        seals_lock: anyio.Lock,
        clock: Clock,
        *,
        watched: frozenset[str] = NO_EXTENSION,
        cold_class: str | None = None,
        concurrency: int = 8,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._tz = tz
        self._seals = seals
        self._seals_lock = seals_lock
        self._clock = clock
        self._watched = watched
        self._cold = cold_class in ARCHIVE_TIERS
        self._concurrency = concurrency
        self._days: set[date] = set()
        self._listed_at: datetime | None = None
        self._recent_at: datetime | None = None
        self._summaries: dict[date, DaySummary] = {}
        self._chain_seen = -1
        self._lock = anyio.Lock()
        self.reads = 0  # day summaries made (for the benchmark and the tests)

    @property
    def summaries(self) -> dict[date, DaySummary]:
        """Each day's summary, expired days included (with their expiry), as of the last refresh."""
        return self._summaries

    async def refresh(self) -> seal.Chain:
        """Bring the summaries up to date; the seal chain as read now."""
        async with self._lock:
            async with self._seals_lock:
                await self._seals.read_newer()
                chain = self._seals.chain
            now = self._clock.now()
            await self._list_days(now)
            stale = self._stale(chain, now)
            limiter = anyio.CapacityLimiter(self._concurrency)

            async def one(day: date) -> None:
                async with limiter:
                    self._summaries[day] = await self._summary(day, chain, now)

            async with anyio.create_task_group() as tg:
                for day in stale:
                    tg.start_soon(one, day)
            for folder, (_, expiry) in chain.expired().items():
                gone = _day_of_folder(self._prefix, folder)
                if gone is not None and gone not in self._days:
                    self._summaries[gone] = DaySummary(gone, EXPIRED, expiry=expiry)
            for old in [d for d, s in self._summaries.items() if d not in self._days and s.state != EXPIRED]:
                del self._summaries[old]
            self._chain_seen = chain.length
            return chain

    async def day(self, day: date, chain: seal.Chain) -> DaySummary | None:
        """*day*'s summary made now (for its own page, which need not wait for the whole book),
        kept for the calendar; None when the archive holds no folder for it and no expiry."""
        summary = await self._summary(day, chain, self._clock.now())
        if summary.state == EMPTY and not summary.manifests and day not in self._days:
            expired = chain.expired().get(keys.day_prefix(self._prefix, day))
            return DaySummary(day, EXPIRED, expiry=expired[1]) if expired else None
        self._summaries[day] = summary
        return summary

    async def _list_days(self, now: datetime) -> None:
        if self._listed_at is None or now - self._listed_at >= RESCAN:
            self._days = set(await archive_days(self._store, self._prefix))
            self._listed_at = self._recent_at = now
        elif self._recent_at is None or now - self._recent_at >= RECHECK:
            today = now.astimezone(self._tz).date()
            for month in {today.replace(day=1), (today.replace(day=1) - timedelta(days=1)).replace(day=1)}:
                base = keys.day_prefix(self._prefix, month).rsplit("/", 2)[0] + "/"
                async for name in self._store.list_folders(base):
                    try:
                        self._days.add(month.replace(day=int(name.rstrip("/"))))
                    except ValueError:
                        continue
            self._recent_at = now

    def _stale(self, chain: seal.Chain, now: datetime) -> list[date]:
        """The days whose summary must be made (again)."""
        sealed_now: dict[date, set[str]] = {}
        if chain.length != self._chain_seen:
            for key in chain.sealed():
                day = _day_of_folder(self._prefix, key.rsplit("/", 1)[0] + "/")
                if day is not None:
                    sealed_now.setdefault(day, set()).add(key)
        today = now.astimezone(self._tz).date()
        out = []
        for day in self._days:
            kept = self._summaries.get(day)
            if kept is None or kept.state == EXPIRED:
                out.append(day)
            elif kept.state != SEALED or kept.unlisted or today - day <= RECENT:
                if kept.made is None or now - kept.made >= RECHECK:
                    out.append(day)
            elif not sealed_now.get(day, set()) <= set(kept.manifests):
                out.append(day)  # an addendum was sealed
        return sorted(out)

    async def _summary(self, day: date, chain: seal.Chain, now: datetime) -> DaySummary:
        self.reads += 1
        listing = await list_day(self._store, self._prefix, day)
        rows: list[CallEntry] = []
        problem = None
        digests: dict[str, str] = {}
        for number, files in sorted(listing.sets.items()):
            try:
                if files.csv is not None:
                    data = await self._store.read(files.csv, MANIFEST_LIMIT)
                    rows += [CallEntry.from_csv_row(r) for r in dayfiles.parse_calls_csv(data)]
                if files.manifest is not None:
                    data = await self._store.read(files.manifest, MANIFEST_LIMIT)
                    digests[files.manifest] = hashlib.sha256(data).hexdigest()
            except (ValueError, CallError) as exc:
                problem = f"day file set {number}: {exc}"
                log.warning("daybook.day_file_unreadable", day=day.isoformat(), set=number, error=str(exc))
        return summarise(
            day, listing, rows, digests, chain, watched=self._watched, cold=self._cold, problem=problem, made=now
        )


def _day_of_folder(prefix: str, folder: str) -> date | None:
    """The day of a day folder's key (``{prefix}/YYYY/MM/DD/``), or None."""
    base = f"{prefix}/" if prefix else ""
    if not folder.startswith(base):
        return None
    parts = folder[len(base) :].strip("/").split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    try:
        return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None
