"""Both stores behind one interface: create-only, atomic, checked. S3 is a moto server over HTTP."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import anyio
import boto3
import pytest
from botocore.config import Config
from structlog.testing import capture_logs

from archiver.config.models import ObjectLockConfig
from archiver.errors import ArchiveConflict, ObjectExists, SpoolError, StoreAccessError, StoreUnavailable
from archiver.store import Store, put_bytes
from archiver.store.local import LocalStore
from archiver.store.s3 import S3Store
from tests.helpers import (
    Bucket,
    MotoServer,
    TinyServer,
    make_bucket,
    s3_bucket,
    s3_store,
)

pytestmark = pytest.mark.anyio
KEY = "p/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"


@pytest.fixture(params=["file", "s3", "rgw"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "file":
        yield LocalStore(tmp_path / "archive")
        return
    bucket: Bucket = request.getfixturevalue("bucket" if request.param == "s3" else "rgw_bucket")
    s3 = s3_store(bucket.endpoint, bucket.name)
    yield s3
    await s3.aclose()


async def put(store: Store, key: str, data: bytes) -> None:
    await store.put(
        key, io.BytesIO(data), size=len(data), sha256=hashlib.sha256(data).digest(), content_type="audio/wav"
    )


async def test_an_object_reads_back_as_written(store: Store) -> None:
    """put, head, read, digest and list agree on one object."""
    data = b"RIFF" + os.urandom(5000)
    await put(store, KEY, data)
    info = await store.head(KEY)
    assert info is not None
    assert info.size == len(data)
    assert info.sha256 in (None, hashlib.sha256(data).digest())
    assert await store.read(KEY) == data
    assert await store.digest(KEY) == (len(data), hashlib.sha256(data).digest())
    assert [k async for k in store.list_keys("p/2026/11/")] == [KEY]
    assert await store.head(KEY.replace("wav", "json")) is None


async def test_writes_are_create_only(store: Store) -> None:
    """A second write to a key fails with ObjectExists and leaves the first bytes in place."""
    await put(store, KEY, b"first")
    with pytest.raises(ObjectExists):
        await put(store, KEY, b"second")
    assert await store.read(KEY) == b"first"


async def test_concurrent_writers_of_one_key_leave_exactly_one_winner(store: Store) -> None:
    """Of many racing create-only writes, exactly one lands; the rest see ObjectExists."""
    outcomes: list[str] = []

    async def attempt(i: int) -> None:
        try:
            await put(store, KEY, f"writer {i}".encode())
            outcomes.append("won")
        except ObjectExists:
            outcomes.append("exists")

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(attempt, i)
    assert outcomes.count("won") == 1
    assert (await store.read(KEY)).startswith(b"writer ")


async def test_small_documents_go_in_with_their_checksum(store: Store) -> None:
    """put_bytes stores a sidecar-sized document create-only."""
    await put_bytes(store, "p/doc.json", b'{"a": 1}', "application/json")
    assert await store.read("p/doc.json") == b'{"a": 1}'
    with pytest.raises(ObjectExists):
        await put_bytes(store, "p/doc.json", b"{}", "application/json")


async def test_the_local_store_refuses_bytes_that_do_not_match_their_checksum(tmp_path: Path) -> None:
    """A body whose SHA-256 differs from the one given is not linked into place."""
    store = LocalStore(tmp_path)
    with pytest.raises(ArchiveConflict, match="do not match"):
        await store.put(KEY, io.BytesIO(b"abc"), size=3, sha256=hashlib.sha256(b"abd").digest(), content_type="x")
    assert await store.head(KEY) is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temporary file left behind


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a//b", "a/./b", "a/.hidden", ""])
async def test_the_local_store_refuses_keys_that_could_escape(tmp_path: Path, key: str) -> None:
    """Keys cannot climb out of the archive folder."""
    with pytest.raises(ValueError, match="unsafe key"):
        await LocalStore(tmp_path).head(key)


async def test_the_local_store_clears_a_crashed_writes_leftover_once_it_is_a_day_old(tmp_path: Path) -> None:
    """A kill -9 mid-write leaves a hidden temporary file; listing its folder removes it once no
    write can still own it, and never lists it."""
    store = LocalStore(tmp_path)
    await put_bytes(store, "2026/11/01/a.json", b"{}", "application/json")
    folder = tmp_path / "2026" / "11" / "01"
    old, fresh = folder / ".b.json.x1.tmp", folder / ".c.json.x2.tmp"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    a_day_ago = time.time() - 86400 - 60
    os.utime(old, (a_day_ago, a_day_ago))
    with capture_logs() as logs:
        assert [k async for k in store.list_keys("2026/11/01/")] == ["2026/11/01/a.json"]
    assert [e["path"] for e in logs if e["event"] == "store.leftover_removed"] == [str(old)]
    assert not old.exists()
    assert fresh.exists()  # a write may still be filling it


async def test_large_bodies_go_up_in_parts_and_stay_create_only(any_bucket: Bucket) -> None:
    """Past the threshold a multipart upload is used, completed with If-None-Match."""
    bucket = any_bucket
    store = S3Store(s3_bucket(bucket.endpoint, bucket.name), multipart_threshold=5 << 20, part_size=5 << 20)
    data = os.urandom(12 << 20)
    with tempfile.TemporaryFile() as body:
        body.write(data)
        body.flush()
        await store.put(KEY, body, size=len(data), sha256=hashlib.sha256(data).digest(), content_type="audio/wav")
        with pytest.raises(ObjectExists):
            await store.put(KEY, body, size=len(data), sha256=hashlib.sha256(data).digest(), content_type="audio/wav")
    assert bucket.objects()[KEY] == data
    info = await store.head(KEY)
    assert info is not None
    assert info.sha256 in (None, hashlib.sha256(data).digest())  # never a per-part composite taken for the whole
    assert len(bucket.versions()) == 1
    assert bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
    await store.aclose()


async def test_objects_carry_the_configured_object_lock(moto_server: MotoServer) -> None:
    """Each object gets the lock mode and a retain-until date retain_days ahead."""
    bucket = make_bucket(moto_server.endpoint, object_lock=True)
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    store = s3_store(
        bucket.endpoint,
        bucket.name,
        object_lock=ObjectLockConfig(mode="COMPLIANCE", retain_days=30),
        now=lambda: now,
    )
    await put(store, KEY, b"RIFF")
    head = bucket.client.head_object(Bucket=bucket.name, Key=KEY)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == now + timedelta(days=30)
    await store.aclose()


async def test_a_missing_bucket_is_an_access_error_that_names_it(moto_server: MotoServer) -> None:
    """NoSuchBucket is fatal (a person must act) and says which bucket."""
    store = s3_store(moto_server.endpoint, "no-such-bucket-here")
    with pytest.raises(StoreAccessError, match="bucket 'no-such-bucket-here' does not exist"):
        await put(store, KEY, b"x")
    await store.aclose()


async def test_an_unreachable_endpoint_is_unavailable(tmp_path: Path) -> None:
    """Nothing listening is transient: the caller waits and tries again."""
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = s3_store("http://127.0.0.1:9", "bucket", client=client)
    with pytest.raises(StoreUnavailable, match="did not answer"):
        await put(store, KEY, b"x")
    await store.aclose()


async def test_a_bucket_in_another_region_names_the_region_to_set() -> None:
    """A store that says the request was signed for the wrong region stops the archiver (no retry
    can fix it) with the region to put in storage.region."""
    seen: list[str] = []

    def elsewhere(handler: BaseHTTPRequestHandler) -> None:
        seen.append(handler.command)
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        body = (
            b"<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1' is wrong; "
            b"expecting 'ap-southeast-1'</Message><Region>ap-southeast-1</Region></Error>"
        )
        handler.send_response(400)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with TinyServer(elsewhere) as server:
        store = s3_store(server.url, "bucket")
        with pytest.raises(StoreAccessError, match=r"another region.*set storage.region: ap-southeast-1"):
            await put(store, KEY, b"RIFF one")
        await store.aclose()
    assert seen == ["PUT", "PUT"]  # botocore tries once more, signed for the region named; then it stops


ODD_KEYS = [
    "p/a b/1.json",
    "p/a+b/2.json",
    "p/ca%20ll/3.json",
    "p/tiếng việt/4.json",
    "p/x~y/5.json",
    "p/x~y/6 (1).json",
]


async def test_odd_keys_list_and_read_back_as_written(store: Store) -> None:
    """Spaces, '+', '%', '~' and non-ASCII survive the listing's URL encoding both ways."""
    for number, key in enumerate(ODD_KEYS):
        await put(store, key, str(number).encode())
    assert [k async for k in store.list_keys("p/")] == sorted(ODD_KEYS)
    assert [f async for f in store.list_folders("p/")] == sorted({k.split("/")[1] for k in ODD_KEYS})
    for number, key in enumerate(ODD_KEYS):
        assert await store.read(key) == str(number).encode()


