"""Running as a service: systemd notify, metrics, health, dead-man ping, status and progress."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from archiver.simulator import Dataset, Faults, Simulator
from tests.helpers import DAEMON_SECRET, Bucket, TinyServer, daemon_config, free_port, is_sidecar, metric, run_cli

SECRET = DAEMON_SECRET


@pytest.fixture
def live_sim() -> Iterator[Simulator]:
    """Calls all day long, a few in every hour, so a daemon has recent calls to archive."""
    dataset = Dataset(seed=4, calls_per_day=400, max_duration=3, business_hours_share=0)
    with Simulator(dataset, api_secret=SECRET) as sim:
        yield sim


def start_daemon(config: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return out, err


def wait_until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


def test_the_daemon_speaks_the_systemd_notify_protocol(live_sim: Simulator, tmp_path: Path) -> None:
    """READY=1 after the API and bucket answered, WATCHDOG=1 while alive, STATUS= per poll, STOPPING=1 on SIGTERM."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(0.2)
        process = start_daemon(daemon_config(tmp_path, live_sim.url), NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
        messages: list[str] = []

        def receive() -> bool:
            with contextlib.suppress(TimeoutError):
                messages.extend(sock.recv(4096).decode().splitlines())
            return "WATCHDOG=1" in messages and any("calls archived" in m for m in messages)

        wait_until(receive)
        stop(process)
        while True:
            try:
                messages.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                break
    assert messages.index("READY=1") < messages.index("WATCHDOG=1")
    assert any(m.startswith("STATUS=") and "waiting for recordings" in m for m in messages)
    assert "STOPPING=1" in messages
    assert messages.index("STOPPING=1") > messages.index("READY=1")


def test_a_daemon_that_cannot_start_says_why_in_its_systemd_status(tmp_path: Path) -> None:
    """Exit 2 for a configuration error, and STATUS= with the first problem and how many more:
    `systemctl status` shows that line whole, where the journal's JSON line is cut."""
    path = str(tmp_path / "notify.sock")
    config = tmp_path / "config.yaml"
    config.write_text(
        "source: {api_key_file: /nowhere/key, api_secret_file: /nowhere/secret}\n"
        "storage: {url: s3://call-recordings/ccall}\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        process = start_daemon(config, NOTIFY_SOCKET=path)
        _, err = process.communicate(timeout=30)
        said = sock.recv(4096).decode()
    assert process.returncode == 2
    assert "At 'source.api_key_file'" in err
    assert said == (
        "STATUS=stopped with exit code 2: At 'source.api_key_file': cannot read /nowhere/key: "
        "No such file or directory (and 1 more problem(s): journalctl -u archiver)"
    )


def test_metrics_count_what_was_archived_and_health_endpoints_answer(live_sim: Simulator, tmp_path: Path) -> None:
    """/metrics moves with the archive; /healthz and /readyz say 200 once a poll succeeded."""
    port = free_port()
    config = daemon_config(tmp_path, live_sim.url, metrics={"listen": f"127.0.0.1:{port}"})
    process = start_daemon(config)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(base + "/readyz") == 200)
        assert _get(base + "/healthz") == 200
        text = httpx.get(base + "/metrics").text
        wavs = list((tmp_path / "archive").rglob("*.wav"))
        archived = metric(text, "archiver_calls_total", source="default", outcome="archived")
        assert archived >= 1
        assert metric(text, "archiver_recordings_archived_total") == archived
        assert len(wavs) >= archived  # a poll may have archived more since the scrape
        sidecars = [
            json.loads(p.read_bytes()) for p in (tmp_path / "archive").rglob("*.json") if is_sidecar(p.as_posix())
        ]
        without = metric(text, "archiver_calls_total", outcome="none")
        assert without <= sum(1 for doc in sidecars if doc["recording"]["status"] == "none")
        assert without + archived <= len(sidecars)  # nothing counted that is not in the archive
        assert metric(text, "archiver_archived_bytes_total") >= archived * 44
        assert metric(text, "archiver_registered_extensions", source="default") == 2
        # Between polls nothing is in flight: a gauge that leaked (up without down) never gets back to 0.
        wait_until(lambda: metric(httpx.get(base + "/metrics").text, "archiver_downloads_in_flight") == 0)
        wait_until(lambda: metric(httpx.get(base + "/metrics").text, "archiver_queue_depth") == 0)
        assert metric(text, "archiver_last_successful_poll_age_seconds", source="default") < 10
        assert metric(text, "archiver_cursor_lag_seconds", source="default") < 60
        assert metric(text, "archiver_pending_calls", source="default") == 0
        assert metric(text, "archiver_failures_total", **{"class": "store"}) == 0
        assert "archiver_poll_duration_seconds_bucket" in text
        assert SECRET not in text
        assert _get(base + "/nope") == 404
    finally:
        stop(process)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_the_dead_man_ping_is_hit_after_a_good_poll_and_its_token_never_logged(
    live_sim: Simulator, tmp_path: Path
) -> None:
    """The ping URL is hit after a good poll; the URL (its path is a token) is never logged."""
    hits: list[tuple[str, str]] = []

    def record(h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        hits.append((h.path, h.rfile.read(length).decode()))
        h.send_response(200)
        h.send_header("Content-Length", "0")
        h.end_headers()

    token = "5f3c9e1a-0b7d-4f52-9d0e-2a6b8c4e1f00"
    with TinyServer(record) as pinged:
        good = start_daemon(daemon_config(tmp_path, live_sim.url, poll={"ping_url": f"{pinged.url}/{token}"}))
        wait_until(lambda: any(path == f"/{token}" for path, _ in hits))
        _, err = stop(good)
        assert token not in err

    assert sum(path == f"/{token}" for path, _ in hits) >= 1


def test_status_reads_the_ledger_without_the_network(tmp_path: Path) -> None:
    """status --json shows calls by outcome, waiting calls and the last poll, from the ledger alone."""
    dataset = Dataset(seed=8, calls_per_day=300, max_duration=2, business_hours_share=0, recording_missing_rate=0.2)
    with Simulator(dataset, api_secret=SECRET) as sim:
        config = daemon_config(tmp_path, sim.url)
        backfill = run_cli("backfill", "-c", str(config), "--since", _hanoi_hours_ago(3))
    assert backfill.returncode == 1, backfill.stdout + backfill.stderr  # calls wait for their recording
    waiting = backfill.stdout.count("waiting: call ")
    assert waiting >= 1
    result = run_cli("status", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["pending"]["count"] == waiting
    assert status["calls"]["archived"] >= 1
    assert status["failures"] == []
    assert status["store"].startswith("file://")
    human = run_cli("status", "-c", str(config))
    assert f"{waiting} call(s) for their recording" in human.stdout


def _hanoi_hours_ago(hours: int) -> str:
    return (datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")) - timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M")


def test_status_without_a_ledger_says_so(tmp_path: Path) -> None:
    """Before any run there is nothing to show, and the message says where it looked."""
    config = daemon_config(tmp_path, "http://127.0.0.1:9")
    result = run_cli("status", "-c", str(config))
    assert result.returncode == 1
    assert f"no ledger at {tmp_path / 'ledger.sqlite3'}" in result.stderr


@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_backfill_on_a_terminal_shows_a_progress_bar(
    live_sim: Simulator, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """With stderr on a terminal, a backfill draws a bar over the days with calls and bytes (on S3, over the shared days)."""
    storage: dict[str, Any] = {}
    if store == "s3":
        bucket: Bucket = request.getfixturevalue("bucket")
        storage = {"url": bucket.url, "endpoint_url": bucket.endpoint}
    config = daemon_config(tmp_path, live_sim.url, storage=storage)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archiver",
            "backfill",
            "-c",
            str(config),
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-03",
        ],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    out, _ = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == 0
    text = screen.decode(errors="replace")
    assert "2/2" in text
    assert "calls" in text
    assert "/s" in text
    assert '"event"' not in text  # no JSON log lines through the bar
    assert "archived" in out


@pytest.mark.parametrize("signals", [1, 2])
def test_a_signal_stops_a_backfill_without_half_written_objects(tmp_path: Path, signals: int) -> None:
    """One signal drains the calls in flight; a second stops at once. Either way every object is whole."""
    dataset = Dataset(seed=6, calls_per_day=60, max_duration=3)
    with Simulator(dataset, api_secret=SECRET, faults=Faults(recording_latency=0.3)) as sim:
        config = daemon_config(tmp_path, sim.url)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "archiver",
                "backfill",
                "-c",
                str(config),
                "--since",
                "2026-11-01",
                "--until",
                "2026-11-04",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        archive = tmp_path / "archive"
        wait_until(lambda: list(archive.rglob("*.wav")))
        for _ in range(signals):
            process.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        out, err = process.communicate(timeout=40)
        served = {c.uuid: c for c in dataset.generated_calls()}
    assert process.returncode == 1
    assert "interrupted" in out + err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "shutdown.requested" in events
    assert ("shutdown.forced" in events) == (signals == 2)
    assert not [p for p in archive.rglob(".*") if p.is_file()]  # no temporary file left behind
    for wav in archive.rglob("*.wav"):
        assert wav.read_bytes() == dataset.recording_bytes(served[wav.stem])
