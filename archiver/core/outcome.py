"""What became of a call's recording: the four done outcomes, typed. Pure.

A call is *done* with exactly one of them, recorded in its sidecar's ``recording`` object:

- :class:`Archived`: the audio is in the archive (key, size, SHA-256, format, audio parameters);
- :class:`NoRecording`: the CDR has no recording link;
- :class:`Missing`: the link never served a valid recording before ``download.missing_after``;
- :class:`Rejected`: policy refused the link (a host not allowed, a body over ``max_bytes``).

Each record's :meth:`to_json` is the sidecar's ``recording`` object, field for field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar


class RecordingStatus(StrEnum):
    """``recording.status`` in a sidecar. A StrEnum: it compares, hashes and serialises as its text."""

    ARCHIVED = "archived"
    NONE = "none"
    MISSING = "missing"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"  # only in a revision: the call turned out to be another, recorded one
    ERASED = "erased"  # only in a revision: the recordings were removed on request (``archiver erase``)


# What archiving a call can end in (a revision may also say SUPERSEDED).
DONE_STATUSES: tuple[RecordingStatus, ...] = (
    RecordingStatus.ARCHIVED,
    RecordingStatus.NONE,
    RecordingStatus.MISSING,
    RecordingStatus.REJECTED,
)


def utc_text(moment: datetime) -> str:
    """A moment as the sidecars write it: ``2026-11-26T10:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Encrypted:
    """An encrypted recording (an age file): the recipient of the key it was encrypted to alone,
    that key's object in the keys store as written, and the size and SHA-256 of the plaintext
    (the recording's own ``size`` and ``sha256`` are of the bytes stored: the ciphertext)."""

    recipient: str
    key_object: str
    plaintext_size: int
    plaintext_sha256: str  # hex

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": "age-encryption.org/v1",
            "recipient": self.recipient,
            "key_object": self.key_object,
            "plaintext_size": self.plaintext_size,
            "plaintext_sha256": self.plaintext_sha256,
        }

    @classmethod
    def of(cls, recording: Mapping[str, Any]) -> Encrypted | None:
        """What a sidecar's ``recording`` object says of its encryption (None: not encrypted, or
        not said in the form the archiver writes)."""
        value = recording.get("encryption")
        if not isinstance(value, dict):
            return None
        recipient, key, size, sha = (
            value.get(k) for k in ("recipient", "key_object", "plaintext_size", "plaintext_sha256")
        )
        if not (isinstance(recipient, str) and isinstance(key, str) and isinstance(size, int) and isinstance(sha, str)):
            return None
        return cls(recipient, key, size, sha)


@dataclass(frozen=True)
class Archived:
    """The recording is stored under ``key``, byte-identical to what ``source_url`` served (or,
    *encryption* given, encrypted from those bytes)."""

    status: ClassVar[RecordingStatus] = RecordingStatus.ARCHIVED
    key: str
    size: int
    sha256: str  # hex
    format: str
    source_url: str
    audio: dict[str, float | int] | None = None
    fetched_from: str | None = None  # the last hop, when the link redirected
    trailing_bytes: int = 0  # bytes after a WAV's RIFF chunk, kept as served
    # Why the audio was taken from the archive's own copy (stored by an earlier run that did not
    # finish the call) rather than from a fresh download; None for a download.
    completed_from_store: str | None = None
    # The store's checksum of a recording uploaded in parts (see ObjectInfo.composite_sha256).
    composite_sha256: str | None = None
    encryption: Encrypted | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": str(self.status),
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "source_url": self.source_url,
            "audio": self.audio,
        }
        if self.fetched_from is not None and self.fetched_from != self.source_url:
            out["fetched_from"] = self.fetched_from
        if self.trailing_bytes:
            out["trailing_bytes"] = self.trailing_bytes
        if self.completed_from_store is not None:
            out["completed_from_store"] = self.completed_from_store
        if self.composite_sha256 is not None:
            out["composite_sha256"] = self.composite_sha256
        if self.encryption is not None:
            out["encryption"] = self.encryption.to_json()
        return out


@dataclass(frozen=True)
class NoRecording:
    """The CDR names no recording: an unanswered or cancelled call."""

    status: ClassVar[RecordingStatus] = RecordingStatus.NONE

    def to_json(self) -> dict[str, Any]:
        return {"status": str(self.status)}


