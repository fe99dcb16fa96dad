"""Prometheus metrics: the instruments, and the observer that feeds them from the archiving path.

``Metrics`` owns a private registry (so tests and several archivers in one process do not
collide). :class:`SourceMetrics` is one source's :class:`~archiver.archive.events.ArchiveEvents`
observer; the daemon updates the poll, ledger and lease gauges itself.

The alerting rules in ``monitoring/`` read these names, and a test holds every name they use to
what a running daemon serves; rename one only together with the rules and the dashboard.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import stamina.instrumentation
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from archiver import __version__
from archiver.archive.events import ArchiveEvents
from archiver.core.outcome import DONE_STATUSES, RecordingStatus
from archiver.errors import (
    ApiUnavailable,
    ArchiveConflict,
    RecordingUnavailable,
    SpoolError,
    StoreUnavailable,
)

DEFAULT_SOURCE = "default"  # the source label of a config with one source
FAILURE_CLASSES = ("api", "store", "recording", "conflict", "local", "other")


def failure_class(exc: BaseException) -> str:
    """A small, fixed label for what failed: api, store, recording, conflict, local, other."""
    if isinstance(exc, ApiUnavailable):
        return "api"
    if isinstance(exc, StoreUnavailable):
        return "store"
    if isinstance(exc, RecordingUnavailable):
        return "recording"
    if isinstance(exc, ArchiveConflict):
        return "conflict"
    if isinstance(exc, OSError | SpoolError):
        return "local"
    return "other"


class Metrics:
    """The archiver's instruments, in their own registry. Names follow Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        # Everything that happens to one source's calls is labelled by source (its name in
        # sources:, or "default"): sum over it for the whole archiver.
        per_source = ["source"]
        self.calls = Counter("archiver_calls", "Calls finished, by outcome.", ["source", "outcome"], registry=r)
        self.recordings = Counter(
            "archiver_recordings_archived", "Recordings stored in the archive.", per_source, registry=r
        )
        self.bytes = Counter("archiver_archived_bytes", "Bytes of audio stored in the archive.", per_source, registry=r)
        self.failures = Counter(
            "archiver_failures",
            "Failures that left a call undone or a poll failed, by class.",
            ["source", "class"],
            registry=r,
        )
        self.retries = Counter(
            "archiver_retries", "Retries scheduled, by what failed.", ["source", "class"], registry=r
        )
        self.suspicious = Counter(
            "archiver_cdr_suspicious",
            "Rows that look recorded (answered, with talk time) but came without a link field the archiver knows.",
            per_source,
            registry=r,
        )
        self.parked = Counter(
            "archiver_calls_parked", "Times a call was parked to wait for its recording.", per_source, registry=r
        )
        self.quarantined = Gauge(
            "archiver_quarantined_calls",
            "Calls set aside after failing run after run; retried hourly to daily (archiver status lists them).",
            per_source,
            registry=r,
        )
        self.in_flight = Gauge("archiver_downloads_in_flight", "Recordings being downloaded or stored now.", registry=r)
        self.queue_depth = Gauge("archiver_queue_depth", "Calls read from the API waiting for a worker.", registry=r)
        self.pending = Gauge(
            "archiver_pending_calls", "Calls waiting for their recording to be served.", per_source, registry=r
        )
        self.cursor_lag = Gauge(
            "archiver_cursor_lag_seconds", "How far the daemon's cursor is behind now.", per_source, registry=r
        )
        self.last_success = Gauge(
            "archiver_last_successful_poll_timestamp_seconds",
            "Unix time of the last poll that succeeded.",
            per_source,
            registry=r,
        )
        self.poll_age = Gauge(
            "archiver_last_successful_poll_age_seconds",
            "Seconds since the last poll that succeeded (before the first: since the daemon started).",
            per_source,
            registry=r,
        )
        self.overdue = Gauge(
            "archiver_pending_overdue_seconds",
            "How long past download.missing_after the most overdue call still waiting is (0: none is).",
            per_source,
            registry=r,
        )
        self.lease_held = Gauge(
            "archiver_lease_held",
            "1 while this instance holds the source's lease and polls it (always, without coordination); 0 on standby.",
            per_source,
            registry=r,
        )
        self.lease_changes = Counter(
            "archiver_lease_changes",
            "Times this instance took a source's lease or lost it.",
            ["source", "change"],
            registry=r,
        )
        self.recording_retention = Gauge(
            "archiver_source_recording_retention_seconds",
            "How long the PBX keeps a recording (source.recording_retention), where the configuration says.",
            per_source,
            registry=r,
        )
        self.poll_interval = Gauge("archiver_poll_interval_seconds", "The daemon's poll.interval.", registry=r)
        self.poll_lookback = Gauge("archiver_poll_lookback_seconds", "The daemon's poll.lookback.", registry=r)
        self.spool_free = Gauge(
            "archiver_spool_free_bytes",
            "Bytes free to the archiver on the file system of download.spool_dir (the temporary folder by default).",
            registry=r,
        )
        self.spool_size = Gauge(
            "archiver_spool_size_bytes", "Size of the file system of download.spool_dir.", registry=r
        )
        self.registered = Gauge(
            "archiver_registered_extensions", "Extensions with a registered device (ext_reg).", per_source, registry=r
        )
        self.poll_duration = Histogram(
            "archiver_poll_duration_seconds",
            "How long one poll took.",
            registry=r,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        info = Gauge("archiver_build_info", "The archiver's version.", ["version"], registry=r)
        info.labels(version=__version__).set(1)
        ProcessCollector(registry=r)  # process_start_time_seconds, memory, CPU, open files
        self._started_at = time.time()
        self._last_success_at: dict[str, float] = {}
        self._sources: set[str] = set()

    def describe(self, *, interval: timedelta, lookback: timedelta, spool_dir: Path | None) -> None:
        """The settings the alerting rules compare against, and the spool's file system, read at
        each scrape (an unreadable one reads as NaN)."""
        self.poll_interval.set(interval.total_seconds())
        self.poll_lookback.set(lookback.total_seconds())
        folder = str(spool_dir or tempfile.gettempdir())

        def usage(field: str) -> float:
            try:
                return float(getattr(shutil.disk_usage(folder), field))
            except OSError:
                return float("nan")

        self.spool_free.set_function(lambda: usage("free"))
        self.spool_size.set_function(lambda: usage("total"))

    def add_source(self, source: str) -> None:
        """Start *source*'s series at zero (its poll age is NaN until a poll succeeds)."""
        if source in self._sources:
            return
        self._sources.add(source)
        for outcome in DONE_STATUSES:
            self.calls.labels(source=source, outcome=outcome)
        for kind in FAILURE_CLASSES:
            self.failures.labels(source=source, **{"class": kind})
            self.retries.labels(source=source, **{"class": kind})
        self.recordings.labels(source=source)
        self.bytes.labels(source=source)
        self.parked.labels(source=source)
        self.quarantined.labels(source=source)
        self.suspicious.labels(source=source)
        self.pending.labels(source=source)
        self.overdue.labels(source=source)
        for change in ("taken", "lost"):
            self.lease_changes.labels(source=source, change=change)

        def age() -> float:
            return time.time() - self._last_success_at.get(source, self._started_at)

        self.poll_age.labels(source=source).set_function(age)

    def poll_succeeded(self, source: str) -> None:
        self._last_success_at[source] = time.time()
        self.last_success.labels(source=source).set(self._last_success_at[source])

    def ledger_state(
        self, source: str, *, lag_seconds: float | None, pending: int, quarantined: int, overdue_seconds: float
    ) -> None:
        """What the ledger says after a poll, whether it succeeded or not (a lag that grows while
        polls fail is what the cursor-lag alerts watch)."""
        if lag_seconds is not None:
            self.cursor_lag.labels(source=source).set(lag_seconds)
        self.pending.labels(source=source).set(pending)
        self.quarantined.labels(source=source).set(quarantined)
        self.overdue.labels(source=source).set(overdue_seconds)

    def lease_changed(self, source: str, *, held: bool) -> None:
        self.lease_changes.labels(source=source, change="taken" if held else "lost").inc()

    def failed(self, source: str, exc: BaseException) -> None:
        self.failures.labels(source=source, **{"class": failure_class(exc)}).inc()

    def install_retry_hook(self) -> None:
        """Count stamina's retries here (and keep its structlog events). Process-wide: the
        source is the one bound to the log context of the task that retried."""

        def on_retry(details: stamina.instrumentation.RetryDetails) -> None:
            source = structlog.contextvars.get_contextvars().get("source", DEFAULT_SOURCE)
            self.retries.labels(source=source, **{"class": failure_class(details.caused_by)}).inc()

        stamina.instrumentation.set_on_retry_hooks([on_retry, stamina.instrumentation.StructlogOnRetryHook])

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


class SourceMetrics(ArchiveEvents):
    """Feeds *metrics* from one source's archiving path, labelled *source*."""

    def __init__(self, metrics: Metrics, source: str = DEFAULT_SOURCE) -> None:
        self._metrics = metrics
        self._source = source
        metrics.add_source(source)

    def row_suspicious(self, call_id: str, reason: str) -> None:
        self._metrics.suspicious.labels(source=self._source).inc()

    def call_queued(self) -> None:
        self._metrics.queue_depth.inc()

    def call_started(self) -> None:
        self._metrics.queue_depth.dec()
        self._metrics.in_flight.inc()

    def call_finished(self) -> None:
        self._metrics.in_flight.dec()

    def call_done(self, call_id: str, status: RecordingStatus, size: int) -> None:
        self._metrics.calls.labels(source=self._source, outcome=str(status)).inc()
        if status == RecordingStatus.ARCHIVED:
            self._metrics.recordings.labels(source=self._source).inc()
            self._metrics.bytes.labels(source=self._source).inc(size)

    def call_parked(self, call_id: str) -> None:
        self._metrics.parked.labels(source=self._source).inc()

    def call_quarantined(self, call_id: str) -> None:
        self._metrics.quarantined.labels(source=self._source).inc()  # the daemon sets the true count after the poll

    def call_failed(self, call_id: str, error: BaseException) -> None:
        self._metrics.failed(self._source, error)
