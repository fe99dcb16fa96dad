"""The archiver on Ceph RGW, a real S3 implementation that checks what moto does not: every
SigV4 signature, the signed payload hash, and its own dialect of conditional writes."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from structlog.testing import capture_logs

from archiver.errors import ObjectExists, StoreAccessError
from archiver.store.probe import compare_and_swap_fault, refuses_second_create
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket
from archiver.store.s3_control import S3ControlStore
from tests.ceph import CephRgw
from tests.helpers import AWS_ENV, Bucket, control_store, make_bucket, s3_store
from tests.s3faults import Answer, FaultProxy, Forward, S3Request

pytestmark = pytest.mark.anyio
KEY = "archive/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"


async def put(store: S3Store, key: str, data: bytes) -> None:
    await store.put(
        key, io.BytesIO(data), size=len(data), sha256=hashlib.sha256(data).digest(), content_type="audio/wav"
    )


def keyed_store(rgw: CephRgw, bucket: str, **keys: Any) -> S3Store:
    """A store whose client signs with *keys* instead of the tests' own."""
    import boto3  # noqa: PLC0415

    client = boto3.client("s3", endpoint_url=rgw.endpoint, region_name="us-east-1", **keys)
    return S3Store(S3Bucket(client, bucket, endpoint=rgw.endpoint))


async def test_a_request_signed_with_a_wrong_secret_is_refused_and_named(rgw: CephRgw, rgw_bucket: Bucket) -> None:
    """RGW checks the signature (moto would accept it): the error names the setting to look at,
    and carries neither secret."""
    wrong = "not-the-secret-key-0000"
    store = keyed_store(
        rgw, rgw_bucket.name, aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=wrong
    )
    with pytest.raises(StoreAccessError) as caught:
        await put(store, KEY, b"RIFF")
    message = str(caught.value)
    assert "SignatureDoesNotMatch" in message
    assert "the secret key does not match the access key" in message
    assert "storage.credentials_file" in message
    assert wrong not in message
    assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in message
    assert rgw_bucket.objects() == {}
    await store.aclose()


async def test_an_unknown_access_key_is_refused_and_named(rgw: CephRgw, rgw_bucket: Bucket) -> None:
    """An access key the store does not know is a configuration error, not an outage."""
    store = keyed_store(rgw, rgw_bucket.name, aws_access_key_id="NOSUCHKEY00000000000", aws_secret_access_key="x")
    with pytest.raises(StoreAccessError, match=r"does not know the access key.*InvalidAccessKeyId"):
        await put(store, KEY, b"RIFF")
    with pytest.raises(StoreAccessError, match=r"refused access \(HTTP 403\): check the access key pair"):
        await store.head(KEY)  # a HEAD's answer has no body to name the cause
    await store.aclose()


async def test_a_body_changed_on_the_way_is_refused_by_its_signed_hash(rgw_bucket: Bucket) -> None:
    """A proxy that alters one byte of the body: RGW refuses the upload (x-amz-content-sha256 is
    signed; RGW says SignatureDoesNotMatch where AWS says XAmzContentSHA256Mismatch) and the
    archiver stops with what to look at, instead of retrying it for ever."""

    def flip_last_byte(request: S3Request, forward: Forward) -> Answer | None:
        body = request.body
        return forward(body[:-1] + bytes([body[-1] ^ 1])) if body else None

    with FaultProxy(rgw_bucket.endpoint, flip_last_byte) as proxy:
        store = s3_store(proxy.endpoint, rgw_bucket.name)
        with pytest.raises(StoreAccessError, match=r"something between here and the store changed the request"):
            await put(store, KEY, b"RIFF" + bytes(1000))
        await store.aclose()
    assert rgw_bucket.objects() == {}


async def test_an_unversioned_bucket_keeps_both_conditions(rgw_bucket: Bucket) -> None:
    """If-None-Match refuses a second create; a control object is replaced on its own ETag, which
    RGW 16 matches only bare (it returns it quoted): the store learns that once, and says so."""
    store = s3_store(rgw_bucket.endpoint, rgw_bucket.name)
    control = control_store(rgw_bucket.endpoint, rgw_bucket.name)
    assert await refuses_second_create(store, "archive/_archiver/check/p.txt")
    with capture_logs() as logs:
        assert await compare_and_swap_fault(control, "archive/_archiver/check/p.json") is None
    assert [(e["event"], e["form"]) for e in logs] == [("store.if_match_form_learned", "bare")]
    assert control.if_match_form == "bare"
    lease = "archive/_archiver/leases/x.json"
    etag = await control.put_conditional(lease, b'{"n": 1}', if_match=None)
    renewed = await control.put_conditional(lease, b'{"n": 2}', if_match=etag)
    with pytest.raises(ObjectExists):
        await control.put_conditional(lease, b'{"n": 3}', if_match=etag)  # stale now
    assert await control.put_conditional(lease, b'{"n": 3}', if_match=renewed)
    found = await control.read_with_etag(lease)
    assert found is not None
    assert found[0] == b'{"n": 3}'
    await store.aclose()
    await control.aclose()


async def test_a_versioned_bucket_is_found_out_by_both_probes(rgw: CephRgw) -> None:
    """On a versioned bucket RGW 16 ignores If-None-Match and refuses every If-Match: the probes
    say so, so that check and run refuse what would silently break."""
    bucket = make_bucket(rgw.endpoint, versioned=True)
    store = s3_store(bucket.endpoint, bucket.name)
    control: S3ControlStore = control_store(bucket.endpoint, bucket.name)
    assert not await refuses_second_create(store, "archive/_archiver/check/p.txt")
    fault = await compare_and_swap_fault(control, "archive/_archiver/check/p.json")
    assert fault == "refused to replace a control object on its own current ETag (If-Match)"
    await store.aclose()
    await control.aclose()
