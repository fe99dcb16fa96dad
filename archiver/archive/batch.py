"""One run of the runner: which calls it admits, which are in flight, how far it has finished."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import structlog

from archiver.core.cdr import Cdr
from archiver.core.parking import PendingCall
from archiver.core.report import RunReport
from archiver.core.windows import CursorTracker, Window
from archiver.state.ledger import Ledger

log = structlog.get_logger("archiver.archive")


@dataclass(frozen=True)
class Work:
    """One call for a worker: the CDR, the day to file it under if its start does not say, and
    its parked record when it is a retry."""

    cdr: Cdr
    fallback_day: date
    pending: PendingCall | None
    window: int | None  # index into the windows being read; None for a due retry


class Batch:
    """The state of one run: what is in flight, what failed, how far is finished.

    *bounds* (a backfill's range) leaves out calls that started outside it; *honour_schedule*
    (the daemon) leaves parked calls alone until their next try is due.
    """

    def __init__(
        self,
        report: RunReport,
        windows: list[Window],
        *,
        bounds: tuple[datetime, datetime] | None,
        honour_schedule: bool,
        started: datetime,
    ) -> None:
        self.report = report
        self.windows = windows
        self.bounds = bounds
        self.honour_schedule = honour_schedule
        self.tracker = CursorTracker(windows)
        self.in_flight: set[str] = set()
        self.failed: set[str] = set()
        self.started = started

    def admit(self, cdr: Cdr, window: Window, index: int, ledger: Ledger) -> Work | None:
        """The work for *cdr*, or None when it is out of range, done, busy or not due."""
        if not cdr.started_within(self.bounds):
            return None
        call_id = cdr.call_id
        if call_id in self.in_flight or call_id in self.failed or ledger.calls.is_done(call_id):
            self.report.skipped += 1
            return None
        if self.honour_schedule and ledger.retries.is_quarantined(call_id):
            self.report.skipped += 1  # set aside: the daemon tries it on its own schedule
            return None
        pending = ledger.retries.pending(call_id)
        if pending and (
            pending.last_attempt >= self.started or (self.honour_schedule and pending.next_attempt > self.started)
        ):
            self.report.skipped += 1
            return None
        if cdr.problems:
            log.warning("cdr.malformed", call_id=call_id, problems=list(cdr.problems))
        self.in_flight.add(call_id)
        self.tracker.add(index)
        return Work(cdr, window.day, pending, index)

    def retry(self, cdr: Cdr, day: date, pending: PendingCall | None = None) -> Work:
        """The work for a call whose next try is due: a parked call (*pending*) or a quarantined one."""
        self.in_flight.add(cdr.call_id)
        return Work(cdr, day, pending, None)

    def finish(self, work: Work, *, ok: bool) -> None:
        """*work* is over: done or parked (*ok*), or not (failed, or skipped by a stop)."""
        self.in_flight.discard(work.cdr.call_id)
        if not ok:
            self.failed.add(work.cdr.call_id)  # not tried again in this run
        if work.window is not None:
            self.tracker.finish(work.window, ok=ok)
