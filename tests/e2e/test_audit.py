"""What auditors rely on: verify, reconcile, the day files, retention settings."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from archiver.simulator import Dataset, SimCall, Simulator
from tests.helpers import (
    SINCE,
    UNTIL,
    Bucket,
    FakeClock,
    MotoServer,
    backfill,
    config_dict,
    config_for,
    make_bucket,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.anyio
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def audit_config(tmp_path: Path, sim: Simulator, storage: dict[str, Any]) -> Path:
    return write_config(tmp_path, config_dict(api=sim, storage=storage, state=tmp_path / "ledger.sqlite3"))


def _folder(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent / name


def a_recorded_call(sim: Simulator) -> SimCall:
    return next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording)


async def archived_s3(sim: Simulator, tmp_path: Path, bucket: Bucket) -> Path:
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint))
    return audit_config(tmp_path, sim, {"url": bucket.url, "endpoint_url": bucket.endpoint})


async def test_verify_passes_on_a_fresh_archive_and_samples_on_request(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """A complete archive verifies with exit 0; --sample 100 re-hashes every recording."""
    config = await archived_s3(sim, tmp_path, bucket)
    calls = sim.dataset.calls_between(SINCE, UNTIL, sim.now())
    result = run_cli("verify", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"verified 2 days: {len(calls)} calls" in result.stdout
    assert "0 problem(s)" in result.stdout
    sampled = json.loads(run_cli("verify", "-c", str(config), "--sample", "100", "--json").stdout)
    recorded = sum(c.has_recording for c in calls)
    assert sampled["ok"] is True
    assert sampled["recordings"] == sampled["rehashed"] == recorded
    one_day = json.loads(
        run_cli("verify", "-c", str(config), "--since", "2026-11-02", "--until", "2026-11-03", "--json").stdout
    )
    assert one_day["days"] == 1
    assert one_day["calls"] == sum(c.start.date().day == 2 for c in calls)


async def test_the_nightly_verify_reads_the_older_days_in_turn(sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """verify --recent 1 --older 1 re-hashes one older day a night, the next one each night, wrapping round."""
    config = await archived_s3(sim, tmp_path, bucket)
    calls = sim.dataset.calls_between(SINCE, UNTIL, sim.now())
    nights = []
    for _ in range(3):
        result = run_cli("verify", "-c", str(config), "--recent", "1", "--older", "1", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        chosen = next(json.loads(line)["days"] for line in result.stderr.splitlines() if "verify.days_chosen" in line)
        nights.append(chosen[0])
        day = int(chosen[0][-2:])
        assert report["days"] == 1  # today's folder is empty: only the older day has calls
        assert report["rehashed"] == sum(c.has_recording for c in calls if c.start.date().day == day)
    assert nights == ["2026-11-01", "2026-11-02", "2026-11-01"]


async def test_verify_names_the_call_whose_recording_was_replaced(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """Other bytes under a recording's key are found (no trusted checksum: the bytes are read), and so is the new version."""
    config = await archived_s3(sim, tmp_path, bucket)
    call = a_recorded_call(sim)
    key = f"archive/{call.start:%Y/%m/%d}/{call.uuid}.wav"
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=sim.dataset.recording_bytes(call)[:-1] + b"\x00")
    result = run_cli("verify", "-c", str(config))
    assert result.returncode == 1
    assert (
        f"call {call.uuid}: the recording's SHA-256 differs from the sidecar's: its bytes changed ({key})"
        in result.stdout
    )
    assert f"call {call.uuid}: 2 versions: it was overwritten after it was archived (on " in result.stdout


