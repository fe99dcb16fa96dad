"""Planning which time windows to ask the API for. Pure.

The API filters by minute (``YYYY-MM-DD HH:MM`` in the PBX's zone) and does not say whether
``to`` is inclusive, so each window asks for whole minutes that cover it, and neighbouring
windows overlap by their shared minute; the caller de-duplicates by call id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, order=True)
class Window:
    """``[start, end)`` in the PBX's zone (aware datetimes)."""

    start: datetime
    end: datetime

    @property
    def query_from(self) -> str:
        return _floor_minute(self.start).strftime("%Y-%m-%d %H:%M")

    @property
    def query_to(self) -> str:
        return _ceil_minute(self.end).strftime("%Y-%m-%d %H:%M")

    @property
    def day(self) -> date:
        """The local date the window starts on (windows never cross midnight)."""
        return self.start.date()

    def days(self) -> list[date]:
        """Every local date the window's query can return calls for."""
        last = _ceil_minute(self.end).date()
        out, day = [], self.start.date()
        while day <= last:
            out.append(day)
            day += timedelta(days=1)
        return out


def plan_windows(start: datetime, end: datetime, tz: ZoneInfo, span: timedelta = timedelta(days=1)) -> list[Window]:
    """Split ``[start, end)`` into windows of at most *span* that never cross local midnight.

    *start* and *end* may be in any zone; the windows are in *tz*. Empty when end <= start.
    """
    start, end = start.astimezone(tz), end.astimezone(tz)
    windows = []
    cursor = start
    while cursor < end:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0), tz)
        stop = min(end, midnight, cursor + span)
        windows.append(Window(cursor, stop))
        cursor = stop
    return windows


def parse_date_argument(text: str, tz: ZoneInfo, now: datetime | None = None) -> datetime:
    """``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM``, ``today`` or ``yesterday`` (their midnight) in *tz*.

    Raises ValueError naming the forms.
    """
    word = text.strip().lower()
    if word in ("today", "yesterday"):
        day = (now or datetime.now(tz)).astimezone(tz).date() - timedelta(days=word == "yesterday")
        return datetime.combine(day, time(0), tz)
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date of the form YYYY-MM-DD, 'YYYY-MM-DD HH:MM', today or yesterday")


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _ceil_minute(moment: datetime) -> datetime:
    floor = _floor_minute(moment)
    return floor if floor == moment else floor + MINUTE


class CursorTracker:
    """Which leading windows are finished, so the cursor may pass them."""

    def __init__(self, windows: list[Window]) -> None:
        self._windows = windows
        self._outstanding = [0] * len(windows)
        self._read = [False] * len(windows)
        self._failed = [False] * len(windows)
        self._next = 0

    def add(self, index: int) -> None:
        self._outstanding[index] += 1

    def finish(self, index: int, *, ok: bool) -> None:
        self._outstanding[index] -= 1
        if not ok:
            self._failed[index] = True

    def read_all(self, index: int) -> None:
        self._read[index] = True

    def safe_until(self) -> datetime | None:
        """The end of the last window before which every call is done or parked."""
        while (
            self._next < len(self._windows)
            and self._read[self._next]
            and self._outstanding[self._next] == 0
            and not self._failed[self._next]
        ):
            self._next += 1
        return self._windows[self._next - 1].end if self._next else None


def nightly_days(
    archived: list[date], today: date, *, recent: int, older: int, after: date | None = None
) -> tuple[list[date], date | None]:
    """The days a nightly check reads, and where the next night carries on.

    The *recent* days up to *today*, and the *older* earlier days of *archived* that follow
    *after* (the last older day the previous night read), wrapping round to the oldest. Night
    after night the older days are so read in turn, however the archive grows, and one
    night's cost does not grow with it. Returns (the days, oldest first; the new *after*).
    """
    first_recent = today - timedelta(days=max(recent, 0) - 1)
    recent_days = [first_recent + timedelta(days=i) for i in range(max(recent, 0))]
    earlier = sorted(d for d in set(archived) if d < first_recent)
    if not earlier or older <= 0:
        return recent_days, after
    start = next((i for i, d in enumerate(earlier) if after is None or d > after), 0)
    count = min(older, len(earlier))
    chosen = [earlier[(start + i) % len(earlier)] for i in range(count)]
    return sorted(chosen) + recent_days, chosen[-1]
