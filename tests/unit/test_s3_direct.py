"""The direct S3 path signs and addresses requests exactly as botocore does, without botocore.

Both answers are computed here, botocore's and ours, for a table of requests and of bucket
configurations; no request is sent.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse, HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

from archiver.store.s3_address import Address, resolve
from archiver.store.sigv4 import Credentials, Signer, encode_query

KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
TOKEN = Credentials("ASIAEXAMPLE", "secret/with+chars", "FwoGZXIvYXdzEJr//////////token=")


def botocore_headers(
    credentials: Credentials, region: str, method: str, url: str, headers: dict[str, str], body: bytes
) -> dict[str, str]:
    request = AWSRequest(method, url, headers=headers, data=body or None)
    boto = BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token)
    S3SigV4Auth(boto, "s3", region).add_auth(request)
    return dict(request.headers.items())


REQUESTS = [
    (
        "PUT",
        "http://127.0.0.1:9000/bucket/archive/2026/10/01/abc.wav",
        "",
        {
            "Content-Type": "audio/wav",
            "If-None-Match": "*",
            "x-amz-meta-sha256": "00ff",
            "x-amz-checksum-sha256": "AAAA",
            "x-amz-object-lock-mode": "GOVERNANCE",
        },
        b"RIFF....WAVE",
    ),
    (
        "PUT",
        "https://bucket.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd~e.json",
        "",
        {"Content-Type": "application/json", "If-Match": '"0123"', "x-amz-server-side-encryption": "aws:kms"},
        b"{}",
    ),
    (
        "GET",
        "https://s3.ap-southeast-1.amazonaws.com/my.bucket",
        encode_query(
            {
                "list-type": "2",
                "prefix": "archive/2026/10/",
                "delimiter": "/",
                "max-keys": "1000",
                "encoding-type": "url",
                "continuation-token": "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=",
            }
        ),
        {},
        b"",
    ),
    (
        "HEAD",
        "http://minio.internal:9000/archive/x/y.json",
        "",
        {"x-amz-checksum-mode": "ENABLED", "User-Agent": "ccall-archiver/1"},
        b"",
    ),
    ("DELETE", "https://bucket.s3.amazonaws.com/archive/_archiver/check/probe.txt", "", {}, b""),
    ("GET", "https://bucket.s3.amazonaws.com/k", "", {"Range": "bytes=10-99", "X-Custom": "  spaced   value "}, b""),
]


@pytest.mark.parametrize("credentials", [KEYS, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize(("method", "url", "query", "headers", "body"), REQUESTS)
def test_the_signature_is_botocores(
    credentials: Credentials, method: str, url: str, query: str, headers: dict[str, str], body: bytes
) -> None:
    region = "eu-west-1"
    full = f"{url}?{query}" if query else url
    theirs = botocore_headers(credentials, region, method, full, headers, body)
    when = datetime.strptime(theirs["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    _scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    ours = Signer(credentials, region).sign(
        method, host, "/" + path, query, headers, hashlib.sha256(body).hexdigest(), now=when
    )
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["x-amz-content-sha256"] == theirs["X-Amz-Content-SHA256"] == hashlib.sha256(body).hexdigest()
    assert ours.get("x-amz-security-token") == theirs.get("X-Amz-Security-Token")


def test_the_signing_key_follows_the_day() -> None:
    """A signer kept past midnight signs with the new day's key (the scope names the day)."""
    signer = Signer(KEYS, "us-east-1")
    first = signer.sign(
        "GET", "h", "/b/k", "", {}, hashlib.sha256(b"").hexdigest(), now=datetime(2026, 11, 29, 23, 59, tzinfo=UTC)
    )
    second = signer.sign(
        "GET", "h", "/b/k", "", {}, hashlib.sha256(b"").hexdigest(), now=datetime(2026, 11, 30, 0, 1, tzinfo=UTC)
    )
    assert "/20261129/us-east-1/s3/aws4_request" in first["Authorization"]
    assert "/20261130/us-east-1/s3/aws4_request" in second["Authorization"]
    fresh = Signer(KEYS, "us-east-1").sign(
        "GET", "h", "/b/k", "", {}, hashlib.sha256(b"").hexdigest(), now=datetime(2026, 11, 30, 0, 1, tzinfo=UTC)
    )
    assert fresh == second


def test_credentials_never_print_the_secret() -> None:
    assert "wJalr" not in repr(KEYS)
    assert "token" not in repr(TOKEN)


class _Raw:
    def stream(self, **_: Any) -> Any:
        return iter([b""])


