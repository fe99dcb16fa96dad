"""The store layer as an attacker and an unlucky operator try it: what a writer to the bucket, a
store's odd answer or a killed process could make it do or say falsely, and what it does.

Written in a review of issue 29: each test that states a fix failed on the code before it.

Against moto, behind tests/s3faults.py where moto does not give the answer needed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest

from archiver.archive.outage import StoreOutage
from archiver.audit.access import AccessTrail, read_trail
from archiver.audit.catalog import Catalog
from archiver.compose.stores import s3_client as compose_s3_client
from archiver.config.load import parse_config
from archiver.config.models import ObjectLockConfig
from archiver.coordination.lease import Lease
from archiver.core import keys
from archiver.errors import ObjectExists, SpoolError, StoreAccessError, StoreUnavailable
from archiver.lifecycle.erase import Eraser, EraseRefused
from archiver.retry import RetryPolicy
from archiver.simulator import Simulator
from archiver.store import Store, Version
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket
from tests.helpers import (
    TZ,
    Bucket,
    FakeClock,
    MotoServer,
    backfill,
    config_dict,
    config_for,
    control_store,
    make_bucket,
    s3_client,
    s3_store,
)
from tests.s3faults import Answer, FaultProxy, Forward, Rule, S3Request, both, error, once, refused

pytestmark = pytest.mark.anyio
KEY = "archive/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"
PROBE = "archive/_archiver/outage-probe"
LEASE = "archive/_archiver/leases/x.json"
MiB = 1 << 20
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


async def put(store: Store, key: str, data: bytes) -> None:
    await store.put(
        key,
        io.BytesIO(data),
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        content_type="audio/wav",
    )


def impatient_client(endpoint: str) -> Any:
    """A client that gives up after one attempt of 2 s (botocore's own retries and 60 s timeouts
    would only make these tests slower, not different)."""
    return s3_client(endpoint, connect_timeout=2, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 1})


def production_client(endpoint: str, bucket: str, tmp_path: Path) -> Any:
    """The boto3 client the archiver makes (compose.stores.s3_client: its timestamp parser among
    its settings) for *bucket* at *endpoint*."""
    raw = config_dict(api="http://127.0.0.1:9", storage=f"s3://{bucket}/archive", state=tmp_path / "l.sqlite3")
    raw["storage"]["endpoint_url"] = endpoint
    return compose_s3_client(parse_config(raw, environ={}), 4)


# -- Q3: an existing object is kept only if it holds the download's bytes ---------------------------


async def test_an_existing_recording_is_not_accepted_on_its_own_metadata(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """Other bytes of the same size left under a call's key, with the recording's digest in their
    ``sha256`` metadata and no checksum of the store's: the create-only write meets the key, and
    the object is read and hashed before it is kept; its metadata, the writer's word, vouches for
    nothing."""
    day = date(2026, 11, 1)
    call = next(c for c in sim.dataset.calls_on(day) if c.serves_recording)
    key = keys.audio_key("archive", call.start.date(), call.uuid, "wav")
    real = sim.dataset.recording_bytes(call)
    forged = bytearray(real)
    forged[-1] ^= 0x55  # one sample changed: still a whole WAV of the same size
    bucket.client.put_object(
        Bucket=bucket.name,
        Key=key,
        Body=bytes(forged),
        ContentType="audio/wav",
        Metadata={"sha256": hashlib.sha256(real).hexdigest()},
    )
    report = await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    assert bucket.objects()[key] == bytes(forged)  # create-only: nothing was overwritten (good)
    assert any(call.uuid in str(failure) for failure in report.failed), (
        "the call was recorded done over bytes that differ from its recording"
    )


# -- Q3 (other callers): a create-only write that landed, whose answer was lost ---------------------


def first_answer_lost(matches: Callable[[str], bool]) -> tuple[Rule, list[int]]:
    """The first PutObject of a key *matches* reaches the store, and its answer is lost (500):
    botocore sends it again and meets the object itself (412). The statuses the store gave."""
    lost: list[int] = []

    def rule(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation == "PutObject" and matches(request.key) and not lost:
            lost.append(forward().status)
            return error(500, "InternalError", "the answer was lost after the store acted")
        return None

    return rule, lost


async def test_an_erase_whose_record_landed_but_whose_answer_was_lost_finishes(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """The erase's revision lands, its answer is lost, botocore's retry meets it (412): the key holds
    exactly what was written, so the write landed, and the erase goes on to remove the recording."""
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    rule, lost = first_answer_lost(lambda key: key.endswith(".rev2.json"))
    with FaultProxy(bucket.endpoint, rule) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        found = await Catalog(store, "archive", TZ).day_calls(date(2026, 11, 1))
        entry = next(f for f in found if f.entry.recording_status == "archived")
        audio = keys.audio_key("archive", date(2026, 11, 1), entry.entry.call_id, "wav")
        clock = FakeClock(STORED + timedelta(days=10))
        refused: EraseRefused | None = None
        try:
            await Eraser(store, "archive", tz=TZ, clock=clock).erase(
                entry.entry.call_id, "DSR-29", bypass_governance=False, dry_run=False
            )
        except EraseRefused as exc:
            refused = exc
        finally:
            await store.aclose()
    objects = bucket.objects()
    revision = keys.sidecar_key("archive", date(2026, 11, 1), entry.entry.call_id, 2)
    assert lost == [200]  # the revision was stored
    assert proxy.count("PutObject", 412) == 1  # botocore's retry met it
    assert b'"erased"' in objects[revision]  # the record says the recording was erased ...
    assert audio not in objects, f"... the recording is still there, and the erase said: {refused}"


async def test_an_access_event_whose_write_landed_but_whose_answer_was_lost_is_recorded_once(
    bucket: Bucket,
) -> None:
    """An access-trail object lands and its answer is lost: the retry's 412 is read back as this
    write's, and the trail says the call was played once."""
    rule, lost = first_answer_lost(lambda key: "/_access/" in key)
    clock = FakeClock(datetime(2026, 11, 3, 9, tzinfo=UTC))
    with FaultProxy(bucket.endpoint, rule) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        trail = AccessTrail(store, "archive", clock)
        trail.record(user="alice", action="play", call_id="call-1", remote="10.0.0.1", via="browse")
        await trail.flush()
        await trail.flush()  # what the trail's loop does next
        events = [e.call_id async for e in read_trail(store, "archive", None, None)]
        await store.aclose()
    assert lost == [200]
    assert proxy.count("PutObject", 412) == 1
    assert events == ["call-1"]


