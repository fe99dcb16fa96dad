"""Faults and hostile input: storage outages, broken rows, evil links, full buffers, leaked secrets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
import yaml
from structlog.testing import capture_logs

from archiver.compose import assemble
from archiver.config.load import parse_config
from archiver.config.models import Config
from archiver.core.identity import call_id_for_row
from archiver.core.outcome import RecordingStatus
from archiver.core.report import RunReport
from archiver.errors import SpoolError
from archiver.service.metrics import failure_class
from archiver.simulator import Dataset, Simulator, as_received
from tests.helpers import (
    FAST,
    PATIENT_STORE,
    SINCE,
    UNTIL,
    Bucket,
    MotoServer,
    OnProgress,
    TinyServer,
    ToggleProxy,
    assert_archive_is_complete,
    backfill,
    check_sidecar,
    config_dict,
    config_for,
    is_sidecar,
    local_objects,
    make_bucket,
    need_os_tools,
    run_cli,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
def proxied(moto_server: MotoServer) -> Iterator[tuple[ToggleProxy, Bucket]]:
    """A bucket reached through a proxy the test can cut."""
    proxy = ToggleProxy(moto_server.port).start()
    bucket = make_bucket(moto_server.endpoint)
    yield proxy, bucket
    proxy.stop()


@pytest.mark.anyio
async def test_an_s3_outage_pauses_the_work_and_nothing_is_marked_done_meanwhile(
    sim: Simulator, tmp_path: Path, proxied: tuple[ToggleProxy, Bucket]
) -> None:
    """With the S3 endpoint down for seconds mid-run, workers pause behind one probe (not a retry
    loop each around its own request), then finish; the archive is complete."""
    proxy, bucket = proxied
    config = config_for(sim, bucket.url, tmp_path, endpoint=proxy.endpoint)
    done_during_outage: list[int] = []
    three_done = anyio.Event()

    def watch(report: RunReport) -> None:
        if report.done >= 3:
            three_done.set()

    async with assemble(
        config, api_retry=FAST, download_retry=FAST, store_retry=PATIENT_STORE, observers=[OnProgress(watch)]
    ) as parts:

        async def outage() -> None:
            await three_done.wait()
            proxy.down()
            before = parts.ledger.calls.count_done()
            await anyio.sleep(3)
            done_during_outage.append(parts.ledger.calls.count_done() - before)
            proxy.up()

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(outage)
                report = await parts.archiver.backfill(SINCE, UNTIL)
    assert report.complete, report.failed
    assert done_during_outage[0] <= config.download.concurrency  # only calls already past their writes
    events = [e["event"] for e in logs]
    assert events.count("store.outage_waiting") == 1
    assert events.count("store.answered_again") == 1
    calls = sim.dataset.calls_between(SINCE, UNTIL, sim.now())
    assert_archive_is_complete(bucket.objects(), sim, calls, "archive")
    assert all(v["IsLatest"] for v in bucket.versions())
    assert len(bucket.versions()) == len(bucket.objects())  # no object written twice


@pytest.mark.anyio
async def test_s3_slowdown_answers_are_retried(
    sim: Simulator, tmp_path: Path, proxied: tuple[ToggleProxy, Bucket]
) -> None:
    """503 SlowDown from the store is waited out; every call is archived once."""
    proxy, bucket = proxied
    config = config_for(sim, bucket.url, tmp_path, endpoint=proxy.endpoint)
    proxy.slowdown(True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_after, 1.5, lambda: proxy.slowdown(False))
        report = await backfill(config)
    assert report.complete
    assert_archive_is_complete(bucket.objects(), sim, sim.dataset.calls_between(SINCE, UNTIL, sim.now()), "archive")


async def _after(seconds: float, action: Any) -> None:
    await anyio.sleep(seconds)
    action()


@pytest.mark.anyio
async def test_malformed_rows_are_archived_raw_and_reported(tmp_path: Path) -> None:
    """Rows with unparseable dates, wrong types, missing fields or non-UTF-8 bytes are kept as received."""
    dataset = Dataset(seed=12, calls_per_day=40, max_duration=3, malformed_rate=0.5)
    root = tmp_path / "archive"
    with Simulator(dataset) as sim:
        config = config_for(sim, f"file://{root}", tmp_path)
        with capture_logs() as logs:
            report = await backfill(config)
        calls = dataset.calls_between(SINCE, UNTIL, sim.now())
    assert report.complete
    assert {c.malformed for c in calls} == {0, 1, 2, 3, 4}
    stored = local_objects(root)
    sidecars = [json.loads(v) for k, v in stored.items() if is_sidecar(k)]
    for doc in sidecars:
        check_sidecar(doc)
    assert len(sidecars) == len(calls)
    by_id = {d["call_id"]: d for d in sidecars}
    for call in calls:
        received = as_received(call.cdr(sim.url))
        cid = call.uuid if call.has_recording else call_id_for_row(received["Cdr"])
        doc = by_id[cid]
        assert doc["cdr"] == received["Cdr"]
        assert bool(doc.get("problems")) == (call.malformed in (1, 2))
        assert sidecar_day(stored, cid) == call.start.date().isoformat()
    broken = [c for c in calls if c.malformed == 4]
    assert any(
        "\ufffd"
        in by_id[c.uuid if c.has_recording else call_id_for_row(as_received(c.cdr(sim.url))["Cdr"])]["cdr"]["cid_name"]
        for c in broken
    )
    assert any(e["event"] == "cdr.malformed" for e in logs)


def sidecar_day(stored: dict[str, bytes], call_id: str) -> str:
    key = next(k for k in stored if k.endswith(f"/{call_id}.json"))
    return key[:10].replace("/", "-")


def wav(seconds: int = 1) -> bytes:
    data = b"\x00\x01" * 8000 * seconds
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


class HostileApi:
    """An API that lists rows a test writes, and serves a WAV for any /cdr/ path."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.fetched: list[str] = []
        self.server = TinyServer(self._respond)

    def _respond(self, h: BaseHTTPRequestHandler) -> None:
        if h.command == "POST":
            h.rfile.read(int(h.headers.get("Content-Length") or 0))
            body = json.dumps({"response": [{"Cdr": r} for r in self.rows]}).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        self.fetched.append(h.path)
        if h.path.startswith("/redirect"):
            h.send_response(302)
            h.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        body = wav()
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def hostile_config(url: str, tmp_path: Path, storage_url: str, endpoint: str | None = None) -> Config:
    return parse_config(
        config_dict(api=url, storage=storage_url, state=tmp_path / "ledger.sqlite3", endpoint=endpoint), environ={}
    )


