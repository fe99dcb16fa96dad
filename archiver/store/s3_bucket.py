"""One bucket on an S3-compatible server (AWS S3, MinIO, Ceph RGW, Wasabi, R2, moto): its
requests, over the direct path (:mod:`.s3wire`) or boto3, and their errors translated.

The direct path carries the working requests (PUT, GET, HEAD, listings, DELETE); boto3 is
made on first use, for what the direct path does not do (multipart uploads, bucket settings,
version audits) and for everything once the direct path is off (the bucket answered with a
redirect to another region, which boto3 follows). boto3 is synchronous; each call runs in a
worker thread under a capacity limiter.

Errors are translated here and nowhere else: :class:`ObjectExists` for a failed condition,
:class:`StoreAccessError` for a refusal a person must fix, :class:`StoreUnavailable` for what
may pass. The archive store, the control store and the version audit all talk to their bucket
through this class.
"""

from __future__ import annotations

import base64
import enum
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import structlog

from archiver.errors import ObjectExists, ObjectMissing, StoreAccessError, StoreUnavailable
from archiver.retry import RetryPolicy
from archiver.store.s3wire import Listing, S3Wire, WireRefused, WireUnanswered

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
log = structlog.get_logger("archiver.store")

# Reads, listings and deletes over the direct path are tried again as boto3's standard mode
# tries them: four attempts in all, for what may pass.
_RETRY = RetryPolicy(attempts=4, timeout=60.0, wait_initial=0.2, wait_max=5.0)


class Off(enum.Enum):
    """What a direct request returns when the direct path turned itself off: ask boto3."""

    OFF = "off"


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
    """Requests on *bucket*, translated; ``encryption`` goes on every write.

    *client* is the boto3 client, or a function that makes it (called once, on first use).
    *wire*, when given, carries the working requests until the bucket redirects it.
    """

    def __init__(
        self,
        client: S3Client | Callable[[], S3Client],
        bucket: str,
        *,
        endpoint: str | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        wire: S3Wire | None = None,
        route: str | None = None,
    ) -> None:
        self._client: S3Client | None = None if callable(client) else client
        self._make_client = client if callable(client) else None
        self._client_lock = threading.Lock()
        self.wire = wire
        self._wire = wire  # kept to close it when it was turned off
        # How requests go, as check reports it (compose says why when boto3 had to resolve them).
        self.route = route or ("direct (aiohttp)" if wire is not None else "boto3")
        self.name = bucket
        self.description = f"s3://{bucket}" + (f" at {endpoint}" if endpoint else "")
        self._limiter = limiter or anyio.CapacityLimiter(16)
        self.encryption: dict[str, Any] = {}
        if sse:
            self.encryption["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self.encryption["SSEKMSKeyId"] = sse_kms_key_id

    @property
    def client(self) -> S3Client:
        """The boto3 client, made on first use (importing boto3 costs ~0.25 s of CPU)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    assert self._make_client is not None
                    self._client = self._make_client()
        return self._client

    async def direct(self, send: Callable[[S3Wire], Awaitable[T]], key: str | None = None, *, retry: bool) -> T | Off:
        """*send* over the direct path, translated; ``Off.OFF`` when there is none (any more).

        With *retry* (idempotent requests), what may pass is tried again, as boto3 would.
        """
        if self.wire is None:
            return Off.OFF
        if not retry:
            return await self._direct_once(send, key)
        async for attempt in _RETRY.context():
            with attempt:
                return await self._direct_once(send, key)
        raise AssertionError("unreachable: the retry context raises when it gives up")

    async def _direct_once(self, send: Callable[[S3Wire], Awaitable[T]], key: str | None) -> T | Off:
        if self.wire is None:
            return Off.OFF
        try:
            return await send(self.wire)
        except (WireRefused, WireUnanswered) as exc:
            return self.settle(exc, key)

    def settle(self, exc: WireRefused | WireUnanswered, key: str | None) -> Off:
        """What a direct-path failure means: ``Off.OFF`` when the bucket redirected us (the
        direct path is turned off, boto3 asks again), else the store's own error, raised."""
        if isinstance(exc, WireRefused) and (300 <= exc.status < 400 or exc.code in REDIRECT_CODES):
            # The bucket lives in another region than storage.region says: boto3 follows that.
            log.warning("store.direct_off", bucket=self.name, reason=exc.code or exc.status)
            self.wire = None
            self.route = f"boto3: the bucket answered the direct path with {exc.code or exc.status}"
            return Off.OFF
        if isinstance(exc, WireUnanswered):
            raise self.unanswered(str(exc)) from None
        raise self.refusal(exc.code, exc.status, exc.message, key) from None

    async def call(self, fn: Callable[[], T], key: str | None = None) -> T:
        import botocore.exceptions  # noqa: PLC0415 (boto3 is loaded only when a call needs it)

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

    def _translate(self, exc: Any, key: str | None) -> Exception:
        """A botocore ClientError as the store's own."""
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

        import botocore.exceptions  # noqa: PLC0415

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
        async for page in self._pages(prefix):
            for key in page.keys:
                yield key

    async def list_folders(self, prefix: str) -> AsyncIterator[str]:
        async for page in self._pages(prefix, delimiter="/"):
            for folder in page.folders:
                yield folder[len(prefix) :].rstrip("/")

    async def _pages(self, prefix: str, *, delimiter: str | None = None) -> AsyncIterator[Listing]:
        """The listing of *prefix* a page (up to 1,000 entries) at a time: over the direct path,
        or through boto3 from the page where the direct path turned itself off."""
        token: str | None = None
        while True:
            listed = await self.direct(
                partial(S3Wire.list, prefix=prefix, delimiter=delimiter, token=token), retry=True
            )
            page = (
                listed
                if isinstance(listed, Listing)
                else await self.call(partial(self._boto3_page, prefix, delimiter, token))
            )
            yield page
            if page.next_token is None:
                return
            token = page.next_token

    def _boto3_page(self, prefix: str, delimiter: str | None, token: str | None) -> Listing:
        args: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxKeys": 1000}
        if delimiter:
            args["Delimiter"] = delimiter
        if token:
            args["ContinuationToken"] = token
        page = self.client.list_objects_v2(**args)
        return Listing(
            keys=[item["Key"] for item in page.get("Contents", [])],
            folders=[common["Prefix"] for common in page.get("CommonPrefixes", [])],
            next_token=page.get("NextContinuationToken") if page.get("IsTruncated") else None,
        )

    async def delete(self, key: str) -> None:
        if await self.direct(lambda w: w.delete(key), key, retry=True) is Off.OFF:
            await self.call(lambda: self.client.delete_object(Bucket=self.name, Key=key), key)

    async def aclose(self) -> None:
        if self._wire is not None:
            await self._wire.aclose()
        if self._client is not None:
            await anyio.to_thread.run_sync(self._client.close)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
