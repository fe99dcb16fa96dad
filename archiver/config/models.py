"""The configuration's frozen models and their checks; reading a file is ``config.load``'s job.

The models are attrs classes; ``config.structure`` builds them from a parsed document with
cattrs, which checks every key of every section before it gives up, so that a file's problems
are all reported at once, each with where it is. A field's own check is ``checked(fn)``: *fn*
gets the typed value and returns it (perhaps normalised) or raises ValueError saying what is
wrong. A section's checks that span fields are its ``__attrs_post_init__``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, NewType
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import attrs
from attrs import field, frozen

from archiver.config import checks
from archiver.core.quantities import format_duration
from archiver.errors import ConfigError

Size = NewType("Size", int)  # bytes; written as 2GiB, 512MiB or a number of bytes
# browse.scopes as written: (who, what they may see) pairs in the file's order; who is a user
# name, "group:NAME" or "*"; what is ("all",) or source names and SOURCE/EXTENSION entries.
ScopeRules = NewType("ScopeRules", tuple[tuple[str, tuple[str, ...]], ...])
DEFAULT_SOURCE = "default"  # the name of a file's single source: (metrics and browse.scopes say it so)


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


DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


@frozen(kw_only=True)
class SourceConfig:
    """Where the CDRs come from and how to read them."""

    api_key: Secret
    api_secret: Secret
    base_url: str = checked(checks.base_url, default="https://api.ccall.vn")
    domain_name: str | None = None
    # None: not said; the days are then read in DEFAULT_TIMEZONE, but `expire` asks the archive.
    timezone: str | None = checked(checks.timezone, default=None)
    page_size: int = checked(checks.between(1, 1000), default=100)
    allowed_recording_hosts: tuple[str, ...] = checked(checks.hosts, default=())
    request_timeout: timedelta = timedelta(seconds=30)
    # The country calling code of the PBX's own numbers: `find --number +84 986…` matches the
    # 0986… the PBX stores.
    country_code: str = checked(checks.country_code, default="84")
    # How long the PBX keeps a recording before it deletes it (None: not said). Served as a
    # metric, so that the cursor-lag alert fires while the calls behind the cursor can still be
    # fetched.
    recording_retention: timedelta | None = checked(checks.at_least_a_day, default=None)

    @property
    def tz(self) -> ZoneInfo:
        """The zone CDR times and the command line's dates are read in."""
        return ZoneInfo(self.timezone or DEFAULT_TIMEZONE)

    @property
    def tz_given(self) -> ZoneInfo | None:
        """The zone the configuration names (None when it names none: the default applies)."""
        return ZoneInfo(self.timezone) if self.timezone else None

    @property
    def recording_hosts(self) -> tuple[str, ...]:
        """The allowed hosts, defaulting to the host of ``base_url``."""
        if self.allowed_recording_hosts:
            return self.allowed_recording_hosts
        host = urlsplit(self.base_url).hostname
        assert host is not None  # checked by checks.base_url
        return (host.lower(),)


ONE_OR_MANY = "set either source: (one PBX account) or sources: (a list of them), not both"


@frozen(kw_only=True)
class NamedSourceConfig(SourceConfig):
    """One of several sources (PBX accounts or tenants) archived into one bucket."""

    name: str = checked(checks.source_name)
    prefix: str | None = checked(
        checks.source_prefix, default=None
    )  # the key prefix under storage.url; default: the name

    @property
    def key_prefix(self) -> str:
        return self.prefix or self.name

    def plain(self) -> SourceConfig:
        return SourceConfig(**{a.name: getattr(self, a.name) for a in attrs.fields(SourceConfig)})


@frozen(kw_only=True)
class ObjectLockConfig:
    """S3 Object Lock retention set on every object written."""

    retain_days: int = checked(checks.between(1, 36500))
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"


class _Located:
    """What a store's URL (``s3://bucket/prefix`` or ``file:///path``, its ``location``) says."""

    @property
    def location(self) -> str:
        raise NotImplementedError

    @property
    def kind(self) -> Literal["s3", "file"]:
        return "s3" if self.location.startswith("s3:") else "file"

    @property
    def bucket(self) -> str:
        return urlsplit(self.location).netloc

    @property
    def prefix(self) -> str:
        """The key prefix without slashes at either end; '' for none (a folder's keys have none)."""
        return urlsplit(self.location).path.strip("/") if self.kind == "s3" else ""

    @property
    def path(self) -> Path:
        return Path(urlsplit(self.location).path)