@dataclass(frozen=True)
class Rejected:
    """Policy refused the link; ``reason`` says which rule (``kind``) and why (``message``)."""

    status: ClassVar[RecordingStatus] = RecordingStatus.REJECTED
    source_url: Any  # as the API sent it: a rejected value need not even be a string
    reason: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"status": str(self.status), "source_url": self.source_url, "reason": self.reason}


@dataclass(frozen=True)
class Missing:
    """The link never served a valid recording; what was tried, and the last answer."""

    status: ClassVar[RecordingStatus] = RecordingStatus.MISSING
    source_url: str
    attempts: int
    first_attempt: datetime
    last_attempt: datetime
    gave_up: datetime
    last_error: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "source_url": self.source_url,
            "attempts": self.attempts,
            "first_attempt_at": utc_text(self.first_attempt),
            "last_attempt_at": utc_text(self.last_attempt),
            "gave_up_at": utc_text(self.gave_up),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Superseded:
    """A call without a recording whose recording was found later, under its own call id."""

    status: ClassVar[RecordingStatus] = RecordingStatus.SUPERSEDED
    superseded_by: str  # the key of that call's sidecar

    def to_json(self) -> dict[str, Any]:
        return {"status": str(self.status), "superseded_by": self.superseded_by}


@dataclass(frozen=True)
class RemovedObject:
    """A recording removed by an erasure: its key, and the size and SHA-256 it had."""

    key: str
    size: int | None
    sha256: str | None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Shredded:
    """An encrypted recording erased by destroying its key: the recording stays in the archive
    (its key, size and ciphertext SHA-256 as its record states them), unreadable; *key_objects*
    are the versions of its key objects destroyed: (key in the keys store, version id)."""

    key: str
    size: int | None
    sha256: str | None
    key_objects: tuple[tuple[str, str | None], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "key_objects": [{"key": k, "version_id": v} for k, v in self.key_objects],
        }


@dataclass(frozen=True)
class Erased:
    """The call's recordings were removed on request (a data subject's, a court's): why, when,
    and what was removed, so that their absence is accounted for; an encrypted recording is
    *crypto_shredded* instead: its key destroyed, the recording left as it was, unreadable."""

    status: ClassVar[RecordingStatus] = RecordingStatus.ERASED
    reason: str
    erased_at: datetime
    removed: tuple[RemovedObject, ...]
    crypto_shredded: tuple[Shredded, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": str(self.status),
            "reason": self.reason,
            "erased_at": utc_text(self.erased_at),
            "removed": [r.to_json() for r in self.removed],
        }
        if self.crypto_shredded:
            out["crypto_shredded"] = [s.to_json() for s in self.crypto_shredded]
        return out


Recording = Archived | NoRecording | Rejected | Missing | Superseded | Erased


def removed_by_erasure(recording: Mapping[str, Any]) -> tuple[RemovedObject, ...]:
    """What a sidecar's ``recording`` object says an erasure removed (none unless it says
    ``erased``); an entry without a key is left out, a size or digest of the wrong type is None."""
    removed = recording.get("removed") if recording.get("status") == RecordingStatus.ERASED else None
    return tuple(
        RemovedObject(
            item["key"],
            item.get("size") if isinstance(item.get("size"), int) else None,
            item.get("sha256") if isinstance(item.get("sha256"), str) else None,
        )
        for item in (removed if isinstance(removed, list) else [])
        if isinstance(item, dict) and isinstance(item.get("key"), str)
    )


def shredded_by_erasure(recording: Mapping[str, Any]) -> tuple[Shredded, ...]:
    """What a sidecar's ``recording`` object says an erasure crypto-shredded (none unless it says
    ``erased``); read as :func:`removed_by_erasure` reads what it removed."""
    found = recording.get("crypto_shredded") if recording.get("status") == RecordingStatus.ERASED else None
    out = []
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        objects = item.get("key_objects")
        destroyed = tuple(
            (o["key"], o.get("version_id") if isinstance(o.get("version_id"), str) else None)
            for o in (objects if isinstance(objects, list) else [])
            if isinstance(o, dict) and isinstance(o.get("key"), str)
        )
        size, sha = item.get("size"), item.get("sha256")
        out.append(
            Shredded(
                item["key"], size if isinstance(size, int) else None, sha if isinstance(sha, str) else None, destroyed
            )
        )
    return tuple(out)
