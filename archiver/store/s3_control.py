"""Control objects on S3: leases, day claims and membership, written under conditions.

``If-None-Match: *`` takes a free key, ``If-Match`` on the ETag replaces only the version read.
S3's strong consistency makes this a compare-and-swap without a coordinator of our own.
Control objects carry no retention or legal hold: they are replaced as they are used.

Stores disagree on how ``If-Match`` spells the ETag: AWS S3 and MinIO take it quoted, as RFC 9110
writes it and as they return it; Ceph RGW 16 returns it quoted but matches only the bare form.
The store learns which form works the first time a condition on the object's own, current ETag
is refused (it reads the object back to be sure the ETag was current), and keeps to that form.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import botocore.exceptions
import structlog

from archiver.errors import ObjectExists, ObjectMissing, StoreAccessError, StoreConflict
from archiver.store.s3_bucket import NOT_FOUND_CODES, S3Bucket, b64

log = structlog.get_logger("archiver.store")


def _bare(etag: str) -> str:
    return etag.strip('"')


def _quoted(etag: str) -> str:
    return f'"{_bare(etag)}"'


class S3ControlStore:
    """The :class:`~archiver.store.ControlStore` of one bucket (the archive's, or its own)."""

    def __init__(self, bucket: S3Bucket) -> None:
        self._bucket = bucket
        self.description = bucket.description
        self._spell = _quoted  # how If-Match writes an ETag; see the module's docstring
        self._spelling_known = False

    @property
    def if_match_form(self) -> str:
        """How this store is sent ETags in ``If-Match``: ``quoted`` or ``bare``."""
        return "quoted" if self._spell is _quoted else "bare"

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        return self._bucket.list_keys(prefix)

    async def delete(self, key: str) -> None:
        await self._bucket.delete(key)

    async def aclose(self) -> None:
        await self._bucket.aclose()

    async def put_conditional(self, key: str, data: bytes, *, if_match: str | None) -> str:
        """Write a small control object: create-only (*if_match* None) or only over the version
        with that ETag. Returns the new ETag; raises ObjectExists when the condition fails.

        What looks like a failed condition is read back before it is believed: the key may hold
        *data* already (this write landed and only its answer was lost: botocore's retry then met
        the write itself, 412), which is success; the key may be gone (If-Match on a deleted
        object: 404 on AWS) or taken in the same instant (409 ConditionalRequestConflict), which
        is a lost race, as is any other change; or the store wants the other ETag spelling.
        """
        condition = {"IfNoneMatch": "*"} if if_match is None else {"IfMatch": self._spell(if_match)}
        try:
            return await self._put(key, data, condition)
        except (ObjectExists, ObjectMissing, StoreConflict) as exc:
            refused: Exception = exc
        found = await self.read_with_etag(key)
        if found is not None and found[0] == data:
            log.info("store.conditional_write_landed", store=self.description, key=key, answer=type(refused).__name__)
            return found[1]
        spelling_in_doubt = if_match is not None and not self._spelling_known and isinstance(refused, ObjectExists)
        if not spelling_in_doubt or found is None or _bare(found[1]) != _bare(str(if_match)):
            raise ObjectExists(key) from None  # the object changed, went, or was taken: a true refusal
        # The store refused the object's own current ETag: it wants the other spelling.
        other = _bare if self._spell is _quoted else _quoted
        etag = await self._put(key, data, {"IfMatch": other(str(if_match))})
        self._spell, self._spelling_known = other, True
        log.info("store.if_match_form_learned", store=self.description, form=self.if_match_form)
        return etag

    async def _put(self, key: str, data: bytes, condition: dict[str, Any]) -> str:
        def put() -> str:
            result = self._bucket.client.put_object(
                Bucket=self._bucket.name,
                Key=key,
                Body=data,
                ContentType="application/json",
                # The algorithm named too: a bucket with a default retention refuses a PUT without it.
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=b64(hashlib.sha256(data).digest()),
                **condition,
                **self._bucket.encryption,
            )
            return str(result.get("ETag") or "")

        etag = await self._bucket.call(put, key)
        if not etag:  # something in front of the store dropped it: the object's own, read back
            found = await self.read_with_etag(key)
            if found is None or found[0] != data or not found[1]:
                raise StoreAccessError(
                    f"{self.description} answered a conditional write without an ETag, and the object does not give "
                    "one back: conditional writes cannot work through it (storage.endpoint_url, or coordination.bucket)"
                )
            etag = found[1]
        if "IfMatch" in condition:
            self._spelling_known = True  # this spelling is the one that worked
        return etag

    async def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """A control object's bytes and ETag, or None when there is none."""

        def read() -> tuple[bytes, str] | None:
            try:
                response = self._bucket.client.get_object(Bucket=self._bucket.name, Key=key)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES:
                    return None
                raise
            stream = response["Body"]
            try:
                return stream.read(1 << 20), str(response.get("ETag") or "")
            finally:
                stream.close()

        return await self._bucket.call(read, key)