@pytest.mark.anyio
async def test_no_link_can_put_a_key_outside_the_prefix_or_reach_a_forbidden_host(
    tmp_path: Path, bucket: Bucket
) -> None:
    """Traversal, odd UUIDs, file://, metadata addresses and redirects to them: keys stay in the prefix."""
    uuid = "09dc3fa8-ba86-11e5-a8af-dbc80e22bddb"
    api = HostileApi([])
    with api.server:
        base = api.server.url
        links = [
            f"{base}/cdr/../../../../etc/passwd",
            f"{base}/cdr/{uuid.upper()}/x",
            f"{base}/cdr/%2e%2e%2f%2e%2e%2f/x",
            f"{base}/recordings/a b/..%2F..%2Fkey.wav?x=/../../",
            "file:///etc/passwd",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            f"{base}/redirect/{uuid[:-1]}0",
            "javascript:alert(1)",
        ]
        api.rows = [
            {
                "start": "2026-11-01 10:00:0" + str(i),
                "duration": "00:00:01",
                "recording_file": link,
                "status": "NORMAL_CLEARING",
            }
            for i, link in enumerate(links)
        ]
        config = hostile_config(base, tmp_path, bucket.url, bucket.endpoint)
        report = await backfill(config, datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 2, tzinfo=TZ))
    objects = bucket.objects()
    assert report.complete
    assert report.outcomes[RecordingStatus.REJECTED] == 4  # file://, metadata, redirect to metadata, javascript:
    assert report.outcomes[RecordingStatus.ARCHIVED] == 4
    call_file = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?:rf|nr)-[0-9a-f]{32})\.(?:json|wav)"
    key_form = re.compile(
        rf"^archive/(?:2026/11/01/(?:{call_file}|manifest-sha256\.txt|calls\.csv|index\.html)|seals/\d{{8}}\.json)$"
    )
    assert all(key_form.match(k) for k in objects), sorted(objects)
    assert f"archive/2026/11/01/{uuid}.wav" in objects
    assert not any(p.startswith("/latest") for p in api.fetched)
    reasons = {json.loads(v)["recording"].get("reason", {}).get("kind") for k, v in objects.items() if is_sidecar(k)}
    assert reasons == {None, "host_not_allowed", "redirect_not_allowed"}


