"""The daemon's cursor passes a window only when every call of it, and of every window before, is done or parked."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from archiver.core.windows import CursorTracker, plan_windows

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2026, 11, 1, 12, 0, tzinfo=TZ)
WINDOWS = plan_windows(START, START + timedelta(days=2), TZ)  # 12:00-24:00, day 2, 00:00-12:00 day 3


def ends(n: int) -> datetime | None:
    return WINDOWS[n - 1].end if n else None


@pytest.mark.parametrize(
    ("steps", "safe"),
    [
        ([], 0),  # nothing read yet
        ([("read", 0)], 1),  # a window read with no calls is finished
        ([("add", 0), ("read", 0)], 0),  # a call still in flight holds it
        ([("add", 0), ("read", 0), ("ok", 0)], 1),
        ([("add", 0), ("read", 0), ("fail", 0)], 0),  # a failed call holds the cursor before its window
        ([("read", 0), ("read", 1), ("read", 2)], 3),
        ([("read", 0), ("add", 1), ("read", 1), ("read", 2)], 1),  # later windows wait for an earlier one
        ([("read", 1), ("read", 2)], 0),  # an unread first window holds everything after it
        ([("add", 2), ("read", 0), ("read", 1), ("read", 2), ("fail", 2)], 2),
    ],
)
def test_the_cursor_passes_only_finished_leading_windows(steps: list[tuple[str, int]], safe: int) -> None:
    """safe_until is the end of the last window before which every call is done or parked."""
    tracker = CursorTracker(WINDOWS)
    for step, index in steps:
        if step == "add":
            tracker.add(index)
        elif step == "read":
            tracker.read_all(index)
        else:
            tracker.finish(index, ok=step == "ok")
    assert tracker.safe_until() == ends(safe)


def test_the_cursor_never_moves_back() -> None:
    """Once passed, a window stays passed whatever is added later (it is never read again in the run)."""
    tracker = CursorTracker(WINDOWS)
    tracker.read_all(0)
    assert tracker.safe_until() == ends(1)
    tracker.add(1)
    tracker.read_all(1)
    assert tracker.safe_until() == ends(1)
    tracker.finish(1, ok=True)
    assert tracker.safe_until() == ends(2)
