"""Running as a service: systemd notify, metrics, health, dead-man ping, status and progress."""

from __future__ import annotations

import shutil
import socket
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import stamina.instrumentation
import structlog
import yaml

from archiver.compose import assemble
from archiver.config.load import parse_config
from archiver.core.clock import SystemClock
from archiver.core.parking import PendingCall
from archiver.errors import ApiUnavailable, ArchiveConflict, StoreUnavailable
from archiver.retry import RetryPolicy
from archiver.service.daemon import Daemon
from archiver.service.health import Health
from archiver.service.metrics import FAILURE_CLASSES, Metrics, SourceMetrics, failure_class
from archiver.service.notify import Notifier
from archiver.service.ping import DeadManPing
from archiver.source.http import HttpClient
from tests.helpers import DAEMON_SECRET, FAST, FakeClock, TinyServer, daemon_config, free_port, metric

SECRET = DAEMON_SECRET


@pytest.mark.anyio
async def test_a_failed_poll_pings_fail_and_is_recorded(tmp_path: Path) -> None:
    """When the API is unreachable the poll fails: URL/fail is hit with the reason, the ledger and readiness say so."""
    hits: list[tuple[str, str]] = []

    def record(h: BaseHTTPRequestHandler) -> None:
        hits.append((h.path, h.rfile.read(int(h.headers.get("Content-Length") or 0)).decode()))
        h.send_response(200)
        h.send_header("Content-Length", "0")
        h.end_headers()

    config = parse_config(
        yaml.safe_load(daemon_config(tmp_path, f"http://127.0.0.1:{free_port()}").read_text()), environ={}
    )
    metrics, health = Metrics(), Health(stall_after=60, ready_within=60)
    with TinyServer(record) as pinged:
        async with assemble(config, api_retry=FAST, observers=[SourceMetrics(metrics), health]) as parts:
            daemon = Daemon(
                parts.archiver,
                ledger=parts.ledger,
                client=parts.client,
                poll=config.poll,
                clock=SystemClock(),
                metrics=metrics,
                health=health,
                notifier=Notifier({}),
                ping=DeadManPing(parts.http, pinged.url + "/check"),
            )
            assert await daemon.poll_once() is None
            status = parts.ledger.progress.status(datetime.now(ZoneInfo("UTC")))
    assert [path for path, _ in hits] == ["/check/fail"]
    assert "failed" in hits[0][1]
    assert status["last_poll"]["ok"] is False
    assert "failed" in status["last_poll"]["error"]
    assert not health.ready()
    assert metric(metrics.exposition().decode(), "archiver_failures_total", **{"class": "api"}) == 1


@pytest.mark.anyio
async def test_one_ping_for_several_sources_stays_failed_until_every_source_succeeds() -> None:
    """A failing source is not hidden by another source's success: the check is hit as succeeded
    only once no source is failing."""
    hits: list[str] = []

    def record(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers.get("Content-Length", 0)))
        hits.append(h.path)
        h.send_response(200)
        h.send_header("Content-Length", "0")
        h.end_headers()

    with TinyServer(record) as pinged:
        async with HttpClient(timeout=5, connections=2) as http:
            ping = DeadManPing(http, pinged.url + "/check")
            await ping.success("hq")
            await ping.failure("API down", "danang")
            await ping.success("hq")  # danang still failing: no success hit
            await ping.success("danang")
    assert hits == ["/check", "/check/fail", "/check"]


def test_health_tracks_progress_and_recent_success() -> None:
    """Alive while the loop beats; ready only after a recent successful poll."""
    now = [100.0]
    health = Health(stall_after=10, ready_within=30, clock=lambda: now[0])
    assert health.alive()
    assert not health.ready()
    health.poll_succeeded()
    assert health.ready()
    now[0] += 31
    assert not health.ready()
    assert not health.alive()
    health.beat()
    assert health.alive()
    health.poll_failed("API down")
    assert health.last_error == "API down"


def test_the_notifier_is_silent_without_systemd_and_speaks_with_it(tmp_path: Path) -> None:
    """No NOTIFY_SOCKET: nothing is sent. With one: datagrams, abstract or path sockets alike."""
    assert not Notifier({}).enabled
    Notifier({}).ready("ignored")
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
        assert notifier.watchdog_seconds == 4.0
        notifier.ready("hello")
        assert sock.recv(100) == b"READY=1\nSTATUS=hello"


