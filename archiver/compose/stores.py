"""The stores a configuration names: the archive store, and where control objects go.

S3 credentials come from the usual AWS chain (environment, shared-credentials file, instance
role); botocore's endpoint rules and the bucket's address are resolved once, here.
"""

from __future__ import annotations

from typing import Any

import anyio
import boto3
import botocore.session
from botocore.config import Config as BotoConfig

from archiver.config.models import Config
from archiver.source.http import USER_AGENT, env_proxy
from archiver.store import ControlStore, Store
from archiver.store.local import LocalStore
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket
from archiver.store.s3_control import S3ControlStore
from archiver.store.s3put import DirectPut


def store_identity(config: Config) -> str:
    storage = config.storage
    return storage.url + (f" at {storage.endpoint_url}" if storage.endpoint_url else "")


def make_store(config: Config) -> Store:
    """The archive store named by ``storage.url``."""
    storage = config.storage
    limiter = anyio.CapacityLimiter(config.download.concurrency + 4)
    if storage.kind == "file":
        return LocalStore(storage.path, limiter=limiter)
    bucket, session = _s3_bucket(config, storage.bucket, limiter)
    connections = config.download.concurrency + 8
    return S3Store(
        bucket,
        object_lock=storage.object_lock,
        legal_hold=storage.legal_hold,
        direct_put=direct_put(bucket.client, session, bucket.name, connections=connections),
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
    bucket, _ = _s3_bucket(config, config.coordination.bucket, anyio.CapacityLimiter(4))
    return S3ControlStore(bucket)


async def close_stores(config: Config, store: Store, control: ControlStore | None) -> None:
    """Close the archive store, and the control store when it has a bucket of its own (else it
    is the archive's, closed with it)."""
    await store.aclose()
    if control is not None and config.coordination.bucket is not None:
        await control.aclose()


def _s3_bucket(config: Config, name: str, limiter: anyio.CapacityLimiter) -> tuple[S3Bucket, botocore.session.Session]:
    storage = config.storage
    boto_config = BotoConfig(
        user_agent_extra=USER_AGENT,
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=config.download.concurrency + 8,
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if storage.endpoint_url else None,
    )
    session = botocore.session.get_session()
    if storage.credentials_file is not None and storage.credentials_file.is_file():
        session.set_config_variable("credentials_file", str(storage.credentials_file))
        session.set_config_variable("profile", "default")
    client = boto3.session.Session(botocore_session=session).client(
        "s3", endpoint_url=storage.endpoint_url, region_name=storage.region, config=boto_config
    )
    bucket = S3Bucket(
        client,
        name,
        endpoint=storage.endpoint_url,
        limiter=limiter,
        sse=storage.sse,
        sse_kms_key_id=storage.sse_kms_key_id,
    )
    return bucket, session


def direct_put(client: Any, session: botocore.session.Session, bucket: str, *, connections: int) -> DirectPut | None:
    """The fast PUT path for *bucket*, addressed as botocore addresses it; None without credentials
    (boto3 then reports them missing on the first request)."""
    credentials = session.get_credentials()
    if credentials is None:
        return None
    probe = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": DirectPut.probe_key})
    object_url = DirectPut.url_template(probe)
    return DirectPut(
        object_url=object_url,
        proxy=env_proxy(object_url("")),
        credentials=credentials,
        region=client.meta.region_name,
        connections=connections,
        ca_bundle=session.get_config_variable("ca_bundle"),
    )
