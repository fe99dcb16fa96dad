"""The daemon: one source's drift-corrected poll loop, under its lease.

After each poll the daemon tells the outside world how it went: the ledger (for
``archiver status``), the metrics and readiness, systemd's ``STATUS=``, and the dead-man ping.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from datetime import timedelta

import anyio
import structlog

from archiver.archive.runner import Archiver
from archiver.config.models import PollConfig
from archiver.coordination.lease import Lease
from archiver.core.clock import Clock
from archiver.core.quantities import format_duration
from archiver.core.report import RunReport
from archiver.errors import TransientError, redact
from archiver.service.health import Health
from archiver.service.metrics import DEFAULT_SOURCE, Metrics
from archiver.service.notify import Notifier
from archiver.service.ping import DeadManPing
from archiver.source.ccall import CcallClient
from archiver.state.ledger import Ledger

log = structlog.get_logger("archiver.service")


class Daemon:
    """Polls every ``poll.interval`` until the archiver is stopped."""

    def __init__(
        self,
        archiver: Archiver,
        *,
        ledger: Ledger,
        client: CcallClient,
        poll: PollConfig,
        clock: Clock,
        metrics: Metrics,
        health: Health,
        notifier: Notifier,
        ping: DeadManPing | None = None,
        ready: bool = False,
        secrets: tuple[str, ...] = (),
        lease: Lease | None = None,
        ours: Callable[[], bool] | None = None,
        label: str | None = None,
    ) -> None:
        self._archiver = archiver
        self._ledger = ledger
        self._client = client
        self._poll = poll
        self._clock = clock
        self._metrics = metrics
        self._health = health
        self._notifier = notifier
        self._ping = ping
        self._ready = ready
        self._secrets = secrets
        self._lease = lease
        self._ours = ours  # with several sources: is this source in our share (coordination.membership)?
        self._label = f"{label}: " if label else ""
        self._source = label or DEFAULT_SOURCE  # the source label of its metrics
        metrics.add_source(self._source)
        held = metrics.lease_held.labels(source=self._source)
        if lease is None:
            held.set(1)  # no peers: this instance always polls
        else:
            held.set_function(lambda: float(lease.held))
        self._poll_scope: anyio.CancelScope | None = None

    async def run(self) -> None:
        """Poll, then wait for the next tick (drift-corrected: a slow poll shortens the wait).

        With a lease, only its holder polls; the others stand by and take over when it expires.
        With several sources, every log line of this source's polls names it.
        """
        if self._label:
            structlog.contextvars.bind_contextvars(source=self._source)  # this task and the ones it starts
        period = self._poll.interval.total_seconds()
        next_tick = anyio.current_time()
        async with anyio.create_task_group() as tg:
            if self._lease is not None:
                await self._hold_lease()
                tg.start_soon(self._keep_lease)
            while not self._archiver.stopping:
                if self._lease is None or self._lease.held:
                    # The poll ends at the lease's local deadline unless a renewal moves it on.
                    with anyio.CancelScope(deadline=self._lease_deadline()) as self._poll_scope:
                        await self.poll_once()
                    scope, self._poll_scope = self._poll_scope, None
                    if scope.cancelled_caught and self._lease is not None and not self._lease.held:
                        log.warning(
                            "lease.expiring_unrenewed", key=self._lease.key, margin=self._lease.margin.total_seconds()
                        )
                else:
                    self._health.beat()
                    self._notifier.status(f"{self._label}standby: another instance holds the lease and polls")
                next_tick = max(next_tick + period, anyio.current_time())
                while not self._archiver.stopping and (remaining := next_tick - anyio.current_time()) > 0:
                    with anyio.move_on_after(min(remaining, 1.0)):
                        await self._archiver.wait_stopped()
                    self._health.beat()  # idle is alive
            tg.cancel_scope.cancel()
        if self._lease is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(TransientError):
                await self._lease.release()

    async def _hold_lease(self) -> None:
        assert self._lease is not None
        was_held = self._lease.held
        try:
            if self._ours is None or self._ours():
                held = await self._lease.hold()
            elif was_held:
                log.info("lease.handed_back", key=self._lease.key)  # another instance's share now
                await self._lease.release()
                held = False
            else:
                held = await self._lease.rescue(stale_for=self._lease.ttl)
        except TransientError as exc:
            log.warning("lease.unavailable", error=str(exc), seconds_left=round(self._lease.seconds_left(), 1))
            held = self._lease.held
        if held != was_held:
            self._metrics.lease_changed(self._source, held=held)
        if self._poll_scope is not None:
            if was_held and not held:
                self._poll_scope.cancel()  # another instance polls now; stop duplicating its work
            elif held:
                self._poll_scope.deadline = self._lease_deadline()  # renewed: the poll may go on

    def _lease_deadline(self) -> float:
        """When (anyio's clock) a poll must stop: the lease's local deadline; never without a lease."""
        return math.inf if self._lease is None else anyio.current_time() + self._lease.seconds_left()

    async def _keep_lease(self) -> None:
        assert self._lease is not None
        while True:
            await anyio.sleep(self._lease.ttl.total_seconds() / 3)
            await self._hold_lease()

    async def poll_once(self) -> RunReport | None:
        """One poll and its reporting. Transient failures are reported, not raised."""
        began = time.monotonic()
        self._health.beat()
        log.debug("poll.started")
        try:
            report = await self._archiver.poll_once(lookback=self._poll.lookback, settle=self._poll.settle)
        except TransientError as exc:
            await self._failed(str(exc), exc)
            return None
        finally:
            self._metrics.poll_duration.observe(time.monotonic() - began)
        await self._count_registrations()
        if report.failed:
            call_id, error = report.failed[0]
            await self._failed(f"{len(report.failed)} call(s) failed, e.g. {call_id}: {error}", None, report)
            return report
        now = self._clock.now()
        lag = self._ledger_state()
        self._health.poll_succeeded()
        self._metrics.poll_succeeded(self._source)
        self._ledger.progress.record_poll(now, ok=True, summary=report.summary())
        status = self._label + self._status_line(lag)
        if self._ready:
            self._notifier.status(status)
        else:
            self._notifier.ready(status)
            self._ready = True
        log.info("poll.completed", **report.summary(), cursor_lag_seconds=lag)
        if self._ping:
            await self._ping.success(self._source)
        return report

    async def _failed(self, error: str, exc: BaseException | None, report: RunReport | None = None) -> None:
        error = redact(error, self._secrets)
        self._health.poll_failed(error)
        if exc is not None:
            self._metrics.failed(self._source, exc)
        self._ledger_state()
        self._ledger.progress.record_poll(
            self._clock.now(), ok=False, error=error, summary=report.summary() if report else None
        )
        self._notifier.status(f"{self._label}poll failed: {error[:200]}")
        log.error("poll.failed", error=error)
        if self._ping:
            await self._ping.failure(error, self._source)

    def _ledger_state(self) -> float | None:
        """Put what the ledger says (cursor lag, waiting, quarantined and overdue calls) into the
        metrics, after every poll; the cursor lag in seconds."""
        now = self._clock.now()
        cursor = self._ledger.progress.cursor()
        lag = (now - cursor).total_seconds() if cursor else None
        retries = self._ledger.retries
        self._metrics.ledger_state(
            self._source,
            lag_seconds=lag,
            pending=retries.count_pending(),
            quarantined=retries.count_quarantined(),
            overdue_seconds=retries.overdue(now).total_seconds(),
        )
        return lag

    async def _count_registrations(self) -> None:
        try:
            regs = await self._client.registrations()
        except TransientError as exc:
            log.warning("registrations.unavailable", error=str(exc))
            return
        self._metrics.registered.labels(source=self._source).set(len({r.extension for r in regs}))

    def _status_line(self, lag: float | None) -> str:
        done = self._ledger.calls.count_done()
        pending = self._ledger.retries.count_pending()
        failing = len(self._ledger.retries.failures()) + self._ledger.retries.count_quarantined()
        lag_text = format_duration(timedelta(seconds=lag)) if lag is not None else "n/a"
        return f"{done} calls archived, {pending} waiting for recordings, {failing} failing; cursor lag {lag_text}"
