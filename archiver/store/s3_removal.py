"""Removing archive objects on S3, for ``expire`` and ``erase``, and restoring cold ones.

A removal takes every version of a key (on a versioned bucket a plain DELETE only hides the
bytes behind a delete marker, which the archiver would put back): the versions are listed, then
deleted by version id, a thousand per ``DeleteObjects`` request. A version the store refuses to
delete because of Object Lock retention or a legal hold is left, and reported as a
:class:`~archiver.store.Hold` with what holds it; nothing is forced unless the caller lifts
GOVERNANCE retention on purpose.

A store that lists no versions (R2) keeps one per key, and a plain DELETE removes it. One that
lists none but keeps them (a gateway in front of a versioned bucket) would only hide each object:
removal there is refused before anything is listed as removable, and a DELETE the store answers
with a delete marker is never counted as a removal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import botocore.exceptions
import structlog

from archiver.errors import StoreAccessError, StoreUnavailable
from archiver.retry import RetryPolicy
from archiver.store import ARCHIVE_TIERS, Hold, Removal, StoredVersion
from archiver.store.s3_bucket import NoVersionListing, S3Bucket, b64

log = structlog.get_logger("archiver.store")

_BATCH = 1000  # DeleteObjects takes up to 1,000 keys
_LOCKED = frozenset({"AccessDenied", "ObjectLocked", "InvalidRequest"})
# Per-key errors inside a DeleteObjects answer that may pass: those keys are sent again.
_PASSING = frozenset({"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "OperationAborted"})
_PER_KEY_RETRY = RetryPolicy(attempts=5, timeout=60.0, wait_initial=0.2, wait_max=5.0)
_UNANSWERED = frozenset({"NotImplemented", "MethodNotAllowed", "XNotImplemented"})  # a store without the feature
_HIDDEN = "DeleteMarkerOnly"  # our code for a DELETE the store answered with a delete marker: nothing was removed
_PROBE = b"archiver: may these credentials remove object versions? (a throwaway object)\n"


class S3Removal:
    """Removal, Object Lock holds and restores on one bucket; *now* says which retention is over."""

    def __init__(self, bucket: S3Bucket, now: Callable[[], datetime]) -> None:
        self._bucket = bucket
        self._now = now
        self._locks_readable = False  # whether these credentials may read Object Lock settings
        self._keeps_none = False  # whether a store that lists no versions said it keeps none

    async def _versions(self, keys: Sequence[str], prefix: str | None = None) -> list[tuple[str, str | None, bool]]:
        """(key, version id, is a delete marker) of every version of *keys* (or, given *prefix*,
        of every key under it), data versions first.

        A store without version listing (R2) has one version per key: (key, None, False).
        """
        wanted = set(keys)
        whole = prefix is not None
        if prefix is None:
            if not wanted:
                return []
            prefix = os.path.commonprefix(sorted(wanted))  # noqa: RUF071 - S3 prefixes are strings, not paths
        try:
            found = [
                (key, version.version_id, version.deleted)
                async for page in self._bucket.version_pages(prefix)
                for key, version in page.versions
                if whole or key in wanted
            ]
        except NoVersionListing:
            await self._keeping_none(prefix)
            if whole:
                wanted = {key async for key in self._bucket.list_keys(prefix)}
            return [(key, None, False) for key in sorted(wanted)]
        return sorted(found, key=lambda v: v[2])  # data versions before delete markers

    async def holds(self, keys: Sequence[str]) -> list[Hold]:
        """The versions of *keys* under retention that has not ended, or a legal hold."""
        held: list[Hold] = []

        async def look(key: str, version: str | None) -> None:
            hold = await self._hold(key, version)
            if hold is not None:
                held.append(hold)

        versions = [(key, version) for key, version, marker in await self._versions(keys) if not marker]
        if versions:  # asked once, before any other: a refusal ends it plainly
            await self._may_read_locks(*versions[0])
        async with anyio.create_task_group() as tg:
            for key, version in versions:
                tg.start_soon(look, key, version)
        return sorted(held, key=lambda h: (h.key, h.version_id or ""))

    async def _may_read_locks(self, key: str, version: str | None) -> None:
        """S3 leaves a HEAD's Object Lock headers out for credentials without s3:GetObjectRetention
        and s3:GetObjectLegalHold: a lock would look like none, and a removal be recorded that the
        store then refuses. Asked once, of the first object looked at: a refusal is an error before
        anything is written. (What they answer otherwise, a lock or none, is the HEAD's to say.)"""
        if self._locks_readable:
            return
        args: dict[str, Any] = {"Bucket": self._bucket.name, "Key": key}
        if version not in (None, "null"):
            args["VersionId"] = version

        def refused() -> tuple[list[str], bool]:
            denied, answered = [], True
            for ask, permission in (
                (self._bucket.client.get_object_retention, "s3:GetObjectRetention"),
                (self._bucket.client.get_object_legal_hold, "s3:GetObjectLegalHold"),
            ):
                try:
                    ask(**args)
                except botocore.exceptions.ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if code == "InvalidObjectState":  # a cold object (403 on some stores): no answer either way
                        answered = False
                    elif code == "AccessDenied" or status == 403:
                        denied.append(permission)
            return denied, answered

        denied, answered = await self._bucket.call(refused, key)
        if denied:
            raise StoreAccessError(
                f"{self._bucket.description} does not let these credentials read Object Lock settings "
                f"({' and '.join(denied)}): whether a lock forbids removing {key} cannot be known; grant them "
                "(nothing was written)"
            )
        self._locks_readable = answered  # a cold object tells nothing: the next one is asked

    async def _hold(self, key: str, version: str | None) -> Hold | None:
        await self._may_read_locks(key, version)
        args: dict[str, Any] = {"Bucket": self._bucket.name, "Key": key}
        if version not in (None, "null"):
            args["VersionId"] = version
        head = await self._bucket.call(lambda: self._bucket.client.head_object(**args), key)
        until = head.get("ObjectLockRetainUntilDate")
        mode = head.get("ObjectLockMode") if until is not None and until > self._now() else None
        legal = head.get("ObjectLockLegalHoldStatus") == "ON"
        return Hold(key, version, mode, until if mode else None, legal) if mode or legal else None

    async def versions_in(self, folder: str) -> list[StoredVersion]:
        """Every version and delete marker under *folder*, each key's current one marked (a store
        that lists no versions: each key once, without a version)."""
        try:
            return [
                StoredVersion(key, version.version_id, version.deleted, version.latest)
                async for page in self._bucket.version_pages(folder)
                for key, version in page.versions
            ]
        except NoVersionListing:
            await self._keeping_none(folder)
            return [StoredVersion(key, None) async for key in self._bucket.list_keys(folder)]

    async def _keeping_none(self, prefix: str) -> None:
        """Where the store lists no versions, a removal deletes each key without a version id: that
        removes it only where the bucket keeps no versions (elsewhere it writes a delete marker and
        keeps every version). Asked once (GetBucketVersioning), before anything is listed as
        removable; raises StoreAccessError when the bucket keeps versions, or will not say."""
        if self._keeps_none:
            return
        gone = f"a delete would only hide what is under {prefix} behind delete markers, every version kept"

        def status() -> str | None:
            try:
                answer = self._bucket.client.get_bucket_versioning(Bucket=self._bucket.name)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in _UNANSWERED:
                    return None  # no versioning to speak of: one version per key
                raise
            return answer.get("Status")

        try:
            versioning = await self._bucket.call(status)
        except StoreAccessError as exc:
            raise StoreAccessError(
                f"{self._bucket.description} lists no object versions and does not say whether it keeps them "
                f"(GetBucketVersioning: {exc}); if it does, {gone}: grant s3:GetBucketVersioning; nothing was removed"
            ) from None
        if versioning in ("Enabled", "Suspended"):
            raise StoreAccessError(
                f"{self._bucket.description} keeps object versions (versioning {versioning}) but will not list them "
                f"(ListObjectVersions is not implemented there): {gone}, so nothing can be removed; reach the bucket "
                "through an endpoint that lists versions (storage.endpoint_url); nothing was removed"
            )
        self._keeps_none = True

    async def may_remove(self, key: str, *, bypass_governance: bool = False) -> None:
        """Whether these credentials may remove a version as :meth:`remove` does (DeleteObjects by
        version id, the GOVERNANCE bypass with it when asked), tried on the throwaway *key* before a
        caller writes what the removal is to make true (``erase``'s record). Removed is a delete
        marker written there (on a versioned bucket; no retention holds a marker, whatever the
        bucket's default), else a small object, under GOVERNANCE retention for a day when
        *bypass_governance*. Raises StoreAccessError naming the permission the store refused: what
        the probe left is then hidden by a plain DELETE where the store allows one (a version under
        retention stays until its retention ends). On success nothing of it is left."""
        client, bucket = self._bucket.client, self._bucket.name

        def write() -> None:
            if not bypass_governance and client.delete_object(Bucket=bucket, Key=key).get("VersionId"):
                return  # a delete marker, removed next by its version id
            args: dict[str, Any] = {"ChecksumSHA256": b64(hashlib.sha256(_PROBE).digest()), **self._bucket.encryption}
            if bypass_governance:  # only ever asked where a GOVERNANCE hold was found: the bucket has Object Lock
                args.update(ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=self._now() + timedelta(days=1))
            client.put_object(Bucket=bucket, Key=key, Body=_PROBE, ChecksumAlgorithm="SHA256", **args)

        try:
            await self._bucket.call(write, key)
        except StoreAccessError as exc:
            raise StoreAccessError(
                f"{self._bucket.description} refused these credentials the throwaway object {key}, on which a "
                f"removal is tried first (s3:PutObject, s3:DeleteObject"
                + (", and s3:PutObjectRetention with --bypass-governance" if bypass_governance else "")
                + f"): {exc}"
            ) from None
        needs = "s3:DeleteObjectVersion" + (" and s3:BypassGovernanceRetention" if bypass_governance else "")
        try:
            removal = await self.remove([key], bypass_governance=bypass_governance)
        except StoreAccessError as exc:
            await self._hide(key)
            raise StoreAccessError(
                f"{self._bucket.description} refused these credentials the removal of an object version "
                f"({needs}), tried on the throwaway object {key}: {exc}"
            ) from None
        if removal.held:
            await self._hide(key)
            raise StoreAccessError(
                f"{self._bucket.description} refused these credentials the removal of an object version under "
                f"GOVERNANCE retention ({needs}), tried on the throwaway object {key} (hidden now; its one small "
                "version may be removed once its retention ends, in a day)"
            )

    async def _hide(self, key: str) -> None:
        """A plain DELETE of what a refused probe left (on a versioned bucket, a marker over it)."""
        try:
            await self._bucket.delete(key)
        except StoreAccessError as exc:
            log.warning("store.probe_left", key=key, error=str(exc))

    async def remove_versions(self, versions: Sequence[StoredVersion], *, bypass_governance: bool = False) -> Removal:
        """Delete exactly *versions*, data versions before delete markers; versions the store keeps
        are returned as holds."""
        ordered = sorted(versions, key=lambda v: v.deleted)
        return await self._delete([(v.key, v.version_id, v.deleted) for v in ordered], bypass_governance)

    async def remove(
        self, keys: Sequence[str], *, bypass_governance: bool = False, prefix: str | None = None
    ) -> Removal:
        """Delete every version of *keys* (given *prefix*: of every key under it); versions the
        store keeps are returned as holds."""
        return await self._delete(await self._versions(keys, prefix), bypass_governance)

    async def _delete(self, versions: list[tuple[str, str | None, bool]], bypass_governance: bool) -> Removal:
        result = Removal()
        markers = {(key, version) for key, version, marker in versions if marker}
        for start in range(0, len(versions), _BATCH):
            batch = versions[start : start + _BATCH]
            refused = await self._delete_retrying(batch, bypass_governance)
            result.removed += len(batch) - len(refused)
            for key, version, code, message in refused:
                if code == _HIDDEN:
                    raise StoreAccessError(
                        f"{self._bucket.description} did not remove {key}: it wrote a delete marker and kept every "
                        "version, as a bucket that keeps versions does; it keeps versions it does not list, so "
                        "nothing can be removed there (reach the bucket through an endpoint that lists versions)"
                    )
                locked = code in _LOCKED and (key, version) not in markers  # no lock holds a delete marker
                hold = await self._hold(key, version) if locked else None
                if hold is None:
                    raise StoreAccessError(f"{self._bucket.description} refused to delete {key} ({code}: {message})")
                result.held.append(hold)
        if result.held:
            log.warning("object.held", objects=len(result.held), first=str(result.held[0]))
        return result

    async def _delete_retrying(
        self, batch: list[tuple[str, str | None, bool]], bypass: bool
    ) -> list[tuple[str, str | None, str, str]]:
        """Delete *batch*; the keys a DeleteObjects answer says failed for a passing reason
        (InternalError, SlowDown, …) are sent again, a few times with backoff, and then the
        removal stops as StoreUnavailable (a later run finishes it). The other refusals are
        returned: (key, version, code, message)."""
        pending, final = batch, []
        async for attempt in _PER_KEY_RETRY.context():
            with attempt:
                refused = await self._delete_batch(pending, bypass)
                asked = {k: v for k, v, _ in reversed(pending)}  # a refusal without a version: the key's first
                final += [(k, v or asked.get(k), c, m) for k, v, c, m in refused if c not in _PASSING]
                passing = [(key, version) for key, version, code, _ in refused if code in _PASSING]
                if passing:
                    # A refusal that names no version is about one of the key's: send them all again
                    # (deleting a version already gone is a success), never guess which.
                    whole = {key for key, version in passing if version is None}
                    pending = [v for v in pending if (v[0], v[1]) in passing or v[0] in whole]
                    codes = sorted({code for _, _, code, _ in refused if code in _PASSING})
                    raise StoreUnavailable(
                        f"{self._bucket.description} did not delete {len(passing)} object(s) this time "
                        f"({', '.join(codes)}), the first {pending[0][0]}"
                    )
        return final

    async def _delete_batch(
        self, batch: list[tuple[str, str | None, bool]], bypass: bool
    ) -> list[tuple[str, str | None, str, str]]:
        """Delete *batch* in one request; (key, version, code, message) of each refused (version
        None: the answer named none)."""
        objects = [{"Key": k, **({"VersionId": v} if v is not None else {})} for k, v, _ in batch]
        extra: dict[str, Any] = {"BypassGovernanceRetention": True} if bypass else {}
        # A key sent without a version id may come back as a delete marker written, not a removal:
        # then the answer must list what was deleted, not only what failed.
        quiet = all("VersionId" in o for o in objects)

        def delete() -> list[tuple[str, str | None, str, str]]:
            answer = self._bucket.client.delete_objects(
                Bucket=self._bucket.name,
                Delete={"Objects": objects, "Quiet": quiet},  # type: ignore[typeddict-item]
                **extra,
            )
            hidden = [
                (d.get("Key", ""), None, _HIDDEN, "the store wrote a delete marker and kept every version")
                for d in answer.get("Deleted", [])
                if d.get("DeleteMarker") and "VersionId" not in d  # a marker written, no version deleted
            ]
            return hidden + [
                (e.get("Key", ""), e.get("VersionId") or None, e.get("Code", ""), e.get("Message", ""))
                for e in answer.get("Errors", [])
            ]

        return await self._bucket.call(delete, batch[0][0])

    async def restore(self, key: str, days: int) -> None:
        """Ask for a readable copy of *key* for *days* days (Standard retrieval); one already on
        its way is left to finish, and an object not in an archive tier is readable as it is:
        nothing is asked."""
        head = await self._bucket.call(lambda: self._bucket.client.head_object(Bucket=self._bucket.name, Key=key), key)
        if head.get("StorageClass") not in ARCHIVE_TIERS and head.get("ArchiveStatus") is None:
            return
        request: dict[str, Any] = (
            {}  # INTELLIGENT_TIERING's archive tiers restore to its frequent tier, for no set time
            if head.get("StorageClass") == "INTELLIGENT_TIERING"
            else {"Days": days, "GlacierJobParameters": {"Tier": "Standard"}}
        )

        def restore() -> None:
            try:
                self._bucket.client.restore_object(Bucket=self._bucket.name, Key=key, RestoreRequest=request)  # type: ignore[arg-type]
            except botocore.exceptions.ClientError as exc:
                # Already on its way; or the object left its archive tier since the HEAD (InvalidObjectState).
                if exc.response.get("Error", {}).get("Code") not in ("RestoreAlreadyInProgress", "InvalidObjectState"):
                    raise

        await self._bucket.call(restore, key)
