"""The attacks `verify` stands against, and the unlucky operator's states it does not call whole.

Each test is one attack by someone who can write to the bucket (or one thing a killed process or
a careless command leaves), and what `verify` says of it. On an unversioned bucket, where no
version history tells on the writer, the seals, the store's own checksums and the records are
all there is. What verify cannot see without something kept outside the bucket (a seal head
recorded elsewhere, Object Lock) is said in the README's auditing section.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest

from archiver.archive.dayclose import DayCloser
from archiver.archive.seal import Sealer
from archiver.audit.catalog import Catalog
from archiver.audit.recordings import RecordChecker
from archiver.audit.verify import Verifier, VerifyReport
from archiver.core import keys, seal
from archiver.errors import ConfigError, StoreAccessError
from archiver.lifecycle.erase import Eraser
from archiver.lifecycle.expire import Expirer
from archiver.simulator import Simulator
from archiver.state.ledger import Ledger
from archiver.store import Removal, Store, StoredVersion, put_bytes
from archiver.store.listing import list_day
from archiver.store.local import LocalStore
from archiver.store.seals import read_chain
from tests.helpers import Bucket, FakeClock, MotoServer, backfill, config_for, make_bucket, s3_store
from tests.s3faults import Answer, FaultProxy, Forward, S3Request, error

pytestmark = pytest.mark.anyio
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)
FIRST = date(2026, 11, 1)


async def a_recording(store: Store, prefix: str = "archive", day: date = FIRST) -> tuple[str, dict[str, Any]]:
    """An archived call of *day*: its id and what its record says of its recording."""
    found = await Catalog(store, prefix, TZ).day_calls(day)
    entry = next(f for f in found if f.entry.recording_status == "archived")
    return entry.entry.call_id, json.loads(await store.read(entry.key))["recording"]


def same_size_swap(data: bytes) -> bytes:
    """Other bytes of the same length (a recording's audio changed, its header kept)."""
    return data[:64] + bytes(b ^ 0x55 for b in data[64:])


def upload_in_parts(bucket: Bucket, key: str, data: bytes, metadata: dict[str, str], part: int = 5 << 20) -> None:
    """*data* written under *key* as a writer with its own client would, in parts with their checksums."""
    client = bucket.client
    upload = client.create_multipart_upload(Bucket=bucket.name, Key=key, ChecksumAlgorithm="SHA256", Metadata=metadata)
    parts = []
    for number, start in enumerate(range(0, len(data), part), start=1):
        body = data[start : start + part]
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        answer = client.upload_part(
            Bucket=bucket.name,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum})
    client.complete_multipart_upload(
        Bucket=bucket.name, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


async def verified(store: Store, *, deep: bool = False) -> VerifyReport:
    return await Verifier(store, "archive", clock=FakeClock(STORED)).verify(None, deep=deep)


def problems(report: VerifyReport) -> list[str]:
    return [p.what for p in report.problems]


@pytest.fixture
async def unversioned(sim: Simulator, moto_server: MotoServer, tmp_path: Path) -> Bucket:
    """An archive on an unversioned bucket: no version history tells on a writer."""
    bucket = make_bucket(moto_server.endpoint, versioned=False)
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    return bucket


@pytest.fixture
async def deep_archive(sim: Simulator, moto_server: MotoServer, tmp_path: Path) -> Bucket:
    """An archive whose recordings are in DEEP_ARCHIVE (cold: they cannot be read back)."""
    bucket = make_bucket(moto_server.endpoint, versioned=False)
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage={"storage_class": "DEEP_ARCHIVE"})
    await backfill(config, clock=FakeClock(STORED))
    return bucket


# -- the recordings' bytes ------------------------------------------------------------------------


