"""The access trail: who read which call, kept in the archive itself.

Every call page, play, file download and evidence bundle ``browse`` serves, and every ``show``
and ``export``, is an access event. Events are written as JSON lines into create-only objects
``{prefix}/_access/YYYY/MM/DD/{time}-{token}.jsonl`` (the day of the events, UTC): within a
minute of happening, and when the process stops, so the trail is kept the way the evidence is,
and never rewritten. ``archiver access`` reads it.
"""

from __future__ import annotations

import getpass
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

import anyio
import structlog

from archiver.core.clock import Clock
from archiver.errors import ArchiverError, ObjectExists
from archiver.store import Store, put_bytes

log = structlog.get_logger("archiver.audit.access")

FLUSH_EVERY = 60.0  # seconds: no event waits longer than this to be in the bucket
TRAIL_LIMIT = 16 << 20  # bytes; one object holds a minute of one process's events
MAX_PENDING = 10_000  # events kept for a store that refuses them; older ones live on in the log lines


@dataclass(frozen=True)
class AccessEvent:
    """One access: *action* is view, play, download, evidence (browse), show or export."""

    at: str  # ISO 8601, UTC
    user: str
    action: str
    call_id: str
    remote: str
    via: str  # browse, show, export
    file: str | None = None
    source: str | None = None  # the source of the call, in a file of several (browse)
    scope: str | None = None  # what browse.scopes let the user see of that source, and which rule

    def line(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False, sort_keys=True)

    @classmethod
    def parse(cls, line: str) -> AccessEvent:
        """An event from its line; the fields this version does not know are left out. ValueError
        or TypeError when it is not an event."""
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        event = cls(**{k: v for k, v in doc.items() if k in _FIELDS})
        if not all(isinstance(getattr(event, name), str) for name in ("at", "user", "action", "call_id", "remote")):
            raise ValueError("an event without its text fields")
        return event


_FIELDS = frozenset(AccessEvent.__dataclass_fields__)


def trail_folder(prefix: str) -> str:
    return f"{prefix}/_access/" if prefix else "_access/"


def os_user() -> str:
    """Who runs a command on this machine, for ``show`` and ``export``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


class AccessTrail:
    """Collects events and writes them to the bucket: :meth:`flush` now, :meth:`run` every minute
    until cancelled, then once more."""

    def __init__(self, store: Store, prefix: str, clock: Clock) -> None:
        self._store = store
        self._prefix = prefix
        self._clock = clock
        self._pending: list[AccessEvent] = []
        self._lock = anyio.Lock()
        self._last_written: datetime | None = None

    @property
    def pending(self) -> int:
        """Events recorded and not yet in the bucket."""
        return len(self._pending)

    @property
    def last_written(self) -> datetime | None:
        """When this process last wrote events to the bucket."""
        return self._last_written

    def record(
        self,
        *,
        user: str,
        action: str,
        call_id: str,
        remote: str,
        via: str,
        file: str | None = None,
        source: str | None = None,
        scope: str | None = None,
    ) -> None:
        at = self._clock.now().astimezone(UTC).isoformat()
        event = AccessEvent(at, user, action, call_id, remote, via, file, source, scope)
        self._pending.append(event)
        self._bound()
        log.info("browse.access" if via == "browse" else f"{via}.access", **asdict(event))

    def _bound(self) -> None:
        """Keep at most MAX_PENDING events for a store that refuses them (each is in its log line)."""
        excess = len(self._pending) - MAX_PENDING
        if excess > 0:
            del self._pending[:excess]
            log.error("access.trail_dropped", events=excess, kept=MAX_PENDING)

    async def run(self) -> None:
        """Flush every FLUSH_EVERY seconds; when cancelled (the process stopping), flush what is left."""
        try:
            while True:
                await anyio.sleep(FLUSH_EVERY)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> None:
        """Write the events recorded so far, one object per day of them. What cannot be written now
        stays for the next flush, and is logged (the log lines hold every event too)."""
        async with self._lock:
            events, self._pending = self._pending, []
            by_day: dict[str, list[AccessEvent]] = {}
            for event in events:
                by_day.setdefault(event.at[:10], []).append(event)
            for day, lines in sorted(by_day.items()):
                stamp = self._clock.now().astimezone(UTC).strftime("%H%M%S")
                key = f"{trail_folder(self._prefix)}{day.replace('-', '/')}/{stamp}-{uuid.uuid4().hex[:16]}.jsonl"
                data = "".join(e.line() + "\n" for e in lines).encode()
                try:
                    await put_bytes(self._store, key, data, "application/x-ndjson")
                    self._last_written = self._clock.now()
                except ObjectExists:  # a token drawn twice: nothing was overwritten; try another
                    self._pending[:0] = lines
                except ArchiverError as exc:  # down, or credentials that may only read
                    self._pending[:0] = lines
                    log.error("access.trail_not_written", events=len(lines), error=str(exc))
            self._bound()


MAX_LISTED_DAYS = 366  # a range longer than this is read from one listing of the whole trail


async def read_trail(store: Store, prefix: str, since: date | None, until: date | None) -> AsyncIterator[AccessEvent]:
    """The trail's events of the days in ``[since, until)`` (UTC days of the events), in time order
    within each day; a line that is not an event is skipped and logged."""
    folder = trail_folder(prefix)
    day_events: dict[str, list[AccessEvent]] = {}
    async for key in _trail_keys(store, folder, since, until):
        day = key[len(folder) : len(folder) + 10].replace("/", "-")
        try:
            when = date.fromisoformat(day)
        except ValueError:
            continue
        if (since and when < since) or (until and when >= until):
            continue
        text = (await store.read(key, TRAIL_LIMIT)).decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                day_events.setdefault(day, []).append(AccessEvent.parse(line))
            except (ValueError, TypeError):
                log.warning("access.line_unreadable", key=key, line=number)
    for day in sorted(day_events):
        for event in sorted(day_events[day], key=lambda e: e.at):
            yield event


async def _trail_keys(store: Store, folder: str, since: date | None, until: date | None) -> AsyncIterator[str]:
    """The trail's objects: of each day of a bounded range of up to a year (a listing per day),
    else of the whole trail (one listing, filtered by the caller)."""
    if since is None or until is None or (until - since).days > MAX_LISTED_DAYS:
        async for key in store.list_keys(folder):
            yield key
        return
    for n in range((until - since).days):
        async for key in store.list_keys(f"{folder}{since + timedelta(days=n):%Y/%m/%d}/"):
            yield key


async def last_trail_write(store: Store, prefix: str) -> datetime | None:
    """When the newest object of the trail was written (its day folder and the time its name
    starts with, UTC): a listing per level, of the newest day's objects at the end."""
    folder = trail_folder(prefix)
    path = folder
    for _ in range(3):  # YYYY/, MM/, DD/
        names = [name async for name in store.list_folders(path) if name.rstrip("/").isdigit()]
        if not names:
            return None
        path += max(names).rstrip("/") + "/"
    newest = None
    async for key in store.list_keys(path):
        name = key[len(path) :]
        newest = name if newest is None or name > newest else newest
    if newest is None:
        return None
    try:
        return datetime.strptime(path[len(folder) :] + newest[:6], "%Y/%m/%d/%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def days_window(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    """The UTC days a trail read must list to cover ``[since, until)``."""
    first = since.astimezone(UTC).date() if since else None
    last = (until.astimezone(UTC) + timedelta(days=1)).date() if until else None
    return first, last
