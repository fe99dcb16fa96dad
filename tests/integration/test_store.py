"""Both stores behind one interface: create-only, atomic, checked. S3 is a moto server over HTTP."""

from __future__ import annotations

import base64
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
from urllib.parse import quote, quote_plus, unquote

import anyio
import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials
from structlog.testing import capture_logs

from archiver.config.models import ObjectLockConfig
from archiver.errors import ArchiveConflict, ObjectExists, StoreAccessError, StoreUnavailable
from archiver.store import Store, put_bytes
from archiver.store.local import LocalStore
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket
from archiver.store.s3_control import S3ControlStore
from tests.helpers import (
    AWS_ENV,
    Bucket,
    MotoServer,
    TinyServer,
    direct_to,
    make_bucket,
    s3_bucket,
    s3_client,
    s3_store,
)

pytestmark = pytest.mark.anyio
KEY = "p/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"


@pytest.fixture(params=["file", "s3", "s3-boto3-only"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "file":
        yield LocalStore(tmp_path / "archive")
        return
    bucket: Bucket = request.getfixturevalue("bucket")
    s3 = s3_store(bucket.endpoint, bucket.name, direct=request.param == "s3")
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


async def test_large_bodies_go_up_in_parts_and_stay_create_only(bucket: Bucket) -> None:
    """Past the threshold a multipart upload is used, completed with If-None-Match."""
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


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "boto3"])
async def test_objects_carry_the_configured_object_lock(moto_server: MotoServer, direct: bool) -> None:
    """Each object gets the lock mode and a retain-until date retain_days ahead."""
    bucket = make_bucket(moto_server.endpoint, object_lock=True)
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    store = s3_store(
        bucket.endpoint,
        bucket.name,
        direct=direct,
        object_lock=ObjectLockConfig(mode="COMPLIANCE", retain_days=30),
        now=lambda: now,
    )
    await put(store, KEY, b"RIFF")
    head = bucket.client.head_object(Bucket=bucket.name, Key=KEY)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == now + timedelta(days=30)
    await store.aclose()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "boto3"])
async def test_a_missing_bucket_is_an_access_error_that_names_it(moto_server: MotoServer, direct: bool) -> None:
    """NoSuchBucket is fatal (a person must act) and says which bucket."""
    store = s3_store(moto_server.endpoint, "no-such-bucket-here", direct=direct)
    with pytest.raises(StoreAccessError, match="bucket 'no-such-bucket-here' does not exist"):
        await put(store, KEY, b"x")
    await store.aclose()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "boto3"])
async def test_an_unreachable_endpoint_is_unavailable(tmp_path: Path, direct: bool) -> None:
    """Nothing listening is transient: the caller waits and tries again."""
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = s3_store("http://127.0.0.1:9", "bucket", client=client, direct=direct)
    with pytest.raises(StoreUnavailable, match="did not answer"):
        await put(store, KEY, b"x")
    await store.aclose()


async def test_a_redirect_to_another_region_hands_the_put_to_boto3(bucket: Bucket) -> None:
    """A bucket elsewhere than storage.region says answers the direct PUT with PermanentRedirect:
    the store turns the direct path off and lets boto3 (which follows regions) write, once."""
    seen: list[str] = []

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        seen.append(handler.command)
        body = b"<Error><Code>PermanentRedirect</Code><Message>use the other endpoint</Message></Error>"
        handler.send_response(301)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with TinyServer(redirect) as elsewhere:
        wire = direct_to(elsewhere.url, bucket.name)
        store = S3Store(S3Bucket(s3_client(bucket.endpoint), bucket.name, wire=wire))
        with capture_logs() as logs:
            await put(store, KEY, b"RIFF one")
            await put(store, KEY.replace(".wav", ".json"), b"{}")
            assert await store.read(KEY) == b"RIFF one"
        await store.aclose()
    assert seen == ["PUT"]  # asked once, then never again
    assert [e["event"] for e in logs] == ["store.direct_off"]
    assert bucket.objects() == {KEY: b"RIFF one", KEY.replace(".wav", ".json"): b"{}"}
    with TinyServer(redirect) as elsewhere:  # a read that streams meets the redirect first
        store = S3Store(S3Bucket(s3_client(bucket.endpoint), bucket.name, wire=direct_to(elsewhere.url, bucket.name)))
        assert await store.digest(KEY) == (8, hashlib.sha256(b"RIFF one").digest())
        assert store.route.startswith("boto3: the bucket answered the direct path with PermanentRedirect")
        await store.aclose()
    assert seen == ["PUT", "GET"]


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


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "boto3"])
async def test_listings_of_more_than_a_page_are_whole(bucket: Bucket, direct: bool) -> None:
    """1,000 keys a page: both paths follow the continuation token, for keys and for folders."""
    keys = [f"p/{i // 10:03d}/{i:04d}.json" for i in range(1005)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bucket.client.put_object(Bucket=bucket.name, Key=k, Body=b"{}"), keys))
    folders = [f"p/{i:03d}/x" for i in range(101, 1105)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bucket.client.put_object(Bucket=bucket.name, Key=k, Body=b"{}"), folders))
    store = s3_store(bucket.endpoint, bucket.name, direct=direct)
    assert [k async for k in store.list_keys("p/")] == sorted(keys + folders)
    assert [f async for f in store.list_folders("p/")] == sorted(f"{i:03d}" for i in range(1105))
    await store.aclose()


