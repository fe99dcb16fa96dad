"""Years of archive: recordings in their own storage class, cold storage and restores, expiry under
retention, and erasure on request; each leaves evidence that verify understands."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from archiver.archive.rearchive import REARCHIVABLE
from archiver.archive.seal import Sealer
from archiver.audit.catalog import Catalog, Query
from archiver.audit.evidence import examine
from archiver.audit.verify import Verifier
from archiver.core import dayfiles, keys, seal
from archiver.core.outcome import RecordingStatus
from archiver.errors import StoreUnavailable
from archiver.lifecycle.erase import Eraser, EraseRefused
from archiver.lifecycle.expire import Expirer
from archiver.lifecycle.restore import Restorer
from archiver.simulator import Simulator
from archiver.store import ObjectInfo, Removal, Store
from archiver.store.listing import list_day
from archiver.store.local import LocalStore
from archiver.store.seals import read_chain
from tests.helpers import (
    TZ,
    Bucket,
    FakeClock,
    MotoServer,
    backfill,
    check_sidecar,
    config_for,
    local_objects,
    make_bucket,
    read_target,
    s3_store,
    store_target,
)
from tests.s3faults import FaultProxy, refused

pytestmark = pytest.mark.anyio
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)
FIRST, SECOND = date(2026, 11, 1), date(2026, 11, 2)
# 30 days after the first day ended, and before the second did: only the first is past retention.
EXPIRY_TIME = datetime(2026, 12, 2, 12, tzinfo=TZ)


def open_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """The store of :func:`store_target`'s archive, as the archiver opens it."""
    if kind == "file":
        return LocalStore(tmp_path / "archive")
    bucket: Bucket = request.getfixturevalue("bucket")
    return s3_store(bucket.endpoint, bucket.name)


def eraser(store: Store, prefix: str, clock: FakeClock) -> Eraser:
    return Eraser(store, prefix, tz=TZ, clock=clock)


def expirer(store: Store, prefix: str, clock: FakeClock, keep: timedelta = timedelta(days=30)) -> Expirer:
    return Expirer(
        store, prefix, tz=TZ, keep=keep, policy=f"{keep.days}d", clock=clock, sealer=Sealer(store, prefix, clock)
    )


async def archived_call(store: Store, prefix: str, day: date = FIRST) -> tuple[str, dict[str, Any]]:
    """A call of *day* with a recording: its id and its record."""
    found = await Catalog(store, prefix, TZ).day_calls(day)
    entry = next(f for f in found if f.entry.recording_status == "archived")
    return entry.entry.call_id, json.loads(await store.read(entry.key))


# -- storage classes and cold storage -----------------------------------------------------------


async def test_recordings_go_to_their_class_and_records_stay_standard(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage={"storage_class": "GLACIER"})
    await backfill(config, clock=FakeClock(STORED))
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="archive/")["Contents"]
    classes = {
        item["Key"]: bucket.client.head_object(Bucket=bucket.name, Key=item["Key"]).get("StorageClass", "STANDARD")
        for item in listed
    }
    recordings = {k for k in classes if k.endswith(".wav")}
    assert recordings
    assert {classes[k] for k in recordings} == {"GLACIER"}
    assert {classes[k] for k in set(classes) - recordings} == {"STANDARD"}  # records, day files, seals


async def test_cold_recordings_are_named_not_failed_and_come_back_when_restored(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage={"storage_class": "DEEP_ARCHIVE"})
    await backfill(config, clock=FakeClock(STORED))
    store = s3_store(bucket.endpoint, bucket.name)
    clock = FakeClock(STORED + timedelta(days=3))

    deep = await Verifier(store, "archive", clock=clock).verify(None, deep=True)
    assert deep.problems == []
    assert deep.cold == deep.recordings > 0
    assert deep.rehashed == 0

    call_id, _ = await archived_call(store, "archive")
    catalog = Catalog(store, "archive", TZ)
    files = await catalog.locate(call_id)
    assert files is not None
    chain = await read_chain(store, "archive")
    evidence = await examine(store, files, chain)
    assert evidence.ok
    assert not evidence.verified
    assert evidence.cold == files.audio

    [state] = await Restorer(store, catalog).calls([call_id], days=2)
    assert state.state.startswith("requested")  # moto restores at once: "requested; readable until …"
    assert "readable until" in state.state
    [again] = await Restorer(store, catalog).calls([call_id], days=2)
    assert again.state.startswith("readable until")
    evidence = await examine(store, files, chain)
    assert evidence.verified
    [plain] = await Restorer(store, catalog).calls([await _unrecorded(store)], days=2)
    assert plain.state.startswith("no recording to restore")
    await store.aclose()


