"""The configuration's frozen models and their checks; reading a file is ``config.load``'s job.

The models are attrs classes; ``structure`` builds them from a parsed document with cattrs,
which checks every key of every section before it gives up, so that a file's problems are all
reported at once, each with where it is. A field's own check is ``checked(fn)``: *fn* gets the
typed value and returns it (perhaps normalised) or raises ValueError saying what is wrong. A
section's checks that span fields are its ``__attrs_post_init__``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, NewType, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import cattrs
from attrs import field, frozen
from cattrs.gen import make_dict_structure_fn, override

from archiver.core.quantities import parse_duration, parse_size
from archiver.errors import ConfigError

Size = NewType("Size", int)  # bytes; written as 2GiB, 512MiB or a number of bytes

_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._=-]+$")
_COUNTRY_CODE = re.compile(r"^[1-9][0-9]{0,2}$")


class Secret:
    """A credential: its value only through ``get_secret_value()``, never in a repr or a message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def checked(check: Callable[[Any], Any], **kwargs: Any) -> Any:
    """An attrs field whose structured value goes through *check* (see the module's text)."""
    return field(metadata={"check": check}, **kwargs)


def _between(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return check


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use source.api_key and source.api_secret")
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment (got {value!r})")
    return value.rstrip("/")


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Ho_Chi_Minh)") from None
    return value


def _hosts(value: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for host in value:
        host = host.strip().lower()
        if not _HOST_RE.match(host):
            raise ValueError(f"{host!r} is not a host name, host:port or *.domain")
        out.append(host)
    return tuple(out)


def _country_code(value: str) -> str:
    if not _COUNTRY_CODE.match(value):
        raise ValueError("must be a country calling code of 1 to 3 digits, such as 84")
    return value


def _http_url(value: str | None) -> str | None:
    # What was written is added to the message by config.load, unless the key is a secret (ping_url).
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    return value


@frozen(kw_only=True)
class SourceConfig:
    """Where the CDRs come from and how to read them."""

    api_key: Secret
    api_secret: Secret
    base_url: str = checked(_base_url, default="https://api.ccall.vn")
    domain_name: str | None = None
    timezone: str = checked(_timezone, default="Asia/Ho_Chi_Minh")
    page_size: int = checked(_between(1, 1000), default=100)
    allowed_recording_hosts: tuple[str, ...] = checked(_hosts, default=())
    request_timeout: timedelta = timedelta(seconds=30)
    # The country calling code of the PBX's own numbers: `find --number +84 986…` matches the
    # 0986… the PBX stores.
    country_code: str = checked(_country_code, default="84")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def recording_hosts(self) -> tuple[str, ...]:
        """The allowed hosts, defaulting to the host of ``base_url``."""
        if self.allowed_recording_hosts:
            return self.allowed_recording_hosts
        host = urlsplit(self.base_url).hostname
        assert host is not None  # checked by _base_url
        return (host.lower(),)


ONE_OR_MANY = "set either source: (one PBX account) or sources: (a list of them), not both"
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def _source_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("must be 1 to 32 of a-z, 0-9 and '-', starting and ending with a letter or digit")
    return value


def _source_prefix(value: str | None) -> str | None:
    if value is not None:
        value = value.strip("/")
        if not value:
            raise ValueError("must not be empty (leave it out to use the name)")
        _check_prefix(value)
    return value


@frozen(kw_only=True)
class NamedSourceConfig(SourceConfig):
    """One of several sources (PBX accounts or tenants) archived into one bucket."""

    name: str = checked(_source_name)
    prefix: str | None = checked(_source_prefix, default=None)  # the key prefix under storage.url; default: the name

    @property
    def key_prefix(self) -> str:
        return self.prefix or self.name

    def plain(self) -> SourceConfig:
        return SourceConfig(**{a.name: getattr(self, a.name) for a in attrs.fields(SourceConfig)})


@frozen(kw_only=True)
class ObjectLockConfig:
    """S3 Object Lock retention set on every object written."""

    retain_days: int = checked(_between(1, 36500))
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"


def _storage_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "s3":
        if not _BUCKET_RE.match(parts.netloc):
            raise ValueError(f"{parts.netloc!r} is not a valid S3 bucket name")
        _check_prefix(parts.path)
    elif parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"needs an absolute path, like file:///var/lib/archiver/archive (got {value!r})")
    else:
        raise ValueError(f"must start with s3:// or file:// (got {value!r})")
    return value


@frozen(kw_only=True)
class StorageConfig:
    """Where the archive lives: ``s3://bucket/prefix`` or ``file:///path``."""

    url: str = checked(_storage_url)
    endpoint_url: str | None = checked(_http_url, default=None)
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

    def __attrs_post_init__(self) -> None:
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("storage.sse_kms_key_id needs storage.sse: aws:kms")

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


@frozen(kw_only=True)
class DownloadConfig:
    """How recordings are fetched."""

    concurrency: int = checked(_between(1, 256), default=8)
    max_bytes: Size = Size(2 << 30)
    missing_after: timedelta = timedelta(hours=24)
    timeout: timedelta = timedelta(seconds=30)
    spool_dir: Path | None = None


@frozen(kw_only=True)
class PollConfig:
    """The daemon's schedule."""

    interval: timedelta = timedelta(seconds=60)
    lookback: timedelta = timedelta(hours=6)
    settle: timedelta = timedelta(minutes=2)
    ping_url: str | None = checked(_http_url, default=None)

    def __attrs_post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError("poll.interval must be > 0")
        if self.lookback <= self.settle:
            raise ValueError("poll.lookback must be longer than poll.settle")


@frozen(kw_only=True)
class StateConfig:
    path: Path = Path("/var/lib/archiver/ledger.sqlite3")


