"""Object stores behind two interfaces: :class:`Store` for the archive, :class:`ControlStore`
for the small objects instances coordinate through (leases, claims, membership).

``Store`` is implemented by ``store.s3.S3Store`` and ``store.local.LocalStore``;
``ControlStore`` by ``store.s3_control.S3ControlStore``. A store that keeps object versions
declares it with ``versions`` (a :class:`VersionAudit`), which ``verify`` reads.

The archive's guarantees rest on three properties every store provides:

- **create-only**: ``put`` never replaces an object; a taken key raises ObjectExists;
- **atomic**: an object is either absent or complete, whatever happens mid-write;
- **checked**: the SHA-256 computed while downloading goes with the write, and a store that
  can check it (S3's ``ChecksumSHA256``) rejects a damaged upload.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import IO, Protocol

import structlog

from archiver.errors import CallError, ObjectExists

log = structlog.get_logger("archiver.store")
ARCHIVE_TIERS = frozenset({"GLACIER", "DEEP_ARCHIVE"})  # classes whose objects must be restored to be read
MULTIPART_THRESHOLD = 64 << 20  # bodies of this size and more go up in parts (S3)


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows of one object without reading it."""

    key: str
    size: int
    # The store's own SHA-256 of the whole object (S3's ChecksumSHA256 of a single upload, which
    # AWS and MinIO compute from the bytes they receive); None when it keeps none.
    sha256: bytes | None
    storage_class: str | None = None  # None: the store's standard class
    restore: str | None = None  # S3's x-amz-restore: 'ongoing-request="false", expiry-date="…"'
    archive_status: str | None = None  # INTELLIGENT_TIERING's ARCHIVE_ACCESS / DEEP_ARCHIVE_ACCESS
    # A multipart upload's checksum: the SHA-256 of its parts' SHA-256s (base64, without S3's
    # "-N" suffix), which the store computed part by part; the writer records it to compare.
    composite_sha256: str | None = None
    # The SHA-256 the writer put in the object's own metadata: its word, not the store's.
    stated_sha256: bytes | None = None
    # When the store says the object was written (S3's Last-Modified, a file's mtime), and the time
    # of its answer (S3's Date): both the store's clock, not the writer's word (on S3; a folder's
    # writer can set a file's mtime).
    last_modified: datetime | None = None
    answered_at: datetime | None = None

    @property
    def age(self) -> timedelta | None:
        """How long ago the store took the object in, by the store's own clock (None: not known)."""
        if self.last_modified is None or self.answered_at is None:
            return None
        return self.answered_at - self.last_modified

    @property
    def in_archive_tier(self) -> bool:
        """Whether the object lives in a tier that must be restored before a read."""
        return self.storage_class in ARCHIVE_TIERS or self.archive_status is not None

    @property
    def restoring(self) -> bool:
        return self.restore is not None and 'ongoing-request="true"' in self.restore

    @property
    def restored_until(self) -> datetime | None:
        """Until when a restored copy can be read (None: not restored, or restoring)."""
        if self.restore is None or 'ongoing-request="false"' not in self.restore:
            return None
        match = re.search(r'expiry-date="([^"]+)"', self.restore)
        if match is None:
            return None
        try:
            return parsedate_to_datetime(match.group(1))
        except (TypeError, ValueError):
            return None

    @property
    def cold(self) -> bool:
        """Whether a read of the object would be refused now (in an archive tier, not restored)."""
        return self.in_archive_tier and self.restored_until is None


@dataclass(frozen=True)
class Hold:
    """A version the store will not delete now: under Object Lock retention, or a legal hold."""

    key: str
    version_id: str | None
    mode: str | None = None  # GOVERNANCE or COMPLIANCE
    until: datetime | None = None
    legal_hold: bool = False

    @property
    def governance_only(self) -> bool:
        """Whether ``--bypass-governance`` (s3:BypassGovernanceRetention) lifts it."""
        return self.mode == "GOVERNANCE" and not self.legal_hold

    def __str__(self) -> str:
        parts = []
        if self.mode is not None:
            until = self.until.date().isoformat() if self.until else "?"
            parts.append(f"{self.mode} retention until {until}")
        if self.legal_hold:
            parts.append("a legal hold")
        return f"{self.key} is under {' and '.join(parts) or 'Object Lock'}"


@dataclass
class Removal:
    """What a removal did: versions (and delete markers) removed, and versions held."""

    removed: int = 0
    held: list[Hold] = field(default_factory=list)


@dataclass(frozen=True)
class Version:
    """One version of a key on a versioned store; a delete marker has no ETag."""

    version_id: str
    at: datetime
    etag: str | None
    size: int
    latest: bool = False  # the key's current version (or delete marker)
    storage_class: str | None = None  # None: the standard class (or a delete marker)

    @property
    def deleted(self) -> bool:
        return self.etag is None


@dataclass(frozen=True)
class StoredVersion:
    """A version of a key, or a delete marker, as a listing of versions gives it (a store that
    keeps no versions gives each key once, with no version id)."""

    key: str
    version_id: str | None
    deleted: bool = False
    latest: bool = True  # the key's current version


@dataclass(frozen=True)
class KeyHistory:
    """A key written more than once, or deleted: its versions, oldest first."""

    key: str
    versions: tuple[Version, ...]

    @property
    def deleted(self) -> Version | None:
        """When the key's current version is a delete marker, the version to put back: the first
        written (the archive's own, create-only write, the one that was sealed); a later one is
        someone's overwrite, never put back as the archive's."""
        if not self.versions[-1].deleted:
            return None
        kept = [v for v in self.versions if not v.deleted]
        return kept[0] if kept else None


