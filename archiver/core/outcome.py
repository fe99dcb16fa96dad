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
class Archived:
    """The recording is stored under ``key``, byte-identical to what ``source_url`` served."""

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
class Erased:
    """The call's recordings were removed on request (a data subject's, a court's): why, when,
    and what was removed, so that their absence is accounted for."""

    status: ClassVar[RecordingStatus] = RecordingStatus.ERASED
    reason: str
    erased_at: datetime
    removed: tuple[RemovedObject, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "reason": self.reason,
            "erased_at": utc_text(self.erased_at),
            "removed": [r.to_json() for r in self.removed],
        }


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