async def test_listings_of_more_than_a_page_are_whole(bucket: Bucket) -> None:
    """1,000 keys a page: both paths follow the continuation token, for keys and for folders."""
    keys = [f"p/{i // 10:03d}/{i:04d}.json" for i in range(1005)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bucket.client.put_object(Bucket=bucket.name, Key=k, Body=b"{}"), keys))
    folders = [f"p/{i:03d}/x" for i in range(101, 1105)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bucket.client.put_object(Bucket=bucket.name, Key=k, Body=b"{}"), folders))
    store = s3_store(bucket.endpoint, bucket.name)
    assert [k async for k in store.list_keys("p/")] == sorted(keys + folders)
    assert [f async for f in store.list_folders("p/")] == sorted(f"{i:03d}" for i in range(1105))
    await store.aclose()


@pytest.mark.parametrize(
    ("code", "named"),
    [
        ("RequestTimeTooSkewed", "this machine's clock is too far from its own"),
        ("XAmzContentSHA256Mismatch", "refused the payload hash it was sent"),
        ("InvalidAccessKeyId", "does not know the access key"),
        ("SignatureDoesNotMatch", "the secret key does not match the access key"),
        ("InvalidDigest", "refused the checksum header it was sent"),
    ],
)
async def test_a_refusal_a_person_must_fix_stops_at_once_naming_it(code: str, named: str) -> None:
    """Each of these is final: one request, then a StoreAccessError (exit 2) that names the cause
    and where to look; never retried for ever as a passing fault."""
    seen: list[str] = []

    def refuse(handler: BaseHTTPRequestHandler) -> None:
        seen.append(handler.command)
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        body = f"<Error><Code>{code}</Code><Message>as S3 says it</Message></Error>".encode()
        handler.send_response(
            403 if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "RequestTimeTooSkewed") else 400
        )
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with TinyServer(refuse) as server:
        store = s3_store(server.url, "bucket")
        with pytest.raises(StoreAccessError, match=named) as caught:
            await put(store, KEY, b"RIFF one")
        await store.aclose()
    assert code in str(caught.value)
    assert seen == ["PUT"]


class FailingBuffer(io.BytesIO):
    """A download buffer whose disk fails when it is read back (EIO)."""

    def read(self, size: int | None = -1) -> bytes:
        raise OSError(errno.EIO, "Input/output error")


async def test_a_buffer_that_fails_while_it_goes_up_is_a_local_fault_not_a_store_outage(bucket: Bucket) -> None:
    """An OSError reading the local buffer during an upload is the buffer's (SpoolError: this call
    fails and is retried later), never a store that 'did not answer', which would be waited out
    for minutes while the store is fine."""
    store = s3_store(bucket.endpoint, bucket.name)
    data = b"RIFF" + bytes(100)
    with capture_logs() as logs, pytest.raises(SpoolError, match="Input/output error"):
        await store.put(
            KEY, FailingBuffer(data), size=len(data), sha256=hashlib.sha256(data).digest(), content_type="audio/wav"
        )
    await store.aclose()
    assert "spool.failed" in [e["event"] for e in logs]
    assert bucket.objects() == {}
