"""The S3 store: AWS S3 and compatible servers (MinIO, Ceph RGW, Wasabi, R2, moto).

boto3 is synchronous; each call runs in a worker thread under a capacity limiter. Writes are
create-only (``If-None-Match: *``, on ``CompleteMultipartUpload`` too) and carry
``ChecksumSHA256`` so that the server rejects a body damaged on the way. Bodies of
``multipart_threshold`` bytes or more go up in parts read straight from the download buffer
with ``pread``, so memory stays flat whatever the recording's size.

botocore's exceptions are translated here and nowhere else.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import os
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import botocore.exceptions
import structlog

from archiver.config.models import ObjectLockConfig
from archiver.errors import CallError, ObjectExists, StoreAccessError, StoreUnavailable
from archiver.store import ObjectInfo
from archiver.store.s3put import DirectPut, PutRefused, PutUnanswered

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

T = TypeVar("T")
log = structlog.get_logger("archiver.store")

_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AccountProblem",
        "InvalidBucketState",
        "InvalidObjectState",
    }
)
_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "ConditionalRequestConflict",
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "InvalidDigest",
        "OperationAborted",
        "RequestTimeTooSkewed",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_REDIRECT_CODES = frozenset(
    {"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
_HEADERS = {
    "ObjectLockMode": "x-amz-object-lock-mode",
    "ObjectLockRetainUntilDate": "x-amz-object-lock-retain-until-date",
    "ObjectLockLegalHoldStatus": "x-amz-object-lock-legal-hold",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
}
_READ_CHUNK = 1 << 20


class S3Store:
    """A bucket (and key prefix) on an S3-compatible server."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        endpoint: str | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        object_lock: ObjectLockConfig | None = None,
        legal_hold: bool = False,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        multipart_threshold: int = 64 << 20,
        part_size: int = 16 << 20,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        direct_put: DirectPut | None = None,
    ) -> None:
        self._client = client
        self._direct = direct_put
        self._direct_on = direct_put is not None
        self.bucket = bucket
        self.description = f"s3://{bucket}" + (f" at {endpoint}" if endpoint else "")
        self._limiter = limiter or anyio.CapacityLimiter(16)
        self._lock = object_lock
        self._extra: dict[str, Any] = {}
        if legal_hold:
            self._extra["ObjectLockLegalHoldStatus"] = "ON"
        if sse:
            self._extra["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._extra["SSEKMSKeyId"] = sse_kms_key_id
        self._threshold = max(multipart_threshold, 5 << 20)
        self._part_size = max(part_size, 5 << 20)
        self._now = now

    async def _call(self, fn: Callable[[], T], key: str | None = None) -> T:
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        except botocore.exceptions.ClientError as exc:
            raise self._translate(exc, key) from None
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
            raise StoreAccessError(
                f"no AWS credentials for {self.description}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role"
            ) from None
        except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError) as exc:
            raise self._unanswered(type(exc).__name__) from None

    def _unanswered(self, why: str) -> StoreUnavailable:
        return StoreUnavailable(f"{self.description} did not answer: {why}")

    def _translate(self, exc: botocore.exceptions.ClientError, key: str | None) -> Exception:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return self._refusal(str(error.get("Code", "")), status, str(error.get("Message", "")), key)

    def _refusal(self, code: str, status: int, message: str, key: str | None) -> Exception:
        what = f"{self.description}{f' key {key!r}' if key else ''}"
        if code == "PreconditionFailed" or status == 412:
            return ObjectExists(key or "")
        if code == "NoSuchBucket":
            return StoreAccessError(f"bucket {self.bucket!r} does not exist ({self.description})")
        if code in _ACCESS_CODES or status == 403:
            return StoreAccessError(
                f"{what} refused access ({code or status}): check the AWS credentials and the bucket policy"
            )
        if code in _RETRY_CODES or status >= 500 or status == 429:
            return StoreUnavailable(f"{what} answered {code or status}: {message}".rstrip(": "))
        return StoreAccessError(f"{what} refused the request ({code or status}): {message}")

    def _lock_args(self) -> dict[str, Any]:
        """Retention, legal hold and encryption settings for every object written."""
        if self._lock is None:
            return dict(self._extra)
        until = self._now() + timedelta(days=self._lock.retain_days)
        return {"ObjectLockMode": self._lock.mode, "ObjectLockRetainUntilDate": until, **self._extra}

    async def bucket_features(self) -> dict[str, str | None]:
        """The bucket's versioning, Object Lock and default retention, as ``check`` reports them."""

        def read() -> dict[str, str | None]:
            versioning = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            default: str | None = None
            try:
                lock = self._client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
                lock_state: str | None = lock.get("ObjectLockEnabled")
                rule = lock.get("Rule", {}).get("DefaultRetention")
                if rule:
                    span = f"{rule['Days']} days" if "Days" in rule else f"{rule.get('Years')} years"
                    default = f"{rule.get('Mode')} {span}"
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                    raise
                lock_state = None
            return {"versioning": versioning, "object_lock": lock_state, "default_retention": default}

        return await self._call(read)

    async def put(
        self,
        key: str,
        body: IO[bytes],
        *,
        size: int,
        sha256: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        common: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "Metadata": {"sha256": sha256.hex(), **(metadata or {})},
            **self._lock_args(),
        }
        if size >= self._threshold:
            await self._put_multipart(key, body, size, common)
            return
        if self._direct_on and await self._put_direct(key, body, size, sha256, common):
            return

        def put() -> None:
            body.seek(0)
            self._client.put_object(
                Body=body,
                ContentLength=size,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(sha256),
                IfNoneMatch="*",
                **common,
            )

        await self._call(put, key)

    async def _put_direct(self, key: str, body: IO[bytes], size: int, sha256: bytes, common: dict[str, Any]) -> bool:
        """PUT through the direct path; False when it cannot serve this bucket (boto3 then will)."""
        assert self._direct is not None
        try:
            await self._direct.put(key, body, size=size, sha256=sha256, headers=_put_headers(common))
        except PutUnanswered as exc:
            raise self._unanswered(str(exc)) from None
        except PutRefused as exc:
            if 300 <= exc.status < 400 or exc.code in _REDIRECT_CODES:
                # The bucket lives in another region than storage.region says: boto3 follows that.
                log.warning("store.direct_put_off", reason=exc.code or exc.status)
                self._direct_on = False
                return False
            raise self._refusal(exc.code, exc.status, exc.message, key) from None
        return True

    async def _put_multipart(self, key: str, body: IO[bytes], size: int, common: dict[str, Any]) -> None:
        created = await self._call(
            lambda: self._client.create_multipart_upload(ChecksumAlgorithm="SHA256", **common), key
        )
        upload_id = created["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            for number, offset in enumerate(range(0, size, self._part_size), start=1):
                length = min(self._part_size, size - offset)
                upload = functools.partial(self._upload_part, key, upload_id, body, number, offset, length)
                parts.append(await self._call(upload, key))
            await self._call(
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                ),
                key,
            )
        except BaseException:
            # An abandoned upload is invisible and a lifecycle rule reaps it, so a failed abort is harmless.
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreUnavailable, StoreAccessError):
                await self._call(
                    lambda: self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                )
            raise

    def _upload_part(
        self, key: str, upload_id: str, body: IO[bytes], number: int, offset: int, length: int
    ) -> CompletedPartTypeDef:
        section = _section(body, offset, length)
        hasher = hashlib.sha256()
        while chunk := section.read(_READ_CHUNK):
            hasher.update(chunk)
        section.seek(0)
        checksum = _b64(hasher.digest())
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

    async def head(self, key: str) -> ObjectInfo | None:
        def head() -> ObjectInfo | None:
            try:
                result = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                    return None
                raise
            return ObjectInfo(key=key, size=int(result["ContentLength"]), sha256=_known_sha256(result))

        return await self._call(head, key)

    async def read(self, key: str, max_bytes: int = 1 << 20) -> bytes:
        def read() -> bytes:
            stream = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                data: bytes = stream.read(max_bytes + 1)
            finally:
                stream.close()
            if len(data) > max_bytes:
                raise CallError(f"{key} is larger than {max_bytes} bytes")
            return data

        return await self._call(read, key)

    async def digest(self, key: str) -> tuple[int, bytes]:
        def digest() -> tuple[int, bytes]:
            stream = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            hasher, size = hashlib.sha256(), 0
            try:
                for chunk in stream.iter_chunks(_READ_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
            finally:
                stream.close()
            return size, hasher.digest()

        return await self._call(digest, key)

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            page = await self._call(lambda a=args: self._client.list_objects_v2(**a))  # type: ignore[misc]
            for item in page.get("Contents", []):
                yield item["Key"]
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def put_conditional(self, key: str, data: bytes, *, if_match: str | None) -> str:
        """Write a small control object: create-only (*if_match* None) or only over the version
        with that ETag. Returns the new ETag; raises ObjectExists when the condition fails.

        Control objects carry no retention or legal hold: they are replaced as they are used.
        """
        condition: dict[str, Any] = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        encryption: dict[str, Any] = {
            k: v for k, v in self._extra.items() if k in ("ServerSideEncryption", "SSEKMSKeyId")
        }

        def put() -> str:
            result = self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
                **condition,
                **encryption,
            )
            return str(result["ETag"])

        return await self._call(put, key)

    async def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """A control object's bytes and ETag, or None when there is none."""

        def read() -> tuple[bytes, str] | None:
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                    return None
                raise
            stream = response["Body"]
            try:
                return stream.read(1 << 20), str(response["ETag"])
            finally:
                stream.close()

        return await self._call(read, key)

    async def replaced_keys(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        """Keys under *prefix* that were overwritten or deleted since written: (key, what).

        On a versioned bucket the archive's create-only writes leave exactly one version per key;
        a second version or a delete marker means someone else wrote there.
        """
        marker: dict[str, Any] = {}
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, **marker}
            page = await self._call(lambda a=args: self._client.list_object_versions(**a))  # type: ignore[misc]
            counts: dict[str, int] = {}
            for version in page.get("Versions", []):
                counts[version["Key"]] = counts.get(version["Key"], 0) + 1
            for key, count in sorted(counts.items()):
                if count > 1:
                    yield key, f"{count} versions: it was overwritten after it was archived"
            for deleted in page.get("DeleteMarkers", []):
                yield deleted["Key"], "a delete marker: it was deleted after it was archived"
            if not page.get("IsTruncated"):
                return
            marker = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page.get("NextVersionIdMarker", "")}

    async def delete(self, key: str) -> None:
        await self._call(lambda: self._client.delete_object(Bucket=self.bucket, Key=key), key)

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()
        await anyio.to_thread.run_sync(self._client.close)