# -- Q2: the outage's patience -----------------------------------------------------------------------


async def test_no_store_step_starts_after_its_patience(bucket: Bucket) -> None:
    """A step retried with waits of 0.8 s under a patience of 1 s: no try starts after the patience
    (a wait that runs into it ends the step as unavailable)."""
    rule = refused("PutObject", 409, "ConditionalRequestConflict", key_prefix=KEY)
    with FaultProxy(bucket.endpoint, rule) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        outage = StoreOutage(store, PROBE, RetryPolicy(timeout=1.0, wait_initial=0.8, wait_max=0.8))
        tries: list[float] = []

        async def step() -> None:
            tries.append(time.monotonic())
            await put(store, KEY, b"RIFF" + bytes(8))

        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await outage.run(step)
        await store.aclose()
    late = [round(t - started, 2) for t in tries if t - started > 1.0]
    assert late == [], f"tries started after the 1 s patience, at {late} s"


async def test_a_step_that_fails_after_its_patience_ends_as_unavailable_without_a_warning(
    bucket: Bucket,
) -> None:
    """A step that outlasts its patience (a large upload on a slow uplink), then fails while the
    store is down, ends as StoreUnavailable at once: no probe with no time left, no warning."""
    down = both(
        refused("PutObject", 503, "ServiceUnavailable", key_prefix=KEY),
        refused("HeadObject", 503, "ServiceUnavailable"),
    )
    with FaultProxy(bucket.endpoint, down) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, client=impatient_client(proxy.endpoint))
        outage = StoreOutage(store, PROBE, RetryPolicy(timeout=0.5, wait_initial=0.05, wait_max=0.1))

        async def slow_step() -> None:
            await anyio.sleep(0.7)  # the upload outlasts the patience, then fails
            await put(store, KEY, b"RIFF" + bytes(8))

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(StoreUnavailable):
                await outage.run(slow_step)
        await store.aclose()
    assert [str(w.message) for w in caught] == []


