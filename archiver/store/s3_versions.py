"""Version history on a versioned S3 bucket: which archive keys were written more than once,
deleted, or put back, and putting a deleted key back from the version it had.

The archive's create-only writes leave exactly one version per key. A second version or a
delete marker means something happened to the key after it was archived: ``verify`` reports
each (:mod:`archiver.audit.history`), and the archiver puts back what was deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import structlog

from archiver.errors import ObjectExists, StoreAccessError
from archiver.store import KeyHistory, Version
from archiver.store.s3_bucket import NoVersionListing, S3Bucket

_CHUNK = 1 << 20
log = structlog.get_logger("archiver.store")


class S3VersionAudit:
    """The :class:`~archiver.store.VersionAudit` of one bucket."""

    def __init__(self, bucket: S3Bucket, protection: Callable[[Mapping[str, Any]], dict[str, Any]]) -> None:
        self._bucket = bucket
        self._protection = protection  # a version's HEAD -> what its put-back copy carries
        self._versioned: bool | None = None  # whether the bucket has had versioning, once asked

    async def histories(self, prefix: str) -> AsyncIterator[KeyHistory]:
        """Every key under *prefix* with more than one version or a delete marker, its versions
        oldest first. A key's versions may span pages: each is yielded once it is whole.

        A bucket that never had versioning keeps one version per key, and a store that lists no
        versions (R2, and stores that answer NotImplemented) shows none: nothing is listed there.
        """
        if not await self._ever_versioned():
            return
        pending: dict[str, list[Version]] = {}
        try:
            async for page in self._bucket.version_pages(prefix):
                for key, version in page.versions:
                    pending.setdefault(key, []).append(version)
                for key in sorted(pending):
                    if key == page.next_key:
                        continue  # more of its versions may come on the next page
                    # Oldest first; LastModified has whole seconds on some stores, so the current one is last.
                    versions = sorted(pending.pop(key), key=lambda v: (v.latest, v.at))
                    if len(versions) > 1:
                        yield KeyHistory(key, tuple(versions))
        except NoVersionListing:
            self._versioned = False
            log.warning(
                "store.versions_not_listed",
                store=self._bucket.description,
                hint="the store lists no object versions: deleted or overwritten objects cannot be put back or "
                "shown in verify's history; archived calls lost from the bucket are archived again from the PBX",
            )

    async def _ever_versioned(self) -> bool:
        """Whether the bucket has (or had) versioning: asked once. Where the credentials may not
        ask (no s3:GetBucketVersioning) or the store does not answer the question, the versions
        are listed as if it had (a store that lists none says so then)."""
        if self._versioned is None:
            try:
                answer = await self._bucket.call(
                    lambda: self._bucket.client.get_bucket_versioning(Bucket=self._bucket.name)
                )
                self._versioned = answer.get("Status") in ("Enabled", "Suspended")
            except StoreAccessError:
                self._versioned = True
        return self._versioned

    async def put_back(self, key: str, version: Version) -> None:
        """Make *version* of *key* (deleted: its current version is a delete marker) current again,
        by copying it: the delete marker stays in the history. Create-only.

        A copy inherits neither storage class, encryption nor Object Lock: the copy is given the
        version's class, and what *protection* makes of the version's HEAD (its retention and
        legal hold, the bucket's encryption settings).
        """
        head = await self._bucket.call(
            lambda: self._bucket.client.head_object(Bucket=self._bucket.name, Key=key, VersionId=version.version_id),
            key,
        )
        source = {"Bucket": self._bucket.name, "Key": key, "VersionId": version.version_id}
        args: dict[str, Any] = {
            "Bucket": self._bucket.name,
            "Key": key,
            "CopySource": source,
            "IfNoneMatch": "*",
            **self._protection(head),
        }
        if version.storage_class not in (None, "STANDARD"):  # a copy is STANDARD unless told
            args["StorageClass"] = version.storage_class
        with contextlib.suppress(ObjectExists):  # put back already, by another run
            await self._bucket.call(lambda: self._bucket.client.copy_object(**args), key)

    async def same_bytes(self, key: str, a: Version, b: Version) -> bool:
        """Whether two versions of *key* hold the same bytes: by ETag, or read and hashed when
        the ETags cannot say (a multipart upload's against its copy's)."""
        if a.etag is None or b.etag is None or a.size != b.size:
            return False
        if a.etag == b.etag:
            return True
        return await self._sha256(key, a) == await self._sha256(key, b)

    async def _sha256(self, key: str, version: Version) -> bytes:
        def read() -> bytes:
            body = self._bucket.client.get_object(Bucket=self._bucket.name, Key=key, VersionId=version.version_id)
            digest = hashlib.sha256()
            with body["Body"] as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
            return digest.digest()

        return await self._bucket.call(read, key)