async def test_a_same_size_swap_carrying_the_original_digest_in_its_metadata_is_found(unversioned: Bucket) -> None:
    """The writer's own ``sha256`` metadata is its word, not the store's: a recording swapped for other
    bytes of the same size, with the original digest put in its metadata and no checksum of the
    store's, is read back and found, where plain verify once took the metadata for a checksum."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    _, rec = await a_recording(store)
    original = unversioned.objects()[rec["key"]]
    unversioned.client.put_object(
        Bucket=unversioned.name, Key=rec["key"], Body=same_size_swap(original), Metadata={"sha256": rec["sha256"]}
    )
    report = await verified(store)
    await store.aclose()
    assert "the recording's SHA-256 differs from the sidecar's: its bytes changed" in problems(report)
    assert report.rehashed >= 1  # the swapped one was read: the store keeps no checksum of it


async def test_metadata_that_disagrees_with_the_record_is_a_problem(unversioned: Bucket) -> None:
    """The writer's metadata proves nothing when it agrees; when it names another digest, someone else wrote it."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    _, rec = await a_recording(store)
    original = unversioned.objects()[rec["key"]]
    unversioned.client.put_object(Bucket=unversioned.name, Key=rec["key"], Body=original, Metadata={"sha256": "0" * 64})
    report = await verified(store)
    await store.aclose()
    assert "the recording's own metadata gives another SHA-256 than its record" in problems(report)


async def test_plain_verify_says_it_compared_the_stores_checksums_without_reading(unversioned: Bucket) -> None:
    """Recordings the store keeps its own SHA-256 of are compared with it and not read; the count says so."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    report = await verified(store)
    await store.aclose()
    assert report.problems == []
    assert report.recordings > 0
    assert report.store_checked == report.recordings
    assert report.rehashed == 0


async def test_a_cold_swap_with_its_own_checksum_is_found_by_deep_verify(deep_archive: Bucket) -> None:
    """A recording in DEEP_ARCHIVE swapped for same-size bytes carrying their own correct
    ChecksumSHA256: --deep cannot read it, but compares the store's checksum with the record."""
    store = s3_store(deep_archive.endpoint, deep_archive.name)
    _, rec = await a_recording(store)
    swapped = same_size_swap(bytes(rec["size"]))
    deep_archive.client.put_object(
        Bucket=deep_archive.name,
        Key=rec["key"],
        Body=swapped,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(hashlib.sha256(swapped).digest()).decode(),
        StorageClass="DEEP_ARCHIVE",
    )
    report = await verified(store, deep=True)
    await store.aclose()
    assert "the store's own checksum of the recording differs from its record: its bytes changed" in problems(report)


async def test_a_cold_swap_without_a_checksum_is_a_problem(deep_archive: Bucket) -> None:
    """A recording in DEEP_ARCHIVE swapped for same-size bytes with no checksum of the store's: its
    size is all that could be compared, and that is said as a problem, not counted as checked."""
    store = s3_store(deep_archive.endpoint, deep_archive.name)
    _, rec = await a_recording(store)
    deep_archive.client.put_object(
        Bucket=deep_archive.name, Key=rec["key"], Body=bytes(rec["size"]), StorageClass="DEEP_ARCHIVE"
    )
    report = await verified(store, deep=True)
    await store.aclose()
    assert any(p.startswith("in cold storage, and the store keeps no checksum of it") for p in problems(report))


async def test_untouched_cold_recordings_pass_deep_verify_compared_with_the_stores_checksum(
    deep_archive: Bucket,
) -> None:
    """Cold recordings that were not touched: --deep compares each with the store's own checksum and counts them."""
    store = s3_store(deep_archive.endpoint, deep_archive.name)
    report = await verified(store, deep=True)
    await store.aclose()
    assert report.problems == []
    assert report.cold == report.recordings > 0
    assert report.rehashed == 0