class VersionAudit(Protocol):
    """A store that keeps every version of an object: the history of keys written more than
    once, and putting back a deleted one."""

    def histories(self, prefix: str) -> AsyncIterator[KeyHistory]:
        """Keys under *prefix* with more than one version or a delete marker."""
        ...

    async def put_back(self, key: str, version: Version) -> None:
        """Make the deleted *key*'s *version* current again (a copy; the history keeps the deletion)."""
        ...

    async def same_bytes(self, key: str, a: Version, b: Version) -> bool:
        """Whether two versions of *key* hold the same bytes."""
        ...


class Store(Protocol):
    """Where the archive lives. Keys are full keys, prefix included."""

    description: str
    versions: VersionAudit | None  # None: the store keeps no versions to audit

    async def put(
        self,
        key: str,
        body: IO[bytes],
        *,
        size: int,
        sha256: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> str | None:
        """Store *body* under *key*, create-only and atomically, in *storage_class* (None: the
        standard class; a store without classes ignores it).

        Returns the store's composite checksum of what it stored when the body went up in parts
        (see ``ObjectInfo.composite_sha256``), else None. Raises ObjectExists when the key is
        taken, StoreUnavailable when the store did not answer (nothing was stored),
        StoreAccessError when it refused us.
        """
        ...

    async def checksum_kept(self, key: str) -> str:
        """What the store does with a SHA-256 checksum it is sent, probed with a throwaway object at
        *key*: ``refused`` (it checks it against the bytes), ``kept unchecked`` (the writer's word),
        ``none`` (it keeps none)."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size and stored checksum, or None when there is no such object."""
        ...

    async def read(self, key: str, max_bytes: int = 1 << 20, *, version_id: str | None = None) -> bytes:
        """The whole object (a sidecar, a manifest), or that version of it; raises CallError past
        *max_bytes*."""
        ...

    async def digest(self, key: str) -> tuple[int, bytes]:
        """``(size, sha256)`` of the object, computed by reading every byte."""
        ...

    def stream(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from *start* up to *end* (exclusive; None: its end), in chunks.

        Raises ObjectMissing when there is no such object.
        """
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """Every key that starts with *prefix*, in lexical order."""
        ...

    def list_folders(self, prefix: str, *, hidden: bool = False) -> AsyncIterator[str]:
        """The names of the folders directly under *prefix* (empty, or ending in ``/``), in order.
        *hidden*: also those whose every object is behind a delete marker (on a versioned store,
        where a listing of objects shows no such folder).

        One request per thousand folders on S3, however many objects they hold.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove *key* (used only for the preflight's own probe object)."""
        ...

    async def holds(self, keys: Sequence[str]) -> list[Hold]:
        """The versions of *keys* under Object Lock retention (until a time still to come) or a
        legal hold: what :meth:`remove` would be refused."""
        ...

    async def remove(self, keys: Sequence[str], *, bypass_governance: bool = False) -> Removal:
        """Remove every version of each of *keys* (and its delete markers), for ``expire`` and
        ``erase``. A version under retention or a legal hold is left and reported, never forced;
        *bypass_governance* lifts GOVERNANCE retention (s3:BypassGovernanceRetention)."""
        ...

    async def versions_in(self, folder: str) -> list[StoredVersion]:
        """Every version and delete marker under *folder* (a day's, ending in ``/``), also of keys
        whose current version is a delete marker, which no listing of objects shows; on a store
        that keeps no versions, each key once."""
        ...

    async def remove_versions(self, versions: Sequence[StoredVersion], *, bypass_governance: bool = False) -> Removal:
        """Remove exactly *versions* (as :meth:`versions_in` listed them): what was written since
        the listing stays. Holds are reported as by :meth:`remove`."""
        ...

    async def restore(self, key: str, days: int) -> None:
        """Ask for a readable copy of *key*, in an archive tier, for *days* days."""
        ...

    async def aclose(self) -> None: ...


class ControlStore(Protocol):
    """Where coordination objects live: small JSON documents replaced under a condition.

    Of two writers racing on one key, the store lets exactly one win (S3 conditional writes).
    """

    description: str

    async def put_conditional(self, key: str, data: bytes, *, if_match: str | None) -> str:
        """Write *data*: create-only (*if_match* None) or only over the version with that ETag.

        Returns the new ETag; raises ObjectExists when the condition fails.
        """
        ...

    async def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when there is none."""
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """Every key that starts with *prefix*, in lexical order."""
        ...

    async def delete(self, key: str) -> None:
        """Remove *key* (the preflight's own probe object)."""
        ...

    async def aclose(self) -> None: ...


async def put_bytes(store: Store, key: str, data: bytes, content_type: str) -> None:
    """Store a small document create-only, with its SHA-256.

    A key that holds exactly *data* already is this write, landed: its answer was lost and the
    retry met the write itself (S3 answers the retry 412). Raises ObjectExists only when the key
    holds something else.
    """
    try:
        await store.put(
            key,
            io.BytesIO(data),
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            content_type=content_type,
        )
    except ObjectExists:
        try:
            stored = await store.read(key, max(len(data), 1))
        except CallError:  # larger than ours, gone again, or unreadable: not ours
            raise ObjectExists(key) from None
        if stored != data:
            raise
        log.info("store.write_landed", key=key)