async def test_verify_names_the_call_whose_sidecar_was_deleted(sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """A recording left without its sidecar, the manifest line that points nowhere and the delete marker are reported."""
    config = await archived_s3(sim, tmp_path, bucket)
    call = a_recorded_call(sim)
    bucket.client.delete_object(Bucket=bucket.name, Key=f"archive/{call.start:%Y/%m/%d}/{call.uuid}.json")
    report = json.loads(run_cli("verify", "-c", str(config), "--json").stdout)
    assert report["ok"] is False
    problems = {(p["call_id"], p["problem"]) for p in report["problems"]}
    assert (call.uuid, "a recording without its sidecar (an interrupted write? `backfill` completes it)") in problems
    assert any(
        p["key"].endswith(f"{call.uuid}.json") and "not in the archive" in p["problem"] for p in report["problems"]
    )
    assert any(
        cid == call.uuid and what.startswith("deleted on ") and "`archiver backfill` over its day puts it back" in what
        for cid, what in problems
    )


async def test_verify_names_the_call_whose_byte_was_flipped(sim: Simulator, tmp_path: Path) -> None:
    """In a folder archive (no stored checksum) every recording is re-hashed, so one flipped byte shows."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    call = a_recorded_call(sim)
    path = root / f"{call.start:%Y/%m/%d}" / f"{call.uuid}.wav"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    result = run_cli("verify", "-c", str(audit_config(tmp_path, sim, {"url": f"file://{root}"})))
    assert result.returncode == 1
    assert f"call {call.uuid}: the recording's SHA-256 differs" in result.stdout


async def test_reconcile_names_calls_missing_on_either_side(sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """A call deleted from the bucket, and an archived call the API no longer lists, are both named."""
    config = await archived_s3(sim, tmp_path, bucket)
    gone, kept = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording][:2]
    folder = f"archive/{gone.start:%Y/%m/%d}"
    for ext in ("json", "wav"):
        bucket.client.delete_object(Bucket=bucket.name, Key=f"{folder}/{gone.uuid}.{ext}")
    ghost = "11111111-2222-4333-8444-555555555555"
    doc = json.loads(bucket.objects()[f"archive/{kept.start:%Y/%m/%d}/{kept.uuid}.json"])
    doc["call_id"] = ghost
    bucket.client.put_object(
        Bucket=bucket.name, Key=f"archive/{kept.start:%Y/%m/%d}/{ghost}.json", Body=json.dumps(doc).encode()
    )
    result = run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert result.returncode == 1
    assert f"NOT ARCHIVED  call {gone.uuid} ({gone.start.date().isoformat()})" in result.stdout
    assert f"NOT LISTED    call {ghost}" in result.stdout
    report = json.loads(
        run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03", "--json").stdout
    )
    assert report["consistent"] is False
    assert report["listed"] == len(sim.dataset.calls_between(SINCE, UNTIL, sim.now()))


async def test_reconcile_agrees_on_a_complete_archive(sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """Every call the PBX lists is archived, and nothing else: exit 0."""
    config = await archived_s3(sim, tmp_path, bucket)
    result = run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 not archived, 0 no longer listed" in result.stdout


async def test_a_downloaded_day_checks_with_sha256sum_and_reads_in_a_spreadsheet(
    sim: Simulator, tmp_path: Path
) -> None:
    """cd YYYY/MM/DD && sha256sum -c manifest-sha256.txt passes; calls.csv has a row per call."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    day = root / "2026" / "11" / "01"
    check = subprocess.run(
        ["sha256sum", "-c", "manifest-sha256.txt"], cwd=day, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    calls = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.start.date().day == 1]
    assert check.stdout.count(": OK") == len(calls) + sum(c.has_recording for c in calls)
    rows = list(csv.DictReader(io.StringIO((day / "calls.csv").read_text(encoding="utf-8-sig"))))
    assert len(rows) == len(calls)
    assert {r["recording_status"] for r in rows} <= {"archived", "none"}
    assert sorted(r["start_local"] for r in rows) == [r["start_local"] for r in rows]


async def test_a_call_after_its_day_closed_gets_an_addendum_not_a_rewrite(tmp_path: Path) -> None:
    """A long call that appears after the day's manifest was written goes into manifest-sha256.2.txt."""
    dataset = Dataset(
        seed=1, calls_per_day=30, max_duration=3, long_call_rate=0.05, long_call_seconds=5400, business_hours_share=0
    )
    late = next(
        c
        for c in dataset.calls_on(SINCE.date())
        if c.duration == 5400 and c.start.hour >= 22 and c.end.date() > c.start.date()
    )
    clock = FakeClock(late.end - timedelta(minutes=1))  # the day closed minutes ago; the call ends now
    root = tmp_path / "archive"
    with Simulator(dataset, now=clock.now) as sim:
        config = config_for(sim, f"file://{root}", tmp_path, poll={"lookback": "2s", "settle": "1s"})
        await backfill(config, SINCE, SINCE + timedelta(days=1), clock)
        day = root / "2026" / "11" / "01"
        first = (day / "manifest-sha256.txt").read_bytes()
        assert late.uuid not in first.decode()
        clock.advance(minutes=30)
        await backfill(config, SINCE, SINCE + timedelta(days=1), clock)
    assert (day / "manifest-sha256.txt").read_bytes() == first
    addendum = (day / "manifest-sha256.2.txt").read_text()
    assert late.uuid in addendum
    assert addendum.count("\n") == 2  # its sidecar and its recording, nothing else
    assert (day / "calls.2.csv").exists()
    assert (day / "index.2.html").exists()
    check = subprocess.run(
        ["sha256sum", "-c", "manifest-sha256.2.txt"], cwd=day, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.audio: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and values.get("id"):
            self.rows.append(str(values["id"]))
        if tag == "audio":
            self.audio.append(str(values["src"]))
        if tag == "script":
            self.scripts += 1


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)")
async def test_the_day_page_renders_in_a_real_browser_with_every_call(sim: Simulator, tmp_path: Path) -> None:
    """Headless Chromium renders index.html from the folder: a row per call, players that point at the files."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    day = root / "2026" / "11" / "01"
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [
            CHROMIUM or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            (day / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    page = _Page()
    page.feed(result.stdout)
    calls = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.start.date().day == 1]
    assert len(page.rows) == len(calls)
    assert sorted(page.audio) == sorted(f"{c.uuid}.wav" for c in calls if c.has_recording)
    assert all((day / src).exists() for src in page.audio)
    assert page.scripts == 0
    assert "Calls of 2026-11-01" in result.stdout


async def test_check_refuses_an_object_lock_the_bucket_cannot_give(
    sim: Simulator, tmp_path: Path, moto_server: MotoServer
) -> None:
    """check reports versioning and Object Lock, and fails when the config asks for a lock the bucket lacks."""
    plain = make_bucket(moto_server.endpoint)
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    lock = {"mode": "GOVERNANCE", "retain_days": 2555}
    bad = run_cli(
        "check",
        "-c",
        str(
            audit_config(
                _folder(tmp_path, "plain"), sim, {"url": plain.url, "endpoint_url": plain.endpoint, "object_lock": lock}
            )
        ),
    )
    assert bad.returncode == 2
    assert "ok    bucket versioning: Enabled" in bad.stdout
    assert "FAIL  storage.object_lock/legal_hold is set but the bucket has no Object Lock" in bad.stdout
    good = run_cli(
        "check",
        "-c",
        str(
            audit_config(
                _folder(tmp_path, "locked"),
                sim,
                {"url": locked.url, "endpoint_url": locked.endpoint, "object_lock": lock},
            )
        ),
    )
    assert good.returncode == 0, good.stdout
    assert "ok    bucket Object Lock: Enabled, objects get GOVERNANCE retention for 2555 days" in good.stdout


async def test_control_objects_go_to_a_bucket_that_object_lock_does_not_freeze(
    sim: Simulator, tmp_path: Path, moto_server: MotoServer
) -> None:
    """A default retention on the archive bucket would freeze every lease renewal: check warns,
    and with coordination.bucket the claims of a backfill land there, none in the archive."""
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    locked.client.put_object_lock_configuration(
        Bucket=locked.name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}},
        },
    )
    control = make_bucket(moto_server.endpoint)
    storage = {"url": locked.url, "endpoint_url": locked.endpoint}
    alone = run_cli("check", "-c", str(audit_config(_folder(tmp_path, "alone"), sim, storage)))
    assert alone.returncode == 0, alone.stdout
    assert "default retention GOVERNANCE 30 days" in alone.stdout
    assert "WARN  the bucket's default retention also freezes the leases and claims" in alone.stdout
    config = audit_config(_folder(tmp_path, "split"), sim, storage)
    raw = yaml.safe_load(config.read_text())
    raw["coordination"] = {"bucket": control.name}
    config.write_text(yaml.safe_dump(raw))
    split = run_cli("check", "-c", str(config))
    assert split.returncode == 0, split.stdout
    assert "freezes the leases and claims" not in split.stdout
    assert f"ok    coordination.bucket s3://{control.name}" in split.stdout
    done = run_cli("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-02")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [k for k in locked.objects() if "/_archiver/" in k] == []
    claims = [k for k in control.objects() if "/_archiver/shards/" in k]
    assert any(k.endswith("2026-11-01.done") for k in claims), claims
    assert any(k.endswith(".json") for k in locked.objects()), "the calls themselves are in the archive"
