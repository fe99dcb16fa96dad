"""Erase writes "erased" only when the store will carry the erasure out: credentials that may not
remove object versions (s3:DeleteObjectVersion), or may not lift GOVERNANCE retention
(s3:BypassGovernanceRetention) when asked to, are found on a throwaway object under the archive's
``_archiver/check/`` before the revision is written; the refusal names the permission, nothing is
written, and the throwaway object is not left current. Moto behind the fault proxy plays the
credentials the store refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from archiver.errors import EXIT_USAGE
from archiver.lifecycle.erase import Eraser, EraseRefused
from archiver.simulator import Simulator
from archiver.store.listing import list_day
from tests.helpers import (
    TZ,
    Bucket,
    FakeClock,
    MotoServer,
    backfill,
    config_dict,
    config_for,
    make_bucket,
    run_cli,
    s3_store,
    write_config,
)
from tests.s3faults import Answer, FaultProxy, Forward, S3Request, delete_errors

pytestmark = pytest.mark.anyio
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)  # the archive's two days, 2026-11-01 and -02, written and closed
FIRST = date(2026, 11, 1)
PROBES = "archive/_archiver/check/"
GOVERNANCE = {"object_lock": {"mode": "GOVERNANCE", "retain_days": 30}}


def versions_deleted_refused(request: S3Request, forward: Forward) -> Answer | None:
    """Credentials without s3:DeleteObjectVersion (a bucket policy denying it): every key of a
    DeleteObjects is refused, AccessDenied, as S3 refuses it; plain writes go through."""
    return delete_errors(lambda key: "AccessDenied")(request, forward)


def bypass_not_granted(request: S3Request, forward: Forward) -> Answer | None:
    """Credentials without s3:BypassGovernanceRetention (the usual case: it is kept for a
    break-glass role): a DeleteObjects that asks to bypass GOVERNANCE retention is refused, key by
    key (AccessDenied); one that does not ask goes through."""
    if "x-amz-bypass-governance-retention" in request.headers:
        return delete_errors(lambda key: "AccessDenied")(request, forward)
    return None


def every_version(bucket: Bucket) -> dict[tuple[str, str], bool]:
    """(key, version id) -> whether it is a delete marker, of every version in *bucket*."""
    out: dict[tuple[str, str], bool] = {}
    for page in bucket.client.get_paginator("list_object_versions").paginate(Bucket=bucket.name):
        out |= {(v["Key"], v["VersionId"]): False for v in page.get("Versions", [])}
        out |= {(m["Key"], m["VersionId"]): True for m in page.get("DeleteMarkers", [])}
    return out


def archive_versions(bucket: Bucket) -> dict[tuple[str, str], bool]:
    return {k: marker for k, marker in every_version(bucket).items() if not k[0].startswith(PROBES)}


async def archived(bucket: Bucket, sim: Simulator, tmp_path: Path, **storage: Any) -> None:
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=storage)
    await backfill(config, clock=FakeClock(STORED))


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
async def test_an_erase_the_credentials_may_not_carry_out_writes_nothing_and_names_the_permission(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path, versioned: bool
) -> None:
    """No Object Lock, lock settings readable, but object versions may not be deleted: erase
    refuses before the revision, naming s3:DeleteObjectVersion; the archive's every version and
    byte is as it was, the call's record still says archived, and no probe is left current."""
    bucket = make_bucket(moto_server.endpoint, versioned=versioned)
    await archived(bucket, sim, tmp_path)
    before, objects = archive_versions(bucket), bucket.objects("archive/2")
    with FaultProxy(bucket.endpoint, versions_deleted_refused) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, now=lambda: STORED)
        call_id = next(iter((await list_day(store, "archive", FIRST)).audio))
        eraser = Eraser(store, "archive", tz=TZ, clock=FakeClock(STORED))
        with capture_logs() as logs, pytest.raises(EraseRefused) as refusal:
            await eraser.erase(call_id, "DSR-6", bypass_governance=False, dry_run=False)
        await store.aclose()
    said = str(refusal.value)
    assert "refused these credentials the removal of an object version (s3:DeleteObjectVersion)" in said
    assert said.endswith("grant it, then erase again; nothing was written")
    assert PROBES in said  # where it was tried
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["erase.refused"]
    assert archive_versions(bucket) == before
    assert bucket.objects("archive/2") == objects
    assert bucket.objects(PROBES) == {}  # hidden (a marker over it), or gone


