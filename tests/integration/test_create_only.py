"""The store is proved to refuse a second create-only write, against a real S3 server and one
that drops the conditions (as some S3-compatible servers do)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from archiver.errors import ObjectExists
from archiver.store.local import LocalStore
from archiver.store.probe import compare_and_swap_fault, refuses_second_create
from tests.helpers import Bucket, control_store, s3_store
from tests.s3faults import FaultProxy

pytestmark = pytest.mark.anyio
KEY = "archive/_archiver/check/probe"


async def test_a_store_that_honours_the_conditions_is_proved_so(bucket: Bucket, tmp_path: Path) -> None:
    """moto refuses the second create-only write and the stale ETag; a local folder refuses the second link."""
    store, control = s3_store(bucket.endpoint, bucket.name), control_store(bucket.endpoint, bucket.name)
    assert await refuses_second_create(store, KEY + ".txt")
    assert await compare_and_swap_fault(control, KEY + ".json") is None
    assert await refuses_second_create(LocalStore(tmp_path), "probe/p.txt")
    await store.aclose()
    await control.aclose()
    assert [v for v in bucket.versions() if not v["Key"].startswith(KEY)] == []


async def test_a_store_that_ignores_the_conditions_is_caught(bucket: Bucket) -> None:
    """Behind a proxy that drops If-None-Match and If-Match both probes say so."""
    with FaultProxy(bucket.endpoint, strip=("if-none-match", "if-match")) as proxy:
        store = s3_store(proxy.endpoint, bucket.name)
        control = control_store(proxy.endpoint, bucket.name)
        assert not await refuses_second_create(store, KEY + ".txt")
        assert (
            await compare_and_swap_fault(control, KEY + ".json") == "accepted a replacement on a stale ETag (If-Match)"
        )
        await store.aclose()
        await control.aclose()


async def test_looking_before_writing_keeps_create_only_on_such_a_store(bucket: Bucket) -> None:
    """With look_before_write, a second write of a key is refused by the archiver itself: one version."""
    data = b"RIFF once"
    with FaultProxy(bucket.endpoint, strip=("if-none-match", "if-match")) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, look_before_write=True)
        for attempt in range(2):
            try:
                await store.put(
                    "archive/2026/11/01/x.wav",
                    io.BytesIO(data),
                    size=len(data),
                    sha256=hashlib.sha256(data).digest(),
                    content_type="audio/wav",
                )
            except ObjectExists:
                assert attempt == 1
        await store.aclose()
    assert [v["Key"] for v in bucket.versions()] == ["archive/2026/11/01/x.wav"]
