"""Windows → CDR pages → bounded workers → store. ``backfill`` and ``run`` share this path.

The runner plans the windows, reads the API, and hands each call that is not done to a pool
of workers; :class:`~archiver.archive.call.CallArchiver` archives one call,
:class:`~archiver.archive.daysync.DaySync` teaches the ledger what the bucket holds first,
:class:`~archiver.archive.dayclose.DayCloser` writes the files of days that closed. What
happens is told to :class:`~archiver.archive.events.ArchiveEvents` observers.

A call is *done* when its sidecar is stored; *parked* when its recording is not served yet.
A call that fails otherwise (the store down past its retries, a conflict in the bucket) is
neither: the daemon's cursor stops before its window, so the next poll reads it again.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import structlog
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from archiver.archive.batch import Batch, Work
from archiver.archive.call import CallArchiver, Parked
from archiver.archive.dayclose import DayCloser
from archiver.archive.daysync import DaySync
from archiver.archive.events import ArchiveEvents
from archiver.core import keys
from archiver.core.cdr import Cdr, parse_row
from archiver.core.clock import Clock
from archiver.core.outcome import Archived
from archiver.core.parking import ParkingSchedule, PendingCall, SetAside
from archiver.core.report import RunReport
from archiver.core.windows import Window, plan_windows
from archiver.errors import CallError, FatalError, TransientError, collapse
from archiver.source.ccall import CcallClient
from archiver.state.ledger import Ledger

log = structlog.get_logger("archiver.archive")

# A call that fails this many runs in a row (each run after its own retries) is set aside: the
# cursor passes it, and it is tried again an hour later, then less and less often, up to daily.
QUARANTINE_AFTER = 3
QUARANTINE_RETRY = ParkingSchedule(initial=timedelta(hours=1), cap=timedelta(days=1))


class Archiver:
    """Archives the calls of one ccall source: reads the API, runs the workers, reports.

    *concurrency* workers' worth of downloads run at once, with twice as many calls in flight.
    *closer* is None when days are not to be closed (the tests of other things).
    """

    def __init__(
        self,
        *,
        client: CcallClient,
        calls: CallArchiver,
        ledger: Ledger,
        day_sync: DaySync,
        closer: DayCloser | None,
        clock: Clock,
        tz: ZoneInfo,
        prefix: str,
        concurrency: int,
        events: ArchiveEvents,
    ) -> None:
        self._client = client
        self._calls = calls
        self._ledger = ledger
        self._day_sync = day_sync
        self._closer = closer
        self._clock = clock
        self._tz = tz
        self._prefix = prefix
        self._concurrency = concurrency
        self.events = events
        self._stop = anyio.Event()

    def stop(self) -> None:
        """Stop taking new work; calls already being archived finish."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    def report_progress(self, report: RunReport) -> None:
        """Tell the observers *report* is the progress so far (a sharded range's, between days)."""
        self.events.progressed(report)

    # -- entry points ---------------------------------------------------------------------

    async def backfill(self, since: datetime, until: datetime, *, progress_base: RunReport | None = None) -> RunReport:
        """Archive every call that started in ``[since, until)``. Parked calls are tried now.

        *progress_base* (a sharded range's totals so far) is added to this run's counts in what
        observers are told, so that progress is shown for the whole range.
        """
        windows = plan_windows(since, until, self._tz)
        report = RunReport(windows=len(windows))
        await self._process(windows, report, bounds=(since, until), due=[], honour_schedule=False, base=progress_base)
        await self.close_days()
        log.info("backfill.completed", **report.summary())
        return report

    async def poll_once(self, *, lookback: timedelta, settle: timedelta) -> RunReport:
        """One daemon poll: due retries, then ``[min(cursor, now - lookback), now - settle]``."""
        now = self._clock.now()
        end = now - settle
        cursor = self._ledger.progress.cursor()
        start = min(cursor, now - lookback) if cursor else now - lookback
        windows = plan_windows(start, end, self._tz)
        report = RunReport(windows=len(windows))
        due: list[PendingCall | SetAside] = [*self._ledger.retries.due(now), *self._ledger.retries.due_quarantined(now)]
        safe = await self._process(windows, report, bounds=None, due=due, honour_schedule=True)
        if safe is not None and (cursor is None or safe > cursor):
            self._ledger.progress.set_cursor(safe)
        await self.close_days()
        return report

    async def close_days(self) -> None:
        """Write the day files of every day that closed (see :class:`DayCloser`)."""
        if self._closer is not None:
            await self._closer.close_days(self._clock.now())

    # -- the shared path ------------------------------------------------------------------

    async def _process(
        self,
        windows: list[Window],
        report: RunReport,
        *,
        bounds: tuple[datetime, datetime] | None,
        due: list[PendingCall | SetAside],
        honour_schedule: bool,
        base: RunReport | None = None,
    ) -> datetime | None:
        """Read *windows* (and *due* retries) and archive what is not done, with bounded workers.

        Returns the time before which every call is done or parked. A failure to read the API
        stops the reading, lets the calls already handed out finish, then is raised.
        """
        batch = Batch(report, windows, bounds=bounds, honour_schedule=honour_schedule, started=self._clock.now())
        send, receive = anyio.create_memory_object_stream[Work](self._concurrency)
        read_error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(2 * self._concurrency):
                    tg.start_soon(self._work, batch, receive.clone(), base)
                receive.close()
                async with send:
                    try:
                        await self._produce(batch, send, due)
                    except (TransientError, FatalError) as exc:
                        read_error = exc
        except BaseExceptionGroup as group:
            raise collapse(group) from None
        if read_error is not None:
            raise read_error
        return batch.tracker.safe_until()

    async def _produce(self, batch: Batch, send: ObjectSendStream[Work], due: list[PendingCall | SetAside]) -> None:
        """Hand out the due retries (parked and quarantined calls), then every call of the batch's
        windows that is not done."""
        for retry in due:
            if self.stopping:
                break
            pending = retry if isinstance(retry, PendingCall) else None
            await self._send(send, batch.retry(parse_row(retry.row, self._tz), retry.day, pending))
        for index, window in enumerate(batch.windows):
            if self.stopping:
                batch.report.interrupted = True
                return
            await self._day_sync.sync(window.days())
            async for row in self._client.cdr_rows(window.query_from, window.query_to):
                batch.report.rows += 1
                self.events.row_read()
                work = batch.admit(parse_row(row, self._tz), window, index, self._ledger)
                if work is not None:
                    if work.cdr.suspicious:
                        self._suspect(work, batch.report)
                    await self._send(send, work)
                if self.stopping:
                    batch.report.interrupted = True
                    return
            batch.tracker.read_all(index)
            batch.report.windows_done += 1

    def _suspect(self, work: Work, report: RunReport) -> None:
        """No silent "none": a row that looks recorded without a link the client knows is told."""
        assert work.cdr.suspicious is not None
        report.suspicious += 1
        self.events.row_suspicious(work.cdr.call_id, work.cdr.suspicious)
        log.warning("cdr.suspicious", call_id=work.cdr.call_id, reason=work.cdr.suspicious, fields=_keys(work.cdr.raw))

    async def _send(self, send: ObjectSendStream[Work], work: Work) -> None:
        self.events.call_queued()
        await send.send(work)

    async def _work(self, batch: Batch, stream: ObjectReceiveStream[Work], base: RunReport | None) -> None:
        """One worker: archive calls from *stream* until it closes."""
        async with stream:
            async for work in stream:
                self.events.call_started()
                ok = False
                try:
                    if self.stopping:
                        batch.report.interrupted = True
                        continue
                    ok = await self._handle(work, batch.report)
                finally:
                    batch.finish(work, ok=ok)
                    self.events.call_finished()
                    self.events.progressed(_view(base, batch.report) if base else batch.report)

    async def _handle(self, work: Work, report: RunReport) -> bool:
        """Archive one call; True when it is done or parked, False when it failed."""
        cdr = work.cdr
        day = cdr.day(work.fallback_day)
        began = time.monotonic()
        try:
            outcome = await self._calls.archive(cdr, day, work.pending)
        except FatalError:
            raise
        except (TransientError, CallError, OSError) as exc:
            return self._fail(cdr, day, str(exc), exc, report)
        except Exception as exc:  # a bug must cost one call, not the archive
            log.exception("call.crashed", call_id=cdr.call_id)
            return self._fail(cdr, day, f"internal error: {type(exc).__name__}: {exc}", exc, report)
        if isinstance(outcome, Parked):
            report.parked.append(cdr.call_id)
            self.events.call_parked(cdr.call_id)
            return True
        size = outcome.size if isinstance(outcome, Archived) else 0
        report.outcomes[outcome.status] += 1
        report.bytes += size
        self.events.call_done(cdr.call_id, outcome.status, size)
        log.info(
            "call.archived",
            call_id=cdr.call_id,
            status=str(outcome.status),
            key=keys.sidecar_key(self._prefix, day, cdr.call_id),
            recording_key=outcome.key if isinstance(outcome, Archived) else None,
            size=size,
            seconds=round(time.monotonic() - began, 3),
        )
        return True

    def _fail(self, cdr: Cdr, day: date, error: str, exc: BaseException, report: RunReport) -> bool:
        """Record the failure. A call that failed QUARANTINE_AFTER runs in a row is set aside, to be
        tried again on a slow schedule, so that it no longer holds the cursor: True then."""
        call_id = cdr.call_id
        report.failed.append((call_id, error))
        self.events.call_failed(call_id, exc)
        now = self._clock.now()
        strikes = self._ledger.retries.record_failure(call_id, day, error, now)
        log.error("call.failed", call_id=call_id, error=error, runs_in_a_row=strikes)
        if strikes < QUARANTINE_AFTER:
            return False
        wait = QUARANTINE_RETRY.backoff(strikes - QUARANTINE_AFTER + 1)
        failures = self._ledger.retries.quarantine(call_id, day, cdr.row, error, now=now, retry_in=wait)
        report.quarantined.append(call_id)
        self.events.call_quarantined(call_id)
        log.warning(
            "call.quarantined",
            call_id=call_id,
            runs_in_a_row=strikes,
            times_set_aside=failures,
            next_attempt=(now + wait).isoformat(),
            error=error,
        )
        return True


def _keys(raw: object) -> list[str]:
    """The field names of a row (what a changed format shows first), never its values."""
    return sorted(str(k) for k in raw) if isinstance(raw, dict) else []


def _view(base: RunReport, part: RunReport) -> RunReport:
    """*base*'s totals with *part*'s calls added (the windows are *base*'s)."""
    view = RunReport(windows=base.windows, windows_done=base.windows_done)
    view.merge(base)
    view.merge(part)
    return view
