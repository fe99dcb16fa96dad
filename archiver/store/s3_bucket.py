"""One bucket on an S3-compatible server (AWS S3, MinIO, Ceph RGW, Wasabi, R2, B2, moto): its
requests through one boto3 client, and their errors translated.

boto3 is synchronous and its client thread-safe: every request runs in an anyio worker thread
under a capacity limiter, so nothing blocks the event loop: neither the request nor what
botocore does around it (resolving and refreshing credentials from an instance role, SSO or web
identity, which happens inside the first request that needs them). botocore's own retry loop
(standard mode, configured where the client is made) is the one retry around each request;
an outage that outlasts it reaches the caller as :class:`StoreUnavailable`.

Errors are translated here and nowhere else: :class:`ObjectExists` for a failed condition,
:class:`ObjectMissing` for a read of a missing key, :class:`StoreAccessError` for a refusal a
person must fix (each message names the cause and the setting to look at),
:class:`StoreUnavailable` for what may pass.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
import botocore.exceptions
import botocore.utils

from archiver.errors import (
    CallError,
    ObjectExists,
    ObjectInColdStorage,
    ObjectMissing,
    SpoolError,
    StoreAccessError,
    StoreConflict,
    StoreUnavailable,
)
from archiver.store import Version

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIALS = "the access key pair (storage.credentials_file, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
# Codes a person must act on, with what to look at. Each is final: retrying changes nothing.
_ACTION = {
    "InvalidAccessKeyId": f"does not know the access key: check {_CREDENTIALS}",
    "SignatureDoesNotMatch": (
        "refused the request's signature: the secret key does not match the access key, or something between "
        f"here and the store changed the request (a proxy?); check {_CREDENTIALS} and any HTTPS_PROXY"
    ),
    "InvalidToken": "refused the session token: check AWS_SESSION_TOKEN or the instance role",
    "ExpiredToken": "says the session token has expired: renew the credentials (AWS_SESSION_TOKEN, SSO login)",
    "RequestTimeTooSkewed": (
        "says this machine's clock is too far from its own (S3 allows 15 minutes): set the clock (NTP)"
    ),
    "XAmzContentSHA256Mismatch": (
        "refused the payload hash it was sent (x-amz-content-sha256): something between here and the store "
        "changed the body (a proxy?), or the store does not read botocore's payload signing; check "
        "storage.endpoint_url and any HTTPS_PROXY"
    ),
    "InvalidDigest": (
        "refused the checksum header it was sent (x-amz-checksum-sha256): the store does not read S3's "
        "additional checksums"
    ),
    "InvalidArgument": "refused an argument of the request",
    "NotImplemented": "does not implement a feature the request uses",
    "AccessDenied": (
        "refused access: check the bucket policy and the credentials' permissions "
        "(s3:PutObject, s3:GetObject, s3:ListBucket)"
    ),
    "AllAccessDisabled": "has all access to the bucket disabled",
    "AccountProblem": "reports a problem with the account",
    "InvalidBucketState": "says the bucket is in a state that forbids this request",
    "InvalidObjectState": "says the object is not readable now (an archive storage class?)",
    "InvalidRequest": "refused the request",
}
_REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301"}
)
_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "BadDigest",
        "OperationAborted",
        "Throttling",
        "TooManyRequests",
    }
)


@dataclass(frozen=True)
class Page:
    """One page of a listing: keys and folders (common prefixes)."""

    keys: list[str]
    folders: list[str]


@dataclass(frozen=True)
class VersionPage:
    """One page of a version listing: (key, version) of each version and delete marker on it, and
    the key the next page goes on with (its versions may span both; None on the last page)."""

    versions: list[tuple[str, Version]]
    next_key: str | None


class NoVersionListing(Exception):
    """The store does not list versions (Cloudflare R2): it keeps one version per key."""


_NO_VERSION_LISTING = frozenset({"NotImplemented", "MethodNotAllowed", "XNotImplemented"})


class _Client:
    """The one boto3 client of a bucket, made at its first use (in a worker thread) and shared by
    every view of the bucket (see :meth:`S3Bucket.with_limiter`)."""

    def __init__(self, client: S3Client | Callable[[], S3Client]) -> None:
        self._client: S3Client | None = None if callable(client) else _prepared(client)
        self._make = client if callable(client) else None
        self._lock = threading.Lock()

    def get(self) -> S3Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    assert self._make is not None
                    self._client = _prepared(self._make())
        return self._client

    def made(self) -> S3Client | None:
        return self._client


class S3Bucket:
    """Requests on *bucket* through *client*; ``encryption`` goes on every write.

    *client* is the boto3 client, or a function that makes it: called once, in a worker thread,
    at the first request (making one reads the AWS config files and may ask an instance role for
    credentials, which must not happen on the event loop). *limiter* bounds the requests at once.
    *setting* is the configuration key that names the bucket, for messages.
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
        setting: str = "storage.url",
    ) -> None:
        self._holder = _Client(client)
        self.setting = setting
        self.name = bucket
        self.description = f"s3://{bucket}" + (f" at {_without_userinfo(endpoint)}" if endpoint else "")
        self._limiter = limiter or anyio.CapacityLimiter(16)
        self.encryption: dict[str, Any] = {}
        if sse:
            self.encryption["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self.encryption["SSEKMSKeyId"] = sse_kms_key_id

    def with_limiter(self, limiter: anyio.CapacityLimiter) -> S3Bucket:
        """The same bucket, through the same client, under a limiter of its own: control requests
        (lease renewals) must not queue behind the archive's part uploads."""
        view = copy.copy(self)
        view._limiter = limiter
        return view

    @property
    def client(self) -> S3Client:
        """The boto3 client. Only a worker thread (inside :meth:`call`) may ask for it first."""
        return self._holder.get()

    async def call(self, fn: Callable[[], T], key: str | None = None) -> T:
        """Run *fn* (which uses :attr:`client`) in a worker thread; botocore's errors translated."""
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        except botocore.exceptions.ClientError as exc:
            raise self._translate(exc, key) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate_local(exc) from None

    def _translate_local(self, exc: botocore.exceptions.BotoCoreError) -> Exception:
        """An error botocore raised without an answer from the store: credentials, TLS, the network."""
        if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
            return StoreAccessError(
                f"no AWS credentials for {self.description}: set storage.credentials_file, AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role"
            )
        if isinstance(exc, botocore.exceptions.ProfileNotFound):
            return StoreAccessError(
                f"the AWS profile for {self.description} does not exist ({exc}): check AWS_PROFILE, and the profiles "
                "in storage.credentials_file, ~/.aws/credentials or ~/.aws/config"
            )
        if isinstance(exc, botocore.exceptions.SSOError | botocore.exceptions.TokenRetrievalError):
            return StoreAccessError(
                f"the AWS SSO session for {self.description} has expired or was never started ({type(exc).__name__}): "
                "run `aws sso login` for the profile (AWS_PROFILE), or give the archiver credentials of its own "
                "(storage.credentials_file)"
            )
        if isinstance(exc, botocore.exceptions.ConfigParseError | botocore.exceptions.ConfigNotFound):
            return StoreAccessError(f"the AWS configuration for {self.description} cannot be read: {exc}")
        if isinstance(exc, botocore.exceptions.CredentialRetrievalError):
            provider = getattr(exc, "kwargs", {}).get("provider", "the credential provider")
            # Not its message: a credential_process's error output may hold anything, a secret too.
            return StoreAccessError(
                f"the AWS credentials for {self.description} could not be fetched from {provider}: run it by hand to "
                "see why, or give the archiver credentials of its own (storage.credentials_file)"
            )
        text = str(exc)
        if isinstance(exc, botocore.exceptions.SSLError) and "certificate" in text.lower():
            return StoreAccessError(
                f"{self.description}'s TLS certificate was not accepted ({_tls_reason(exc)}): check "
                "storage.endpoint_url (its host name must be one the certificate names), or give the CA that signed "
                "it in AWS_CA_BUNDLE"
            )
        if isinstance(exc, botocore.exceptions.SSLError) and any(m in text.upper() for m in _NOT_TLS):
            return StoreAccessError(
                f"{self.description} does not speak TLS on that port: check storage.endpoint_url (http:// or "
                "https://, and the port)"
            )
        if isinstance(exc, botocore.exceptions.HTTPClientError | botocore.exceptions.ConnectionError):
            cause = exc.kwargs.get("error")
            if isinstance(cause, SpoolError):  # our own buffer failed while botocore sent it
                return cause
            return StoreUnavailable(f"{self.description} did not answer: {type(exc).__name__}")
        if isinstance(exc, botocore.exceptions.IncompleteReadError | botocore.exceptions.ChecksumError):
            return StoreUnavailable(f"{self.description} cut an answer short or damaged it: {exc}")
        return StoreAccessError(f"the request to {self.description} could not be made ({type(exc).__name__}: {exc})")

    def _translate(self, exc: botocore.exceptions.ClientError, key: str | None) -> Exception:
        """A botocore ClientError as the store's own."""
        response: Any = exc.response
        error = response.get("Error", {})
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        code, message = str(error.get("Code", "")), str(error.get("Message") or "")
        what = f"{self.description}{f' (key {key!r})' if key else ''}"
        if code == "PreconditionFailed" or status == 412:
            return ObjectExists(key or "")
        if code in NOT_FOUND_CODES and key:
            return ObjectMissing(key)
        if code == "InvalidObjectState" and key:  # a GET of an object in an archive tier
            return ObjectInColdStorage(key, error.get("StorageClass"))
        if code == "NoSuchBucket":
            return StoreAccessError(f"bucket {self.name!r} does not exist ({self.description}): check {self.setting}")
        if code in _REGION_CODES:
            region = error.get("Region") or _region_in(message)
            hint = f"set storage.region: {region}" if region else "check storage.region and storage.endpoint_url"
            return StoreAccessError(f"{what} is in another region than the request was signed for ({code}): {hint}")
        if code in _ACTION:
            return StoreAccessError(f"{what} {_ACTION[code]} ({code}{': ' + message if message else ''})")
        if code == "ConditionalRequestConflict":
            return StoreConflict(f"{what} was being written by another request at the same time ({code})")
        if code == "NoSuchUpload":  # aborted under us: a cleanup tool, a lifecycle rule; the upload may start again
            return StoreUnavailable(
                f"{what}: the store forgot the multipart upload while its parts were going up (does a tool or a "
                "lifecycle rule abort incomplete uploads too soon?)"
            )
        if code == "InvalidRange":
            return CallError(f"{what} is shorter than the range asked of it ({code}): it has changed?")
        if code in _RETRY_CODES or status >= 500 or status == 429:
            return StoreUnavailable(f"{what} answered {code or status}{': ' + message if message else ''}")
        if status == 403:  # no code: a HEAD's answer has no body to say why
            return StoreAccessError(f"{what} refused access (HTTP 403): check {_CREDENTIALS} and the bucket policy")
        return StoreAccessError(f"{what} refused the request ({code or status}){': ' + message if message else ''}")

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

    async def lifecycle_rules(self) -> list[dict[str, Any]] | None:
        """The bucket's lifecycle rules ([] for none; None when the store has no lifecycle API)."""

        def read() -> list[dict[str, Any]] | None:
            try:
                answer = self.client.get_bucket_lifecycle_configuration(Bucket=self.name)
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "NoSuchLifecycleConfiguration":
                    return []
                if code in ("NotImplemented", "MethodNotAllowed"):
                    return None
                raise
            return [dict(rule) for rule in answer.get("Rules", [])]

        return await self.call(read)

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        async for page in self._pages(prefix):
            for key in page.keys:
                yield key

    async def list_folders(self, prefix: str, *, versions: bool = False) -> AsyncIterator[str]:
        """The folders directly under *prefix*; *versions*: from a listing of versions, so that a
        folder whose every object is behind a delete marker is there too (a store that lists no
        versions keeps none to hide: its plain listing)."""
        pages = self._version_folder_pages(prefix) if versions else self._pages(prefix, delimiter="/")
        async for page in pages:
            for folder in page.folders:
                yield folder[len(prefix) :].rstrip("/")

    async def _version_folder_pages(self, prefix: str) -> AsyncIterator[Page]:
        args: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "Delimiter": "/"}
        while True:
            try:
                page = await self.call(functools.partial(self._list_versions, dict(args)))
            except NoVersionListing:
                async for plain in self._pages(prefix, delimiter="/"):
                    yield plain
                return
            yield Page(keys=[], folders=[common["Prefix"] for common in page.get("CommonPrefixes", [])])
            if not page.get("IsTruncated"):
                return
            args["KeyMarker"], args["VersionIdMarker"] = page.get("NextKeyMarker"), page.get("NextVersionIdMarker", "")

    async def _pages(self, prefix: str, *, delimiter: str | None = None) -> AsyncIterator[Page]:
        """The listing of *prefix* a page (up to 1,000 entries) at a time, each page a request."""
        args: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxKeys": 1000}
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            page = await self.call(lambda a=dict(args): self.client.list_objects_v2(**a))  # type: ignore[misc]
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            yield Page(
                keys=[item["Key"] for item in page.get("Contents", [])],
                folders=[common["Prefix"] for common in page.get("CommonPrefixes", [])],
            )
            if token is None:
                return
            args["ContinuationToken"] = token

    async def version_pages(self, prefix: str) -> AsyncIterator[VersionPage]:
        """The versions and delete markers under *prefix*, a page (up to 1,000) at a time, each page
        a request. Raises NoVersionListing where the store lists no versions."""
        args: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
        while True:
            page = await self.call(functools.partial(self._list_versions, dict(args)))
            versions = [
                (
                    item["Key"],
                    Version(
                        item["VersionId"],
                        item["LastModified"],
                        str(item.get("ETag", "")).strip('"'),
                        item["Size"],
                        bool(item.get("IsLatest")),
                        item.get("StorageClass"),
                    ),
                )
                for item in page.get("Versions", [])
            ]
            versions += [
                (item["Key"], Version(item["VersionId"], item["LastModified"], None, 0, bool(item.get("IsLatest"))))
                for item in page.get("DeleteMarkers", [])
            ]
            next_key = page.get("NextKeyMarker") if page.get("IsTruncated") else None
            yield VersionPage(versions, next_key)
            if next_key is None:
                return
            args["KeyMarker"], args["VersionIdMarker"] = next_key, page.get("NextVersionIdMarker", "")

    def _list_versions(self, args: dict[str, Any]) -> Any:
        try:
            return self.client.list_object_versions(**args)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NO_VERSION_LISTING:
                raise NoVersionListing(self.description) from None
            raise

    async def delete(self, key: str) -> None:
        await self.call(lambda: self.client.delete_object(Bucket=self.name, Key=key), key)

    async def aclose(self) -> None:
        client = self._holder.made()
        if client is not None:
            await anyio.to_thread.run_sync(client.close)


