"""The stores a configuration names: the archive store, and where control objects go.

S3 credentials come from the usual AWS chain (environment, shared-credentials file, instance
role) and the bucket's address from botocore's endpoint rules, both resolved once, here. When
the configuration and the environment leave nothing to guess (:mod:`archiver.store.s3_address`),
boto3 is not even imported until a request needs it (a multipart upload, ``check``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from archiver.config.models import Config
from archiver.source.http import USER_AGENT, env_proxy
from archiver.store import ControlStore, Store
from archiver.store.local import LocalStore
from archiver.store.s3 import S3Store
from archiver.store.s3_address import Address, Credentials, resolve
from archiver.store.s3_bucket import S3Bucket
from archiver.store.s3_control import S3ControlStore
from archiver.store.s3wire import S3Wire
from archiver.store.sigv4 import Signer

if TYPE_CHECKING:
    import botocore.session
    from mypy_boto3_s3 import S3Client


def store_identity(config: Config) -> str:
    storage = config.storage
    return storage.url + (f" at {storage.endpoint_url}" if storage.endpoint_url else "")


def make_store(config: Config) -> Store:
    """The archive store named by ``storage.url``."""
    storage = config.storage
    limiter = anyio.CapacityLimiter(config.download.concurrency + 4)
    if storage.kind == "file":
        return LocalStore(storage.path, limiter=limiter)
    return S3Store(
        s3_bucket(config, storage.bucket, limiter, connections=config.download.concurrency + 8),
        object_lock=storage.object_lock,
        legal_hold=storage.legal_hold,
        look_before_write=storage.create_only == "look_before_write",
    )


def make_control_store(config: Config, store: Store) -> ControlStore | None:
    """Where coordination objects go: the archive's bucket, ``coordination.bucket``, or nowhere
    (None: coordination off, or a local archive).

    The caller closes a control store only when ``coordination.bucket`` names one of its own.
    """
    if not config.coordination.enabled or not isinstance(store, S3Store):
        return None
    if config.coordination.bucket is None:
        return S3ControlStore(store.s3)
    # A bucket of its own, without Object Lock: control objects are replaced as they are used.
    return S3ControlStore(s3_bucket(config, config.coordination.bucket, anyio.CapacityLimiter(4), connections=4))


async def close_stores(config: Config, store: Store, control: ControlStore | None) -> None:
    """Close the archive store, and the control store when it has a bucket of its own (else it
    is the archive's, closed with it)."""
    await store.aclose()
    if control is not None and config.coordination.bucket is not None:
        await control.aclose()


def s3_bucket(config: Config, name: str, limiter: anyio.CapacityLimiter, *, connections: int) -> S3Bucket:
    """The bucket *name* as ``storage`` describes its server, with the direct path when there are
    credentials for it."""
    storage = config.storage
    address = resolve(
        name, endpoint_url=storage.endpoint_url, region=storage.region, credentials_file=storage.credentials_file
    )

    def client() -> S3Client:
        return boto3_client(config, connections)[0]

    wire: S3Wire | None
    if isinstance(address, Address):
        wire = direct_wire(address.bucket_url, address.credentials, address.region, connections, address.ca_bundle)
        made: S3Client | Any = client  # boto3 when first needed
        route = "direct (aiohttp, signed here); boto3 loads only for multipart uploads, bucket settings, version audits"
    else:  # boto3 resolves them, now
        made, session = boto3_client(config, connections)
        wire = wire_from_boto3(made, session, name, connections=connections)
        route = f"direct, addressed by boto3 at start ({address})"
        if wire is None:
            route = "boto3 only: no credentials found"
    return S3Bucket(
        made,
        name,
        endpoint=storage.endpoint_url,
        limiter=limiter,
        sse=storage.sse,
        sse_kms_key_id=storage.sse_kms_key_id,
        wire=wire,
        route=route,
    )


def boto3_client(config: Config, connections: int) -> tuple[S3Client, botocore.session.Session]:
    """A boto3 S3 client for ``storage``'s server, and the botocore session it came of."""
    import boto3  # noqa: PLC0415 (~0.25 s of CPU: only when the direct path cannot serve)
    import botocore.session  # noqa: PLC0415
    from botocore.config import Config as BotoConfig  # noqa: PLC0415

    storage = config.storage
    boto_config = BotoConfig(
        user_agent_extra=USER_AGENT,
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=connections,
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if storage.endpoint_url else None,
    )
    session = botocore.session.get_session()
    if storage.credentials_file is not None and os.path.isfile(storage.credentials_file):
        session.set_config_variable("credentials_file", str(storage.credentials_file))
        session.set_config_variable("profile", "default")
    client = boto3.session.Session(botocore_session=session).client(
        "s3", endpoint_url=storage.endpoint_url, region_name=storage.region, config=boto_config
    )
    return client, session


def direct_wire(
    bucket_url: str,
    credentials: Credentials | Callable[[], Credentials],
    region: str,
    connections: int,
    ca_bundle: str | None = None,
) -> S3Wire:
    return S3Wire(
        bucket_url=bucket_url,
        signer=Signer(credentials, region),
        connections=connections,
        ca_bundle=ca_bundle,
        proxy=env_proxy(bucket_url),
        user_agent=USER_AGENT,
    )


def wire_from_boto3(client: Any, session: botocore.session.Session, bucket: str, *, connections: int) -> S3Wire | None:
    """The direct path to *bucket*, addressed as botocore addresses it; None without credentials
    (boto3 then reports them missing on the first request)."""
    found = session.get_credentials()
    if found is None:
        return None
    probe = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "ccall-archiver-probe"})
    bucket_url = probe.split("?", 1)[0].removesuffix("/ccall-archiver-probe")

    def current() -> Credentials:  # an instance role's are renewed by botocore before they expire
        frozen = found.get_frozen_credentials()
        return Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)

    ca_bundle = session.get_config_variable("ca_bundle")
    return direct_wire(bucket_url, current, client.meta.region_name, connections, ca_bundle)
