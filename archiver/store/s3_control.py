"""Control objects on S3: leases, day claims and membership, written under conditions.

``If-None-Match: *`` takes a free key, ``If-Match`` on the ETag replaces only the version read.
S3's strong consistency makes this a compare-and-swap without a coordinator of our own.
Control objects carry no retention or legal hold: they are replaced as they are used.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from archiver.store.s3 import encryption_headers
from archiver.store.s3_bucket import NOT_FOUND_CODES, Off, S3Bucket, b64


class S3ControlStore:
    """The :class:`~archiver.store.ControlStore` of one bucket (the archive's, or its own)."""

    def __init__(self, bucket: S3Bucket) -> None:
        self._bucket = bucket
        self.description = bucket.description

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        return self._bucket.list_keys(prefix)

    async def delete(self, key: str) -> None:
        await self._bucket.delete(key)

    async def aclose(self) -> None:
        await self._bucket.aclose()

    async def put_conditional(self, key: str, data: bytes, *, if_match: str | None) -> str:
        """Write a small control object: create-only (*if_match* None) or only over the version
        with that ETag. Returns the new ETag; raises ObjectExists when the condition fails."""
        condition: dict[str, Any] = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        encryption = self._bucket.encryption
        headers = {
            "Content-Type": "application/json",
            **({"If-Match": if_match} if if_match else {"If-None-Match": "*"}),
            **encryption_headers(encryption),
        }
        etag = await self._bucket.direct(lambda w: w.put_small(key, data, headers=headers), key, retry=False)
        if etag is not Off.OFF:
            return etag

        def put() -> str:
            result = self._bucket.client.put_object(
                Bucket=self._bucket.name,
                Key=key,
                Body=data,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=b64(hashlib.sha256(data).digest()),
                **condition,
                **encryption,
            )
            return str(result["ETag"])

        return await self._bucket.call(put, key)

    async def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """A control object's bytes and ETag, or None when there is none."""

        found = await self._bucket.direct(lambda w: w.read(key, 1 << 20), key, retry=True)
        if found is not Off.OFF:
            return found
        import botocore.exceptions  # noqa: PLC0415 (loaded with boto3, when boto3 is asked)

        def read() -> tuple[bytes, str] | None:
            try:
                response = self._bucket.client.get_object(Bucket=self._bucket.name, Key=key)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES:
                    return None
                raise
            stream = response["Body"]
            try:
                return stream.read(1 << 20), str(response["ETag"])
            finally:
                stream.close()

        return await self._bucket.call(read, key)
