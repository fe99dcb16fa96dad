"""Windows → CDR pages → bounded workers → store. ``backfill`` and ``run`` share this path.

A call is *done* when its sidecar is stored; then the ledger records it. A call whose
recording is not served yet is *parked* with a retry time until ``download.missing_after``
past its end, then stored as ``missing``. A call that fails otherwise (the store down past
its retries, a conflict in the bucket) is neither: the daemon's cursor stops before its
window, so the next poll reads it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import structlog
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from archiver.audit.verify import Auditor, stored_call_ids
from archiver.core import dayfiles, keys, sidecar
from archiver.core.audio import CONTENT_TYPES
from archiver.core.cdr import Cdr, parse_row
from archiver.core.clock import Clock, SystemClock
from archiver.core.report import RunReport
from archiver.core.windows import CursorTracker, Window, plan_windows
from archiver.errors import (
    ArchiveConflict,
    CallError,
    FatalError,
    ObjectExists,
    RecordingRejected,
    RecordingUnavailable,
    TransientError,
    collapse,
)
from archiver.retry import RetryPolicy
from archiver.service.metrics import DEFAULT_SOURCE, Health, Metrics
from archiver.source.ccall import CcallClient
from archiver.source.fetch import Download, Fetcher
from archiver.state.ledger import Ledger, PendingCall
from archiver.store import Store, put_bytes

log = structlog.get_logger("archiver.archive.runner")

STORE_PATIENCE = RetryPolicy(attempts=None, timeout=600.0, wait_initial=1.0, wait_max=30.0)


@dataclass(frozen=True)
class _Work:
    cdr: Cdr
    fallback_day: date
    pending: PendingCall | None
    window: int | None  # index into the windows being read; None for a due retry


class Archiver:
    """Archives the calls of one ccall source into one store.

    Every collaborator is passed in: the API client, the fetcher, the store, the ledger and
    the clock. ``source_info`` goes into each sidecar's ``source`` member; ``source_name`` (with
    several sources) labels its metrics.
    """

    def __init__(
        self,
        *,
        client: CcallClient,
        fetcher: Fetcher,
        store: Store,
        ledger: Ledger,
        tz: ZoneInfo,
        prefix: str = "",
        concurrency: int = 8,
        missing_after: timedelta = timedelta(hours=24),
        source_info: dict[str, Any] | None = None,
        source_name: str | None = None,
        clock: Clock | None = None,
        store_retry: RetryPolicy | None = None,
        park_initial: timedelta = timedelta(minutes=1),
        park_max: timedelta = timedelta(hours=1),
        progress: Callable[[RunReport], None] | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        close_after: timedelta | None = None,
    ) -> None:
        self._client = client
        self._fetcher = fetcher
        self._store = store
        self._ledger = ledger
        self._tz = tz
        self._prefix = prefix
        self._concurrency = concurrency
        # Twice as many calls in flight as downloads: while one call's audio and sidecar go up,
        # the next call's recording is already coming down. Buffers beyond 1 MiB are on disk.
        self._download_slots = anyio.CapacityLimiter(concurrency)
        self._missing_after = missing_after
        self._source_info = source_info or {}
        self._clock = clock or SystemClock()
        self._store_retry = store_retry or STORE_PATIENCE
        self._park_initial = park_initial
        self._park_max = park_max
        self.progress = progress  # called with the RunReport after each call
        self._metrics = metrics or Metrics()
        self._source = source_name or DEFAULT_SOURCE
        self._metrics.add_source(self._source)
        self._close_after = close_after
        self._auditor = Auditor(store, prefix, concurrency=concurrency)
        self._health = health or Health(stall_after=float("inf"), ready_within=float("inf"))
        self._stop = anyio.Event()

    def stop(self) -> None:
        """Stop taking new work; calls already being archived finish."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    # -- entry points ---------------------------------------------------------------------

    async def backfill(self, since: datetime, until: datetime) -> RunReport:
        """Archive every call that started in ``[since, until)``. Parked calls are tried now."""
        windows = plan_windows(since, until, self._tz)
        report = RunReport(windows=len(windows))
        await self._process(windows, report, bounds=(since, until), due=[], honour_schedule=False)
        await self.close_days()
        log.info("backfill.completed", **report.summary())
        return report

    async def poll_once(self, *, lookback: timedelta, settle: timedelta) -> RunReport:
        """One daemon poll: due retries, then ``[min(cursor, now - lookback), now - settle]``."""
        now = self._clock.now()
        end = now - settle
        cursor = self._ledger.cursor()
        start = min(cursor, now - lookback) if cursor else now - lookback
        windows = plan_windows(start, end, self._tz)
        report = RunReport(windows=len(windows))
        due = list(self._ledger.due(now))
        safe = await self._process(windows, report, bounds=None, due=due, honour_schedule=True)
        if safe is not None and (cursor is None or safe > cursor):
            self._ledger.set_cursor(safe)
        await self.close_days()
        return report

    async def close_days(self) -> None:
        """Write the day files (manifest, CSV, page) of every day that closed with calls not yet in one.

        A day closes ``close_after`` past its end (the lookback: no call can be added by a poll
        any more), once none of its calls waits or fails. A call added later gets an addendum.
        """
        if self._close_after is None:
            return
        before = (self._clock.now() - self._close_after).astimezone(self._tz).date()
        for day in self._ledger.days_to_close(before):
            try:
                covered = await self._auditor.write_day_files(day, self._ledger.entries(day))
            except (TransientError, CallError) as exc:
                log.warning("day.close_failed", day=day.isoformat(), error=str(exc))
                continue
            self._ledger.set_covered(day, covered)

    # -- the shared path ------------------------------------------------------------------

    async def _process(
        self,
        windows: list[Window],
        report: RunReport,
        *,
        bounds: tuple[datetime, datetime] | None,
        due: list[PendingCall],
        honour_schedule: bool,
    ) -> datetime | None:
        """Read *windows* (and *due* retries) and archive what is not done, with bounded workers.

        Returns the time before which every call is done or parked. A failure to read the API
        stops the reading, lets the calls already handed out finish, then is raised.
        """
        batch = _Batch(report, windows, bounds=bounds, honour_schedule=honour_schedule, started=self._clock.now())
        send, receive = anyio.create_memory_object_stream[_Work](self._concurrency)
        read_error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(2 * self._concurrency):
                    tg.start_soon(self._work, batch, receive.clone())
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

    async def _produce(self, batch: _Batch, send: ObjectSendStream[_Work], due: list[PendingCall]) -> None:
        """Hand out the due retries, then every call of the batch's windows that is not done."""
        for parked in due:
            if self.stopping:
                break
            cdr = parse_row(parked.row, self._tz)
            batch.in_flight.add(cdr.call_id)
            await self._send(send, _Work(cdr, parked.day, parked, None))
        for index, window in enumerate(batch.windows):
            if self.stopping:
                batch.report.interrupted = True
                return
            await self._sync_days(window.days())
            async for row in self._client.cdr_rows(window.query_from, window.query_to):
                batch.report.rows += 1
                self._health.beat()
                work = batch.admit(parse_row(row, self._tz), window, index, self._ledger)
                if work is not None:
                    await self._send(send, work)
                if self.stopping:
                    batch.report.interrupted = True
                    return
            batch.tracker.read_all(index)
            batch.report.windows_done += 1

    async def _send(self, send: ObjectSendStream[_Work], work: _Work) -> None:
        self._metrics.queue_depth.inc()
        await send.send(work)

    async def _work(self, batch: _Batch, stream: ObjectReceiveStream[_Work]) -> None:
        """One worker: archive calls from *stream* until it closes."""
        async with stream:
            async for work in stream:
                self._metrics.queue_depth.dec()
                ok = False
                try:
                    if self.stopping:
                        batch.report.interrupted = True
                        continue
                    ok = await self._handle(work, batch.report)
                    if not ok:
                        batch.failed.add(work.cdr.call_id)  # not tried again in this run
                finally:
                    batch.finish(work, ok=ok)
                    self._report_progress(batch.report)

    async def _handle(self, work: _Work, report: RunReport) -> bool:
        """Archive one call; True when it is done or parked, False when it failed."""
        cdr = work.cdr
        day = cdr.day(work.fallback_day)
        began = time.monotonic()
        self._metrics.in_flight.inc()
        try:
            status, recording = await self._archive(cdr, day, work.pending)
        except FatalError:
            raise
        except (TransientError, CallError, OSError) as exc:
            self._fail(cdr, day, str(exc), exc, report)
            return False
        except Exception as exc:  # a bug must cost one call, not the archive
            log.exception("call.crashed", call_id=cdr.call_id)
            self._fail(cdr, day, f"internal error: {type(exc).__name__}: {exc}", exc, report)
            return False
        finally:
            self._metrics.in_flight.dec()
            self._health.beat()
        if status == "parked":
            report.parked.append(cdr.call_id)
            self._metrics.parked.labels(source=self._source).inc()
            return True
        report.outcomes[status] += 1
        size = recording.get("size", 0) if recording else 0
        report.bytes += size
        self._metrics.calls.labels(source=self._source, outcome=status).inc()
        if status == "archived":
            self._metrics.recordings.labels(source=self._source).inc()
            self._metrics.bytes.labels(source=self._source).inc(size)
        log.info(
            "call.archived",
            call_id=cdr.call_id,
            status=status,
            key=keys.sidecar_key(self._prefix, day, cdr.call_id),
            recording_key=recording.get("key") if recording else None,
            size=size,
            seconds=round(time.monotonic() - began, 3),
        )
        return True

    def _fail(self, cdr: Cdr, day: date, error: str, exc: BaseException, report: RunReport) -> None:
        report.failed.append((cdr.call_id, error))
        self._metrics.failed(self._source, exc)
        self._ledger.record_failure(cdr.call_id, day, error, self._clock.now())
        log.error("call.failed", call_id=cdr.call_id, error=error)

    async def _archive(self, cdr: Cdr, day: date, pending: PendingCall | None) -> tuple[str, dict[str, Any]]:
        """Store the call's audio (if any) then its sidecar; returns (status, recording)."""
        if cdr.recording_url_invalid is not None:
            recording = sidecar.rejected(
                cdr.raw.get("recording_file"), {"kind": "invalid_link", "message": cdr.recording_url_invalid}
            )
        elif cdr.recording_url is None:
            recording = sidecar.no_recording()
        else:
            url = cdr.recording_url
            try:
                async with self._download_slots:
                    download = await self._fetcher.fetch(url)
            except RecordingRejected as exc:
                recording = sidecar.rejected(url, exc.detail)
            except RecordingUnavailable as exc:
                gave_up = self._park_or_give_up(cdr, day, pending, exc)
                if gave_up is None:
                    return "parked", {}
                recording = sidecar.missing(url, gave_up)
            else:
                with download:
                    key = keys.audio_key(self._prefix, day, cdr.call_id, download.format)
                    await self._store_audio(key, download, cdr.call_id)
                    recording = sidecar.archived(key, download, url)
        entry = await self._store_sidecar(cdr, day, recording)
        status = str(recording["status"])
        self._ledger.mark_done(cdr.call_id, day, status, self._clock.now(), entry)
        return status, recording

    def _park_or_give_up(
        self, cdr: Cdr, day: date, pending: PendingCall | None, exc: RecordingUnavailable
    ) -> PendingCall | None:
        """Park the call for a later try; or, past its deadline, return the record of tries."""
        now = self._clock.now()
        attempts = (pending.attempts if pending else 0) + 1
        # A call whose start does not parse ended, at the latest, about when its filing day did.
        ended = cdr.end_utc() or datetime.combine(day + timedelta(days=1), dt_time(0), self._tz)
        deadline = pending.deadline if pending else ended + self._missing_after
        backoff = min(self._park_initial * (2 ** (attempts - 1)), self._park_max)
        record = PendingCall(
            call_id=cdr.call_id,
            day=day,
            row=cdr.row,
            attempts=attempts,
            first_attempt=pending.first_attempt if pending else now,
            last_attempt=now,
            next_attempt=min(now + backoff, deadline),
            deadline=deadline,
            last_error=exc.detail,
        )
        if now >= deadline:
            log.warning("call.missing", call_id=cdr.call_id, attempts=attempts, error=str(exc))
            return record
        self._ledger.park(record)
        log.info(
            "call.parked",
            call_id=cdr.call_id,
            attempts=attempts,
            next_attempt=record.next_attempt.isoformat(),
            error=str(exc),
        )
        return None

    async def _store_audio(self, key: str, download: Download, call_id: str) -> None:
        async for attempt in self._store_retry.context():
            with attempt:
                try:
                    await self._store.put(
                        key,
                        download.file,
                        size=download.size,
                        sha256=download.sha256,
                        content_type=CONTENT_TYPES[download.format],
                        metadata={"call-id": call_id},
                    )
                except ObjectExists:
                    await self._check_existing_audio(key, download)

    async def _check_existing_audio(self, key: str, download: Download) -> None:
        """An audio object without its sidecar: keep it only if it has the same bytes."""
        info = await self._store.head(key)
        if info is None:
            raise ArchiveConflict(f"{key} was reported as existing but cannot be found")
        digest = info.sha256 if info.sha256 is not None and info.size == download.size else None
        if digest is None and info.size == download.size:
            _, digest = await self._store.digest(key)
        if info.size != download.size or digest != download.sha256:
            raise ArchiveConflict(
                f"{key} already holds {info.size} bytes that differ from the recording now served "
                f"({download.size} bytes, sha256 {download.sha256.hex()[:16]}…); nothing was overwritten"
            )
        log.info("recording.already_stored", key=key)

    async def _store_sidecar(self, cdr: Cdr, day: date, recording: dict[str, Any]) -> dayfiles.CallEntry:
        """Store the sidecar create-only; returns what the day's files will say of the call,
        from the bytes now in the store (an earlier run's, if it got there first)."""
        key = keys.sidecar_key(self._prefix, day, cdr.call_id)
        document = sidecar.build(cdr, recording, archived_at=self._clock.now(), source=self._source_info)
        async for attempt in self._store_retry.context():
            with attempt:
                try:
                    await put_bytes(self._store, key, document, "application/json")
                except ObjectExists:
                    log.info("sidecar.already_stored", key=key, call_id=cdr.call_id)
                    document = await self._store.read(key)
        return dayfiles.CallEntry.from_sidecar(cdr.call_id, document)

    async def _sync_days(self, days: list[date]) -> None:
        """Teach the ledger which calls of *days* the bucket already holds (once per day)."""
        for day in days:
            if self._ledger.is_day_synced(day):
                continue
            found: set[str] = set()
            async for attempt in self._store_retry.context():
                with attempt:
                    found = await stored_call_ids(self._store, self._prefix, day)
            self._ledger.record_day_sync(day, found, self._clock.now())
            log.debug("day.synced", day=day.isoformat(), sidecars=len(found))

    def _report_progress(self, report: RunReport) -> None:
        if self.progress is not None:
            self.progress(report)


class _Batch:
    """The state of one _process run: what is in flight, what failed, how far is finished."""

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

    def admit(self, cdr: Cdr, window: Window, index: int, ledger: Ledger) -> _Work | None:
        """The work for *cdr*, or None when it is out of range, done, busy or not due."""
        if not cdr.started_within(self.bounds):
            return None
        call_id = cdr.call_id
        if call_id in self.in_flight or call_id in self.failed or ledger.is_done(call_id):
            self.report.skipped += 1
            return None
        pending = ledger.pending(call_id)
        if pending and (
            pending.last_attempt >= self.started or (self.honour_schedule and pending.next_attempt > self.started)
        ):
            self.report.skipped += 1
            return None
        if cdr.problems:
            log.warning("cdr.malformed", call_id=call_id, problems=list(cdr.problems))
        self.in_flight.add(call_id)
        self.tracker.add(index)
        return _Work(cdr, window.day, pending, index)

    def finish(self, work: _Work, *, ok: bool) -> None:
        """*work* is over: done or parked (*ok*), or not (failed, or skipped by a stop)."""
        self.in_flight.discard(work.cdr.call_id)
        if work.window is not None:
            self.tracker.finish(work.window, ok=ok)
