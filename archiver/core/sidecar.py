"""The sidecar: one JSON document per call, written after its audio, as the commit marker.

Pure: builds documents, stores nothing. The ``cdr`` member is the row exactly as received;
``call`` holds what was parsed from it; ``recording`` says what became of the link.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from archiver import __version__
from archiver.core.cdr import Cdr
from archiver.source.fetch import Download
from archiver.state.ledger import PendingCall

SCHEMA = "ccall-archiver/sidecar/v1"


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(cdr: Cdr, recording: dict[str, Any], *, archived_at: datetime, source: dict[str, Any]) -> bytes:
    """The sidecar of *cdr* as UTF-8 JSON bytes."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "call_id": cdr.call_id,
        "cdr": cdr.raw,
        "call": cdr.call_summary(),
        "recording": recording,
        "source": source,
        "archived_at": utc_text(archived_at),
        "archiver": {"version": __version__},
    }
    if cdr.problems:
        doc["problems"] = list(cdr.problems)
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def archived(key: str, download: Download, source_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": "archived",
        "key": key,
        "size": download.size,
        "sha256": download.sha256.hex(),
        "format": download.format,
        "source_url": source_url,
        "audio": download.audio.as_dict() if download.audio else None,
    }
    if download.url != source_url:
        out["fetched_from"] = download.url
    if download.trailing_bytes:
        out["trailing_bytes"] = download.trailing_bytes
    return out


def no_recording() -> dict[str, Any]:
    return {"status": "none"}


def rejected(source_url: Any, reason: dict[str, Any]) -> dict[str, Any]:
    return {"status": "rejected", "source_url": source_url, "reason": reason}


def missing(source_url: str, pending: PendingCall) -> dict[str, Any]:
    return {
        "status": "missing",
        "source_url": source_url,
        "attempts": pending.attempts,
        "first_attempt_at": utc_text(pending.first_attempt),
        "last_attempt_at": utc_text(pending.last_attempt),
        "gave_up_at": utc_text(pending.deadline),
        "last_error": pending.last_error,
    }