def _put_headers(common: Mapping[str, Any]) -> dict[str, str]:
    """PutObject's arguments (as S3Store.put builds them) as the HTTP headers S3 reads."""
    headers = {"Content-Type": str(common["ContentType"])}
    for name, value in common["Metadata"].items():
        headers[f"x-amz-meta-{name}"] = value
    for arg, header in _HEADERS.items():
        value = common.get(arg)
        if isinstance(value, datetime):
            value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if value is not None:
            headers[header] = str(value)
    return headers


def _known_sha256(head: Any) -> bytes | None:
    """The object's whole-body SHA-256 if the store can vouch for it without a read.

    A server-checked ``ChecksumSHA256`` counts unless it is a multipart composite (``-N``
    suffix, or ``ChecksumType: COMPOSITE``); our own ``sha256`` metadata counts too. When both
    are there and disagree, neither is trusted and the caller reads the bytes.
    """
    found = set()
    checksum = head.get("ChecksumSHA256")
    if checksum and "-" not in checksum and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        found.add(base64.b64decode(checksum))
    meta = head.get("Metadata", {}).get("sha256")
    if meta:
        try:
            found.add(bytes.fromhex(meta))
        except ValueError:
            return None
    return found.pop() if len(found) == 1 else None


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


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
        data = os.pread(self._fd, want, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos


def _section(body: IO[bytes], offset: int, length: int) -> IO[bytes]:
    try:
        fd = body.fileno()
    except (OSError, AttributeError, io.UnsupportedOperation):
        body.seek(offset)
        return io.BytesIO(body.read(length))
    return io.BufferedReader(_FileSection(fd, offset, length), buffer_size=_READ_CHUNK)