def _listen(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port, like 127.0.0.1:9464 (got {value!r})")
    return value


@frozen(kw_only=True)
class MetricsConfig:
    listen: str | None = checked(_listen, default=None)


def _bucket(value: str | None) -> str | None:
    if value is not None and not _BUCKET_RE.match(value):
        raise ValueError(f"{value!r} is not a valid S3 bucket name")
    return value


def _lease_ttl(value: timedelta) -> timedelta:
    if value < timedelta(seconds=3):
        raise ValueError("must be at least 3s")
    return value


@frozen(kw_only=True)
class CoordinationConfig:
    """Several daemons on one bucket: one polls, the others stand by (S3 stores only)."""

    enabled: bool = True
    lease_ttl: timedelta = checked(_lease_ttl, default=timedelta(seconds=30))
    # Where leases, claims and members live: null keeps them in the archive's bucket, under
    # {prefix}/_archiver/. Name another bucket (same endpoint and credentials) when the archive
    # bucket has a default Object Lock retention, which would freeze every renewal of a lease.
    bucket: str | None = checked(_bucket, default=None)


@frozen(kw_only=True)
class _Sections:
    """The sections every source shares."""

    storage: StorageConfig
    download: DownloadConfig = field(factory=DownloadConfig)
    poll: PollConfig = field(factory=PollConfig)
    state: StateConfig = field(factory=StateConfig)
    metrics: MetricsConfig = field(factory=MetricsConfig)
    coordination: CoordinationConfig = field(factory=CoordinationConfig)


@frozen(kw_only=True)
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


@frozen(kw_only=True)
class ConfigFile(_Sections):
    """The file as written: one ``source:``, or several ``sources:`` sharing everything else."""

    source: SourceConfig | None = None
    sources: tuple[NamedSourceConfig, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if self.coordination.bucket is not None and self.storage.kind != "s3":
            raise ValueError("coordination.bucket needs an s3:// storage.url (a local archive has no peers)")
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

    def configs(self) -> tuple[Config, ...]:
        """One Config per source, in the file's order (built from parts already validated)."""
        if self.source is not None:
            return (self._config(self.source, self.storage, self.state),)
        assert self.sources is not None
        path = self.state.path
        return tuple(
            self._config(
                named.plain(),
                attrs.evolve(self.storage, url=f"{self.storage.url.rstrip('/')}/{named.key_prefix}"),
                StateConfig(path=path.with_name(f"{path.stem}.{named.name}{path.suffix}")),
                name=named.name,
            )
            for named in self.sources
        )

    def _config(
        self, source: SourceConfig, storage: StorageConfig, state: StateConfig, *, name: str | None = None
    ) -> Config:
        return Config(
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


class Invalid(ValueError):
    """A value the configuration cannot take: *message* says why, *value* is what was written."""

    def __init__(self, message: str, value: object) -> None:
        super().__init__(message)
        self.value = value


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _text(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text (quote it in YAML)")
    return value


def _secret(value: object, _: object) -> Secret:
    return Secret(_text(value, None))


def _whole(value: object, _: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError("must be a whole number")


def _boolean(value: object, _: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    raise ValueError("must be true or false")


def _path(value: object, _: object) -> Path:
    return Path(_text(value, None))


def _literal(value: object, kind: Any) -> object:
    if value not in get_args(kind):
        raise ValueError(f"must be one of {', '.join(repr(choice) for choice in get_args(kind))}")
    return value


def _field_hook(converter: cattrs.Converter, attribute: attrs.Attribute[Any]) -> Callable[[Any, Any], Any]:
    """Structures one field: a list where the type says one (cattrs would take a string's
    letters), then the field's own check; what is wrong is raised as Invalid, carrying what was
    written."""
    kind: Any = attribute.type  # resolved by attrs.resolve_types
    optional = type(None) in get_args(kind)
    inner = next((arg for arg in get_args(kind) if arg is not type(None)), kind) if optional else kind
    wants_list = get_origin(inner) is tuple
    check = attribute.metadata.get("check")

    def hook(value: Any, _: Any) -> Any:
        if wants_list and not isinstance(value, list | tuple) and not (value is None and optional):
            raise Invalid("must be a list", value)
        try:
            out = converter.structure(value, kind)
            return check(out) if check else out
        except (ValueError, TypeError) as exc:
            raise Invalid(str(exc), value) from None

    return hook


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind, hook in ((str, _text), (int, _whole), (bool, _boolean), (Path, _path), (Secret, _secret)):
        converter.register_structure_hook(kind, hook)
    converter.register_structure_hook(timedelta, lambda value, _: parse_duration(value))
    converter.register_structure_hook(Size, lambda value, _: Size(parse_size(value)))
    converter.register_structure_hook_func(lambda kind: get_origin(kind) is Literal, _literal)  # type: ignore[comparison-overlap]

    def sections(kind: Any) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(kind)
        hooks: dict[str, Any] = {a.name: override(struct_hook=_field_hook(converter, a)) for a in attrs.fields(kind)}
        structure_fields = make_dict_structure_fn(kind, converter, **hooks)

        def section(value: Any, _: Any) -> Any:
            if not isinstance(value, dict):
                raise ValueError("must be a mapping of keys")
            return structure_fields(value, kind)

        return section

    converter.register_structure_hook_factory(attrs.has, sections)
    return converter


def structure(document: dict[str, Any]) -> ConfigFile:
    """*document* as a ConfigFile. Raises cattrs' ClassValidationError, a group holding every
    problem: its leaves are Invalid, KeyError (a key is missing), ForbiddenExtraKeysError
    (unknown keys) or a section's own ValueError, each noted with where it is."""
    return _converter().structure(document, ConfigFile)