async def test_a_recording_in_parts_is_compared_by_the_checksum_of_its_parts(bucket: Bucket) -> None:
    """A recording uploaded in parts has no whole-object SHA-256 of the store's: its record states
    the store's checksum of its parts (what the upload returned), which plain verify compares
    without reading; the same key rewritten in parts with other bytes of the same size is found."""
    store = s3_store(bucket.endpoint, bucket.name, multipart_threshold=1, part_size=5 << 20)
    data = b"RIFF" + bytes(range(256)) * 41000  # over 10 MiB: three parts
    digest = hashlib.sha256(data).digest()
    key = "archive/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"
    composite = await store.put(key, io.BytesIO(data), size=len(data), sha256=digest, content_type="audio/wav")
    info = await store.head(key)
    assert info is not None
    assert info.sha256 is None
    assert composite is not None
    assert info.composite_sha256 == composite
    rec = {"key": key, "size": len(data), "sha256": digest.hex(), "composite_sha256": composite}
    checker = RecordChecker(store, limiter=anyio.CapacityLimiter(1), rng=random.Random(1))
    whole = VerifyReport()
    await checker.check_recording("09dc3fa8-ba86-11e5-a8af-dbc80e22bddb", rec, whole, rehash=False)
    assert (whole.problems, whole.store_checked, whole.rehashed) == ([], 1, 0)
    bucket.purge(key)
    upload_in_parts(bucket, key, same_size_swap(data), metadata={"sha256": digest.hex()})  # the writer's word, copied
    swapped = VerifyReport()
    await checker.check_recording("09dc3fa8-ba86-11e5-a8af-dbc80e22bddb", rec, swapped, rehash=False)
    await store.aclose()
    assert problems(swapped) == ["the store's own checksum of the recording differs from its record: its bytes changed"]


# -- expiry records -------------------------------------------------------------------------------


async def forge_expiry(store: Store, day: date, policy: str, at: datetime, *, stating: bool = True) -> None:
    """What a writer to the bucket does to hide a day: records its expiry in the chain (as expire
    would, its manifests as they are; *stating* the policy in force, as expire does, or as records
    made before the chain stated one) and removes the day."""
    listing = await list_day(store, "archive", day)
    links = tuple([seal.Link(k, hashlib.sha256(await store.read(k)).hexdigest()) for k in listing.manifests.values()])
    record = seal.Expiry(day.isoformat(), listing.folder, links, policy, seal.utc_text(at))
    if stating:
        await Sealer(store, "archive", FakeClock(at), timezone="Asia/Ho_Chi_Minh").record_expiry([record], policy)
    else:
        chain = await read_chain(store, "archive")
        made = seal.Seal.new(chain.length + 1, {}, chain.head, at, expired=(record,))
        await put_bytes(store, seal.seal_key("archive", chain.length + 1), made.to_bytes(), "application/json")
    await store.remove_versions(await store.versions_in(listing.folder))


async def test_an_expiry_recorded_before_its_retention_ended_is_a_problem(unversioned: Bucket) -> None:
    """A record that a 4-day-old day expired under 30 days, and the day gone: the record is not
    lawful (the day's end plus 30 days had not come), and verify says so instead of counting it."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    await forge_expiry(store, FIRST, "30d", STORED)
    report = await verified(store)
    await store.aclose()
    assert any("before retention 30d let the day go" in p for p in problems(report))


async def test_an_expiry_under_another_policy_than_retention_keep_and_no_recorded_change_is_a_problem(
    unversioned: Bucket,
) -> None:
    """A record under 1d, made when 1d would allow it, on an archive kept for 30 days whose seals
    record no change of policy: not lawful under the retention in force."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    await forge_expiry(store, FIRST, "1d", STORED, stating=False)
    retention = (timedelta(days=30), "30d", TZ)
    report = await Verifier(store, "archive", clock=FakeClock(STORED), retention=retention).verify(None)
    await store.aclose()
    assert any("retention.keep is 30d, and no change of it is recorded" in p for p in problems(report))


async def test_every_change_of_retention_the_seals_record_is_shown(unversioned: Bucket) -> None:
    """A writer to the bucket can append seals as the archiver does, a change of policy among them:
    what verify can do is show it. Each change the chain records is a HISTORY line, for an auditor
    to weigh against the policy the archive should have."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    await forge_expiry(store, FIRST, "1d", STORED)
    report = await Verifier(store, "archive", clock=FakeClock(STORED)).verify(None)
    await store.aclose()
    assert report.problems == []
    assert any(h.what == "retention 1d in force from here" for h in report.history)


async def test_a_lawful_expiry_passes(unversioned: Bucket) -> None:
    """The same day recorded under 30 days once 30 days have passed since its end: lawful, counted."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    later = datetime(2026, 12, 2, 12, tzinfo=TZ)
    await forge_expiry(store, FIRST, "30d", later)
    report = await Verifier(store, "archive", clock=FakeClock(later)).verify(None)
    await store.aclose()
    assert report.problems == []
    assert report.expired == {"30d": 1}


