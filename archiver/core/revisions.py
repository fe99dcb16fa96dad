"""What a revision may change of the record it supersedes.

A revision corrects what the archive says of a call's recording; it never rewrites the call. The
archiver writes revisions in two ways only: ``rearchive`` (a call kept without its recording is
fetched again: ``none``, ``missing`` or ``rejected`` become another of those, ``archived``, or
``superseded``) and ``erase`` (the recordings go: any state but ``erased`` becomes ``erased``).
So a revision keeps its predecessor's CDR as it is; what it reads from the CDR (``call``) is
either what its predecessor read or what the CDR reads as now (a later archiver may read a
field it did not); and a recording once archived is followed only by its erasure. Anything else
was not written by the archiver: the day closer leaves it out of the day's manifests and
``verify`` reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from archiver.core.outcome import RecordingStatus

# The states a revision may follow, and the states it may then say.
_KEPT_WITHOUT = frozenset({RecordingStatus.NONE, RecordingStatus.MISSING, RecordingStatus.REJECTED})
_REARCHIVED = frozenset({*_KEPT_WITHOUT, RecordingStatus.ARCHIVED, RecordingStatus.SUPERSEDED})
_AFTER: dict[str, frozenset[str]] = dict.fromkeys(_KEPT_WITHOUT, _REARCHIVED)


def fault(
    previous: Mapping[str, Any],
    revision: Mapping[str, Any],
    *,
    read_call: Callable[[Any], Any] | None = None,
) -> str | None:
    """What is wrong with *revision* as a successor of *previous* (both parsed sidecar documents),
    or None. *read_call* reads a stored CDR as the archiver reads it now (the ``call`` object it
    gives); None when it cannot be said (the archive's zone unknown)."""
    if revision.get("cdr") != previous.get("cdr"):
        return "it rewrites the call's CDR, which a revision keeps as it is"
    if revision.get("call") != previous.get("call") and (
        read_call is None or revision.get("call") != read_call(previous.get("cdr"))
    ):
        return "it reads the call otherwise than the record it supersedes and than its CDR reads"
    before, after = _status(previous), _status(revision)
    if after == RecordingStatus.ERASED:
        return "it erases a call erased already" if before == RecordingStatus.ERASED else None
    if before == RecordingStatus.ARCHIVED:
        return f"it says {after!r} of a call whose recording was archived: only an erasure follows that"
    allowed = _AFTER.get(before)
    if allowed is None:
        return f"it follows a record whose recording is {before!r}, which nothing follows"
    return None if after in allowed else f"it says {after!r} after {before!r}"


def _status(doc: Mapping[str, Any]) -> str:
    recording = doc.get("recording")
    return str(recording.get("status")) if isinstance(recording, Mapping) else "no recording object"
