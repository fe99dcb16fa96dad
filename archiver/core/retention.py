"""Retention's arithmetic: which days a policy no longer keeps, and whether an expiry was lawful. Pure.

A day ends at the next midnight in the zone its calls were filed in. A day may expire once its
end lies *keep* or more in the past. The arithmetic is on absolute time (UTC): across a change of
daylight saving time a day is 23 or 25 hours long, and "keep" is a span of time, not of wall
clock; everything that decides a day's fate (expire, backfill, verify) asks this module.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from archiver.core.quantities import parse_duration


def day_end(day: date, tz: ZoneInfo) -> datetime:
    """When *day* ends: the next midnight in *tz*, as an absolute moment (UTC)."""
    return datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)


def first_kept(now: datetime, keep: timedelta, tz: ZoneInfo) -> date:
    """The oldest day *keep* still keeps at *now*: every earlier day ended at least *keep* ago."""
    return (now.astimezone(UTC) - keep).astimezone(tz).date()


def expired_early(day: date, keep: timedelta, at: datetime, tz: ZoneInfo) -> timedelta | None:
    """How long before its retention ended *day* was recorded as expired *at* (None: lawfully,
    at or after the end of the day plus *keep*)."""
    allowed = day_end(day, tz) + keep
    return None if at >= allowed else allowed - at


def policy_span(policy: str) -> timedelta | None:
    """A recorded policy (``2557d``) as a span of time; None when it does not parse."""
    try:
        return parse_duration(policy)
    except ValueError:
        return None