async def _unrecorded(store: Store) -> str:
    found = await Catalog(store, "archive", TZ).day_calls(FIRST)
    return next(f.entry.call_id for f in found if f.entry.recording_status == "none")


# -- expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "s3"])
async def test_expire_removes_every_version_of_old_days_after_recording_it(
    kind: str, sim: Simulator, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, endpoint, prefix = store_target(kind, tmp_path, request)
    store = open_store(kind, tmp_path, request)
    await backfill(config_for(sim, url, tmp_path, endpoint=endpoint), clock=FakeClock(STORED))
    first_folder, second_folder = keys.day_prefix(prefix, FIRST), keys.day_prefix(prefix, SECOND)
    manifests_before = {k: await store.read(k) async for k in store.list_keys(first_folder) if "manifest-sha256" in k}
    second_before = [k async for k in store.list_keys(second_folder)]
    clock = FakeClock(EXPIRY_TIME)
    if kind == "s3":  # a recording hidden behind a delete marker, which no listing of objects shows
        [hidden, *_] = [k async for k in store.list_keys(first_folder) if k.endswith(".wav")]
        plain: Bucket = request.getfixturevalue("bucket")
        plain.client.delete_object(Bucket=plain.name, Key=hidden)

    dry = await expirer(store, prefix, clock).run(dry_run=True)
    assert [d.day for d in dry.days] == [FIRST]
    assert [k async for k in store.list_keys(first_folder)]  # a dry run removes nothing

    report = await expirer(store, prefix, clock).run()
    assert [(d.day, d.recorded_now, d.held) for d in report.days] == [(FIRST, True, [])]
    assert [k async for k in store.list_keys(first_folder)] == []
    assert [k async for k in store.list_keys(second_folder)] == second_before
    if kind == "s3":
        bucket: Bucket = request.getfixturevalue("bucket")
        versions = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=first_folder)
        assert not versions.get("Versions")
        assert not versions.get("DeleteMarkers")
    else:
        assert not (tmp_path / "archive" / "2026/11/01").exists()

    chain = await read_chain(store, prefix)
    [(_number, expiry)] = chain.expired().values()
    assert expiry.day == "2026-11-01"
    assert expiry.policy == "30d"
    assert {m.key: m.sha256 for m in expiry.manifests} == {
        k: hashlib.sha256(v).hexdigest() for k, v in manifests_before.items()
    }
    audit = await Verifier(store, prefix, clock=clock).verify(None)
    assert audit.problems == []
    assert audit.expired == {"30d": 1}
    assert audit.days == 1

    again = await expirer(store, prefix, clock).run()  # idempotent: nothing left, no second record
    assert again.days == []
    assert (await read_chain(store, prefix)).length == chain.length
    await store.aclose()


