"""One bucket on an S3-compatible server: the boto3 client, called off the event loop, and
its errors translated (AWS S3, MinIO, Ceph RGW, Wasabi, R2, moto).

boto3 is synchronous; each call runs in a worker thread under a capacity limiter. botocore's
exceptions are translated here and nowhere else: :class:`ObjectExists` for a failed
condition, :class:`StoreAccessError` for a refusal a person must fix, :class:`StoreUnavailable`
for what may pass. The archive store, the control store and the version audit all talk to
their bucket through this class.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import botocore.exceptions

from archiver.errors import ObjectExists, ObjectMissing, StoreAccessError, StoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

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
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
REDIRECT_CODES = frozenset(
    {"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)


class S3Bucket:
    """Calls on *bucket* through *client*, translated; ``encryption`` goes on every write."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        endpoint: str | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
    ) -> None:
        self.client = client
        self.name = bucket
        self.description = f"s3://{bucket}" + (f" at {endpoint}" if endpoint else "")
        self._limiter = limiter or anyio.CapacityLimiter(16)
        self.encryption: dict[str, Any] = {}
        if sse:
            self.encryption["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self.encryption["SSEKMSKeyId"] = sse_kms_key_id

    async def call(self, fn: Callable[[], T], key: str | None = None) -> T:
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
            raise self.unanswered(type(exc).__name__) from None

    def unanswered(self, why: str) -> StoreUnavailable:
        return StoreUnavailable(f"{self.description} did not answer: {why}")

    def _translate(self, exc: botocore.exceptions.ClientError, key: str | None) -> Exception:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return self.refusal(str(error.get("Code", "")), status, str(error.get("Message", "")), key)

    def refusal(self, code: str, status: int, message: str, key: str | None) -> Exception:
        what = f"{self.description}{f' key {key!r}' if key else ''}"
        if code == "PreconditionFailed" or status == 412:
            return ObjectExists(key or "")
        if code in NOT_FOUND_CODES and key:
            return ObjectMissing(key)
        if code == "NoSuchBucket":
            return StoreAccessError(f"bucket {self.name!r} does not exist ({self.description})")
        if code in _ACCESS_CODES or status == 403:
            return StoreAccessError(
                f"{what} refused access ({code or status}): check the AWS credentials and the bucket policy"
            )
        if code in _RETRY_CODES or status >= 500 or status == 429:
            return StoreUnavailable(f"{what} answered {code or status}: {message}".rstrip(": "))
        return StoreAccessError(f"{what} refused the request ({code or status}): {message}")

    async def bucket_features(self) -> dict[str, str | None]:
        """The bucket's versioning, Object Lock and default retention, as ``check`` reports them."""

        def read() -> dict[str, str | None]:
            versioning = self.client.get_bucket_versioning(Bucket=self.name).get("Status")
            default: str | None = None
            try:
                lock = self.client.get_object_lock_configuration(Bucket=self.name)["ObjectLockConfiguration"]
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

        return await self.call(read)

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            page = await self.call(lambda a=args: self.client.list_objects_v2(**a))  # type: ignore[misc]
            for item in page.get("Contents", []):
                yield item["Key"]
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def list_folders(self, prefix: str) -> AsyncIterator[str]:
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "Delimiter": "/", "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            page = await self.call(lambda a=args: self.client.list_objects_v2(**a))  # type: ignore[misc]
            for common in page.get("CommonPrefixes", []):
                yield common["Prefix"][len(prefix) :].rstrip("/")
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def delete(self, key: str) -> None:
        await self.call(lambda: self.client.delete_object(Bucket=self.name, Key=key), key)

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.client.close)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
