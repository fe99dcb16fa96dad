"""The store layer under what real S3 services answer: no stop, no hammering, no unchecked byte.

moto (and Ceph RGW where it shows it) behind tests/s3faults.py, a proxy that gives the answers
neither gives: a completion retried after it landed (NoSuchUpload), a conditional write whose
answer was lost (412 on botocore's retry), a lost race (409), per-key errors inside a
DeleteObjects answer, a store that demands Content-MD5, versioning APIs a store lacks, one key
the store keeps refusing while it answers everything else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
import trustme
from structlog.testing import capture_logs

from archiver.archive.outage import StoreOutage
from archiver.audit.verify import Verifier
from archiver.compose.stores import make_control_store, make_store
from archiver.config.models import ObjectLockConfig
from archiver.coordination.lease import Lease
from archiver.coordination.membership import Membership
from archiver.coordination.shards import join_run
from archiver.errors import ObjectExists, SpoolError, StoreAccessError, StoreUnavailable
from archiver.retry import RetryPolicy
from archiver.simulator import Simulator
from archiver.store import Store, Version
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket
from tests.helpers import (
    Bucket,
    FakeClock,
    MotoServer,
    backfill,
    config_for,
    control_store,
    make_bucket,
    s3_client,
    s3_store,
)
from tests.s3faults import (
    Answer,
    FaultProxy,
    Forward,
    Rule,
    S3Request,
    both,
    checks_sha256,
    delete_errors,
    error,
    needs_content_md5,
    once,
    refused,
)

pytestmark = pytest.mark.anyio
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
KEY = "archive/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"
MiB = 1 << 20


async def put(store: Store, key: str, data: bytes, *, sha256: bytes | None = None) -> None:
    await store.put(
        key,
        io.BytesIO(data),
        size=len(data),
        sha256=sha256 or hashlib.sha256(data).digest(),
        content_type="audio/wav",
    )


def multipart(endpoint: str, bucket: str, **kwargs: Any) -> S3Store:
    """A store that sends every body of 5 MiB or more in 5 MiB parts."""
    return s3_store(endpoint, bucket, multipart_threshold=5 * MiB, part_size=5 * MiB, **kwargs)


# 1. A failing step backs off.


async def test_a_write_the_store_keeps_refusing_is_retried_with_backoff(bucket: Bucket) -> None:
    """The store answers the probe but keeps refusing one key (409 on a contended key, which
    botocore does not retry itself): the write is tried again a handful of times in its patience,
    each after a growing wait, and then fails as unavailable; the store's other keys are written
    as ever."""
    status, code = 409, "ConditionalRequestConflict"
    with FaultProxy(bucket.endpoint, refused("PutObject", status, code, key_prefix=KEY)) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        outage = StoreOutage(
            store, "archive/_archiver/outage-probe", RetryPolicy(timeout=2.0, wait_initial=0.05, wait_max=0.4)
        )
        with capture_logs() as logs, pytest.raises(StoreUnavailable, match=code):
            await outage.run(lambda: put(store, KEY, b"RIFF" + bytes(100)))
        await outage.run(lambda: put(store, KEY.replace("09dc", "19dc"), b"RIFF" + bytes(100)))
        await store.aclose()
    refusals = proxy.count("PutObject", status)
    assert 3 <= refusals <= 25  # not thousands: each attempt waited
    waits = len([e for e in logs if e["event"] == "stamina.retry_scheduled"])
    assert refusals - 1 <= waits <= refusals  # one line per wait (the last may have run into the patience)
    assert list(bucket.objects()) == [KEY.replace("09dc", "19dc")]


# 2. NoSuchUpload on completion is not the end.


def completion_landed_then_lost() -> tuple[Any, list[str]]:
    """The first CompleteMultipartUpload reaches the store, its answer is lost (500); the store
    answers botocore's retry NoSuchUpload, as MinIO and StorageGRID do."""
    answered: list[str] = []

    def rule(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation != "CompleteMultipartUpload":
            return None
        answered.append(request.query["uploadId"])
        if len(answered) == 1:
            forward()
            return error(500, "InternalError", "the answer was lost after the upload was completed")
        return error(404, "NoSuchUpload", "The specified multipart upload does not exist.")

    return rule, answered


async def test_a_completion_retried_after_it_landed_is_an_existing_object(bucket: Bucket) -> None:
    """botocore retries a completion whose answer was lost; the store answers NoSuchUpload. The
    recording is stored whole: the write says the key exists (the caller checks its bytes as any
    existing object's), not that the store refused us."""
    data = os.urandom(11 * MiB)
    rule, completions = completion_landed_then_lost()
    with FaultProxy(bucket.endpoint, rule) as proxy:
        store = multipart(proxy.endpoint, bucket.name)
        with capture_logs() as logs, pytest.raises(ObjectExists):
            await put(store, KEY, data)
        info = await store.head(KEY)
        await store.aclose()
    assert len(completions) == 2
    assert bucket.objects() == {KEY: data}
    assert info is not None
    assert info.size == len(data)
    assert "store.completion_answer_lost" in [e["event"] for e in logs]


async def test_an_upload_the_store_forgot_is_tried_again(bucket: Bucket) -> None:
    """NoSuchUpload on completion with nothing stored (a lifecycle rule aborted the upload): the
    write may run again (StoreUnavailable), and the next attempt stores it."""
    data = os.urandom(6 * MiB)
    with FaultProxy(bucket.endpoint, once(refused("CompleteMultipartUpload", 404, "NoSuchUpload"))) as proxy:
        store = multipart(proxy.endpoint, bucket.name)
        outage = StoreOutage(
            store, "archive/_archiver/outage-probe", RetryPolicy(timeout=10, wait_initial=0.01, wait_max=0.05)
        )
        await outage.run(lambda: put(store, KEY, data))
        await store.aclose()
    assert bucket.objects() == {KEY: data}
    assert proxy.count("CompleteMultipartUpload") == 2


# 3. A conditional write on a missing control object does not kill the daemon.


LEASE = "archive/_archiver/leases/x.json"


def a_lease(store: Any, clock: FakeClock, owner: str = "a") -> Lease:
    return Lease(store, LEASE, ttl=timedelta(seconds=30), clock=clock, owner=owner)


async def renewal_behind(bucket: Bucket, rule: Rule, clock: FakeClock) -> tuple[FaultProxy, list[str]]:
    """Take a lease, and renew it 10 s later, through a proxy with *rule*: the proxy, and the
    events the renewal logged."""
    with FaultProxy(bucket.endpoint, rule) as proxy:
        store = control_store(proxy.endpoint, bucket.name)
        lease = a_lease(store, clock)
        assert await lease.hold()
        clock.advance(seconds=10)
        with capture_logs() as logs:
            assert await lease.hold()
        await store.aclose()
    return proxy, [e["event"] for e in logs]


async def test_a_lease_whose_object_was_deleted_is_taken_again(any_bucket: Bucket) -> None:
    """Someone deletes the lease object (a person, a lifecycle rule): the renewal's If-Match meets
    a missing key (404 on AWS and moto), the lease counts as lost and is taken again at once."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    store = control_store(any_bucket.endpoint, any_bucket.name)
    lease = a_lease(store, clock)
    assert await lease.hold()
    any_bucket.client.delete_object(Bucket=any_bucket.name, Key=lease.key)
    clock.advance(seconds=10)
    with capture_logs() as logs:
        assert await lease.hold()
    assert [e["event"] for e in logs if e["event"].startswith("lease.")] == ["lease.lost", "lease.acquired"]
    assert lease.held
    any_bucket.client.delete_object(Bucket=any_bucket.name, Key=lease.key)
    await lease.release()  # a release over a deleted object is no error either
    assert not lease.held
    await store.aclose()


async def test_membership_and_shard_markers_survive_their_objects_being_deleted(bucket: Bucket) -> None:
    """A member object and a backfill run's state deleted under them: the member renews its
    presence, the run is joined or started again; nothing raises."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    store = control_store(bucket.endpoint, bucket.name)
    member = Membership(store, "archive/_archiver", owner="host-a", ttl=timedelta(seconds=30), clock=clock)
    assert await member.refresh() == ("host-a",)
    for key in list(bucket.objects("archive/_archiver/members/")):
        bucket.client.delete_object(Bucket=bucket.name, Key=key)
    assert await member.refresh() == ("host-a",)
    assert list(bucket.objects("archive/_archiver/members/"))
    first = await join_run(store, "archive/_archiver/shards/r", clock.now(), "host-a")
    bucket.client.delete_object(Bucket=bucket.name, Key="archive/_archiver/shards/r/run.state")
    second = await join_run(store, "archive/_archiver/shards/r", clock.now(), "host-a")
    assert second != first
    await store.aclose()


# 4. A lost race is a lost race; a write whose answer was lost is a write.


async def test_a_renewal_whose_answer_was_lost_still_holds_the_lease(bucket: Bucket) -> None:
    """The renewal lands but its answer is lost; botocore's retry meets the write itself (412).
    The store reads the object back, finds its own bytes, and the lease is held: no lease.lost."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    renewals: list[int] = []

    def lose_the_renewal_answer(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation == "PutObject" and "if-match" in request.headers and not renewals:
            renewals.append(forward().status)
            return error(503, "ServiceUnavailable", "the answer was lost")
        return None

    proxy, events = await renewal_behind(bucket, lose_the_renewal_answer, clock)
    assert renewals == [200]
    assert proxy.count("PutObject", 412) == 1  # the retry met the renewal itself
    assert "lease.lost" not in events
    assert "store.conditional_write_landed" in events
    assert json.loads(bucket.objects()[LEASE])["renewed_at"] == clock.now().isoformat()


async def test_a_conflict_between_two_creators_is_a_lost_race(bucket: Bucket) -> None:
    """Two hosts start the same backfill; AWS answers the loser's create-only write 409
    ConditionalRequestConflict. It is a failed condition: the loser joins the run, it does not
    fail as if the store were down."""
    conflict = once(refused("PutObject", 409, "ConditionalRequestConflict", key_prefix="archive/_archiver/shards/"))
    with FaultProxy(bucket.endpoint, conflict) as proxy:
        store = control_store(proxy.endpoint, bucket.name)
        run = await join_run(store, "archive/_archiver/shards/r", datetime(2026, 11, 1, tzinfo=UTC), "host-b")
        await store.aclose()
    assert proxy.count("PutObject", 409) == 1
    assert json.loads(bucket.objects()["archive/_archiver/shards/r/run.state"])["run"] == run


async def test_a_conflict_on_a_lease_renewal_is_a_failed_condition_not_an_outage(bucket: Bucket) -> None:
    """A 409 on the renewal: the condition did not hold this time. The holder reads the lease,
    finds it still its own (its owner and this process's instance), and renews it; nothing raises."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    writes: list[str] = []

    def conflict_on_renewal(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation == "PutObject" and request.key.endswith("leases/x.json"):
            writes.append(request.headers.get("if-match", "create"))
            if len(writes) == 2:
                return error(409, "ConditionalRequestConflict", "A conflicting conditional operation is in progress")
        return None

    proxy, events = await renewal_behind(bucket, conflict_on_renewal, clock)
    assert proxy.count("PutObject", 409) == 1
    assert [e for e in events if e.startswith("lease.")] == ["lease.lost", "lease.renewed"]
    assert json.loads(bucket.objects()[LEASE])["renewed_at"] == clock.now().isoformat()


# 5. Every multipart recording is compared with its download.


async def test_a_buffer_damaged_after_the_download_is_never_stored(bucket: Bucket) -> None:
    """The parts read from the buffer are not the bytes downloaded (their SHA-256 differs): the
    upload is not completed, nothing is stored, no upload is left behind."""
    downloaded = os.urandom(12 * MiB)
    damaged = bytearray(downloaded)
    damaged[7 * MiB] ^= 1
    store = multipart(bucket.endpoint, bucket.name)
    with capture_logs() as logs, pytest.raises(SpoolError, match="no longer holds the bytes downloaded"):
        await put(store, KEY, bytes(damaged), sha256=hashlib.sha256(downloaded).digest())
    await store.aclose()
    assert bucket.objects() == {}
    assert bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
    assert "spool.changed" in [e["event"] for e in logs]


async def test_a_single_put_refused_for_its_digest_names_a_damaged_buffer(bucket: Bucket) -> None:
    """A body under the multipart threshold whose bytes no longer match the download's digest: the
    store refuses it (BadDigest) and the archiver says it is the local buffer, not the store."""
    with FaultProxy(bucket.endpoint, checks_sha256) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        with pytest.raises(SpoolError, match="no longer holds the bytes downloaded"):
            await put(store, KEY, b"RIFF damaged", sha256=hashlib.sha256(b"RIFF intact!").digest())
        await store.aclose()
    assert bucket.objects() == {}
    assert proxy.count("PutObject", 400) >= 1  # the store refused the body; the buffer was to blame


# 6. A put-back keeps the protection.


async def test_a_put_back_keeps_the_versions_retention_legal_hold_and_encryption(moto_server: MotoServer) -> None:
    """A deleted recording put back from its version carries that version's Object Lock retention
    and legal hold, and the bucket's encryption: a copy inherits none of them."""
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    now = datetime.now(UTC)
    store = S3Store(
        S3Bucket(s3_client(moto_server.endpoint), locked.name, sse="AES256"),
        object_lock=ObjectLockConfig(mode="GOVERNANCE", retain_days=3),
        legal_hold=True,
        now=lambda: now,
    )
    await put(store, KEY, b"RIFF sealed bytes")
    original = locked.client.head_object(Bucket=locked.name, Key=KEY)
    locked.client.delete_object(Bucket=locked.name, Key=KEY)
    [first] = [v for v in locked.versions() if v["Key"] == KEY]
    assert store.versions is not None
    later = S3Store(
        S3Bucket(s3_client(moto_server.endpoint), locked.name, sse="AES256"), now=lambda: now + timedelta(days=1)
    )
    assert later.versions is not None
    await later.versions.put_back(
        KEY, Version(first["VersionId"], first["LastModified"], first["ETag"].strip('"'), first["Size"])
    )
    back = locked.client.head_object(Bucket=locked.name, Key=KEY)
    await store.aclose()
    await later.aclose()
    assert back["VersionId"] != first["VersionId"]
    assert (back.get("ObjectLockMode"), back.get("ObjectLockRetainUntilDate")) == (
        original["ObjectLockMode"],
        original["ObjectLockRetainUntilDate"],
    )
    assert back.get("ObjectLockLegalHoldStatus") == "ON"
    assert back.get("ServerSideEncryption") == "AES256"


# 7. Deletes work on stores that require Content-MD5; per-key errors are retried.


async def test_deletes_carry_content_md5_for_stores_that_require_it(bucket: Bucket) -> None:
    """A store that refuses DeleteObjects without a matching Content-MD5 (older MinIO, CubeFS):
    removals go through."""
    with FaultProxy(bucket.endpoint, needs_content_md5) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        await put(store, KEY, b"RIFF one")
        removal = await store.remove([KEY])
        await store.aclose()
    assert removal.removed == 1
    assert removal.held == []
    assert bucket.versions() == []
    assert proxy.count("DeleteObjects", 200) == 1


async def test_keys_a_delete_answer_says_failed_for_a_passing_reason_are_sent_again(bucket: Bucket) -> None:
    """DeleteObjects answers InternalError and SlowDown for two keys inside a 200: those keys are
    sent again and removed, not reported as refused."""
    keys = [KEY.replace("09dc", f"{n}9dc") for n in range(4)]
    failed_once: set[str] = set()

    def failing(key: str) -> str | None:
        if key in keys[:2] and key not in failed_once:
            failed_once.add(key)
            return "InternalError" if key == keys[0] else "SlowDown"
        return None

    with FaultProxy(bucket.endpoint, delete_errors(failing)) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        for key in keys:
            await put(store, key, b"RIFF " + key.encode())
        removal = await store.remove(keys)
        await store.aclose()
    assert removal.removed == len(keys)
    assert removal.held == []
    assert bucket.versions() == []
    assert proxy.count("DeleteObjects") == 2


async def test_keys_that_keep_failing_stop_the_removal_as_unavailable(bucket: Bucket) -> None:
    """A key the store keeps answering InternalError for: a few tries, then StoreUnavailable (a
    later run finishes it), never "refused to delete"."""
    with FaultProxy(bucket.endpoint, delete_errors(lambda key: "InternalError" if key == KEY else None)) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        await put(store, KEY, b"RIFF")
        with pytest.raises(StoreUnavailable, match="InternalError"):
            await store.remove([KEY])
        await store.aclose()
    assert 2 <= proxy.count("DeleteObjects") <= 5


# 8. Errors that escaped or misled.


async def test_a_store_without_versioning_apis_is_archived_and_verified(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """A store that answers NotImplemented (or AccessDenied) to GetBucketVersioning and
    NotImplemented to ListObjectVersions: backfill and verify work, and say that no version
    history is read."""
    plain = make_bucket(moto_server.endpoint, versioned=False)
    no_versions = both(
        refused("GetBucketVersioning", 403, "AccessDenied"),
        refused("ListObjectVersions", 501, "NotImplemented"),
    )
    with FaultProxy(moto_server.endpoint, no_versions) as proxy:
        config = config_for(sim, f"s3://{plain.name}/archive", tmp_path, endpoint=proxy.endpoint)
        with capture_logs() as logs:
            report = await backfill(config, clock=FakeClock(datetime(2026, 11, 5, 9, tzinfo=UTC)))
        assert report.failed == []
        assert report.done > 0
        store = s3_store(proxy.endpoint, plain.name)
        audit = await Verifier(store, "archive", clock=FakeClock(datetime(2026, 11, 5, 9, tzinfo=UTC))).verify(None)
        await store.aclose()
    assert audit.problems == []
    assert "store.versions_not_listed" in [e["event"] for e in logs]


async def test_a_range_past_the_end_of_an_object_is_no_bytes(bucket: Bucket) -> None:
    """A ranged read that starts at the object's end (416 InvalidRange) yields nothing, as a
    folder store does, instead of stopping the program."""
    store = s3_store(bucket.endpoint, bucket.name)
    await put(store, KEY, b"RIFF1234")
    assert [c async for c in store.stream(KEY, start=8)] == []
    assert [c async for c in store.stream(KEY, start=100, end=200)] == []
    assert b"".join([c async for c in store.stream(KEY, start=4)]) == b"1234"
    await store.aclose()


async def test_restoring_an_object_that_is_not_in_cold_storage_asks_nothing(bucket: Bucket) -> None:
    """restore of a STANDARD object is not "in cold storage": it is readable as it is."""
    store = s3_store(bucket.endpoint, bucket.name)
    await put(store, KEY, b"RIFF standard")
    await store.restore(KEY, 2)
    info = await store.head(KEY)
    await store.aclose()
    assert info is not None
    assert not info.cold


@pytest.fixture
def untrusted_tls() -> Iterator[str]:
    """An HTTPS server whose certificate comes from a CA nobody trusts (a private CA the operator
    forgot to give the archiver)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_certificate_that_fails_verification_stops_with_the_setting_to_look_at(untrusted_tls: str) -> None:
    """TLS verification fails: a clear stop naming the endpoint setting and AWS_CA_BUNDLE, not a
    store that "did not answer" waited out for ever."""
    store = s3_store(untrusted_tls, "archive")
    with pytest.raises(
        StoreAccessError, match=r"TLS certificate was not accepted \(certificate verify failed.*AWS_CA_BUNDLE"
    ):
        await store.head(KEY)
    await store.aclose()


# 10. Leases do not wait behind recordings.


async def test_a_lease_renewal_does_not_wait_behind_stalled_uploads(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """Every request the archive store may run at once is stuck uploading (a slow uplink); a lease
    renewal through the control store still goes through at once."""
    release = threading.Event()

    def stall_recordings(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation == "PutObject" and request.key.endswith(".wav"):
            release.wait(30)
        return None

    with FaultProxy(bucket.endpoint, stall_recordings) as proxy:
        config = config_for(sim, bucket.url, tmp_path, endpoint=proxy.endpoint, download={"concurrency": 1})
        store = make_store(config)
        control = make_control_store(config, store)
        assert control is not None
        clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
        lease = Lease(control, LEASE, ttl=timedelta(seconds=30), clock=clock, owner="a")
        async with anyio.create_task_group() as tg:
            for n in range(8):  # more than the archive's limiter holds (concurrency + 4)
                tg.start_soon(put, store, KEY.replace("09dc", f"{n}9dc"), b"RIFF" + bytes(n))
            await anyio.sleep(0.5)  # every slot taken, every upload stalled
            with anyio.fail_after(10):
                assert await lease.hold()
            release.set()
        await store.aclose()
    assert len(bucket.objects("archive/2026/")) == 8