async def test_a_sealed_day_deleted_whole_is_found_the_night_it_goes(unversioned: Bucket) -> None:
    """The nightly verify checks a few days, but every sealed day's folder must still be there: a
    day deleted whole (not its turn tonight) is a problem tonight."""
    store = s3_store(unversioned.endpoint, unversioned.name)
    for key in unversioned.objects(keys.day_prefix("archive", FIRST)):
        unversioned.client.delete_object(Bucket=unversioned.name, Key=key)
    second = FIRST + timedelta(days=1)
    report = await Verifier(store, "archive", clock=FakeClock(STORED)).verify([second], every_sealed_day=True)
    await store.aclose()
    assert any(p.startswith("a sealed day is gone") for p in problems(report))


# -- expire: what outlives retention, what it removes --------------------------------------------


SECOND = date(2026, 11, 2)
EXPIRY_TIME = datetime(2026, 12, 2, 12, tzinfo=TZ)  # past 30 days from the first day's end, not the second's


def expirer(store: Store, clock: FakeClock, *, tz: ZoneInfo | None = TZ, prefix: str = "archive") -> Expirer:
    sealer = Sealer(store, prefix, clock)
    return Expirer(store, prefix, tz=tz, keep=timedelta(days=30), policy="30d", clock=clock, sealer=sealer)


@pytest.fixture
async def versioned(sim: Simulator, bucket: Bucket, tmp_path: Path) -> Bucket:
    """An archive on a versioned bucket."""
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    return bucket


async def test_a_day_hidden_behind_delete_markers_is_expired_too(versioned: Bucket) -> None:
    """Every object of a day deleted (``aws s3 rm --recursive`` on a versioned bucket): the day has
    no folder in a listing of objects, but its versions, recordings among them, are personal data
    past retention: expire finds the day from the versions and removes every one of them."""
    folder = keys.day_prefix("archive", FIRST)
    for key in versioned.objects(folder):
        versioned.client.delete_object(Bucket=versioned.name, Key=key)
    store = s3_store(versioned.endpoint, versioned.name)
    report = await expirer(store, FakeClock(EXPIRY_TIME)).run()
    await store.aclose()
    assert [d.day for d in report.days] == [FIRST]
    left = versioned.client.list_object_versions(Bucket=versioned.name, Prefix=folder)
    assert left.get("Versions", []) == []
    assert left.get("DeleteMarkers", []) == []


class WriteDuringRemoval(LocalStore):
    """A folder archive where, between expire's listing of a day and its removal, a call of that
    day is erased (its revision, the day's addendum and its seal written): what lands in between."""

    def __init__(self, root: Path, clock: FakeClock) -> None:
        super().__init__(root)
        self.clock = clock
        self.erased: str | None = None

    async def _erase_one(self, folder: str) -> None:
        if self.erased is None:
            call_id = next(iter((await list_day(LocalStore(self.root), "", FIRST)).audio))
            self.erased = call_id
            eraser = Eraser(LocalStore(self.root), "", tz=TZ, clock=self.clock)
            await eraser.erase(call_id, "DSR-9", bypass_governance=False, dry_run=False)

    async def remove_versions(self, versions: Sequence[StoredVersion], *, bypass_governance: bool = False) -> Removal:
        await self._erase_one(versions[0].key.rsplit("/", 1)[0] + "/")
        return await super().remove_versions(versions, bypass_governance=bypass_governance)

    async def remove_folder(self, folder: str) -> Removal:  # what expire called before it listed versions
        await self._erase_one(folder)
        return await self.remove([key async for key in self.list_keys(folder)])


