"""The sidecar: one JSON document per call, written after its audio, as the commit marker. Pure.

Builds the document's bytes and nothing else. The ``cdr`` member is the row exactly as
received; ``call`` holds what was parsed from it; ``recording`` says what became of the link
(see :mod:`archiver.core.outcome`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from archiver import __version__
from archiver.core.cdr import Cdr
from archiver.core.outcome import Missing, Recording, utc_text
from archiver.core.parking import PendingCall

SCHEMA = "ccall-archiver/sidecar/v1"


@dataclass(frozen=True)
class Revision:
    """What makes a sidecar a revision: its number (2, 3, …), the key of the record it corrects,
    and why it was written."""

    number: int
    supersedes: str
    reason: str


def encode(doc: dict[str, Any]) -> bytes:
    """A sidecar document as the bytes stored: UTF-8 JSON, indented for a person reading it."""
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def document(
    cdr: Cdr,
    recording: Recording,
    *,
    archived_at: datetime,
    source: dict[str, Any],
    revision: Revision | None = None,
    supersedes_call: str | None = None,
    call_id: str | None = None,
) -> dict[str, Any]:
    """The sidecar of *cdr*: its first record, or a *revision* of it.

    *supersedes_call* names the sidecar of a call without a recording that this call's
    recording shows to be the same call. *call_id* overrides the CDR's (a revision keeps the id
    its call is filed under).
    """
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "call_id": call_id or cdr.call_id,
        "cdr": cdr.raw,
        "call": cdr.call_summary(),
        "recording": recording.to_json(),
        "source": source,
        "archived_at": utc_text(archived_at),
        "archiver": {"version": __version__},
    }
    if cdr.problems:
        doc["problems"] = list(cdr.problems)
    if revision is not None:
        doc |= {"revision": revision.number, "supersedes": revision.supersedes, "reason": revision.reason}
    if supersedes_call is not None:
        doc["supersedes_call"] = supersedes_call
    return doc


def revised(current: dict[str, Any], recording: Recording, *, revision: Revision, archived_at: datetime) -> bytes:
    """A revision of the record *current* (its parsed document) that changes only what it says of
    the recording: the CDR, and what was parsed from it, are kept as they are."""
    doc = {k: v for k, v in current.items() if k not in ("revision", "supersedes", "reason", "supersedes_call")}
    doc |= {
        "schema": SCHEMA,
        "recording": recording.to_json(),
        "archived_at": utc_text(archived_at),
        "archiver": {"version": __version__},
        "revision": revision.number,
        "supersedes": revision.supersedes,
        "reason": revision.reason,
    }
    return encode(doc)


def missing(source_url: str, pending: PendingCall) -> Missing:
    """The record of a call given up on: every try the parked call made."""
    return Missing(
        source_url=source_url,
        attempts=pending.attempts,
        first_attempt=pending.first_attempt,
        last_attempt=pending.last_attempt,
        gave_up=pending.deadline,
        last_error=pending.last_error,
    )
