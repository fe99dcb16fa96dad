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
import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest

from archiver.audit.catalog import Catalog
from archiver.audit.recordings import RecordChecker
from archiver.audit.verify import Verifier, VerifyReport
from archiver.simulator import Simulator
from archiver.store import Store
from tests.helpers import Bucket, FakeClock, MotoServer, backfill, config_for, make_bucket, s3_store

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
