"""Where a bucket is and who we are to it, found without boto3 when nothing is left to guess.

boto3 answers both questions (the credential chain, endpoint rules) for ~0.25 s of CPU at
start-up, a third of a short backfill's whole cost. When the configuration and the
environment say everything it would consult, the same answer is found here directly:

- credentials: ``storage.credentials_file``'s ``[default]`` keys when the file exists (boto3
  reads it first, as the config asks), else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
  (the first link of boto3's chain);
- region: ``storage.region``, else ``AWS_DEFAULT_REGION``;
- address: path-style under ``storage.endpoint_url`` (as the archiver has always asked of
  boto3 there); on AWS, the bucket's virtual host in a standard region, as botocore's rules give
  it (the unit tests hold each case to botocore's own answer).

Anything else (an AWS config file, a profile without static keys, an instance role, FIPS or
dual-stack endpoints, another partition, any AWS variable this does not model) means boto3
decides, as before: :func:`resolve` then says why (``archiver check`` prints it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from archiver.store.sigv4 import Credentials

__all__ = ["Address", "Credentials", "resolve"]

# What the lean path reads, or knows not to matter; any other AWS_ variable hands over to boto3.
_MODELLED = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_CA_BUNDLE",
        "AWS_PROFILE",  # the environment's keys come first in boto3's chain whatever the profile
        "AWS_DEFAULT_PROFILE",
        "AWS_CONFIG_FILE",  # only when it names no file (see below)
        "AWS_SHARED_CREDENTIALS_FILE",  # not read: the environment's keys or our own file come first
        "AWS_EC2_METADATA_DISABLED",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
    }
)
_STANDARD_REGION = re.compile(
    r"^(af|ap|ca|eu|il|me|mx|sa|us)-(central|north|south|east|west|northeast|northwest|southeast|southwest)-\d{1,2}$"
)
_VIRTUAL_HOSTABLE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Address:
    """How to reach one bucket directly."""

    bucket_url: str
    region: str
    credentials: Credentials
    ca_bundle: str | None


def resolve(
    bucket: str,
    *,
    endpoint_url: str | None,
    region: str | None,
    credentials_file: Path | None,
    environ: Mapping[str, str] | None = None,
) -> Address | str:
    """The bucket's address as boto3 would find it, or why only boto3 can tell."""
    env = os.environ if environ is None else environ
    unmodelled = sorted(name for name in env if name.startswith("AWS_") and name not in _MODELLED)
    if unmodelled:
        return f"{unmodelled[0]} is set"
    # As botocore looks for it: os.path's expanduser and isfile, which never raise (no home, a
    # home the service may not enter); a file it cannot see, it does not read either.
    config_file = os.path.expanduser(env.get("AWS_CONFIG_FILE") or "~/.aws/config")
    if os.path.isfile(config_file):
        return f"the AWS config file {config_file} may set the region, profile or endpoint"
    credentials = _credentials(credentials_file, env)
    region = region or env.get("AWS_DEFAULT_REGION")
    if credentials is None:
        return "no static keys in storage.credentials_file or the environment (an instance role, a profile)"
    if not region:
        return "neither storage.region nor AWS_DEFAULT_REGION is set"
    if endpoint_url:
        url = f"{endpoint_url.rstrip('/')}/{bucket}"
    elif _STANDARD_REGION.match(region) and not region.startswith("us-gov-"):
        host = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
        url = f"https://{bucket}.{host}" if _VIRTUAL_HOSTABLE.match(bucket) else f"https://{host}/{bucket}"
    else:
        return f"region {region} is outside the standard AWS partition"
    return Address(url, region, credentials, env.get("AWS_CA_BUNDLE") or None)


def _credentials(credentials_file: Path | None, env: Mapping[str, str]) -> Credentials | None:
    if credentials_file is not None and os.path.isfile(credentials_file):
        import configparser  # noqa: PLC0415  (only with storage.credentials_file)

        parser = configparser.RawConfigParser()
        try:
            parser.read(credentials_file)
        except (configparser.Error, OSError, UnicodeDecodeError):
            return None  # boto3 reports what is wrong with it
        if not parser.has_section("default"):
            return None
        section = parser["default"]
        key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
        token = section.get("aws_session_token") or section.get("aws_security_token")
    else:
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN")
    if not key or not secret:
        return None
    return Credentials(key, secret, token or None)