async def test_what_the_outage_must_not_retry_is_not_retried(bucket: Bucket) -> None:
    """ObjectExists and SpoolError leave at the first try; a probe that says the credentials may not
    read (StoreAccessError) ends the wait at once."""
    store = s3_store(bucket.endpoint, bucket.name)
    outage = StoreOutage(store, PROBE, RetryPolicy(timeout=5.0, wait_initial=0.01, wait_max=0.02))
    for error_type in (ObjectExists, SpoolError):
        calls: list[int] = []

        async def step(error_type: type[Exception] = error_type, calls: list[int] = calls) -> None:
            calls.append(1)
            raise error_type("x")

        with pytest.raises(error_type):
            await outage.run(step)
        assert calls == [1]
    await store.aclose()
    with FaultProxy(
        bucket.endpoint,
        both(refused("PutObject", 503, "SlowDown", key_prefix=KEY), refused("HeadObject", 403, "AccessDenied")),
    ) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, client=impatient_client(proxy.endpoint))
        outage = StoreOutage(store, PROBE, RetryPolicy(timeout=30.0, wait_initial=0.01, wait_max=0.02))
        with anyio.fail_after(10), pytest.raises(StoreAccessError):
            await outage.run(lambda: put(store, KEY, b"RIFF"))
        await store.aclose()
    assert proxy.count("PutObject") == 1, [(r.operation, s) for r, s in proxy.requests]


# -- Q3/(a): NoSuchUpload on UploadPart -----------------------------------------------------------------


async def test_an_upload_forgotten_before_its_parts_were_sent_is_tried_again(bucket: Bucket) -> None:
    """The store forgets a multipart upload while its parts go up (``mc rm --incomplete``, ``rclone
    cleanup``, a short abort rule): UploadPart's NoSuchUpload is a passing failure, and the next
    attempt stores the recording."""
    data = os.urandom(6 * MiB)
    with FaultProxy(bucket.endpoint, once(refused("UploadPart", 404, "NoSuchUpload"))) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, multipart_threshold=5 * MiB, part_size=5 * MiB)
        outage = StoreOutage(store, PROBE, RetryPolicy(timeout=10, wait_initial=0.01, wait_max=0.05))
        try:
            await outage.run(lambda: put(store, KEY, data))
        finally:
            await store.aclose()
    assert bucket.objects() == {KEY: data}


# -- Q6: a buffer shorter than the size downloaded ------------------------------------------------------


def _short_file(data: bytes, tmp_path: Path) -> io.BufferedRandom:
    spool = tempfile.TemporaryFile(dir=tmp_path)  # noqa: SIM115 - closed by the test
    spool.write(data)
    spool.seek(0)
    return spool


