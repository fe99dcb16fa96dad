"""The configuration's frozen models and their checks; reading a file is ``config.load``'s job."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from archiver.core.quantities import parse_duration, parse_size
from archiver.errors import ConfigError

Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._=-]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    """Where the CDRs come from and how to read them."""

    base_url: str = "https://api.ccall.vn"
    api_key: SecretStr
    api_secret: SecretStr
    domain_name: str | None = None
    timezone: str = "Asia/Ho_Chi_Minh"
    page_size: int = Field(default=100, ge=1, le=1000)
    allowed_recording_hosts: tuple[str, ...] = ()
    request_timeout: Duration = timedelta(seconds=30)
    # The country calling code of the PBX's own numbers: `find --number +84 986…` matches the
    # 0986… the PBX stores.
    country_code: str = Field(default="84", pattern=r"^[1-9][0-9]{0,2}$")

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use source.api_key and source.api_secret")
        if parts.query or parts.fragment:
            raise ValueError(f"must not have a query or fragment (got {value!r})")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Ho_Chi_Minh)") from None
        return value

    @field_validator("allowed_recording_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for host in value:
            host = host.strip().lower()
            if not _HOST_RE.match(host):
                raise ValueError(f"{host!r} is not a host name, host:port or *.domain")
            out.append(host)
        return tuple(out)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def recording_hosts(self) -> tuple[str, ...]:
        """The allowed hosts, defaulting to the host of ``base_url``."""
        if self.allowed_recording_hosts:
            return self.allowed_recording_hosts
        host = urlsplit(self.base_url).hostname
        assert host is not None  # checked by _check_base_url
        return (host.lower(),)


ONE_OR_MANY = "set either source: (one PBX account) or sources: (a list of them), not both"
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


class NamedSourceConfig(SourceConfig):
    """One of several sources (PBX accounts or tenants) archived into one bucket."""

    name: str
    prefix: str | None = None  # the key prefix under storage.url; default: the name

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("must be 1 to 32 of a-z, 0-9 and '-', starting and ending with a letter or digit")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_source_prefix(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip("/")
            if not value:
                raise ValueError("must not be empty (leave it out to use the name)")
            _check_prefix(value)
        return value

    @property
    def key_prefix(self) -> str:
        return self.prefix or self.name

    def plain(self) -> SourceConfig:
        return SourceConfig.model_construct(**{k: getattr(self, k) for k in SourceConfig.model_fields})


class ObjectLockConfig(_Model):
    """S3 Object Lock retention set on every object written."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    retain_days: int = Field(ge=1, le=36500)


