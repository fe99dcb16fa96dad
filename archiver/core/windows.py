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


def parse_date_argument(text: str, tz: ZoneInfo) -> datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM`` in *tz*; raises ValueError naming the forms."""
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date of the form YYYY-MM-DD or 'YYYY-MM-DD HH:MM'")


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