@pytest.mark.parametrize(
    ("size", "kept"),
    [(1000, 500), (2 * MiB, 3 * MiB // 2), (6 * MiB, 11 * MiB // 2)],
    ids=["bytes-body", "file-body", "multipart"],
)
async def test_a_buffer_shorter_than_its_download_is_a_spool_error(
    bucket: Bucket, tmp_path: Path, size: int, kept: int
) -> None:
    """The local buffer holds fewer bytes than were downloaded: SpoolError at once, nothing stored,
    for a body sent as bytes, one sent from the file, and one sent in parts; never a store left
    waiting for bytes that do not come, and blamed for not answering."""
    whole = b"RIFF" + os.urandom(size - 4)
    with _short_file(whole[:kept], tmp_path) as spool:
        store = s3_store(
            bucket.endpoint,
            bucket.name,
            client=impatient_client(bucket.endpoint),
            multipart_threshold=5 * MiB,
            part_size=5 * MiB,
        )
        try:
            with anyio.fail_after(30), pytest.raises(SpoolError):
                await store.put(KEY, spool, size=size, sha256=hashlib.sha256(whole).digest(), content_type="audio/wav")
        finally:
            await store.aclose()
    assert bucket.objects() == {}


# -- (a): an answer without an ETag ------------------------------------------------------------------


async def test_a_control_write_answered_without_an_etag_is_no_traceback(bucket: Bucket) -> None:
    """A PutObject answer without an ETag (a proxy in front of the store dropped it): the control
    object's ETag is read back, or a StoreAccessError says conditional writes cannot work there;
    never a KeyError."""

    def drop_etag(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation != "PutObject":
            return None
        answer = forward()
        return Answer(answer.status, answer.body, [(k, v) for k, v in answer.headers if k.lower() != "etag"])

    clock = FakeClock(datetime(2026, 11, 1, 10, tzinfo=UTC))
    with FaultProxy(bucket.endpoint, drop_etag) as proxy:
        store = control_store(proxy.endpoint, bucket.name)
        lease = Lease(store, LEASE, ttl=timedelta(seconds=30), clock=clock, owner="a")
        try:
            with contextlib.suppress(StoreAccessError):
                await lease.hold()
        finally:
            await store.aclose()


async def test_a_put_answered_200_without_an_etag_is_not_a_stored_object(bucket: Bucket) -> None:
    """An empty 200 to a PutObject, from something in front of the store (a proxy in maintenance, a
    WAF, a wrong endpoint): without the ETag a store gives what it stored, it is not a stored object."""

    def swallow(request: S3Request, forward: Forward) -> Answer | None:
        return Answer(200) if request.operation == "PutObject" else None

    with FaultProxy(bucket.endpoint, swallow) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        try:
            with pytest.raises((StoreUnavailable, StoreAccessError)):
                await put(store, KEY, b"RIFF never stored")
        finally:
            await store.aclose()
    assert bucket.objects() == {}


# -- (b)/(c): leases -------------------------------------------------------------------------------------


async def test_a_lease_stamped_by_a_wrong_clock_does_not_stop_every_instance_for_ever(bucket: Bucket) -> None:
    """A lease stamped to expire in 2099 (a clock years ahead, or a hand-made object) that then stops
    changing: once its ETag has not changed for a ttl while another instance watched it, it
    counts as expired whatever it says."""
    wrong = FakeClock(datetime(2099, 1, 1, tzinfo=UTC))
    right = FakeClock(datetime(2026, 11, 1, 10, tzinfo=UTC))
    store = control_store(bucket.endpoint, bucket.name)
    assert await Lease(store, LEASE, ttl=timedelta(seconds=30), clock=wrong, owner="host-a").hold()
    standby = Lease(store, LEASE, ttl=timedelta(seconds=30), clock=right, owner="host-b")
    held = False
    for _ in range(30):  # 5 minutes of renewals every ttl/3: the lease object never changes
        held = await standby.hold() or await standby.rescue(stale_for=standby.ttl)
        if held:
            break
        right.advance(seconds=10)
    await store.aclose()
    assert held, "no instance will poll this source again before 2099"


async def test_two_live_instances_with_one_owner_do_not_both_hold_a_lease(bucket: Bucket) -> None:
    """Two live processes with one owner name (hosts cloned from one image): the second does not take
    the first one's live lease for its own (each lease body names its process's instance)."""
    clock = FakeClock(datetime(2026, 11, 1, 10, tzinfo=UTC))
    store = control_store(bucket.endpoint, bucket.name)
    same = "archiver-01:5f2c9a1e"
    first = Lease(store, LEASE, ttl=timedelta(seconds=30), clock=clock, owner=same)
    second = Lease(store, LEASE, ttl=timedelta(seconds=30), clock=clock, owner=same)
    assert await first.hold()
    clock.advance(seconds=1)
    await second.hold()
    await store.aclose()
    assert not (first.held and second.held), "two live processes both hold the lease"


# -- Q5: timestamps in odd forms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        lambda at: at.strftime("%Y-%m-%dT%H:%M:%S"),  # ISO 8601 without a zone
        lambda at: format_datetime(at.replace(tzinfo=None)),  # RFC 5322 "-0000": the stdlib's naive form
    ],
    ids=["iso-without-zone", "rfc5322-minus-0000"],
)
async def test_a_retention_date_in_an_odd_spelling_is_no_traceback(
    moto_server: MotoServer, tmp_path: Path, spelling: Callable[[datetime], str]
) -> None:
    """A retain-until date without a zone, or with RFC 5322's '-0000': read as UTC, and erase and
    expire weigh it against the clock; never a TypeError."""
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    now = datetime.now(UTC)

    def respell(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation != "HeadObject":
            return None
        answer = forward()
        headers = []
        for name, value in answer.headers:
            if name.lower() == "x-amz-object-lock-retain-until-date":
                value = spelling(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC))
            headers.append((name, value))
        return Answer(answer.status, answer.body, headers)

    with FaultProxy(moto_server.endpoint, respell) as proxy:
        store = S3Store(
            S3Bucket(production_client(proxy.endpoint, locked.name, tmp_path), locked.name),
            object_lock=ObjectLockConfig(mode="GOVERNANCE", retain_days=3),
            now=lambda: now,
        )
        try:
            await put(store, KEY, b"RIFF held")
            [hold] = await store.holds([KEY])
        finally:
            await store.aclose()
    assert hold.mode == "GOVERNANCE"
    assert hold.until is not None
    assert abs((hold.until - (now + timedelta(days=3))).total_seconds()) < 2


# -- (c): an https endpoint that is not TLS ---------------------------------------------------------------


async def test_https_to_a_plain_http_port_stops_with_the_setting_to_look_at(moto_server: MotoServer) -> None:
    """``storage.endpoint_url: https://…`` on a port that speaks plain HTTP: a StoreAccessError naming
    storage.endpoint_url and TLS, not a store that did not answer, waited out for ever."""
    endpoint = moto_server.endpoint.replace("http://", "https://")
    store = s3_store(endpoint, "archive", client=impatient_client(endpoint))
    try:
        with pytest.raises(StoreAccessError, match="endpoint_url"):
            await store.head(KEY)
    finally:
        await store.aclose()


# -- Q4: Content-MD5 -----------------------------------------------------------------------------------


async def test_content_md5_is_the_bodys_on_every_request_that_carries_it(moto_server: MotoServer) -> None:
    """A store that checks every Content-MD5 against the body (and demands one on DeleteObjects): a
    locked put, a removal and a put-back copy with Object Lock headers go through, the copy's MD5
    that of its empty body; two buckets sharing one client send the header once."""
    locked = make_bucket(moto_server.endpoint, object_lock=True)
    seen: dict[str, list[str]] = {}

    def strict_md5(request: S3Request, forward: Forward) -> Answer | None:
        sent = request.headers.get("content-md5")
        if sent is not None:
            seen.setdefault(request.operation, []).append(sent)
            if sent != base64.b64encode(hashlib.md5(request.body, usedforsecurity=False).digest()).decode():
                return error(400, "BadDigest", "Content-MD5 does not match the body")
        elif request.operation == "DeleteObjects":
            return error(400, "MissingContentMD5", "Content-MD5 required")
        return None

    with FaultProxy(moto_server.endpoint, strict_md5) as proxy:
        client = s3_client(proxy.endpoint)
        bucket = S3Bucket(client, locked.name)
        S3Bucket(client, locked.name).with_limiter(anyio.CapacityLimiter(2))  # the same client, again
        store = S3Store(bucket, object_lock=ObjectLockConfig(mode="GOVERNANCE", retain_days=1), now=lambda: STORED)
        try:
            await put(store, KEY, b"RIFF one")
            first = locked.client.list_object_versions(Bucket=locked.name, Prefix=KEY)["Versions"][0]
            locked.client.delete_object(Bucket=locked.name, Key=KEY)  # a delete marker over it
            assert store.versions is not None
            await store.versions.put_back(
                KEY, Version(first["VersionId"], first["LastModified"], first["ETag"].strip('"'), first["Size"])
            )
            other = KEY.replace("09dc", "19dc")
            await put(store, other, b"RIFF two")
            removal = await S3Store(bucket, now=lambda: STORED + timedelta(days=2)).remove([other])
        finally:
            await store.aclose()
    assert removal.removed == 1
    empty = "1B2M2Y8AsgTpgAmY7PhCfg=="
    assert seen.get("CopyObject") == [empty]
    assert len(seen["DeleteObjects"]) == 1
    assert all(", " not in value for values in seen.values() for value in values)


# -- (a): a per-key error that does not name its version ------------------------------------------------


async def test_a_per_key_delete_error_without_a_version_id_leaves_no_version_behind(bucket: Bucket) -> None:
    """A DeleteObjects answer with a per-key InternalError that names no version, for a key with two:
    every version of the key is sent again, and none counted as removed stays in the bucket."""
    bucket.client.put_object(Bucket=bucket.name, Key=KEY, Body=b"RIFF first")
    bucket.client.put_object(Bucket=bucket.name, Key=KEY, Body=b"RIFF second")
    failed: list[str] = []

    def fail_the_second_version_once(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation != "DeleteObjects" or failed:
            return None
        tree = ET.fromstring(request.body)
        ns = {"s3": S3_NS} if tree.tag.startswith("{") else {}
        prefix = "s3:" if ns else ""
        objects = [o for o in tree.findall(f"{prefix}Object", ns) if o.findtext(f"{prefix}Key", "", ns) == KEY]
        if len(objects) == 2:  # the one the archiver's guess (the key's first in the batch) is not
            failed.append(objects[1].findtext(f"{prefix}VersionId", "", ns))
            tree.remove(objects[1])
        if not failed:
            return None
        answer = forward(
            ET.tostring(tree), drop=("content-md5", "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm")
        )
        result = ET.fromstring(answer.body)
        entry = ET.SubElement(result, f"{{{S3_NS}}}Error")
        ET.SubElement(entry, f"{{{S3_NS}}}Key").text = KEY  # no VersionId, as some stores answer
        ET.SubElement(entry, f"{{{S3_NS}}}Code").text = "InternalError"
        ET.SubElement(entry, f"{{{S3_NS}}}Message").text = "injected by the test's proxy"
        return Answer(
            200, ET.tostring(result, xml_declaration=True, encoding="UTF-8"), [("Content-Type", "application/xml")]
        )

    with FaultProxy(bucket.endpoint, fail_the_second_version_once) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        try:
            removal = await store.remove([KEY])
        finally:
            await store.aclose()
    assert len(failed) == 1
    assert proxy.count("DeleteObjects") == 2
    assert removal.removed == 2
    assert [v["VersionId"] for v in bucket.versions()] == [], "a version counted as removed is still there"


async def test_a_copy_answered_200_with_an_error_body_is_sent_again(bucket: Bucket) -> None:
    """A put-back copy answered 200 with an <Error> body (AWS does so when the copy fails after it
    started) is sent again, and the key put back; a listing cut short likewise."""
    store = s3_store(bucket.endpoint, bucket.name)
    await put(store, KEY, b"RIFF kept")
    await store.aclose()
    [first] = bucket.versions()
    bucket.client.delete_object(Bucket=bucket.name, Key=KEY)

    def copy_error(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation == "CopyObject":
            xml = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code><Message>x</Message></Error>"
            return Answer(200, xml, [("Content-Type", "application/xml")])
        return None

    def cut_listing(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation == "ListObjects":
            answer = forward()
            return Answer(200, answer.body[: len(answer.body) // 2], [("Content-Type", "application/xml")])
        return None

    with FaultProxy(bucket.endpoint, both(once(copy_error), once(cut_listing))) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        assert store.versions is not None
        await store.versions.put_back(
            KEY, Version(first["VersionId"], first["LastModified"], first["ETag"].strip('"'), first["Size"])
        )
        listed = [key async for key in store.list_keys("archive/")]
        await store.aclose()
    assert proxy.count("CopyObject") == 2
    assert proxy.count("ListObjects") == 2
    assert bucket.objects() == {KEY: b"RIFF kept"}
    assert listed == [KEY]


async def test_a_failing_credential_process_stops_with_its_name_not_its_output(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential_process that fails (its own output may hold anything, a secret too): one clear
    stop naming where the credentials come from, without what the process printed."""
    config = tmp_path / "aws-config"
    config.write_text("[profile proc]\ncredential_process = sh -c 'echo token-s3cr3t-value >&2; exit 3'\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    bucket = S3Bucket(
        lambda: boto3.session.Session(profile_name="proc").client("s3", endpoint_url=moto_server.endpoint), "any"
    )
    with pytest.raises(StoreAccessError) as caught:
        await bucket.call(lambda: bucket.client.head_bucket(Bucket="any"))
    await bucket.aclose()
    assert "could not be fetched from" in str(caught.value)
    assert "token-s3cr3t-value" not in str(caught.value)


def test_a_user_and_password_in_the_endpoint_stay_out_of_every_message() -> None:
    """An endpoint URL written with a user and password in it: the bucket's description, which
    every message and log line carries, leaves them out."""
    bucket = S3Bucket(s3_client("http://127.0.0.1:9"), "b", endpoint="https://ops:hunter2@minio.example.vn:9000")
    assert bucket.description == "s3://b at https://minio.example.vn:9000"