@pytest.mark.parametrize(
    ("error", "label"),
    [
        (ApiUnavailable("x"), "api"),
        (StoreUnavailable("x"), "store"),
        (ArchiveConflict("x"), "conflict"),
        (OSError(28, "full"), "local"),
        (ValueError(), "other"),
    ],
)
def test_failures_are_counted_by_class(error: BaseException, label: str) -> None:
    """Failure classes are a small fixed set, fit for alert rules."""
    assert failure_class(error) == label
    assert label in FAILURE_CLASSES
    metrics = Metrics()
    metrics.add_source("hq")
    metrics.failed("hq", error)
    text = metrics.exposition().decode()
    assert metric(text, "archiver_failures_total", source="hq", **{"class": label}) == 1
    others = [c for c in FAILURE_CLASSES if c != label]
    assert all(metric(text, "archiver_failures_total", source="hq", **{"class": c}) == 0 for c in others)


@pytest.mark.anyio
async def test_retries_are_counted_under_the_source_whose_task_retried() -> None:
    """The retry hook is process-wide; the source comes from the log context of the task."""
    metrics = Metrics()
    metrics.install_retry_hook()
    policy = RetryPolicy(attempts=3, timeout=5.0, wait_initial=0.001, wait_max=0.001)
    try:
        for bound, failures in (({"source": "hq"}, 2), ({}, 1)):
            with structlog.contextvars.bound_contextvars(**bound):
                tries = 0
                async for attempt in policy.context():
                    with attempt:
                        tries += 1
                        if tries <= failures:
                            raise StoreUnavailable("the store did not answer")
    finally:
        stamina.instrumentation.set_on_retry_hooks(None)
    text = metrics.exposition().decode()
    assert metric(text, "archiver_retries_total", source="hq", **{"class": "store"}) == 2
    assert metric(text, "archiver_retries_total", source="default", **{"class": "store"}) == 1


@pytest.mark.anyio
async def test_failing_polls_still_report_the_cursor_lag_and_overdue_calls(tmp_path: Path) -> None:
    """While polls fail (the API unreachable), the cursor's lag grows in /metrics and a call still
    waiting past download.missing_after is reported overdue: the alerts read both."""
    config = parse_config(
        yaml.safe_load(daemon_config(tmp_path, f"http://127.0.0.1:{free_port()}").read_text()), environ={}
    )
    metrics = Metrics()
    clock = FakeClock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    async with assemble(config, api_retry=FAST, observers=[SourceMetrics(metrics)]) as parts:
        parts.ledger.progress.set_cursor(clock.now() - timedelta(hours=30))
        waiting = clock.now() - timedelta(hours=3)
        parts.ledger.retries.park(
            PendingCall(
                call_id="0b3f6a1e-7c2d-4e58-9a61-3d2c1b0a9f8e",
                day=waiting.date(),
                row={},
                attempts=5,
                first_attempt=waiting - timedelta(hours=24),
                last_attempt=waiting,
                next_attempt=waiting,
                deadline=waiting,
                last_error={"error": "404"},
            )
        )
        daemon = Daemon(
            parts.archiver,
            ledger=parts.ledger,
            client=parts.client,
            poll=config.poll,
            clock=clock,
            metrics=metrics,
            health=Health(stall_after=60, ready_within=60),
            notifier=Notifier({}),
        )
        assert await daemon.poll_once() is None  # failed
    text = metrics.exposition().decode()
    assert metric(text, "archiver_cursor_lag_seconds", source="default") == 30 * 3600
    assert metric(text, "archiver_pending_overdue_seconds", source="default") == 3 * 3600
    assert metric(text, "archiver_pending_calls", source="default") == 1
    assert metric(text, "archiver_lease_held", source="default") == 1  # no coordination: it always polls


def test_before_the_first_successful_poll_its_age_counts_from_the_start() -> None:
    """A daemon that never polled successfully reports a growing age, not NaN, so that
    ArchiverNotPolling fires for it too."""
    metrics = Metrics()
    metrics.add_source("hq")
    age = metric(metrics.exposition().decode(), "archiver_last_successful_poll_age_seconds", source="hq")
    assert 0 <= age < 60
    metrics.poll_succeeded("hq")
    assert metric(metrics.exposition().decode(), "archiver_last_successful_poll_age_seconds", source="hq") < 1


def test_the_settings_the_alerts_compare_against_and_the_spool_disk_are_served(tmp_path: Path) -> None:
    """poll.interval, poll.lookback, and the spool folder's file system as the OS reports it."""
    metrics = Metrics()
    metrics.describe(interval=timedelta(seconds=60), lookback=timedelta(hours=6), spool_dir=tmp_path)
    text = metrics.exposition().decode()
    assert metric(text, "archiver_poll_interval_seconds") == 60
    assert metric(text, "archiver_poll_lookback_seconds") == 6 * 3600
    usage = shutil.disk_usage(tmp_path)
    assert metric(text, "archiver_spool_size_bytes") == usage.total
    assert abs(metric(text, "archiver_spool_free_bytes") - usage.free) < 64 * 2**20
    assert metric(text, "process_start_time_seconds") > 0
