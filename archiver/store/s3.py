"""The archive store on S3: create-only, checksummed writes of recordings and documents.

Writes are create-only (``If-None-Match: *``, on ``CompleteMultipartUpload`` too) and carry
``ChecksumSHA256`` so that the server rejects a body damaged on the way. Every request goes
through the bucket's one boto3 client (:mod:`.s3_bucket`). Bodies of ``multipart_threshold``
bytes or more go up in parts read straight from the download buffer with ``pread``, so memory
stays flat whatever the recording's size; smaller ones go up in one PUT, read from that buffer.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import IO, TYPE_CHECKING, Any

import anyio
import botocore.exceptions
import structlog

from archiver.config.models import ObjectLockConfig
from archiver.errors import CallError, ObjectExists, SpoolError, StoreAccessError, StoreUnavailable
from archiver.store import MULTIPART_THRESHOLD, Hold, ObjectInfo, Removal, StoredVersion, VersionAudit
from archiver.store.probe import discard
from archiver.store.s3_bucket import NOT_FOUND_CODES, S3Bucket, b64
from archiver.store.s3_removal import S3Removal
from archiver.store.s3_versions import S3VersionAudit

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

_READ_CHUNK = 1 << 20
# Bodies up to this size go up as bytes, read at once: botocore sends a file-like body with
# "Expect: 100-continue", a round trip to the store before the body, which only pays for
# itself when the store may refuse many megabytes.
_AS_BYTES = 1 << 20
log = structlog.get_logger("archiver.store")


class S3Store:
    """The archive in one bucket: the :class:`~archiver.store.Store` interface on S3.

    Every object gets the configured retention (``object_lock``), legal hold and the bucket's
    encryption settings. ``versions`` audits the bucket's object versions.
    """

    def __init__(
        self,
        bucket: S3Bucket,
        *,
        object_lock: ObjectLockConfig | None = None,
        legal_hold: bool = False,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = 16 << 20,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        look_before_write: bool = False,
        look_before_completing: bool = True,
    ) -> None:
        self._bucket = self.s3 = bucket
        self._look_first = look_before_write  # for servers that ignore If-None-Match (see config)
        self._look_before_completing = look_before_completing
        self._call = bucket.call
        self.bucket = bucket.name
        self.description = bucket.description
        self.versions: VersionAudit | None = S3VersionAudit(bucket, self._put_back_protection)
        self._removal = S3Removal(bucket, now)
        self._lock = object_lock
        self._extra: dict[str, Any] = {
            **({"ObjectLockLegalHoldStatus": "ON"} if legal_hold else {}),
            **bucket.encryption,
        }
        self._threshold = max(multipart_threshold, 1)  # every part but the last must be 5 MiB or more
        self._part_size = max(part_size, 5 << 20)
        self._now = now

    async def bucket_features(self) -> dict[str, str | None]:
        """The bucket's versioning, Object Lock and default retention, as ``check`` reports them."""
        return await self._bucket.bucket_features()

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        return self._bucket.list_keys(prefix)

    def list_folders(self, prefix: str, *, hidden: bool = False) -> AsyncIterator[str]:
        return self._bucket.list_folders(prefix, versions=hidden)

    def _lock_args(self) -> dict[str, Any]:
        """Retention, legal hold and encryption settings for every object written."""
        if self._lock is None:
            return dict(self._extra)
        until = self._now() + timedelta(days=self._lock.retain_days)
        return {"ObjectLockMode": self._lock.mode, "ObjectLockRetainUntilDate": until, **self._extra}

    def _put_back_protection(self, head: Mapping[str, Any]) -> dict[str, Any]:
        """What the copy that puts back a deleted recording carries (a copy inherits none of it):
        what every new object gets (encryption settings, ``storage.object_lock``,
        ``storage.legal_hold``), with the version's own Object Lock retention instead while it
        lasts, and its legal hold if it had one."""
        args = self._lock_args()
        mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
        if mode and until is not None and until > self._now():
            args.update(ObjectLockMode=mode, ObjectLockRetainUntilDate=until)
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            args["ObjectLockLegalHoldStatus"] = "ON"
        return args

    async def put(
        self,
        key: str,
        body: IO[bytes],
        *,
        size: int,
        sha256: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> str | None:
        common: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "Metadata": {"sha256": sha256.hex(), **(metadata or {})},
            # STANDARD is sent as no header at all: some S3-compatible stores know no other word.
            **({"StorageClass": storage_class} if storage_class not in (None, "STANDARD") else {}),
            **self._lock_args(),
        }
        if self._look_first and await self.head(key) is not None:
            raise ObjectExists(key)
        if size >= self._threshold:
            return await self._put_multipart(key, body, size, sha256, common)

        def put() -> None:
            body.seek(0)
            try:
                answer = self._client.put_object(
                    Body=_payload(body, size),
                    ContentLength=size,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=b64(sha256),
                    IfNoneMatch="*",
                    **common,
                )
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == "BadDigest":  # the store hashed other bytes than the download's: whose fault?
                    _check_buffer(body, size, sha256, key)
                raise
            self._stored(answer, key, b64(sha256))

        await self._call(put, key)
        return None

    async def _put_multipart(self, key: str, body: IO[bytes], size: int, sha256: bytes, common: dict[str, Any]) -> str:
        """Upload *body* in parts and complete it create-only, only if the parts, as read, are the
        bytes downloaded: each part's checksum is computed from the buffer as it is read (the store
        checks that), and so is a running SHA-256 of them all, compared with *sha256* before the
        upload is completed. A buffer damaged after the download is never stored.

        Returns the composite checksum the store keeps for the object (the SHA-256 of the parts'
        SHA-256s, base64), for the record to state."""
        if self._look_before_completing and await self.head(key) is not None:
            raise ObjectExists(key)  # stored by an earlier run: not uploaded again to find that out
        created = await self._call(
            lambda: self._client.create_multipart_upload(ChecksumAlgorithm="SHA256", **common), key
        )
        upload_id = created["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            whole = hashlib.sha256()
            for number, offset in enumerate(range(0, size, self._part_size), start=1):
                length = min(self._part_size, size - offset)
                upload = functools.partial(self._upload_part, key, upload_id, body, number, offset, length, whole)
                parts.append(await self._call(upload, key))
            if whole.digest() != sha256:
                raise _buffer_changed(key, whole.digest(), sha256)
            # Some stores ignore If-None-Match on completion (Ceph RGW 16): look first, so that
            # only a writer racing within this gap could still replace the key there.
            if self._look_before_completing and await self.head(key) is not None:
                raise ObjectExists(key)

            def complete() -> bool:
                try:
                    answer = self._client.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},
                        IfNoneMatch="*",
                    )
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) == "NoSuchUpload":
                        return False
                    raise
                self._stored(answer, key)
                return True

            if not await self._call(complete, key):
                await self._completed_before(key)
            return composite([base64.b64decode(part["ChecksumSHA256"]) for part in parts])
        except BaseException:
            # An abandoned upload is invisible and a lifecycle rule reaps it, so a failed abort is harmless.
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreUnavailable, StoreAccessError):
                await self._call(
                    lambda: self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                )
            raise

    def _stored(self, answer: Any, key: str, checksum: str | None = None) -> None:
        """An answer that says the object is stored carries its ETag (and, where the store echoes
        the checksum it was sent, that checksum): an empty 200 from something in front of the store
        (a proxy in maintenance, a WAF, a wrong endpoint) is not a stored object."""
        echoed = answer.get("ChecksumSHA256")
        said = any(answer.get(field) for field in ("ETag", "Key", "Location"))  # a completion's answer names these
        if not said or (checksum is not None and echoed is not None and echoed != checksum):
            raise StoreUnavailable(
                f"{self.description} answered the write of {key} without the ETag (or with another checksum) a store "
                "gives an object it stored: something in front of the store answered it? (storage.endpoint_url)"
            )

    async def _completed_before(self, key: str) -> None:
        """The store knows the upload no more. botocore retries a completion after a timeout or a
        5xx; when the first attempt had landed, MinIO, StorageGRID and others answer the retry
        NoSuchUpload. The object is then there: ObjectExists, and the caller checks its bytes as
        any existing object's. Not there: the upload was aborted (a lifecycle rule?), and the step
        may run again (StoreUnavailable)."""
        if await self.head(key) is not None:
            log.info("store.completion_answer_lost", key=key)
            raise ObjectExists(key)
        raise StoreUnavailable(
            f"{self.description} forgot the multipart upload of {key} before it was completed (does a lifecycle "
            "rule abort incomplete uploads too soon?)"
        )

    def _upload_part(
        self, key: str, upload_id: str, body: IO[bytes], number: int, offset: int, length: int, whole: Any
    ) -> CompletedPartTypeDef:
        section = _section(body, offset, length)
        hasher = hashlib.sha256()
        while chunk := section.read(_READ_CHUNK):
            hasher.update(chunk)
            whole.update(chunk)
        section.seek(0)
        checksum = b64(hasher.digest())
        result = self._client.upload_part(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=section,
            ContentLength=length,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": result["ETag"], "ChecksumSHA256": checksum}

    async def checksum_kept(self, key: str) -> str:
        """What the store does with a ChecksumSHA256 it is sent, tried with a throwaway object at
        *key* whose checksum is wrong: ``refused`` (it computes the SHA-256 of the bytes it receives
        and refuses a body that disagrees: AWS, MinIO), ``kept unchecked`` (it keeps what it was
        sent: moto) or ``none`` (it keeps no checksum: Ceph RGW 16). The object is removed."""
        data = b"archiver check: does the store check ChecksumSHA256?\n"
        wrong = b64(hashlib.sha256(data + b"not these bytes").digest())

        def put() -> bool:
            try:
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong
                )
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in ("BadDigest", "InvalidRequest", "XAmzContentChecksumMismatch", "InvalidDigest"):
                    return False
                raise
            return True

        if not await self._call(put, key):
            return "refused"
        try:
            info = await self.head(key)
        finally:
            await discard(self, key)
        return "kept unchecked" if info is not None and (info.sha256 or info.composite_sha256) else "none"

    async def head(self, key: str) -> ObjectInfo | None:
        def head() -> ObjectInfo | None:
            try:
                result = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES:
                    return None
                raise
            checksum = result.get("ChecksumSHA256")
            # A multipart upload's checksum is of its parts (some stores leave out the "-N").
            in_parts = "-" in str(result.get("ETag", "")) or result.get("ChecksumType") == "COMPOSITE"
            in_parts = in_parts or (checksum is not None and "-" in checksum)
            return ObjectInfo(
                key=key,
                size=int(result["ContentLength"]),
                sha256=base64.b64decode(checksum) if checksum and not in_parts else None,
                storage_class=result.get("StorageClass"),
                restore=result.get("Restore"),
                archive_status=result.get("ArchiveStatus"),
                composite_sha256=checksum.split("-", 1)[0] if checksum and in_parts else None,
                stated_sha256=_hex(result.get("Metadata", {}).get("sha256")),
                last_modified=result.get("LastModified"),
                answered_at=_answered_at(result),
            )

        return await self._call(head, key)

    async def read(self, key: str, max_bytes: int = 1 << 20, *, version_id: str | None = None) -> bytes:
        version = {"VersionId": version_id} if version_id not in (None, "null") else {}

        def read() -> bytes:
            stream = self._client.get_object(Bucket=self.bucket, Key=key, **version)["Body"]
            try:
                return bytes(stream.read(max_bytes + 1))
            finally:
                stream.close()

        data = await self._call(read, key)
        if len(data) > max_bytes:
            raise CallError(f"{key} is larger than {max_bytes} bytes")
        return data

    async def digest(self, key: str) -> tuple[int, bytes]:
        hasher, size = hashlib.sha256(), 0
        async for chunk in self.stream(key):
            hasher.update(chunk)
            size += len(chunk)
        return size, hasher.digest()

    async def stream(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"

        def get() -> Any:
            try:
                return self._client.get_object(**request)["Body"]
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == "InvalidRange":  # the range starts at or past the object's end: no bytes
                    return None
                raise

        body = await self._call(get, key)
        if body is None:
            return
        chunks = body.iter_chunks(_READ_CHUNK)
        try:
            while chunk := await self._call(lambda: next(chunks, b""), key):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await self._bucket.delete(key)

    async def holds(self, keys: Sequence[str]) -> list[Hold]:
        return await self._removal.holds(keys)

    async def remove(self, keys: Sequence[str], *, bypass_governance: bool = False) -> Removal:
        return await self._removal.remove(keys, bypass_governance=bypass_governance)

    async def may_remove(self, key: str, *, bypass_governance: bool = False) -> None:
        """See :meth:`S3Removal.may_remove`: *key* is a throwaway object's, under the control folder."""
        await self._removal.may_remove(key, bypass_governance=bypass_governance)

    async def versions_in(self, folder: str) -> list[StoredVersion]:
        return await self._removal.versions_in(folder)

    async def remove_versions(self, versions: Sequence[StoredVersion], *, bypass_governance: bool = False) -> Removal:
        return await self._removal.remove_versions(versions, bypass_governance=bypass_governance)

    async def restore(self, key: str, days: int) -> None:
        await self._removal.restore(key, days)

    @property
    def _client(self) -> Any:
        return self._bucket.client

    async def aclose(self) -> None:
        await self._bucket.aclose()


def composite(part_digests: list[bytes]) -> str:
    """S3's composite checksum of a multipart upload: the SHA-256 of its parts' SHA-256s, base64."""
    return b64(hashlib.sha256(b"".join(part_digests)).digest())


def _answered_at(result: dict[str, Any]) -> datetime | None:
    """The time of the store's answer, from its Date header (None when it sent none that parses)."""
    try:
        return parsedate_to_datetime(result["ResponseMetadata"]["HTTPHeaders"]["date"])
    except (KeyError, TypeError, ValueError):
        return None


def _hex(value: str | None) -> bytes | None:
    try:
        return bytes.fromhex(value) if value else None
    except ValueError:
        return None


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _check_buffer(body: IO[bytes], size: int, sha256: bytes, key: str) -> None:
    """Raise SpoolError when *body* no longer holds the *size* bytes of digest *sha256* downloaded."""
    body.seek(0)
    hasher = hashlib.sha256()
    while chunk := body.read(_READ_CHUNK):
        hasher.update(chunk)
    if hasher.digest() != sha256 or body.tell() != size:
        raise _buffer_changed(key, hasher.digest(), sha256)


def _buffer_changed(key: str, found: bytes, downloaded: bytes) -> SpoolError:
    log.error("spool.changed", key=key, sha256_read=found.hex(), sha256_downloaded=downloaded.hex())
    return SpoolError(
        f"the local download buffer of {key} no longer holds the bytes downloaded (SHA-256 {found.hex()[:16]}… "
        f"read back, {downloaded.hex()[:16]}… downloaded): nothing was stored; the call is tried again (is the "
        "spool disk failing? download.spool_dir)"
    )


class _FileSection(io.RawIOBase):
    """``length`` bytes of a file from ``offset``, read with ``pread`` (no shared position)."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd, self._offset, self._length, self._pos = fd, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        try:
            data = os.pread(self._fd, want, self._offset + self._pos)
        except OSError as exc:
            raise _local_fault(exc) from None
        if not data:  # the file ends inside this part: cut short since the download
            raise _cut_short(self._offset + self._pos, self._offset + self._length)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos


class _LocalFile(io.RawIOBase):
    """The local download buffer as botocore reads it. An OSError reading it (EIO, a vanished
    file) is the buffer's fault: raised as SpoolError, which neither urllib3 nor botocore take
    for a connection that failed (they would report an OSError as a store that did not answer)."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self._size = size  # what was downloaded: a buffer that ends sooner was cut short

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._raw.read(len(buffer))
        except OSError as exc:
            raise _local_fault(exc) from None
        if not data and self._raw.tell() < self._size:
            raise _cut_short(self._raw.tell(), self._size)
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _payload(body: IO[bytes], size: int) -> bytes | _LocalFile:
    """*body* (at its start) as botocore is given it: its bytes when small, else the file."""
    if size > _AS_BYTES:
        return _LocalFile(body, size)
    try:
        data = body.read(size)
    except OSError as exc:
        raise _local_fault(exc) from None
    if len(data) != size:
        raise _cut_short(len(data), size)
    return data


def _cut_short(found: int, size: int) -> SpoolError:
    """The local buffer ends before the bytes downloaded do (truncated since): the buffer's fault,
    said at once, where a store given fewer bytes than announced would wait for the rest."""
    log.error("spool.changed", bytes_read=found, bytes_downloaded=size)
    return SpoolError(
        f"the local download buffer holds {found} bytes where {size} were downloaded: nothing was stored; "
        "the call is tried again (is the spool disk failing? download.spool_dir)"
    )


def _local_fault(exc: OSError) -> SpoolError:
    log.error("spool.failed", error=exc.strerror, errno=exc.errno)
    return SpoolError(f"cannot read the local download buffer: {exc.strerror}")


def _section(body: IO[bytes], offset: int, length: int) -> IO[bytes]:
    try:
        fd = body.fileno()
    except (OSError, AttributeError, io.UnsupportedOperation):
        body.seek(offset)
        data = body.read(length)
        if len(data) != length:
            raise _cut_short(offset + len(data), offset + length) from None
        return io.BytesIO(data)
    return io.BufferedReader(_FileSection(fd, offset, length), buffer_size=_READ_CHUNK)
