"""What a key's versions on a versioned bucket say happened to it, in an auditor's words.

One version is the rule (create-only writes). A key deleted and put back with the bytes it was
archived with is history, reported plainly; a key deleted now, overwritten, or put back with
other bytes is a problem.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

from archiver.store import ARCHIVE_TIERS, KeyHistory, VersionAudit


async def describe(audit: VersionAudit, history: KeyHistory) -> tuple[str, bool]:
    """(what happened to the key, whether that is a problem)."""
    versions = history.versions
    first = versions[0]
    if first.deleted:
        return "a delete marker before any version: it was deleted after it was archived", True
    if versions[-1].deleted:
        kept = history.deleted
        if kept is not None and kept.storage_class in ARCHIVE_TIERS:  # a copy needs a readable source
            return (
                f"deleted on {_when(versions[-1].at)} (a delete marker); the version to put back is in "
                f"{kept.storage_class}: restore it (aws s3api restore-object --version-id {kept.version_id}), then "
                "`archiver backfill` over its day puts it back",
                True,
            )
        return (
            f"deleted on {_when(versions[-1].at)} (a delete marker): `archiver backfill` over its day puts it back",
            True,
        )
    events = []
    for before, version in pairwise(versions):
        if version.deleted:
            events.append(f"deleted on {_when(version.at)}")
        elif not before.deleted:
            return f"{len(versions)} versions: it was overwritten after it was archived (on {_when(version.at)})", True
        elif await audit.same_bytes(history.key, first, version):
            events.append(f"put back on {_when(version.at)}")
        else:
            return (
                f"deleted and put back on {_when(version.at)} with other bytes than it was archived with "
                f"on {_when(first.at)}",
                True,
            )
    return ", ".join(events) + "; the bytes put back are identical to those archived and sealed", False


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment.utcoffset() is not None else moment.isoformat()