@frozen(kw_only=True)
class EncryptionConfig(_Located):
    """Recordings encrypted before they leave the host: each to a key of its own, that key
    age-encrypted to *age_recipients* and kept in the keys store at *keys_url* (a bucket without
    default retention: erasing a call destroys its key). *identity_file* is read only to read
    recordings (show, export, browse, verify --decrypt, rekey), never to archive them."""

    age_recipients: tuple[str, ...] = checked(checks.age_recipients)
    keys_url: str = checked(checks.storage_url)
    identity_file: Path | None = None

    @property
    def location(self) -> str:
        return self.keys_url

    def under(self, prefix: str) -> EncryptionConfig:
        """The same, for the source whose key prefix is *prefix* (its keys under a folder of their own)."""
        return attrs.evolve(self, keys_url=f"{self.keys_url.rstrip('/')}/{prefix}")


@frozen(kw_only=True)
class StorageConfig(_Located):
    """Where the archive lives: ``s3://bucket/prefix`` or ``file:///path``."""

    url: str = checked(checks.storage_url)
    endpoint_url: str | None = checked(checks.http_url, default=None)
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
    # How the bucket is named in request URLs (botocore's s3.addressing_style). "auto": botocore's
    # choice on AWS (virtual-hosted), path-style on a storage.endpoint_url (what MinIO and Ceph
    # RGW serve without wildcard DNS). "path" or "virtual" force one.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # The class of every recording written; records, day files and seals stay STANDARD, so that
    # an audit reads them at once. GLACIER and DEEP_ARCHIVE recordings must be restored to be read.
    storage_class: Literal[
        "STANDARD",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER_IR",
        "GLACIER",
        "DEEP_ARCHIVE",
        "REDUCED_REDUNDANCY",
    ] = "STANDARD"
    # Recordings encrypted with age before they are stored (null: stored as the PBX served them).
    encryption: EncryptionConfig | None = None

    def __attrs_post_init__(self) -> None:
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("storage.sse_kms_key_id needs storage.sse: aws:kms")
        if self.encryption is not None:
            self._check_keys_apart(self.encryption)

    def _check_keys_apart(self, encryption: EncryptionConfig) -> None:
        """The keys live apart from the archive: neither inside the other (an archive's listing,
        expire and erase must never meet a key object, nor the keys store a recording)."""
        if encryption.kind != self.kind or (self.kind == "s3" and encryption.bucket != self.bucket):
            return
        mine = (self.prefix if self.kind == "s3" else str(self.path).rstrip("/")) + "/"
        theirs = (encryption.prefix if self.kind == "s3" else str(encryption.path).rstrip("/")) + "/"
        if mine.startswith(theirs) or theirs.startswith(mine) or "/" in (mine, theirs):
            raise ValueError(
                f"storage.encryption.keys_url ({encryption.keys_url}) and storage.url ({self.url}) overlap: keep "
                "the keys in a bucket of their own (without default retention), or at least apart from the archive"
            )

    @property
    def location(self) -> str:
        return self.url


@frozen(kw_only=True)
class RetentionConfig:
    """How long the archive keeps a day: ``archiver expire`` removes each day whose calls are all
    older than *keep* (None: nothing expires)."""

    keep: timedelta | None = checked(checks.at_least_a_day, default=None)

    @property
    def policy(self) -> str | None:
        """*keep* as written in the expiry records: ``2557d``."""
        return None if self.keep is None else format_duration(self.keep)


@frozen(kw_only=True)
class DownloadConfig:
    """How recordings are fetched."""

    concurrency: int = checked(checks.between(1, 256), default=8)
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
    ping_url: str | None = checked(checks.http_url, default=None)

    def __attrs_post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError("poll.interval must be > 0")
        if self.lookback <= self.settle:
            raise ValueError("poll.lookback must be longer than poll.settle")


@frozen(kw_only=True)
class StateConfig:
    path: Path = Path("/var/lib/archiver/ledger.sqlite3")


@frozen(kw_only=True)
class MetricsConfig:
    listen: str | None = checked(checks.listen, default=None)
    # Where the scheduled commands' results are (`--metrics-file`): the daemon serves every *.prom
    # file there on /metrics. None: metrics/ beside state.path, where the units write them.
    textfile_dir: Path | None = None