async def test_expire_removes_what_it_listed_and_records_what_landed_since_before_removing_it(
    sim: Simulator, tmp_path: Path
) -> None:
    """An erase lands between expire's listing of a day and its removal: its revision and the
    addendum manifest stay (they were not listed), verify sees nothing wrong, and the next expire
    records the addendum in the day's expiry before it removes it; verify still passes."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    clock = FakeClock(EXPIRY_TIME)
    store = WriteDuringRemoval(root, clock)
    await expirer(store, clock, prefix="").run()
    assert store.erased is not None
    assert (root / "2026" / "11" / "01" / f"{store.erased}.rev2.json").exists()  # landed after the listing: kept
    between = await Verifier(LocalStore(root), "", clock=clock).verify(None)
    assert between.problems == []
    await expirer(LocalStore(root), clock, prefix="").run()
    after = await Verifier(LocalStore(root), "", clock=clock).verify(None)
    assert after.problems == []
    assert after.expired == {"30d": 1}
    assert not (root / "2026" / "11" / "01").exists()


# -- erase ----------------------------------------------------------------------------------------


class ClosesDuringErase(LocalStore):
    """A folder archive whose day another archiver closes just before an erase's revision lands
    (after the erase looked at the day), from a listing without the revision."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.closed = False

    async def put(self, key: str, body: Any, **kwargs: Any) -> str | None:
        if ".rev" in key and not self.closed:  # the daemon closes the day, from a listing without the revision
            self.closed = True
            closer = DayCloser(
                LocalStore(self.root),
                Ledger.in_memory(store_identity="daemon"),
                prefix="",
                tz=TZ,
                close_after=timedelta(0),
                sealer=Sealer(LocalStore(self.root), "", FakeClock(STORED)),
            )
            await closer.write_day_files(FIRST)
        return await super().put(key, body, **kwargs)


