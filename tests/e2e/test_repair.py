"""Repair on a versioned bucket, as an operator does it: reconcile names the gap and the command
that fills it; that backfill puts back the deleted objects from the versions they had, and
verify reports the deletion and the put-back as history, not as a problem."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from archiver.simulator import Simulator
from tests.helpers import SINCE, UNTIL, Bucket, backfill, config_dict, config_for, run_cli, write_config

pytestmark = pytest.mark.anyio


async def test_reconcile_names_the_backfill_that_puts_deleted_calls_back(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint))
    config = write_config(
        tmp_path,
        config_dict(api=sim, storage=bucket.url, endpoint=bucket.endpoint, state=tmp_path / "ledger.sqlite3"),
    )
    gone, changed = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording][:2]
    day = gone.start.date()
    folder = f"archive/{gone.start:%Y/%m/%d}"
    before = bucket.objects()
    for ext in ("json", "wav"):
        bucket.client.delete_object(Bucket=bucket.name, Key=f"{folder}/{gone.uuid}.{ext}")

    found = run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert found.returncode == 1
    assert f"NOT ARCHIVED  call {gone.uuid} ({day.isoformat()})" in found.stdout
    command = found.stdout.rsplit("while the PBX still serves it: ", 1)[1].strip()
    assert command == f"archiver backfill -c {config} --since {day.isoformat()} --until {day.replace(day=day.day + 1)}"

    repaired = run_cli(*shlex.split(command)[1:])
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
    events = [json.loads(line) for line in repaired.stderr.splitlines() if line.startswith("{")]
    put_back = {e["key"] for e in events if e.get("event") == "object.put_back"}
    assert put_back == {f"{folder}/{gone.uuid}.json", f"{folder}/{gone.uuid}.wav"}
    archive = {k: v for k, v in bucket.objects().items() if "/_archiver/" not in k}  # not the run's claims
    assert archive == before  # the same bytes, already sealed

    audit = run_cli("verify", "-c", str(config), "--json")
    report = json.loads(audit.stdout)
    assert audit.returncode == 0, audit.stdout
    history = {(h["key"], h["what"].split(",")[0][:10]) for h in report["history"]}
    assert history == {(f"{folder}/{gone.uuid}.{ext}", "deleted on") for ext in ("json", "wav")}
    assert all("put back on" in h["what"] and "identical" in h["what"] for h in report["history"])
    assert run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03").returncode == 0

    # Put back by hand with other bytes: that is a problem, not history.
    key = f"archive/{changed.start:%Y/%m/%d}/{changed.uuid}.json"
    bucket.client.delete_object(Bucket=bucket.name, Key=key)
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=before[key].replace(b'"archived"', b'"missing"'))
    tampered = run_cli("verify", "-c", str(config), "--json")
    assert tampered.returncode == 1
    problems = [p["problem"] for p in json.loads(tampered.stdout)["problems"] if p["key"] == key]
    assert "manifest 1 gives another SHA-256" in problems
    assert any(
        p.startswith("deleted and put back on ") and "with other bytes than it was archived with" in p for p in problems
    ), problems