@frozen(kw_only=True)
class CoordinationConfig:
    """Several daemons on one bucket: one polls, the others stand by (S3 stores only)."""

    enabled: bool = True
    lease_ttl: timedelta = checked(checks.lease_ttl, default=timedelta(seconds=30))
    # Where leases, claims and members live: null keeps them in the archive's bucket, under
    # {prefix}/_archiver/. Name another bucket (same endpoint and credentials) when the archive
    # bucket has a default Object Lock retention, which would freeze every renewal of a lease.
    bucket: str | None = checked(checks.bucket, default=None)


@frozen(kw_only=True)
class TrustedProxyConfig:
    """An authenticating reverse proxy in front of ``browse``: the user is the value of *header*
    on a request from one of the *from* addresses; any other request is refused."""

    from_: tuple[str, ...] = field(metadata={"check": checks.networks, "key": "from"})
    header: str = checked(checks.header_name, default="X-Forwarded-User")
    # The header in which the proxy names the user's groups, comma-separated (oauth2-proxy:
    # X-Forwarded-Groups), for browse.scopes' "group:NAME"; null: the proxy names none.
    groups_header: str | None = checked(checks.optional_header_name, default=None)


@frozen(kw_only=True)
class TlsConfig:
    """The certificate (PEM, the chain after it) and its private key that ``browse`` serves HTTPS with."""

    cert: Path
    key: Path


@frozen(kw_only=True)
class BrowseConfig:
    """Who may use ``browse`` (an htpasswd file of bcrypt entries, or a trusted proxy, not both),
    what each may see (*scopes*), and the TLS it serves."""

    users_file: Path | None = None
    trusted_proxy: TrustedProxyConfig | None = None
    scopes: ScopeRules | None = None
    tls: TlsConfig | None = None

    def __attrs_post_init__(self) -> None:
        if self.users_file is not None and self.trusted_proxy is not None:
            raise ValueError("set one of browse.users_file and browse.trusted_proxy, not both")
        if self.scopes is not None and not self.login:
            raise ValueError(
                "browse.scopes says what each signed-in user may see: set browse.users_file or browse.trusted_proxy too"
            )

    @property
    def login(self) -> bool:
        return self.users_file is not None or self.trusted_proxy is not None


@frozen(kw_only=True)
class _Sections:
    """The sections every source shares."""

    storage: StorageConfig
    retention: RetentionConfig = field(factory=RetentionConfig)
    download: DownloadConfig = field(factory=DownloadConfig)
    poll: PollConfig = field(factory=PollConfig)
    state: StateConfig = field(factory=StateConfig)
    metrics: MetricsConfig = field(factory=MetricsConfig)
    coordination: CoordinationConfig = field(factory=CoordinationConfig)
    browse: BrowseConfig = field(factory=BrowseConfig)

    @property
    def textfile_dir(self) -> Path:
        """The folder of the scheduled commands' results: metrics.textfile_dir, else metrics/ beside the ledger."""
        return self.metrics.textfile_dir or self.state.path.parent / "metrics"


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
        self._check_scopes()

    def source_names(self) -> tuple[str, ...]:
        """The sources' names, as browse.scopes names them (a single source: is ``default``)."""
        return tuple(s.name for s in self.sources) if self.sources is not None else (DEFAULT_SOURCE,)

    def _check_scopes(self) -> None:
        known = self.source_names()
        for who, grants in self.browse.scopes or ():
            for grant in grants:
                name = grant.split("/", 1)[0]
                if grant != "all" and name not in known:
                    raise ValueError(
                        f"browse.scopes: {who!r} is given {grant!r}, but there is no source {name!r} "
                        f"(known: {', '.join(known)})"
                    )

    def configs(self) -> tuple[Config, ...]:
        """One Config per source, in the file's order (built from parts already validated)."""
        if self.source is not None:
            return (self._config(self.source, self.storage, self.state),)
        assert self.sources is not None
        path = self.state.path
        return tuple(
            self._config(
                named.plain(),
                attrs.evolve(
                    self.storage,
                    url=f"{self.storage.url.rstrip('/')}/{named.key_prefix}",
                    encryption=self.storage.encryption.under(named.key_prefix) if self.storage.encryption else None,
                ),
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
            retention=self.retention,
            download=self.download,
            poll=self.poll,
            state=state,
            metrics=self.metrics,
            coordination=self.coordination,
            browse=self.browse,
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