async def test_an_erase_that_races_the_days_close_ends_in_a_manifest(sim: Simulator, tmp_path: Path) -> None:
    """The day closes (another archiver) between the erase's look at it and its revision: the erase
    lists the day again after the revision, and its addendum names it; nothing is left in no manifest."""
    root = tmp_path / "archive"
    open_day = FakeClock(datetime(2026, 11, 1, 20, tzinfo=TZ))  # the first day's calls in, the day not closed
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=open_day)
    assert not list((root / "2026" / "11" / "01").glob("manifest-sha256*"))
    store = ClosesDuringErase(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    await Eraser(store, "", tz=TZ, clock=FakeClock(STORED)).erase(
        call_id, "DSR-7", bypass_governance=False, dry_run=False
    )
    assert store.closed
    report = await Verifier(LocalStore(root), "", clock=FakeClock(STORED + timedelta(days=3))).verify(None)
    assert report.problems == []
    assert report.erased == 1


async def test_an_erase_never_removes_a_recording_another_calls_record_names(sim: Simulator, tmp_path: Path) -> None:
    """Someone writes a revision of call A naming call B's recording as A's: erasing A removes A's
    own recording and never B's, which stays as it was stored."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    folder = root / "2026" / "11" / "01"
    archived = [
        (path.stem, doc)
        for path in sorted(folder.glob("*.json"))
        if "." not in path.stem and (doc := json.loads(path.read_bytes()))["recording"]["status"] == "archived"
    ]
    (_, theirs), (erased, ours) = archived[0], archived[1]
    forged = {**ours, "recording": {**ours["recording"], "key": theirs["recording"]["key"]}}
    forged.update(revision=2, supersedes=f"2026/11/01/{erased}.json", reason="rearchive: archived -> archived")
    (folder / f"{erased}.rev2.json").write_text(json.dumps(forged, indent=2) + "\n")
    victim_bytes = (root / theirs["recording"]["key"]).read_bytes()
    await Eraser(LocalStore(root), "", tz=TZ, clock=FakeClock(STORED)).erase(
        erased, "DSR-10", bypass_governance=False, dry_run=False
    )
    assert (root / theirs["recording"]["key"]).read_bytes() == victim_bytes
    assert not (root / ours["recording"]["key"]).exists()


async def test_a_backfill_over_a_day_seals_a_record_no_manifest_names(sim: Simulator, tmp_path: Path) -> None:
    """A record of a closed day in no manifest (a revision written while the day closed, by an
    archiver that stopped): verify names `backfill` over the day, and that backfill writes the
    addendum, although every call of the day is done."""
    root = tmp_path / "archive"
    config = config_for(sim, f"file://{root}", tmp_path)
    await backfill(config, clock=FakeClock(STORED))
    store = LocalStore(root)
    folder = root / "2026" / "11" / "01"
    call_id, current = next(
        (path.stem, doc)
        for path in sorted(folder.glob("*.json"))
        if (doc := json.loads(path.read_bytes()))["recording"]["status"] == "none"
    )
    loose = {**current, "revision": 2, "supersedes": f"2026/11/01/{call_id}.json", "reason": "rearchive: none -> none"}
    written = folder / f"{call_id}.rev2.json"
    written.write_text(json.dumps(loose, indent=2) + "\n")
    three_days_ago = time.time() - timedelta(days=3).total_seconds()  # the store's clock: a file's mtime
    os.utime(written, (three_days_ago, three_days_ago))
    later = FakeClock(STORED + timedelta(days=3))
    before = await Verifier(store, "", clock=later).verify(None)
    assert any("writes the addendum" in p for p in problems(before))
    await backfill(config, clock=later, since=datetime(2026, 11, 1, tzinfo=TZ), until=datetime(2026, 11, 2, tzinfo=TZ))
    after = await Verifier(store, "", clock=later).verify(None)
    assert after.problems == []


def lock_headers_hidden(request: S3Request, forward: Forward) -> Answer | None:
    """What S3 answers credentials without s3:GetObjectRetention and s3:GetObjectLegalHold: HEAD
    leaves the Object Lock headers out, and the two APIs refuse."""
    if request.operation in ("GetObjectRetention", "GetObjectLegalHold"):
        return error(403, "AccessDenied", "Access Denied")
    if request.operation == "HeadObject":
        answer = forward()
        return Answer(answer.status, answer.body, [(k, v) for k, v in answer.headers if "object-lock" not in k.lower()])
    return None


async def test_an_erase_that_cannot_see_a_compliance_lock_writes_nothing(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """A recording under COMPLIANCE retention, erased with credentials that may not read Object
    Lock settings: the lock would look like none, and an erase recorded that the store refuses.
    The erase asks explicitly, is refused, and stops before anything is written."""
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    storage = {"object_lock": {"mode": "COMPLIANCE", "retain_days": 30}}
    await backfill(
        config_for(sim, locked.url, tmp_path, endpoint=locked.endpoint, storage=storage), clock=FakeClock(STORED)
    )
    before = locked.objects()
    with FaultProxy(locked.endpoint, lock_headers_hidden) as proxy:
        store = s3_store(proxy.endpoint, locked.name, now=lambda: STORED)
        call_id, _ = await a_recording(store)
        eraser = Eraser(store, "archive", tz=TZ, clock=FakeClock(STORED))
        with pytest.raises(StoreAccessError, match="s3:GetObjectRetention and s3:GetObjectLegalHold"):
            await eraser.erase(call_id, "DSR-8", bypass_governance=False, dry_run=False)
        await store.aclose()
    assert locked.objects() == before  # nothing written, nothing removed


async def test_an_erase_of_a_cold_recording_is_not_taken_for_a_refusal(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """Some stores answer GetObjectRetention on an object in an archive tier with 403
    InvalidObjectState (moto does): that says nothing of the credentials, and the erase goes on."""
    bucket = make_bucket(moto_server.endpoint)
    storage = {"storage_class": "GLACIER"}
    await backfill(
        config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=storage), clock=FakeClock(STORED)
    )
    store = s3_store(bucket.endpoint, bucket.name, now=lambda: STORED)
    call_id, record = await a_recording(store)
    eraser = Eraser(store, "archive", tz=TZ, clock=FakeClock(STORED))
    await eraser.erase(call_id, "DSR-9", bypass_governance=False, dry_run=False)
    await store.aclose()
    assert record["key"] not in {v["Key"] for v in bucket.versions()}  # every version of it gone


# -- the zone days are filed in ---------------------------------------------------------------------


async def test_retention_is_reckoned_in_the_zone_the_archive_states_not_a_default(
    sim: Simulator, tmp_path: Path
) -> None:
    """An archive filed in America/Los_Angeles, expired with a storage-only configuration that names
    no zone: the seals state the archive's zone, and a day is not expired 15 hours early, as it
    would be if read in the default Asia/Ho_Chi_Minh."""
    root = tmp_path / "archive"
    la = ZoneInfo("America/Los_Angeles")
    config = config_for(sim, f"file://{root}", tmp_path, source={"timezone": "America/Los_Angeles"})
    await backfill(
        config, clock=FakeClock(STORED), since=datetime(2026, 11, 1, tzinfo=la), until=datetime(2026, 11, 3, tzinfo=la)
    )
    store = LocalStore(root)
    assert (await read_chain(store, "")).timezone == "America/Los_Angeles"
    # 30 days after the first day ended in Ho Chi Minh City, 15 hours before it ends in Los Angeles
    early = FakeClock(datetime(2026, 12, 2, 12, tzinfo=TZ))
    expirer_ = expirer(store, early, tz=None, prefix="")
    assert (await expirer_.zone()).key == "America/Los_Angeles"
    report = await expirer_.run()
    assert report.days == []
    assert (root / "2026" / "11" / "01").exists()


async def test_an_archive_whose_zone_is_stated_nowhere_expires_nothing(sim: Simulator, tmp_path: Path) -> None:
    """No seal states the zone (an archive written before seals did) and the configuration names
    none: expire stops with what to set, and removes nothing."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    for path in (root / "seals").iterdir():
        document = json.loads(path.read_bytes())
        document.pop("timezone", None)
        path.write_text(json.dumps(document, indent=2) + "\\n")
    with pytest.raises(ConfigError, match="source.timezone"):
        await expirer(LocalStore(root), FakeClock(EXPIRY_TIME), tz=None, prefix="").run()
    assert (root / "2026" / "11" / "01").exists()


# -- what a put-back and the history say ----------------------------------------------------------


async def test_a_put_back_restores_the_version_that_was_sealed(sim: Simulator, bucket: Bucket, tmp_path: Path) -> None:
    """A recording overwritten by someone, then deleted: the put-back restores the first version
    (the archive's own write, the one sealed), never the overwrite."""
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint)
    await backfill(config, clock=FakeClock(STORED))
    store = s3_store(bucket.endpoint, bucket.name)
    _, rec = await a_recording(store)
    original = bucket.objects()[rec["key"]]
    bucket.client.put_object(Bucket=bucket.name, Key=rec["key"], Body=same_size_swap(original))
    bucket.client.delete_object(Bucket=bucket.name, Key=rec["key"])
    await backfill(config, clock=FakeClock(STORED + timedelta(days=1)))
    await store.aclose()
    assert bucket.objects()[rec["key"]] == original


