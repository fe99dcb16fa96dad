"""Planning API query windows."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from archiver.core.windows import parse_date_argument, plan_windows

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=TZ)


def test_a_range_splits_at_local_midnight_and_covers_it_exactly() -> None:
    """Windows are contiguous, never cross midnight, and cover [start, end)."""
    windows = plan_windows(at("2026-11-01 22:30:00"), at("2026-11-04 00:00:00"), TZ)
    assert [(w.start, w.end) for w in windows] == [
        (at("2026-11-01 22:30:00"), at("2026-11-02 00:00:00")),
        (at("2026-11-02 00:00:00"), at("2026-11-03 00:00:00")),
        (at("2026-11-03 00:00:00"), at("2026-11-04 00:00:00")),
    ]


def test_queries_cover_whole_minutes_and_overlap_their_neighbour() -> None:
    """from is floored, to is ceiled to the minute, so no second of the window is left out."""
    window = plan_windows(at("2026-11-01 10:00:30"), at("2026-11-01 10:05:10"), TZ)[0]
    assert (window.query_from, window.query_to) == ("2026-11-01 10:00", "2026-11-01 10:06")
    day = plan_windows(at("2026-11-01 00:00:00"), at("2026-11-02 00:00:00"), TZ)[0]
    assert (day.query_from, day.query_to) == ("2026-11-01 00:00", "2026-11-02 00:00")
    assert [d.isoformat() for d in day.days()] == ["2026-11-01", "2026-11-02"]


def test_times_in_other_zones_are_converted() -> None:
    """A UTC range is planned in the PBX's zone."""
    start = datetime(2026, 11, 1, 16, 0, tzinfo=ZoneInfo("UTC"))  # 23:00 in Hanoi
    windows = plan_windows(start, start + timedelta(hours=2), TZ)
    assert [w.query_from for w in windows] == ["2026-11-01 23:00", "2026-11-02 00:00"]


def test_an_empty_range_plans_nothing() -> None:
    """end <= start gives no windows."""
    assert plan_windows(at("2026-11-02 00:00:00"), at("2026-11-01 00:00:00"), TZ) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-11-01", "2026-11-01 00:00:00"), ("2026-11-01 13:45", "2026-11-01 13:45:00")],
)
def test_date_arguments(text: str, expected: str) -> None:
    """--since/--until take a date or a date and minute, in the PBX's zone."""
    assert parse_date_argument(text, TZ) == at(expected)


def test_bad_date_arguments_show_the_forms() -> None:
    """A malformed date says which forms work."""
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_date_argument("01/11/2026", TZ)