def _without_userinfo(url: str) -> str:
    """*url* without a user and password in it: a description goes into messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def _prepared(client: S3Client) -> S3Client:
    """*client*, with a ``Content-MD5`` on the requests that some stores still require it of.

    botocore 1.36 and later send DeleteObjects with a CRC32 checksum only; older MinIO, CubeFS
    and others refuse it without Content-MD5 (MissingContentMD5), and refuse Object Lock
    headers on a copy without one. Registered once per client (unique ids).
    """
    events = client.meta.events
    events.register("before-call.s3.DeleteObjects", _add_content_md5, unique_id="archiver-md5-delete-objects")
    events.register("before-call.s3.CopyObject", _add_content_md5_if_locked, unique_id="archiver-md5-copy-object")
    return client


def _add_content_md5(params: dict[str, Any], **_: Any) -> None:
    body = params.get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes | bytearray):
        params["headers"]["Content-MD5"] = b64(hashlib.md5(body, usedforsecurity=False).digest())


def _add_content_md5_if_locked(params: dict[str, Any], **kwargs: Any) -> None:
    if any(h.lower().startswith("x-amz-object-lock-") for h in params["headers"]):
        _add_content_md5(params, **kwargs)


_NOT_TLS = ("WRONG_VERSION_NUMBER", "WRONG VERSION NUMBER", "UNKNOWN_PROTOCOL", "UNKNOWN PROTOCOL", "HTTP_REQUEST")


def _tls_reason(exc: botocore.exceptions.SSLError) -> str:
    """The reason OpenSSL gave (``certificate verify failed: self-signed certificate``), not the URL."""
    text = str(exc)
    for marker in ("certificate verify failed", "CERTIFICATE_VERIFY_FAILED", "hostname"):
        if marker in text:
            return text[text.index(marker) :].split("(_ssl", maxsplit=1)[0].rstrip(" )")
    return "the certificate was refused"


def parse_timestamp(value: str) -> datetime:
    """A timestamp in an S3 answer, for botocore's parser (``set_parser_defaults``): by the standard
    library where it can, as botocore's default (dateutil's general parser) costs tens of
    microseconds each, and a listing holds a thousand; botocore's own for any other form. Always
    aware: a moment given without a zone is UTC."""
    try:
        parsed = datetime.fromisoformat(value)  # a listing's LastModified: 2026-12-05T16:03:59.000Z
    except (TypeError, ValueError):
        try:
            parsed = parsedate_to_datetime(value)  # a header's: Sat, 05 Dec 2026 16:03:59 GMT
        except (TypeError, ValueError):
            parsed = botocore.utils.parse_timestamp(value)
    # A moment without a zone (or RFC 5322's "-0000": none stated) is UTC, as S3 means it; never a
    # naive datetime that cannot be compared with an aware one.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _region_in(message: str) -> str | None:
    """The region an AWS message names as the expected one (``… expecting 'eu-west-1'``)."""
    marker = "expecting '"
    if marker in message:
        return message.split(marker, 1)[1].split("'", 1)[0] or None
    return None


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
