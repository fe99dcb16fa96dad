"""Planning API query windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from archiver.core.windows import nightly_days, parse_date_argument, plan_windows

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


@pytest.mark.parametrize(("word", "day"), [("today", 29), ("yesterday", 28), (" Yesterday ", 28)])
def test_today_and_yesterday_are_midnights_in_the_zone(word: str, day: int) -> None:
    """A timer's unit can say --since yesterday --until today; both mean local midnight."""
    now = datetime(2026, 11, 28, 18, 30, tzinfo=UTC)  # 01:30 on the 29th in Hanoi
    assert parse_date_argument(word, TZ, now) == datetime(2026, 11, day, tzinfo=TZ)


def test_the_nightly_days_cover_a_growing_archive_at_a_constant_cost() -> None:
    """Each night reads the recent days and a fixed number of older ones, carrying on where the
    last night stopped; every day comes round although the archive gains a day each night."""
    archived = [date(2025, 1, 1) + timedelta(days=i) for i in range(300)]
    seen: set[date] = set()
    after = None
    for night in range(80):
        today = date(2025, 10, 28) + timedelta(days=night)
        archived.append(today)
        days, after = nightly_days(archived, today, recent=3, older=4, after=after)
        assert days[-3:] == [today - timedelta(days=2), today - timedelta(days=1), today]
        assert len(days) == 7  # the same cost on every night, whatever the archive holds
        seen |= set(days[:-3])
    assert seen >= set(archived[:300])  # 300 older days, 4 a night: all read within 80 nights


@pytest.mark.parametrize(
    ("archived", "after", "expected", "next_after"),
    [
        ([], None, [date(2026, 11, 28), date(2026, 11, 29)], None),  # a new archive: the recent days only
        ([date(2026, 11, 1)], None, [date(2026, 11, 1), date(2026, 11, 28), date(2026, 11, 29)], date(2026, 11, 1)),
        ([date(2026, 11, 29)], None, [date(2026, 11, 28), date(2026, 11, 29)], None),  # a recent day is not "older"
        (
            [date(2026, 11, 1), date(2026, 11, 2)],
            date(2026, 11, 2),
            [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 28), date(2026, 11, 29)],
            date(2026, 11, 2),
        ),
    ],
)
def test_small_archives_give_what_they_have(
    archived: list[date], after: date | None, expected: list[date], next_after: date | None
) -> None:
    """Fewer older days than asked for: each is read once, from where the last night stopped."""
    assert nightly_days(archived, date(2026, 11, 29), recent=2, older=5, after=after) == (expected, next_after)