async def test_history_does_not_promise_a_put_back_of_a_cold_version(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """A deleted recording whose version is in GLACIER cannot be copied back until it is restored:
    verify says so, with the command, instead of promising that a backfill puts it back."""
    storage = {"storage_class": "GLACIER"}
    await backfill(
        config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=storage), clock=FakeClock(STORED)
    )
    store = s3_store(bucket.endpoint, bucket.name)
    _, rec = await a_recording(store)
    bucket.client.delete_object(Bucket=bucket.name, Key=rec["key"])
    report = await verified(store)
    await store.aclose()
    said = [p.what for p in report.problems if p.key == rec["key"]]
    assert any("is in GLACIER: restore it (aws s3api restore-object --version-id" in w for w in said), said


async def test_an_archive_whose_first_seal_expire_writes_still_seals_its_earlier_manifests(
    sim: Simulator, tmp_path: Path
) -> None:
    """An archive closed before seals were kept (manifests, no seal), whose first seal is an expiry
    record: that seal also seals the manifests written before it, as a manifest's first seal does."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    shutil.rmtree(root / "seals")
    clock = FakeClock(EXPIRY_TIME)
    await expirer(LocalStore(root), clock, prefix="").run()
    report = await Verifier(LocalStore(root), "", clock=clock).verify(None)
    assert report.problems == []
    assert report.expired == {"30d": 1}
