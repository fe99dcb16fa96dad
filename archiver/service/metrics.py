"""What the daemon tells its monitoring: Prometheus metrics, liveness and readiness.

``Metrics`` owns a private registry (so tests and several archivers in one process do not
collide) and the instruments the pipeline updates. ``Health`` tracks the poll loop's heartbeat
and its last successful poll; the watchdog, ``/healthz`` and ``/readyz`` read it.
``serve`` exposes both on ``metrics.listen`` from a thread, off the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import stamina.instrumentation
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from archiver import __version__
from archiver.core.report import DONE_STATUSES
from archiver.errors import (
    ApiUnavailable,
    ArchiveConflict,
    RecordingUnavailable,
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
    if isinstance(exc, OSError):
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
        self.parked = Counter(
            "archiver_calls_parked", "Times a call was parked to wait for its recording.", per_source, registry=r
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
            "Seconds since the last poll that succeeded (NaN before the first).",
            per_source,
            registry=r,
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
        self._last_success_at: dict[str, float] = {}
        self._sources: set[str] = set()

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

        def age() -> float:
            at = self._last_success_at.get(source)
            return time.time() - at if at else float("nan")

        self.poll_age.labels(source=source).set_function(age)

    def poll_succeeded(self, source: str, lag_seconds: float | None) -> None:
        self._last_success_at[source] = time.time()
        self.last_success.labels(source=source).set(self._last_success_at[source])
        if lag_seconds is not None:
            self.cursor_lag.labels(source=source).set(lag_seconds)

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


class Health:
    """Liveness (the loop makes progress) and readiness (a poll succeeded recently)."""

    def __init__(self, *, stall_after: float, ready_within: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.stall_after = stall_after
        self.ready_within = ready_within
        self._beat = clock()
        self._last_success: float | None = None
        self.last_error: str | None = None

    def beat(self) -> None:
        self._beat = self._clock()

    def poll_succeeded(self) -> None:
        self._last_success = self._beat = self._clock()
        self.last_error = None

    def poll_failed(self, error: str) -> None:
        self._beat = self._clock()
        self.last_error = error

    def alive(self) -> bool:
        return self._clock() - self._beat < self.stall_after

    def ready(self) -> bool:
        return self._last_success is not None and self._clock() - self._last_success < self.ready_within


def serve(listen: str, metrics: Metrics, health: Health) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on *listen* (host:port) from a daemon thread.

    Raises OSError when the address cannot be bound.
    """
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"stalled: the poll loop made no progress\n")
            elif path == "/readyz":
                ok = health.ready()
                reason = health.last_error or "no poll has succeeded recently"
                self._answer(200 if ok else 503, b"ready\n" if ok else f"not ready: {reason}\n".encode())
            else:
                self._answer(404, b"try /metrics, /healthz or /readyz\n")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics", daemon=True).start()
    return server
