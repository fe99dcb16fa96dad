"""Repair: a call lost from the bucket is put back by the next backfill over its day, while the
PBX still serves it; its day gets an addendum, and verify reports what happened as history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from archiver.archive.daysync import DaySync
from archiver.archive.outage import StoreOutage
from archiver.audit.verify import Verifier
from archiver.core import dayfiles
from archiver.core.outcome import RecordingStatus
from archiver.errors import StoreAccessError
from archiver.retry import RetryPolicy
from archiver.simulator import Simulator
from archiver.state.ledger import Ledger
from archiver.store import KeyHistory, Version
from archiver.store.local import LocalStore
from archiver.store.s3_bucket import S3Bucket
from archiver.store.s3_versions import S3VersionAudit
from tests.helpers import (
    SINCE,
    UNTIL,
    FakeClock,
    MotoServer,
    backfill,
    config_for,
    local_objects,
    make_bucket,
    s3_client,
)

pytestmark = pytest.mark.anyio
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)


async def test_a_backfill_puts_back_a_call_the_folder_lost(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    config = config_for(sim, f"file://{root}", tmp_path)
    await backfill(config, clock=FakeClock(STORED))
    call = next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording)
    folder = f"{call.start:%Y/%m/%d}/"
    before = local_objects(root)
    for ext in ("json", "wav"):
        (root / f"{folder}{call.uuid}.{ext}").unlink()

    report = await backfill(config, clock=FakeClock(STORED + timedelta(hours=1)))  # the same ledger

    after = local_objects(root)
    assert report.outcomes[RecordingStatus.ARCHIVED] == 1  # not "already archived"
    assert after[f"{folder}{call.uuid}.wav"] == before[f"{folder}{call.uuid}.wav"]
    assert f"{folder}{call.uuid}.json" in after
    addendum = dayfiles.parse_manifest(after[f"{folder}manifest-sha256.2.txt"].decode())
    assert set(addendum) == {f"{call.uuid}.json", f"{call.uuid}.wav"}  # the new record, sealed
    audit = await Verifier(LocalStore(root), "", clock=FakeClock(STORED + timedelta(days=3))).verify(None)
    assert audit.problems == []
    [event] = audit.history
    assert event.call_id == call.uuid
    assert "lost from the archive and archived again from the PBX" in event.what
    assert "manifest 2 seals the new record, manifest 1 the one it replaced" in event.what

    again = await backfill(config, clock=FakeClock(STORED + timedelta(hours=2)))  # nothing left to do
    assert sum(again.outcomes.values()) == 0
    assert local_objects(root) == after


async def test_a_recording_archived_again_with_other_bytes_is_a_problem(sim: Simulator, tmp_path: Path) -> None:
    """The addendum names what was stored again; bytes that differ from what the first manifest
    sealed are reported, never taken as history."""
    root = tmp_path / "archive"
    config = config_for(sim, f"file://{root}", tmp_path)
    await backfill(config, clock=FakeClock(STORED))
    call = next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording)
    folder = root / f"{call.start:%Y/%m/%d}"
    for ext in ("json", "wav"):
        (folder / f"{call.uuid}.{ext}").unlink()
    await backfill(config, clock=FakeClock(STORED + timedelta(hours=1)))
    first = dayfiles.parse_manifest((folder / "manifest-sha256.txt").read_text())
    # What the PBX served this time, as if it differed: the addendum and the record agree on it.
    sealed = first[f"{call.uuid}.wav"]
    first_line = f"{sealed}  {call.uuid}.wav"
    assert first_line in (folder / "manifest-sha256.txt").read_text()
    addendum = (folder / "manifest-sha256.2.txt").read_text()
    stated = dayfiles.parse_manifest(addendum)[f"{call.uuid}.wav"]
    assert stated == sealed
    text = (folder / "manifest-sha256.txt").read_text().replace(first_line, f"{'0' * 64}  {call.uuid}.wav")
    (folder / "manifest-sha256.txt").write_text(text)  # now the first manifest sealed other bytes
    audit = await Verifier(LocalStore(root), "", clock=FakeClock(STORED + timedelta(days=3))).verify(
        [date(call.start.year, call.start.month, call.start.day)]
    )
    assert any(
        p.call_id == call.uuid and "archived again with other bytes than manifest 1 sealed" in p.what
        for p in audit.problems
    )


class DeniedVersions:
    """Credentials without s3:ListBucketVersions: every look at versions is refused."""

    async def histories(self, prefix: str) -> AsyncIterator[KeyHistory]:
        raise StoreAccessError(f"AccessDenied listing the versions under {prefix}")
        yield  # pragma: no cover - makes this an async generator

    async def put_back(self, key: str, version: Version) -> None:  # pragma: no cover - never reached
        raise AssertionError(key)

    async def same_bytes(self, key: str, a: Version, b: Version) -> bool:  # pragma: no cover - never reached
        raise AssertionError(key)


async def test_without_the_right_to_list_versions_a_lost_call_is_archived_again_from_the_pbx(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Putting back needs s3:ListBucketVersions; without it the day is still synced (the lost
    call forgotten, to be archived again), said once, and the run goes on."""
    store = LocalStore(tmp_path)
    store.versions = DeniedVersions()
    ledger = Ledger.in_memory(store_identity="test")
    day = date(2026, 11, 1)
    ledger.calls.mark_done("lost", day, RecordingStatus.NONE, STORED)
    outage = StoreOutage(store, "_archiver/outage-probe", RetryPolicy(timeout=5, wait_initial=0.01, wait_max=0.02))
    sync = DaySync(store, ledger, prefix="", clock=FakeClock(STORED + timedelta(hours=1)), outage=outage)
    await sync.sync([day, day + timedelta(days=1)])
    assert not ledger.calls.is_done("lost")
    assert capsys.readouterr().out.count("day.put_back_unavailable") == 1


@pytest.mark.parametrize("versioned", [False, True])
async def test_version_histories_are_listed_only_where_the_bucket_keeps_versions(
    versioned: bool, moto_server: MotoServer
) -> None:
    """A bucket that never had versioning has one version per key: its days are not listed twice."""
    made = make_bucket(moto_server.endpoint, versioned=versioned)
    client = s3_client(moto_server.endpoint)
    listed: list[str] = []
    client.meta.events.register("before-call.s3.ListObjectVersions", lambda **_: listed.append("versions"))
    audit = S3VersionAudit(S3Bucket(client, made.name), protection=lambda head: {})
    for day in ("2026/11/01/", "2026/11/02/"):
        assert [h async for h in audit.histories(day)] == []
    assert len(listed) == (2 if versioned else 0)