def botocore_url(bucket: str, region: str, endpoint: str | None) -> str:
    """Where botocore sends a HeadObject of key ``k`` (the request is stopped before it is sent)."""
    client = boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(s3={"addressing_style": "path"}) if endpoint else None,
    )
    seen: list[str] = []

    def stop(request: AWSRequest, **_: Any) -> Any:
        seen.append(str(request.url))
        return AWSResponse(str(request.url), 200, HTTPHeaders(), _Raw())

    client.meta.events.register("before-send.s3.HeadObject", stop)
    client.head_object(Bucket=bucket, Key="k")
    client.close()
    return seen[0]


ENV = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_CONFIG_FILE": "/nonexistent/aws-config"}


@pytest.mark.parametrize(
    ("bucket", "region", "endpoint"),
    [
        ("my-archive", "us-east-1", None),
        ("my-archive", "ap-southeast-1", None),
        ("my-archive", "eu-central-1", None),
        ("my.dotted.archive", "eu-west-1", None),
        ("my-archive", "us-east-1", "http://127.0.0.1:9000"),
        ("my-archive", "vn-hcm-1", "https://s3.example.vn"),
        ("my-archive", "us-east-1", "https://minio.internal:9443/"),
    ],
)
def test_the_address_is_botocores(bucket: str, region: str, endpoint: str | None) -> None:
    address = resolve(bucket, endpoint_url=endpoint, region=region, credentials_file=None, environ=ENV)
    assert isinstance(address, Address)
    assert address.bucket_url + "/k" == botocore_url(bucket, region, endpoint)
    assert address.region == region
    assert address.credentials == Credentials("a", "b")


@pytest.mark.parametrize(
    ("region", "env", "why"),
    [
        (None, {}, "neither storage.region nor AWS_DEFAULT_REGION is set"),
        ("us-gov-west-1", {}, "region us-gov-west-1 is outside the standard AWS partition"),
        ("cn-north-1", {}, "region cn-north-1 is outside the standard AWS partition"),
        ("eu-west-1", {"AWS_USE_FIPS_ENDPOINT": "true"}, "AWS_USE_FIPS_ENDPOINT is set"),
        ("eu-west-1", {"AWS_ENDPOINT_URL_S3": "https://elsewhere"}, "AWS_ENDPOINT_URL_S3 is set"),
        ("eu-west-1", {"AWS_ACCESS_KEY_ID": ""}, "no static keys in storage.credentials_file or the environment"),
    ],
)
def test_what_only_boto3_can_tell_is_left_to_it_and_why(region: str | None, env: dict[str, str], why: str) -> None:
    found = resolve("my-archive", endpoint_url=None, region=region, credentials_file=None, environ={**ENV, **env})
    assert isinstance(found, str)
    assert found.startswith(why)


def test_an_aws_config_file_is_left_to_boto3(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-1\n")
    env = {**ENV, "AWS_CONFIG_FILE": str(config)}
    found = resolve("b", endpoint_url=None, region="eu-west-1", credentials_file=None, environ=env)
    assert found == f"the AWS config file {config} may set the region, profile or endpoint"


def test_the_configured_credentials_file_comes_before_the_environment(tmp_path: Path) -> None:
    """As boto3 is told (profile default of storage.credentials_file); a file without keys is boto3's to report."""
    keys = tmp_path / "credentials"
    keys.write_text("[default]\naws_access_key_id = FROMFILE\naws_secret_access_key = s3cret\naws_session_token = t\n")
    found = resolve("b", endpoint_url=None, region="eu-west-1", credentials_file=keys, environ=ENV)
    assert isinstance(found, Address)
    assert found.credentials == Credentials("FROMFILE", "s3cret", "t")
    keys.write_text("[other]\naws_access_key_id = X\naws_secret_access_key = Y\n")
    assert isinstance(resolve("b", endpoint_url=None, region="eu-west-1", credentials_file=keys, environ=ENV), str)
    missing = tmp_path / "absent"
    found = resolve("b", endpoint_url=None, region="eu-west-1", credentials_file=missing, environ=ENV)
    assert isinstance(found, Address)
    assert found.credentials == Credentials("a", "b")


def test_renewed_credentials_are_used_as_soon_as_they_are_renewed() -> None:
    """An instance role's keys change every few hours; each request is signed with the current ones."""
    current = [KEYS]
    signer = Signer(lambda: current[0], "eu-west-1")
    when = datetime(2026, 11, 29, 12, tzinfo=UTC)
    before = signer.sign("GET", "h", "/k", "", {}, hashlib.sha256(b"").hexdigest(), now=when)
    current[0] = TOKEN
    after = signer.sign("GET", "h", "/k", "", {}, hashlib.sha256(b"").hexdigest(), now=when)
    assert before == Signer(KEYS, "eu-west-1").sign("GET", "h", "/k", "", {}, hashlib.sha256(b"").hexdigest(), now=when)
    assert after == Signer(TOKEN, "eu-west-1").sign("GET", "h", "/k", "", {}, hashlib.sha256(b"").hexdigest(), now=when)
    assert after["x-amz-security-token"] == TOKEN.token
