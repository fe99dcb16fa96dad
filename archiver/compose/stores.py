"""The stores a configuration names: the archive store, and where control objects go.

One boto3 client per bucket, made in a worker thread at its first request (see
:class:`~archiver.store.s3_bucket.S3Bucket`), configured once, here, for what operators tune:

- ``retries``: botocore's standard mode is the one retry loop around each S3 request (4
  attempts, for throttling, 5xx and dropped connections); an outage longer than that reaches
  the archive, whose workers pause behind one probe of the store (``archive.outage``), never a
  second loop around the same request;
- ``s3.addressing_style``: ``storage.addressing_style``;
- checksums ``when_required``: botocore 1.36 and later otherwise add a CRC32 trailer to every
  upload (``aws-chunked`` bodies with ``x-amz-trailer``), which Ceph RGW before 18, older MinIO,
  and several other S3-compatible stores refuse. The archiver sends its own ``ChecksumSHA256``
  (computed while downloading) on every write instead, and validates nothing twice on reads;
- ``max_pool_connections``: at least as many as requests can run at once;
- timestamps in answers parsed by the standard library (``parse_timestamp``), not dateutil.

Credentials come from the usual AWS chain (environment, shared-credentials file, profile,
instance role, SSO, web identity), with ``storage.credentials_file`` first when it exists.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio

from archiver.config.models import Config
from archiver.source.http import USER_AGENT
from archiver.store import ControlStore, Store
from archiver.store.keys import KeyStore
from archiver.store.local import LocalStore
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket, parse_timestamp
from archiver.store.s3_control import S3ControlStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


CONTROL_REQUESTS = 2  # control requests at once (leases, membership, shard claims)


def store_identity(config: Config) -> str:
    storage = config.storage
    return storage.url + (f" at {storage.endpoint_url}" if storage.endpoint_url else "")


def make_store(config: Config) -> Store:
    """The archive store named by ``storage.url``."""
    storage = config.storage
    # The store's requests at once: every download's write, plus the day closer's and sealer's.
    work = config.download.concurrency + 4
    if storage.kind == "file":
        return LocalStore(storage.path, limiter=anyio.CapacityLimiter(work))
    return S3Store(
        s3_bucket(config, storage.bucket, anyio.CapacityLimiter(work)),
        object_lock=storage.object_lock,
        legal_hold=storage.legal_hold,
        look_before_write=storage.create_only == "look_before_write",
    )


def make_key_store(config: Config) -> KeyStore | None:
    """The keys store ``storage.encryption.keys_url`` names (None: recordings are not encrypted):
    a bucket on ``storage``'s server, with its credentials, or a folder. No Object Lock, no legal
    hold: a key object must be deletable (erasure destroys it)."""
    encryption = config.storage.encryption
    if encryption is None:
        return None
    limiter = anyio.CapacityLimiter(config.download.concurrency + 4)
    if encryption.kind == "file":
        return KeyStore(LocalStore(encryption.path, limiter=limiter), "")
    bucket = s3_bucket(config, encryption.bucket, limiter, setting="storage.encryption.keys_url")
    store = S3Store(bucket, look_before_write=config.storage.create_only == "look_before_write")
    return KeyStore(store, encryption.prefix)


def make_control_store(config: Config, store: Store) -> ControlStore | None:
    """Where coordination objects go: the archive's bucket, ``coordination.bucket``, or nowhere
    (None: coordination off, or a local archive).

    The caller closes a control store only when ``coordination.bucket`` names one of its own.
    """
    if not config.coordination.enabled or not isinstance(store, S3Store):
        return None
    # A limiter of their own: a lease renewal must not wait behind the archive's part uploads on a
    # slow uplink, or it misses its deadline and the lease passes to another instance.
    limiter = anyio.CapacityLimiter(CONTROL_REQUESTS)
    if config.coordination.bucket is None:
        return S3ControlStore(store.s3.with_limiter(limiter))
    # A bucket of its own, without Object Lock: control objects are replaced as they are used.
    return S3ControlStore(s3_bucket(config, config.coordination.bucket, limiter))


async def close_stores(config: Config, store: Store, control: ControlStore | None) -> None:
    """Close the archive store, and the control store when it has a bucket of its own (else it
    is the archive's, closed with it)."""
    await store.aclose()
    if control is not None and config.coordination.bucket is not None:
        await control.aclose()


def s3_bucket(config: Config, name: str, limiter: anyio.CapacityLimiter, *, setting: str = "storage.url") -> S3Bucket:
    """The bucket *name* on ``storage``'s server; its client is made at its first request."""
    storage = config.storage
    # A pool as large as the requests at once: the archive's and, sharing the client, the control store's.
    connections = int(limiter.total_tokens) + CONTROL_REQUESTS
    return S3Bucket(
        lambda: s3_client(config, connections),
        name,
        endpoint=storage.endpoint_url,
        limiter=limiter,
        sse=storage.sse,
        sse_kms_key_id=storage.sse_kms_key_id,
        setting=setting,
    )


def s3_client(config: Config, connections: int) -> S3Client:
    """A boto3 S3 client for ``storage``'s server (see the module's text for each setting).

    Reads the AWS configuration files, so it belongs off the event loop.
    """
    import boto3  # noqa: PLC0415 (~0.25 s of CPU: read-only commands on a local archive never need it)
    import botocore.session  # noqa: PLC0415
    from botocore.config import Config as BotoConfig  # noqa: PLC0415

    storage = config.storage
    style = storage.addressing_style
    if style == "auto" and storage.endpoint_url:
        style = "path"
    boto_config = BotoConfig(
        user_agent_extra=USER_AGENT,
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=connections,
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": style},
    )
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    if storage.credentials_file is not None and os.path.isfile(storage.credentials_file):
        session.set_config_variable("credentials_file", str(storage.credentials_file))
        session.set_config_variable("profile", "default")
    return boto3.session.Session(botocore_session=session).client(
        "s3", endpoint_url=storage.endpoint_url, region_name=storage.region, config=boto_config
    )
