"""expire, erase and restore as an operator runs them, and what the other commands and the web UI
say afterwards: exit codes, output, and the bytes left in the bucket."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from archiver.simulator import Simulator
from tests.helpers import (
    SINCE,
    UNTIL,
    Browse,
    Bucket,
    FakeClock,
    backfill,
    config_dict,
    config_for,
    local_objects,
    make_bucket,
    run_cli,
    write_config,
)
from tests.s3faults import FaultProxy, checks_sha256

pytestmark = pytest.mark.anyio


def fetch(browse: Browse, path: str) -> tuple[int, str]:
    """GET *path* of the running browse: (status, body)."""
    try:
        with urllib.request.urlopen(browse.url.rstrip("/") + path, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def recorded(sim: Simulator) -> str:
    return next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording).uuid


async def folder_archive(sim: Simulator, tmp_path: Path, **sections: dict[str, Any]) -> tuple[Path, Path]:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(UNTIL))
    raw = config_dict(api=sim, storage=f"file://{root}", state=tmp_path / "ledger.sqlite3")
    raw |= sections
    return write_config(tmp_path, raw), root


async def test_expire_from_the_command_line(sim: Simulator, tmp_path: Path) -> None:
    """Days of November 2026 are more than a day old whenever this runs."""
    config, root = await folder_archive(sim, tmp_path, retention={"keep": "1d"})
    dry = run_cli("expire", "-c", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would expire 2026-11-01" in dry.stdout
    assert "would expire 2026-11-02" in dry.stdout
    assert any(k.startswith("2026/11/01/") for k in local_objects(root))

    overdue = run_cli("verify", "-c", str(config))  # the days are past keep by more than two days
    assert overdue.returncode == 1
    assert "are past retention.keep (1d) and not expired: run `archiver expire`" in overdue.stdout

    done = run_cli("expire", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "2 day(s) expired under retention 1d" in done.stdout
    assert not [k for k in local_objects(root) if k.startswith("2026/")]
    verify = run_cli("verify", "-c", str(config))
    assert verify.returncode == 0, verify.stdout
    assert "2 days expired under retention 1d" in verify.stdout
    again = run_cli("expire", "-c", str(config), "--json")
    assert json.loads(again.stdout)["days"] == []

    # An expired day is never archived again from the PBX, nor reported as missing from the archive.
    refill = run_cli("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert refill.returncode == 0, refill.stderr
    assert "nothing to backfill" in refill.stdout
    assert "backfill.expired_days_skipped" in refill.stderr
    assert not [k for k in local_objects(root) if k.startswith("2026/")]
    reconcile = run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert reconcile.returncode == 0, reconcile.stdout
    assert "EXPIRED" in reconcile.stdout
    assert "NOT ARCHIVED" not in reconcile.stdout


async def test_expire_without_retention_removes_nothing(sim: Simulator, tmp_path: Path) -> None:
    config, root = await folder_archive(sim, tmp_path)
    before = local_objects(root)
    done = run_cli("expire", "-c", str(config))
    assert done.returncode == 0
    assert "retention.keep is null" in done.stdout
    assert local_objects(root) == before


async def test_erase_from_the_command_line(sim: Simulator, tmp_path: Path) -> None:
    config, root = await folder_archive(sim, tmp_path)
    call = recorded(sim)
    before = local_objects(root)

    empty = run_cli("erase", "-c", str(config), call, "--reason", "  ")
    assert empty.returncode == 2
    assert "--reason" in empty.stderr
    unknown = run_cli("erase", "-c", str(config), "00000000-0000-4000-8000-000000000000", "--reason", "DSR-4")
    assert unknown.returncode == 1
    assert "no call 00000000-0000-4000-8000-000000000000" in unknown.stderr
    dry = run_cli("erase", "-c", str(config), call, "--reason", "DSR-4", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would erase" in dry.stdout
    assert local_objects(root) == before

    done = run_cli("erase", "-c", str(config), call, "--reason", "DSR-4")
    assert done.returncode == 0, done.stderr
    assert "the erasure is recorded in" in done.stdout
    after = local_objects(root)
    assert not [k for k in after if k.endswith(f"{call}.wav")]
    assert json.loads(next(v for k, v in after.items() if k.endswith(f"{call}.rev2.json")))["recording"]["reason"] == (
        "DSR-4"
    )

    show = run_cli("show", "-c", str(config), call)
    assert show.returncode == 0, show.stdout
    assert "ERASED on" in show.stdout
    assert "DSR-4" in show.stdout
    found = run_cli("find", "-c", str(config), "--status", "erased", "--json")
    assert [c["call_id"] for c in json.loads(found.stdout)] == [call]
    bundle = tmp_path / "erased.zip"
    export = run_cli("export", "-c", str(config), call, "--out", str(bundle))
    assert export.returncode == 0, export.stderr
    names = zipfile.ZipFile(bundle).namelist()
    assert any(n.endswith(f"{call}.rev2.json") for n in names)
    assert not any(n.endswith(".wav") for n in names)
    verify = run_cli("verify", "-c", str(config))
    assert verify.returncode == 0, verify.stdout
    assert "1 call(s) erased on request" in verify.stdout
    reconcile = run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert reconcile.returncode == 0, reconcile.stdout  # erased: not missing from the archive
    assert "erased 1" in reconcile.stdout
    erased = local_objects(root)
    again = run_cli("rearchive", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03", "--call", call)
    assert again.returncode == 0, again.stderr
    assert "1 unchanged" in again.stdout  # never fetched back from the PBX
    assert local_objects(root) == erased

    browse = Browse(config, tmp_path / "browse.log")
    try:
        status, page = fetch(browse, f"/calls/{call}")
        assert status == 200
        assert 'id="erased"' in page
        assert "DSR-4" in page
        assert fetch(browse, f"/calls/{call}/audio")[0] == 410
    finally:
        browse.close()


async def test_recordings_in_cold_storage_are_named_and_restored(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    storage = {"url": bucket.url, "endpoint_url": bucket.endpoint, "storage_class": "GLACIER"}
    await backfill(
        config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=storage), clock=FakeClock(UNTIL)
    )
    config = write_config(tmp_path, config_dict(api=sim, storage=storage, state=tmp_path / "ledger.sqlite3"))
    call = recorded(sim)

    show = run_cli("show", "-c", str(config), call)
    assert show.returncode == 1
    assert "in cold storage" in show.stdout
    assert f"archiver restore -c {config} {call}" in show.stdout
    assert "Traceback" not in show.stderr
    bundle = tmp_path / "cold.zip"
    export = run_cli("export", "-c", str(config), call, "--out", str(bundle))
    assert export.returncode == 1
    assert "in cold storage" in export.stderr
    assert f"archiver restore -c {config} {call}" in export.stderr
    assert not bundle.exists()
    # moto keeps the ChecksumSHA256 it is sent unchecked: a cold recording's is only the writer's word.
    unchecked = run_cli("verify", "-c", str(config), "--deep")
    assert unchecked.returncode == 1, unchecked.stdout
    assert "in cold storage, and the store checks no checksum: only its size could be compared" in unchecked.stdout
    assert "the store's checksums: the writer's word" in unchecked.stdout
    with FaultProxy(bucket.endpoint, checks_sha256) as aws_like:  # a store that checks them, as AWS does
        proxied = {**storage, "endpoint_url": aws_like.endpoint}
        checked = write_config(
            tmp_path / "checked.yaml", config_dict(api=sim, storage=proxied, state=tmp_path / "ledger.sqlite3")
        )
        deep = run_cli("verify", "-c", str(checked), "--deep")
    assert deep.returncode == 0, deep.stdout
    assert "in cold storage could not be read back: compared with the store's own checksum instead" in deep.stdout
    assert "the store's checksums: its own" in deep.stdout

    browse = Browse(config, tmp_path / "browse.log")
    try:
        status, page = fetch(browse, f"/calls/{call}")
        assert status == 200
        assert 'id="cold"' in page
        assert "archiver restore" in page
        status, refusal = fetch(browse, f"/calls/{call}/audio")
        assert status == 409
        assert "in cold storage" in refusal
    finally:
        browse.close()

    neither = run_cli("restore", "-c", str(config))
    assert neither.returncode == 2
    restore = run_cli("restore", "-c", str(config), call, "--days", "3")
    assert restore.returncode == 0, restore.stderr
    assert f"{call}  " in restore.stdout
    assert "requested" in restore.stdout
    assert run_cli("show", "-c", str(config), call).returncode == 0
    assert run_cli("export", "-c", str(config), call, "--out", str(bundle)).returncode == 0
    ranged = run_cli("restore", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-02", "--json")
    states = json.loads(ranged.stdout)
    assert states
    assert {s["state"].split(" ")[0] for s in states} <= {"requested", "readable", "requested;"}


async def test_check_reports_the_class_and_what_lifecycle_rules_and_locks_would_do(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    locked.client.put_bucket_lifecycle_configuration(
        Bucket=locked.name,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "cheap",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
                    "Expiration": {"Days": 365},
                }
            ]
        },
    )
    storage = {
        "url": locked.url,
        "endpoint_url": locked.endpoint,
        "storage_class": "GLACIER_IR",
        "object_lock": {"mode": "GOVERNANCE", "retain_days": 3650},
    }
    raw = config_dict(api=sim, storage=storage, state=tmp_path / "ledger.sqlite3", retention={"keep": "2557d"})
    result = run_cli("check", "-c", str(write_config(tmp_path, raw)))
    assert "storage class of recordings: GLACIER_IR" in result.stdout
    assert "retention.keep (2557d) is shorter than storage.object_lock.retain_days (3650)" in result.stdout
    assert "lifecycle rule cheap" in result.stdout
    assert "to GLACIER after 30 days" in result.stdout
    assert "after 365 days, before retention.keep (2557d)" in result.stdout

    raw["storage"]["storage_class"] = "FROZEN"
    bad = run_cli("check", "-c", str(write_config(tmp_path, raw)))
    assert bad.returncode == 2
    assert "storage.storage_class" in bad.stderr
    assert "'DEEP_ARCHIVE'" in bad.stderr