async def test_a_sealed_day_deleted_without_an_expiry_record_is_still_a_problem(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    for path in sorted((root / "2026/11/01").iterdir()):
        path.unlink()
    audit = await Verifier(LocalStore(root), "", clock=FakeClock(EXPIRY_TIME)).verify(None)
    assert audit.expired == {}
    assert any("a sealed manifest is not in the archive any more" in p.what for p in audit.problems)


async def test_an_expire_cut_short_is_finished_by_the_next(sim: Simulator, tmp_path: Path) -> None:
    """The record is written before anything is removed; a run stopped after it is finished by the next."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    store, clock = LocalStore(root), FakeClock(EXPIRY_TIME)
    listing = await list_day(store, "", FIRST)
    manifests = tuple(
        [seal.Link(key, hashlib.sha256(await store.read(key)).hexdigest()) for key in listing.manifests.values()]
    )
    record = seal.Expiry(FIRST.isoformat(), listing.folder, manifests, "30d", seal.utc_text(clock.now()))
    await Sealer(store, "", clock).record_expiry([record], "30d")  # what expire records first; then the run stopped
    between = await Verifier(store, "", clock=clock).verify(None)
    assert between.problems == []
    assert any("expired under retention 30d" in h.what for h in between.history)  # recorded, objects remain

    report = await expirer(store, "", clock).run()
    assert [(d.day, d.recorded_now) for d in report.days] == [(FIRST, False)]
    assert not (root / "2026/11/01").exists()
    assert len((await read_chain(store, "")).expired()) == 1


async def test_objects_under_a_legal_hold_are_left_and_reported(
    sim: Simulator, moto_server: Any, tmp_path: Path
) -> None:
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    await backfill(config_for(sim, locked.url, tmp_path, endpoint=locked.endpoint), clock=FakeClock(STORED))
    store = s3_store(locked.endpoint, locked.name)
    held_key = next(k for k in locked.objects(keys.day_prefix("archive", FIRST)) if k.endswith(".wav"))
    locked.client.put_object_legal_hold(Bucket=locked.name, Key=held_key, LegalHold={"Status": "ON"})
    clock = FakeClock(EXPIRY_TIME)

    report = await expirer(store, "archive", clock).run()
    assert [str(h) for h in report.held] == [f"{held_key} is under a legal hold"]
    assert list(locked.objects(keys.day_prefix("archive", FIRST))) == [held_key]
    audit = await Verifier(store, "archive", clock=clock).verify(None)
    assert audit.problems == []
    assert audit.expired == {"30d": 1}
    assert any("1 object(s) remain" in h.what for h in audit.history)

    locked.client.put_object_legal_hold(Bucket=locked.name, Key=held_key, LegalHold={"Status": "OFF"})
    finished = await expirer(store, "archive", clock).run()
    assert [(d.recorded_now, d.held) for d in finished.days] == [(False, [])]
    assert locked.objects(keys.day_prefix("archive", FIRST)) == {}
    await store.aclose()


# -- erasure ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "s3"])
async def test_erase_removes_the_recordings_and_records_what_and_why(
    kind: str, sim: Simulator, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, endpoint, prefix = store_target(kind, tmp_path, request)
    store = open_store(kind, tmp_path, request)
    await backfill(config_for(sim, url, tmp_path, endpoint=endpoint), clock=FakeClock(STORED))
    call_id, first = await archived_call(store, prefix)
    audio = first["recording"]["key"]
    clock = FakeClock(STORED + timedelta(days=10))

    dry = await eraser(store, prefix, clock).erase(call_id, "DSR-17", bypass_governance=False, dry_run=True)
    assert [r.key for r in dry.removed] == [audio]
    assert await store.head(audio) is not None

    report = await eraser(store, prefix, clock).erase(call_id, "DSR-17", bypass_governance=False, dry_run=False)
    assert await store.head(audio) is None
    if kind == "s3":
        bucket: Bucket = request.getfixturevalue("bucket")
        versions = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=audio)
        assert not versions.get("Versions")
        assert not versions.get("DeleteMarkers")
    revision = json.loads(await store.read(report.revision_key))
    check_sidecar(revision)
    assert revision["revision"] == 2
    assert revision["supersedes"] == keys.sidecar_key(prefix, FIRST, call_id)
    assert revision["cdr"] == first["cdr"]  # the call log stays
    assert revision["recording"]["status"] == "erased"
    assert revision["recording"]["reason"] == "DSR-17"
    assert revision["recording"]["erased_at"] == "2026-11-15T09:00:00Z"
    assert revision["recording"]["removed"] == [
        {"key": audio, "size": first["recording"]["size"], "sha256": first["recording"]["sha256"]}
    ]
    folder = keys.day_prefix(prefix, FIRST)
    addendum = dayfiles.parse_manifest((await store.read(folder + "manifest-sha256.2.txt")).decode())
    assert set(addendum) == {f"{call_id}.rev2.json"}  # the closed day's addendum takes the erasure in

    audit = await Verifier(store, prefix, clock=clock).verify(None, deep=True)
    assert audit.problems == []
    assert audit.erased == 1
    catalog = Catalog(store, prefix, TZ)
    [found] = [f for f in await catalog.find(Query()) if f.entry.call_id == call_id]
    assert found.entry.recording_status == RecordingStatus.ERASED
    assert [f.entry.call_id for f in await catalog.find(Query(statuses=frozenset({"erased"})))] == [call_id]
    files = await catalog.locate(call_id)
    assert files is not None
    evidence = await examine(store, files, await read_chain(store, prefix))
    assert evidence.verified
    assert evidence.erased is not None
    assert "erased" not in REARCHIVABLE

    before = read_target((url, endpoint, prefix), tmp_path, request)
    again = await eraser(store, prefix, clock).erase(call_id, "again", bypass_governance=False, dry_run=False)
    assert again.already_erased
    assert again.versions_removed == 0
    assert read_target((url, endpoint, prefix), tmp_path, request) == before
    await store.aclose()


async def test_an_erase_of_an_unknown_call_writes_nothing(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    before = local_objects(root)
    store = LocalStore(root)
    with pytest.raises(EraseRefused, match="no call 00000000-0000-4000-8000-000000000000"):
        await eraser(store, "", FakeClock(STORED)).erase(
            "00000000-0000-4000-8000-000000000000", "DSR-1", bypass_governance=False, dry_run=False
        )
    with pytest.raises(EraseRefused, match="has no recording in the archive"):
        await eraser(store, "", FakeClock(STORED)).erase(
            await _unrecorded_in(store), "DSR-1", bypass_governance=False, dry_run=False
        )
    assert local_objects(root) == before


async def _unrecorded_in(store: Store) -> str:
    found = await Catalog(store, "", TZ).day_calls(FIRST)
    return next(f.entry.call_id for f in found if f.entry.recording_status == "none")


@pytest.mark.parametrize(
    ("lock", "refusal"),
    [
        ({"mode": "COMPLIANCE", "retain_days": 1}, "COMPLIANCE retention until"),
        ({"mode": "GOVERNANCE", "retain_days": 1}, "erase with --bypass-governance"),
    ],
)
async def test_object_lock_decides_before_anything_is_written(
    lock: dict[str, Any], refusal: str, sim: Simulator, moto_server: Any, tmp_path: Path
) -> None:
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    config = config_for(sim, locked.url, tmp_path, endpoint=locked.endpoint, storage={"object_lock": lock})
    await backfill(config, clock=FakeClock(STORED))
    store = s3_store(locked.endpoint, locked.name)
    call_id, first = await archived_call(store, "archive")
    before = locked.objects()
    with pytest.raises(EraseRefused, match=refusal):
        await eraser(store, "archive", FakeClock(STORED)).erase(
            call_id, "court order 5", bypass_governance=False, dry_run=False
        )
    assert locked.objects() == before  # nothing written, nothing removed
    if lock["mode"] == "GOVERNANCE":
        report = await eraser(store, "archive", FakeClock(STORED)).erase(
            call_id, "court order 5", bypass_governance=True, dry_run=False
        )
        assert report.versions_removed == 1
        assert first["recording"]["key"] not in locked.objects()
    await store.aclose()


async def test_a_legal_hold_refuses_an_erase(sim: Simulator, moto_server: Any, tmp_path: Path) -> None:
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    config = config_for(sim, locked.url, tmp_path, endpoint=locked.endpoint, storage={"legal_hold": True})
    await backfill(config, clock=FakeClock(STORED))
    store = s3_store(locked.endpoint, locked.name)
    call_id, _ = await archived_call(store, "archive")
    before = locked.objects()
    with pytest.raises(EraseRefused, match="a legal hold"):
        await eraser(store, "archive", FakeClock(STORED)).erase(call_id, "DSR-9", bypass_governance=True, dry_run=False)
    assert locked.objects() == before
    await store.aclose()


# -- on Ceph RGW, which checks every signature -------------------------------------------------


async def test_erase_and_expire_on_ceph_rgw(sim: Simulator, rgw_bucket: Bucket, tmp_path: Path) -> None:
    config = config_for(sim, rgw_bucket.url, tmp_path, endpoint=rgw_bucket.endpoint)
    await backfill(config, clock=FakeClock(STORED))
    store = s3_store(rgw_bucket.endpoint, rgw_bucket.name)
    call_id, first = await archived_call(store, "archive", SECOND)
    clock = FakeClock(EXPIRY_TIME)
    await eraser(store, "archive", clock).erase(call_id, "DSR-3", bypass_governance=False, dry_run=False)
    assert await store.head(first["recording"]["key"]) is None
    report = await expirer(store, "archive", clock).run()
    assert [(d.day, d.held) for d in report.days] == [(FIRST, [])]
    assert rgw_bucket.objects(keys.day_prefix("archive", FIRST)) == {}
    audit = await Verifier(store, "archive", clock=clock).verify(None, deep=True)
    assert audit.problems == []
    assert (audit.erased, audit.expired) == (1, {"30d": 1})
    await store.aclose()


async def test_every_version_and_delete_marker_goes_on_a_versioned_rgw_bucket(rgw: Any) -> None:
    versioned = make_bucket(rgw.endpoint, versioned=True)
    key = "archive/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"
    for body in (b"RIFF one", b"RIFF two"):
        versioned.client.put_object(Bucket=versioned.name, Key=key, Body=body)
    versioned.client.delete_object(Bucket=versioned.name, Key=key)  # a delete marker on top
    versioned.client.put_bucket_lifecycle_configuration(
        Bucket=versioned.name,
        LifecycleConfiguration={
            "Rules": [{"ID": "old", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}]
        },
    )
    store = s3_store(versioned.endpoint, versioned.name)
    removal = await store.remove([key])
    assert (removal.removed, removal.held) == (3, [])
    listed = versioned.client.list_object_versions(Bucket=versioned.name, Prefix=key)
    assert not listed.get("Versions")
    assert not listed.get("DeleteMarkers")
    rules = await store.s3.lifecycle_rules()
    assert rules is not None
    assert [r["ID"] for r in rules] == ["old"]
    await store.aclose()


class ColdFolder(LocalStore):
    """A folder whose recordings answer as GLACIER objects do, a restore taking as long as the
    test says (the states S3 reports that moto skips: it restores at once)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.restore_header: str | None = None
        self.asked: list[tuple[str, int]] = []

    async def head(self, key: str) -> ObjectInfo | None:
        info = await super().head(key)
        if info is None or not key.endswith(".wav"):
            return info
        return ObjectInfo(key, info.size, None, storage_class="GLACIER", restore=self.restore_header)

    async def restore(self, key: str, days: int) -> None:
        self.asked.append((key, days))


async def test_restore_reports_each_state_a_restore_goes_through(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    store = ColdFolder(root)
    call_id, first = await archived_call(store, "")
    restorer = Restorer(store, Catalog(store, "", TZ))

    [asked] = await restorer.calls([call_id], days=5)
    assert asked.state == "requested (GLACIER: Standard retrieval takes hours)"
    assert store.asked == [(first["recording"]["key"], 5)]
    store.restore_header = 'ongoing-request="true"'
    [waiting] = await restorer.calls([call_id], days=5)
    assert waiting.state == "in progress"
    store.restore_header = 'ongoing-request="false", expiry-date="Fri, 13 Nov 2026 00:00:00 GMT"'
    [ready] = await restorer.calls([call_id], days=5)
    assert ready.state == "readable until 2026-11-13T00:00+00:00"
    assert len(store.asked) == 1  # asked once; the store was not asked again while it worked
    ranged = await restorer.range([FIRST], days=5)
    assert {s.state for s in ranged} == {"readable until 2026-11-13T00:00+00:00"}
    [unknown] = await restorer.calls(["00000000-0000-4000-8000-000000000000"], days=5)
    assert unknown.state == "not in the archive"


@pytest.mark.parametrize("storage_class", ["STANDARD_IA", "GLACIER"])
async def test_a_deleted_recording_is_put_back_in_its_class_or_named_when_cold(
    storage_class: str, sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage={"storage_class": storage_class})
    await backfill(config, clock=FakeClock(STORED))
    store = s3_store(bucket.endpoint, bucket.name)
    _, first = await archived_call(store, "archive")
    key = first["recording"]["key"]
    bucket.client.delete_object(Bucket=bucket.name, Key=key)  # by hand: a delete marker on top
    with capture_logs() as logs:
        report = await backfill(config, clock=FakeClock(STORED + timedelta(hours=1)))
    assert report.complete
    info = await store.head(key)
    if storage_class == "GLACIER":  # a copy needs a readable source: named, with what to do
        assert info is None
        [event] = [e for e in logs if e["event"] == "object.put_back_cold"]
        assert event["key"] == key
        assert "restore-object --version-id" in event["hint"]
    else:
        assert info is not None
        assert info.storage_class == storage_class  # not STANDARD, as a plain copy would make it
    await store.aclose()


class RemovalFails(LocalStore):
    """A folder whose removals fail while ``failing`` is set: an erase cut short after its record."""

    failing = True

    async def remove(self, keys: Sequence[str], *, bypass_governance: bool = False) -> Removal:
        if self.failing:
            raise StoreUnavailable("the store went away")
        return await super().remove(keys, bypass_governance=bypass_governance)


async def test_an_erase_cut_short_is_named_by_verify_and_finished_by_the_next(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    store = RemovalFails(root)
    call_id, first = await archived_call(store, "")
    clock = FakeClock(STORED + timedelta(days=2))
    with pytest.raises(StoreUnavailable):
        await eraser(store, "", clock).erase(call_id, "DSR-8", bypass_governance=False, dry_run=False)
    assert (root / keys.sidecar_key("", FIRST, call_id, 2)).exists()  # the record came first
    between = await Verifier(store, "", clock=clock).verify(None)
    [problem] = between.problems
    assert problem.key == first["recording"]["key"]
    assert "erased, but this one is still in the archive" in problem.what

    store.failing = False
    again = await eraser(store, "", clock).erase(call_id, "DSR-8", bypass_governance=False, dry_run=False)
    assert again.already_erased
    assert again.versions_removed == 1
    assert not (root / first["recording"]["key"]).exists()
    addendum = dayfiles.parse_manifest((root / "2026/11/01/manifest-sha256.2.txt").read_text())
    assert set(addendum) == {f"{call_id}.rev2.json"}
    after = await Verifier(store, "", clock=clock).verify(None)
    assert after.problems == []
    assert after.erased == 1


async def test_a_manifest_rewritten_before_its_day_expired_is_still_caught(sim: Simulator, tmp_path: Path) -> None:
    """The expiry record states the manifest as it was when the day expired: a digest that differs
    from what its seal sealed shows the day was changed first."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    manifest = root / "2026/11/01/manifest-sha256.txt"
    manifest.write_bytes(manifest.read_bytes().replace(b"\n", b"\n\n", 1))  # rewritten, same lines
    store, clock = LocalStore(root), FakeClock(EXPIRY_TIME)
    await expirer(store, "", clock).run()
    audit = await Verifier(store, "", clock=clock).verify(None)
    assert [(p.key, p.what) for p in audit.problems] == [
        (
            "2026/11/01/manifest-sha256.txt",
            "the expiry record (seal 3) gives the manifest another SHA-256 than its seal sealed",
        )
    ]


async def test_an_erasure_record_must_state_what_the_record_stated(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    store, clock = LocalStore(root), FakeClock(STORED + timedelta(days=2))
    call_id, first = await archived_call(store, "")
    report = await eraser(store, "", clock).erase(call_id, "DSR-5", bypass_governance=False, dry_run=False)
    path = root / report.revision_key
    doc = json.loads(path.read_text())
    doc["recording"]["removed"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(doc))
    audit = await Verifier(store, "", clock=clock).verify(None)
    assert (first["recording"]["key"], "the erasure record gives the recording another SHA-256 than its record") in [
        (p.key, p.what) for p in audit.problems
    ]


async def test_erase_and_expire_on_a_store_that_lists_no_versions(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    plain = make_bucket(moto_server.endpoint, versioned=False)
    with FaultProxy(moto_server.endpoint, refused("ListObjectVersions", 501, "NotImplemented")) as proxy:
        config = config_for(sim, f"s3://{plain.name}/archive", tmp_path, endpoint=proxy.endpoint)
        await backfill(config, clock=FakeClock(STORED))
        store = s3_store(proxy.endpoint, plain.name)
        call_id, first = await archived_call(store, "archive", SECOND)
        clock = FakeClock(EXPIRY_TIME)
        report = await eraser(store, "archive", clock).erase(call_id, "DSR-6", bypass_governance=False, dry_run=False)
        assert report.versions_removed == 1
        assert await store.head(first["recording"]["key"]) is None
        expired = await expirer(store, "archive", clock).run()
        assert [(d.day, d.held) for d in expired.days] == [(FIRST, [])]
        assert plain.objects(keys.day_prefix("archive", FIRST)) == {}
        audit = await Verifier(store, "archive", clock=clock).verify(None)
        assert audit.problems == []
        assert (audit.erased, audit.expired) == (1, {"30d": 1})
        await store.aclose()


async def test_days_kept_past_retention_are_a_problem_until_they_expire(sim: Simulator, tmp_path: Path) -> None:
    """A daily expire that stopped running shows in verify: data kept longer than its policy allows."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    store = LocalStore(root)
    retention = (timedelta(days=30), "30d", TZ)
    on_time = await Verifier(store, "", clock=FakeClock(EXPIRY_TIME), retention=retention).verify(None)
    assert on_time.problems == []  # past keep by less than the expire's grace
    late = FakeClock(EXPIRY_TIME + timedelta(days=3))
    overdue = await Verifier(store, "", clock=late, retention=retention).verify(None)
    assert [(p.key, p.what) for p in overdue.problems] == [
        (
            "2026/11/01/",
            "2 day(s), 2026-11-01 to 2026-11-02, are past retention.keep (30d) and not expired: run `archiver "
            "expire` (is archiver-expire.timer enabled?)",
        )
    ]
    await expirer(store, "", late).run()
    assert (await Verifier(store, "", clock=late, retention=retention).verify(None)).problems == []