class StorageConfig(_Model):
    """Where the archive lives: ``s3://bucket/prefix`` or ``file:///path``."""

    url: str
    endpoint_url: str | None = None
    region: str | None = None
    object_lock: ObjectLockConfig | None = None
    legal_hold: bool = False
    sse: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key_id: str | None = None
    # An AWS shared-credentials file (profile default) to use before the rest of the AWS chain;
    # where it does not exist, the chain (environment, instance role, ...) applies as usual.
    credentials_file: Path | None = None
    # How create-only writes are made sure of. "enforced": the store refuses a second write of a
    # key (S3 If-None-Match), and run/backfill check that it does before they start.
    # "look_before_write", for a store that ignores the condition: each write is preceded by a
    # HEAD of its key. Two writers racing for one key within that gap can still both write, the
    # later one winning; with one archiver per bucket and versioning on, verify reports it.
    create_only: Literal["enforced", "look_before_write"] = "enforced"

    @model_validator(mode="after")
    def _check_encryption(self) -> StorageConfig:
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("storage.sse_kms_key_id needs storage.sse: aws:kms")
        return self

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "s3":
            if not _BUCKET_RE.match(parts.netloc):
                raise ValueError(f"{parts.netloc!r} is not a valid S3 bucket name")
            _check_prefix(parts.path)
        elif parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError(
                    f"a file URL needs an absolute path, like file:///var/lib/archiver/archive (got {value!r})"
                )
        else:
            raise ValueError(f"must start with s3:// or file:// (got {value!r})")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
        return value

    @property
    def kind(self) -> Literal["s3", "file"]:
        return "s3" if self.url.startswith("s3:") else "file"

    @property
    def bucket(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def prefix(self) -> str:
        """The key prefix without slashes at either end; '' for none."""
        return urlsplit(self.url).path.strip("/") if self.kind == "s3" else ""

    @property
    def path(self) -> Path:
        return Path(urlsplit(self.url).path)


def _check_prefix(path: str) -> None:
    for segment in path.strip("/").split("/"):
        if segment == "":
            if path.strip("/"):
                raise ValueError("the key prefix has an empty segment ('//')")
            continue
        if segment in (".", "..") or not _PREFIX_SEGMENT.match(segment):
            raise ValueError(f"key prefix segment {segment!r} may hold only letters, digits and . _ = -")


class DownloadConfig(_Model):
    """How recordings are fetched."""

    concurrency: int = Field(default=8, ge=1, le=256)
    max_bytes: Size = 2 << 30
    missing_after: Duration = timedelta(hours=24)
    timeout: Duration = timedelta(seconds=30)
    spool_dir: Path | None = None


class PollConfig(_Model):
    """The daemon's schedule."""

    interval: Duration = timedelta(seconds=60)
    lookback: Duration = timedelta(hours=6)
    settle: Duration = timedelta(minutes=2)
    ping_url: str | None = None

    @field_validator("ping_url")
    @classmethod
    def _check_ping_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_order(self) -> PollConfig:
        if self.interval <= timedelta(0):
            raise ValueError("poll.interval must be > 0")
        if self.lookback <= self.settle:
            raise ValueError("poll.lookback must be longer than poll.settle")
        return self


class StateConfig(_Model):
    path: Path = Path("/var/lib/archiver/ledger.sqlite3")


class MetricsConfig(_Model):
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port, like 127.0.0.1:9464 (got {value!r})")
        return value


class CoordinationConfig(_Model):
    """Several daemons on one bucket: one polls, the others stand by (S3 stores only)."""

    enabled: bool = True
    lease_ttl: Duration = timedelta(seconds=30)
    # Where leases, claims and members live: null keeps them in the archive's bucket, under
    # {prefix}/_archiver/. Name another bucket (same endpoint and credentials) when the archive
    # bucket has a default Object Lock retention, which would freeze every renewal of a lease.
    bucket: str | None = None

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET_RE.match(value):
            raise ValueError(f"{value!r} is not a valid S3 bucket name")
        return value

    @field_validator("lease_ttl")
    @classmethod
    def _check_ttl(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=3):
            raise ValueError("must be at least 3s")
        return value


class _Sections(_Model):
    """The sections every source shares."""

    storage: StorageConfig
    download: DownloadConfig = DownloadConfig()
    poll: PollConfig = PollConfig()
    state: StateConfig = StateConfig()
    metrics: MetricsConfig = MetricsConfig()
    coordination: CoordinationConfig = CoordinationConfig()


class Config(_Sections):
    """What one source's archiver needs; every part is frozen once loaded.

    A file with ``sources:`` gives one Config per source: its storage URL carries the source's
    prefix, its ledger its own file, and *name* and *shared_prefix* say which source it is and
    where the control objects shared by all sources live.
    """

    source: SourceConfig
    name: str | None = None
    shared_prefix: str | None = None

    @property
    def control_prefix(self) -> str:
        """Where leases, claims and members live: ``{prefix}/_archiver``, shared by every source."""
        root = self.storage.prefix if self.shared_prefix is None else self.shared_prefix
        return "/".join(p for p in (root, "_archiver") if p)

    def secrets(self) -> tuple[str, ...]:
        """The values that must never be printed (a ping URL's path is its token)."""
        found = [self.source.api_key.get_secret_value(), self.source.api_secret.get_secret_value()]
        if self.poll.ping_url:
            found.append(self.poll.ping_url)
        return tuple(secret for secret in found if secret)  # a read-only command's are empty


class ConfigFile(_Sections):
    """The file as written: one ``source:``, or several ``sources:`` sharing everything else."""

    source: SourceConfig | None = None
    sources: tuple[NamedSourceConfig, ...] | None = None

    @model_validator(mode="after")
    def _check_control_bucket(self) -> ConfigFile:
        if self.coordination.bucket is not None and self.storage.kind != "s3":
            raise ValueError("coordination.bucket needs an s3:// storage.url (a local archive has no peers)")
        return self

    @model_validator(mode="after")
    def _check_sources(self) -> ConfigFile:
        if (self.source is None) == (self.sources is None):
            raise ValueError(ONE_OR_MANY)
        if self.sources is not None:
            if not self.sources:
                raise ValueError("sources: lists no source")
            names = [s.name for s in self.sources]
            if len(set(names)) != len(names):
                raise ValueError(f"sources: two sources share a name ({', '.join(sorted(names))})")
            prefixes = sorted(s.key_prefix + "/" for s in self.sources)
            for first, second in itertools.pairwise(prefixes):
                if second.startswith(first):
                    raise ValueError(f"sources: prefix {second[:-1]!r} lies inside {first[:-1]!r}")
            if any(p.split("/")[0] == "_archiver" for p in prefixes):
                raise ValueError("sources: the prefix _archiver is kept for control objects")
        return self

    def configs(self) -> tuple[Config, ...]:
        """One Config per source, in the file's order (built from parts already validated)."""
        if self.source is not None:
            return (self._config(self.source, self.storage, self.state),)
        assert self.sources is not None
        path = self.state.path
        return tuple(
            self._config(
                named.plain(),
                self.storage.model_copy(update={"url": f"{self.storage.url.rstrip('/')}/{named.key_prefix}"}),
                StateConfig.model_construct(path=path.with_name(f"{path.stem}.{named.name}{path.suffix}")),
                name=named.name,
            )
            for named in self.sources
        )

    def _config(
        self, source: SourceConfig, storage: StorageConfig, state: StateConfig, *, name: str | None = None
    ) -> Config:
        return Config.model_construct(
            source=source,
            storage=storage,
            download=self.download,
            poll=self.poll,
            state=state,
            metrics=self.metrics,
            coordination=self.coordination,
            name=name,
            shared_prefix=self.storage.prefix if name else None,
        )


def pick(configs: tuple[Config, ...], name: str | None) -> tuple[Config, ...]:
    """The source called *name* (all of them when None); ConfigError naming the choices otherwise."""
    if name is None:
        return configs
    found = tuple(c for c in configs if c.name == name)
    if not found:
        known = ", ".join(c.name for c in configs if c.name) or "none: the file has a single source:"
        raise ConfigError([f"At '--source': no source named {name!r} (known: {known})"], source="the command line")
    return found
