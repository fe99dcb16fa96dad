"""Backfill days shared by hosts of one run; a later run reads every day again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from archiver.coordination.shards import sharded_backfill
from archiver.core.outcome import RecordingStatus
from archiver.core.report import RunReport
from tests.fakes import MemoryControlStore
from tests.helpers import FakeClock

pytestmark = pytest.mark.anyio
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 4, tzinfo=TZ)


class DayLog:
    """A DayWorker that archives nothing and remembers which days it was given."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        self.days: list[int] = []
        self.stopping = False
        self._failing = failing

    async def backfill(self, since: datetime, until: datetime, *, progress_base: RunReport | None = None) -> RunReport:
        if self.stopping:  # as the runner does: a stopped backfill takes no new work
            return RunReport(windows=1, interrupted=True)
        self.days.append(since.day)
        report = RunReport(windows=1, windows_done=1)
        report.outcomes[RecordingStatus.NONE] += 1
        if since.day in self._failing:
            report.failed.append(("c", "store down"))
        return report

    def report_progress(self, report: RunReport) -> None:
        return None


async def backfill(worker: DayLog, store: MemoryControlStore, clock: FakeClock, owner: str) -> RunReport:
    run = await sharded_backfill(
        worker,
        store,
        control_prefix="p/_archiver",
        source="s",
        since=SINCE,
        until=UNTIL,
        tz=TZ,
        ttl=timedelta(seconds=30),
        clock=clock,
        owner=owner,
    )
    return run.total


async def test_a_rerun_right_after_a_finished_run_reads_every_day_again() -> None:
    """However soon it starts, a backfill after one that finished is a new run."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 29, tzinfo=UTC))
    first, second = DayLog(), DayLog()
    assert (await backfill(first, store, clock, "a")).complete
    clock.advance(seconds=1)
    assert (await backfill(second, store, clock, "a")).complete
    assert first.days == second.days == [1, 2, 3]


async def test_a_host_that_joins_a_run_under_way_skips_the_days_done_in_it() -> None:
    """Peers of one run share its done days; a stopped run is resumed, not started over."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 29, tzinfo=UTC))
    stopped = DayLog()

    async def stop_after_one(since: datetime, until: datetime, *, progress_base: RunReport | None = None) -> RunReport:
        report = await DayLog.backfill(stopped, since, until)
        stopped.stopping = True  # a signal came while the first day was archived
        return report

    stopped.backfill = stop_after_one  # type: ignore[method-assign]
    interrupted = await backfill(stopped, store, clock, "a")
    assert interrupted.interrupted
    peer = DayLog()
    assert (await backfill(peer, store, clock, "b")).complete
    assert stopped.days == [1]
    assert peer.days == [2, 3]  # day 1 was done in this run


async def test_a_run_whose_day_keeps_failing_does_not_hold_later_backfills() -> None:
    """The run ends when a host gives up on what failed; the next backfill reads every day again."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 29, tzinfo=UTC))
    failing = DayLog(failing=frozenset({2}))
    assert not (await backfill(failing, store, clock, "a")).complete
    later = DayLog()
    assert (await backfill(later, store, clock, "a")).complete
    assert later.days == [1, 2, 3]
