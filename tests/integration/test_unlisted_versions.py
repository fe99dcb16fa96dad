"""Expire and erase on a bucket that keeps object versions but will not list them (a gateway in
front of a versioned bucket answering ListObjectVersions 501 NotImplemented): a DELETE without a
version id there only writes a delete marker, every version kept. Neither command says it removed
what it did not: the bucket is asked whether it keeps versions before anything is recorded, and a
DELETE the store answers with a delete marker is never counted as a removal. (A store that keeps
no versions and lists none, as R2, is removed from as before: tests/integration/test_retention.py.)"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from archiver.archive.seal import Sealer
from archiver.errors import StoreAccessError
from archiver.lifecycle.erase import Eraser
from archiver.lifecycle.expire import Expirer
from archiver.simulator import Simulator
from archiver.store import Store
from archiver.store.listing import list_day
from archiver.store.seals import read_chain
from tests.helpers import TZ, Bucket, FakeClock, backfill, config_for, s3_store
from tests.s3faults import FaultProxy, both, refused

pytestmark = pytest.mark.anyio
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)
FIRST = date(2026, 11, 1)
EXPIRY_TIME = datetime(2026, 12, 2, 12, tzinfo=TZ)  # past 30 days from the first day's end, not the second's
NO_VERSION_LISTING = refused("ListObjectVersions", 501, "NotImplemented")


def expirer(store: Store, clock: FakeClock) -> Expirer:
    sealer = Sealer(store, "archive", clock)
    return Expirer(store, "archive", tz=TZ, keep=timedelta(days=30), policy="30d", clock=clock, sealer=sealer)


def versions_and_markers(bucket: Bucket, prefix: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(key, version id) of every version under *prefix*, and the keys of its delete markers."""
    answer = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=prefix)
    versions = sorted((v["Key"], v["VersionId"]) for v in answer.get("Versions", []))
    return versions, [m["Key"] for m in answer.get("DeleteMarkers", [])]


async def test_expire_refuses_a_bucket_that_keeps_versions_it_will_not_list(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """The bucket says its versioning is Enabled: expire refuses, saying the store keeps versions
    it will not list and that nothing was removed, before recording any expiry; the first day's
    every version is there and current (no delete marker written)."""
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    folder = "archive/2026/11/01/"
    before = versions_and_markers(bucket, folder)
    seals = len((await read_chain(s3_store(bucket.endpoint, bucket.name), "archive")).seals)
    with FaultProxy(bucket.endpoint, NO_VERSION_LISTING) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, now=lambda: EXPIRY_TIME)
        with pytest.raises(StoreAccessError) as refusal:
            await expirer(store, FakeClock(EXPIRY_TIME)).run()
        await store.aclose()
    said = str(refusal.value)
    assert "keeps object versions (versioning Enabled) but will not list them" in said
    assert "behind delete markers" in said
    assert said.endswith("nothing was removed")
    assert versions_and_markers(bucket, folder) == before
    assert before[0]
    assert not before[1]  # every version current
    chain = await read_chain(s3_store(bucket.endpoint, bucket.name), "archive")
    assert (len(chain.seals), chain.expired()) == (seals, {})  # no expiry recorded


async def test_erase_refuses_a_bucket_that_keeps_versions_it_will_not_list(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """The same bucket, a call erased: refused before the revision (it could not be made true);
    nothing is written, every version of the recording is there."""
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    before = versions_and_markers(bucket, "archive/")
    with FaultProxy(bucket.endpoint, NO_VERSION_LISTING) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, now=lambda: STORED)
        call_id = next(iter((await list_day(store, "archive", FIRST)).audio))
        with pytest.raises(StoreAccessError, match="keeps object versions .* but will not list them"):
            await Eraser(store, "archive", tz=TZ, clock=FakeClock(STORED)).erase(
                call_id, "DSR-10", bypass_governance=False, dry_run=False
            )
        await store.aclose()
    assert versions_and_markers(bucket, "archive/") == before


async def test_a_delete_the_store_answers_with_a_delete_marker_is_not_counted_removed(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """A store that will say nothing of its versioning (GetBucketVersioning 501 too) and lists no
    versions: expire deletes each key without a version id, and the store answers with delete
    markers. Expire stops with an error saying the store kept every version, never a day counted
    removed; the recordings' versions are all still in the bucket."""
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    folder = "archive/2026/11/01/"
    kept, _ = versions_and_markers(bucket, folder)
    silent = both(NO_VERSION_LISTING, refused("GetBucketVersioning", 501, "NotImplemented"))
    with FaultProxy(bucket.endpoint, silent) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, now=lambda: EXPIRY_TIME)
        with pytest.raises(StoreAccessError) as refusal:
            await expirer(store, FakeClock(EXPIRY_TIME)).run()
        await store.aclose()
    assert "it wrote a delete marker and kept every version" in str(refusal.value)
    assert versions_and_markers(bucket, folder)[0] == kept
