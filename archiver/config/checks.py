"""The checks of single configuration values: each takes the typed value and returns it (perhaps
normalised), or raises ValueError saying what is wrong; ``config.load`` adds the key and, unless
the key is a secret, what was written."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from archiver.core import encryption

_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._=-]+$")
_COUNTRY_CODE = re.compile(r"^[1-9][0-9]{0,2}$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def between(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return check


def base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use source.api_key and source.api_secret")
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment (got {value!r})")
    return value.rstrip("/")


def timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Ho_Chi_Minh)") from None
    return value


def hosts(value: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for host in value:
        host = host.strip().lower()
        if not _HOST_RE.match(host):
            raise ValueError(f"{host!r} is not a host name, host:port or *.domain")
        out.append(host)
    return tuple(out)


def country_code(value: str) -> str:
    if not _COUNTRY_CODE.match(value):
        raise ValueError("must be a country calling code of 1 to 3 digits, such as 84")
    return value


def http_url(value: str | None) -> str | None:
    # What was written is added to the message by config.load, unless the key is a secret (ping_url).
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    return value


def source_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("must be 1 to 32 of a-z, 0-9 and '-', starting and ending with a letter or digit")
    return value


def source_prefix(value: str | None) -> str | None:
    if value is not None:
        value = value.strip("/")
        if not value:
            raise ValueError("must not be empty (leave it out to use the name)")
        check_prefix(value)
    return value


def storage_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "s3":
        if not _BUCKET_RE.match(parts.netloc):
            raise ValueError(f"{parts.netloc!r} is not a valid S3 bucket name")
        check_prefix(parts.path)
    elif parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"needs an absolute path, like file:///var/lib/archiver/archive (got {value!r})")
    else:
        raise ValueError(f"must start with s3:// or file:// (got {value!r})")
    return value


def check_prefix(path: str) -> None:
    for segment in path.strip("/").split("/"):
        if segment == "":
            if path.strip("/"):
                raise ValueError("the key prefix has an empty segment ('//')")
            continue
        if segment in (".", "..") or not _PREFIX_SEGMENT.match(segment):
            raise ValueError(f"key prefix segment {segment!r} may hold only letters, digits and . _ = -")


def listen(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port, like 127.0.0.1:9464 (got {value!r})")
    return value


def bucket(value: str | None) -> str | None:
    if value is not None and not _BUCKET_RE.match(value):
        raise ValueError(f"{value!r} is not a valid S3 bucket name")
    return value


def at_least_a_day(value: timedelta | None) -> timedelta | None:
    if value is not None and value < timedelta(days=1):
        raise ValueError("must be at least 1d (retention is counted in whole days, such as 2557d)")
    return value


def lease_ttl(value: timedelta) -> timedelta:
    if value < timedelta(seconds=3):
        raise ValueError("must be at least 3s")
    return value


_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def header_name(value: str) -> str:
    if not _HEADER_RE.match(value):
        raise ValueError(f"{value!r} is not an HTTP header name (letters, digits and dashes)")
    return value


def optional_header_name(value: str | None) -> str | None:
    return None if value is None else header_name(value)


_SCOPE_WHO = re.compile(r"^(\*|group:[^\s:,]{1,64}|[^\s:]{1,128})$")
_SCOPE_WHAT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?(/[0-9A-Za-z+*#._-]{1,32})?$")


def scopes(value: object) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """browse.scopes: a mapping of a user name, ``group:NAME`` or ``*`` to ``all`` or a list of
    ``SOURCE`` and ``SOURCE/EXTENSION`` entries, as (who, what) pairs in the file's order. That
    each source exists is the whole file's check."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ValueError('must map a user, "group:NAME" or "*" to a list of sources (or to all)')
    out = []
    for who, what in value.items():
        if not isinstance(who, str) or not _SCOPE_WHO.match(who) or any(ord(c) < 32 for c in who):
            raise ValueError(f'{who!r} is not a user name, "group:NAME" or "*"')
        if what == "all":
            out.append((who, ("all",)))
            continue
        if isinstance(what, str):  # alice: hq, for alice: [hq]
            what = [what]
        if not isinstance(what, list) or not what:
            raise ValueError(f"{who}: must be all or a list of sources (SOURCE or SOURCE/EXTENSION)")
        for item in what:
            if not isinstance(item, str) or not _SCOPE_WHAT.match(item):
                raise ValueError(f"{who}: {item!r} is not a source name or SOURCE/EXTENSION (such as hq/101)")
        out.append((who, tuple(dict.fromkeys(what))))
    return tuple(out)


def networks(value: tuple[str, ...]) -> tuple[str, ...]:
    """Addresses or networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``), normalised."""
    if not value:
        raise ValueError("must list at least one address: the proxy's")
    out = []
    for text in value:
        try:
            out.append(str(ipaddress.ip_network(text.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or network") from None
    return tuple(out)


def age_recipients(value: tuple[str, ...]) -> tuple[str, ...]:
    """storage.encryption.age_recipients: at least one, each an X25519 recipient (``age1…``)."""
    if not value:
        raise ValueError("must list at least one age recipient (age1…, from `age-keygen -y IDENTITY_FILE`)")
    out = []
    for number, text in enumerate(value, start=1):
        try:
            encryption.recipient(text)
        except ValueError as exc:
            raise ValueError(f"item {number}: {exc}") from None
        out.append(text.strip())
    return tuple(dict.fromkeys(out))