async def test_the_direct_put_signs_the_bytes_it_sends() -> None:
    """The payload hash signed and the checksum sent are the body's (a server that checks them,
    as AWS S3 and MinIO do, refuses anything else with XAmzContentSHA256Mismatch)."""
    seen: list[tuple[dict[str, str], bytes]] = []

    def accept(handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        seen.append(({k.lower(): v for k, v in handler.headers.items()}, body))
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    data = b"RIFF" + os.urandom(300_000)  # sent in pieces, not at once
    with TinyServer(accept) as server:
        wire = direct_to(server.url, "bucket")
        store = S3Store(S3Bucket(s3_client(server.url), "bucket", wire=wire))
        await put(store, KEY, data)
        await put(store, KEY.replace(".wav", ".json"), b"{}")
        await store.aclose()
    for headers, body in seen:
        digest = hashlib.sha256(body).digest()
        assert headers["x-amz-content-sha256"] == digest.hex()
        assert base64.b64decode(headers["x-amz-checksum-sha256"]) == digest
        assert headers["if-none-match"] == "*"
        assert "x-amz-content-sha256" in headers["authorization"].split("SignedHeaders=")[1]
    assert [body for _, body in seen] == [data, b"{}"]


def verify_sigv4(method: str, target: str, headers: dict[str, str], body: bytes) -> None:
    """Check a received request's signature as S3 does: rebuild the canonical request from what
    arrived (path and query as sent, the signed headers as received) with botocore, and compare."""
    authorization = headers["authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    path, _, query = target.partition("?")
    # S3 decodes the query and encodes it again its own way (RFC 3986, '/' and '+' included).
    pairs = sorted((unquote(k), unquote(v)) for k, _, v in (p.partition("=") for p in query.split("&") if p))
    canonical = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    url = f"http://{headers['host']}{path}" + (f"?{canonical}" if canonical else "")
    request = AWSRequest(method, url, headers={h: headers[h] for h in signed})
    request.context["timestamp"] = headers["x-amz-date"]
    boto = BotoCredentials(AWS_ENV["AWS_ACCESS_KEY_ID"], AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    auth = S3SigV4Auth(boto, "s3", "us-east-1")
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    assert authorization.endswith(f"Signature={signature}"), (method, target)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()


async def test_every_direct_request_verifies_as_s3_verifies_it() -> None:
    """PUT, HEAD, GET, a paged listing, a conditional write and DELETE, on keys with spaces, '+',
    '%' and non-ASCII: each request's signature holds against what the server received (the path
    and query as aiohttp sent them, the Host header with its port), and its payload hash against
    the body that arrived."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    key = "p/2026/11/01/tiếng việt+1%.json"

    def answer(handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        seen.append((handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}, body))
        reply = b""
        if handler.command == "GET" and "list-type=2" in handler.path:
            more = "continuation-token" not in handler.path
            token = "<NextContinuationToken>1/a+b=</NextContinuationToken>" if more else ""
            reply = (
                f"<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>{str(more).lower()}</IsTruncated>"
                f"{token}<Contents><Key>{quote_plus(key)}</Key></Contents></ListBucketResult>"
            ).encode()
        elif handler.command == "GET":
            reply = b"{}"
        handler.send_response(204 if handler.command == "DELETE" else 200)
        handler.send_header("ETag", '"e"')
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(reply)

    with TinyServer(answer) as server:
        bucket = S3Bucket(s3_client(server.url), "bucket", wire=direct_to(server.url, "bucket"))
        store, control = S3Store(bucket), S3ControlStore(bucket)
        await put(store, key, b"{}")
        assert await store.head(key) is not None
        assert await store.read(key) == b"{}"
        assert [k async for k in store.list_keys("p/")] == [key, key]  # two pages
        assert await control.put_conditional(key + ".lease", b"{}", if_match='"e"') == '"e"'
        await store.delete(key)
        await store.aclose()
    assert [m for m, *_ in seen] == ["PUT", "HEAD", "GET", "GET", "GET", "PUT", "DELETE"]
    for method, target, headers, body in seen:
        verify_sigv4(method, target, headers, body)