@pytest.mark.anyio
async def test_a_download_buffer_that_cannot_be_written_fails_the_call_not_the_run(
    tmp_path: Path, bucket: Bucket
) -> None:
    """Recordings that outgrow memory need the spool folder; if it fails, those calls fail and the rest go on."""
    dataset = Dataset(seed=2, calls_per_day=12, max_duration=150)
    with Simulator(dataset) as sim:
        config = config_for(
            sim, bucket.url, tmp_path, endpoint=bucket.endpoint, download={"spool_dir": str(tmp_path / "gone")}
        )
        report = await backfill(config)
        calls = dataset.calls_between(SINCE, UNTIL, sim.now())
    big = {c.uuid for c in calls if c.has_recording and c.recording_size > 1 << 20}
    assert big
    assert {cid for cid, _ in report.failed} == big
    assert all("cannot buffer the download" in error for _, error in report.failed)
    assert report.done == len(calls) - len(big)
    assert not any(k.endswith(f"{cid}.json") for k in bucket.objects() for cid in big)


@pytest.mark.anyio
async def test_a_full_spool_disk_is_told_at_once_and_its_calls_are_archived_once_space_returns(
    tmp_path: Path, bucket: Bucket
) -> None:
    """The spool on a full tmpfs: the calls whose recordings need it fail within seconds, each
    naming the disk (spool.failed, a local failure), nothing is recorded for them (not missing,
    not retried as a store outage); once space returns, the same backfill archives them."""
    need_os_tools("a tiny tmpfs for the spool", "mount", "umount", root=True)
    spool = tmp_path / "spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(spool)], check=True)
    try:
        filler = os.open(spool / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(filler, bytes(65536))
        os.close(filler)
        dataset = Dataset(seed=2, calls_per_day=12, max_duration=150)
        with Simulator(dataset) as sim:
            config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, download={"spool_dir": str(spool)})
            began = time.monotonic()
            with capture_logs() as logs:
                full = await backfill(config)
            took = time.monotonic() - began
            (spool / "filler").unlink()
            freed = await backfill(config)
            calls = dataset.calls_between(SINCE, UNTIL, sim.now())
    finally:
        subprocess.run(["umount", str(spool)], check=False)
    big = {c.uuid for c in calls if c.has_recording and c.recording_size > 1 << 20}
    assert big
    assert {cid for cid, _ in full.failed} == big
    assert all("No space left on device" in error and str(spool) in error for _, error in full.failed)
    assert took < 30  # told at once, not waited out as an outage
    assert {e["event"] for e in logs} >= {"spool.failed", "call.failed"}
    assert failure_class(SpoolError("no space")) == "local"
    assert freed.complete, freed.failed
    objects = bucket.objects()
    for call in calls:
        if call.uuid in big:
            doc = json.loads(objects[f"archive/{call.start:%Y/%m/%d}/{call.uuid}.json"])
            assert doc["recording"]["status"] == "archived"
            assert objects[doc["recording"]["key"]] == dataset.recording_bytes(call)


def test_an_api_that_echoes_the_secret_back_does_not_leak_it(tmp_path: Path) -> None:
    """An error body quoting the request is redacted before it reaches a message."""
    secret = "3e2d1c0b"

    def echo(h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        answer = json.dumps({"error": "bad request", "you_sent": json.loads(body)}).encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(answer)))
        h.end_headers()
        h.wfile.write(answer)

    with TinyServer(echo) as server:
        path = tmp_path / "c.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "source": {"base_url": server.url, "api_key": "a1b2c3d4", "api_secret": secret},
                    "storage": {"url": f"file://{tmp_path}/a"},
                    "state": {"path": str(tmp_path / "l.db")},
                }
            )
        )
        result = run_cli("backfill", "-c", str(path), "--since", "2026-11-01", "--until", "2026-11-02")
    assert result.returncode == 2
    assert "refused the request" in result.stderr
    assert "***" in result.stderr
    assert secret not in result.stdout + result.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["recording_file", "recording"])
async def test_a_link_that_is_not_a_url_is_rejected_with_the_value_received(name: str, tmp_path: Path) -> None:
    """Under either name, a link of the wrong type is recorded as rejected, its value kept as it came."""
    value = {"url": "http://elsewhere/cdr/x"}
    row = {
        "start": "2026-11-01 09:00:00",
        "source": "0986",
        "destination": "1001",
        "direction": "inbound",
        "status": "NORMAL_CLEARING",
        "duration": "00:00:09",
        name: value,
    }
    api = HostileApi([row])
    with api.server:
        report = await backfill(hostile_config(api.server.url, tmp_path, f"file://{tmp_path / 'archive'}"))
    [doc] = [json.loads(v) for k, v in local_objects(tmp_path / "archive").items() if is_sidecar(k)]
    assert report.outcomes[RecordingStatus.REJECTED] == 1
    assert doc["recording"]["source_url"] == value
    assert doc["recording"]["reason"]["kind"] == "invalid_link"
    assert api.fetched == []