async def test_an_erase_with_bypass_governance_the_credentials_may_not_use_writes_nothing(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """A recording under GOVERNANCE retention, erased with --bypass-governance by credentials
    without s3:BypassGovernanceRetention: refused before the revision, naming the permission; the
    recording and every record are as they were. The probe, itself under GOVERNANCE retention for
    a day, is hidden behind a delete marker (it cannot be removed by these credentials)."""
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    await archived(locked, sim, tmp_path, **GOVERNANCE)
    before, objects = archive_versions(locked), locked.objects("archive/2")
    with FaultProxy(locked.endpoint, bypass_not_granted) as proxy:
        store = s3_store(proxy.endpoint, locked.name, now=lambda: STORED)
        call_id = next(iter((await list_day(store, "archive", FIRST)).audio))
        eraser = Eraser(store, "archive", tz=TZ, clock=FakeClock(STORED))
        with pytest.raises(EraseRefused) as refusal:
            await eraser.erase(call_id, "court order 6", bypass_governance=True, dry_run=False)
        await store.aclose()
    said = str(refusal.value)
    assert "(s3:DeleteObjectVersion and s3:BypassGovernanceRetention)" in said
    assert "under GOVERNANCE retention" in said
    assert said.endswith("nothing was written")
    assert archive_versions(locked) == before
    assert locked.objects("archive/2") == objects
    assert locked.objects(PROBES) == {}


@pytest.mark.parametrize("lock", [False, True], ids=["plain", "governance"])
async def test_an_erase_the_store_carries_out_leaves_no_trace_of_its_probe(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path, lock: bool
) -> None:
    """Credentials that may remove versions (and, under GOVERNANCE, lift it): the erase goes
    through, and its throwaway object, every version and delete marker of it, is gone."""
    bucket = make_bucket(moto_server.endpoint, object_lock=lock)
    await archived(bucket, sim, tmp_path, **(GOVERNANCE if lock else {}))
    store = s3_store(bucket.endpoint, bucket.name, now=lambda: STORED)
    call_id = next(iter((await list_day(store, "archive", FIRST)).audio))
    report = await Eraser(store, "archive", tz=TZ, clock=FakeClock(STORED)).erase(
        call_id, "DSR-7", bypass_governance=lock, dry_run=False
    )
    await store.aclose()
    assert report.versions_removed == 1
    assert [k for k in every_version(bucket) if k[0].startswith("archive/_archiver/")] == []
    assert not [k for k in every_version(bucket) if k[0] == report.removed[0].key]


async def test_the_erase_command_exits_2_naming_the_permission_the_store_refused(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """``archiver erase`` under credentials that may not delete versions: exit 2 (a person must
    grant a permission), one line naming it and saying nothing was written, no traceback."""
    bucket = make_bucket(moto_server.endpoint)
    await archived(bucket, sim, tmp_path)
    before = archive_versions(bucket)
    store = s3_store(bucket.endpoint, bucket.name)
    call_id = next(iter((await list_day(store, "archive", FIRST)).audio))
    await store.aclose()
    with FaultProxy(bucket.endpoint, versions_deleted_refused) as proxy:
        raw = config_dict(api=sim, storage=bucket.url, state=tmp_path / "ledger.sqlite3", endpoint=proxy.endpoint)
        result = run_cli("erase", "-c", str(write_config(tmp_path, raw)), call_id, "--reason", "DSR-8")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "s3:DeleteObjectVersion" in result.stderr
    assert "nothing was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert archive_versions(bucket) == before
