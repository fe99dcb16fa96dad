"""A day's manifests: what each states of the day's files, and whether a seal names it.

The last manifest to list a file must give the SHA-256 the file has now; an earlier one may
differ only for a record archived again after it was lost (its addendum names the new record).
Every manifest must be named by a seal with the digest its bytes have now. A record of a closed
day must be in a manifest within a day of being stored.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from archiver.audit.findings import CLOCK_SLACK, Problem, VerifyReport
from archiver.core import dayfiles, seal
from archiver.core.clock import Clock
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, DayListing

# A record of a day that has day files goes in the day's next manifest on the archiver's next
# poll or backfill; one stored longer ago than this and in no manifest was missed by them.
MANIFEST_GRACE = timedelta(days=1)


class ManifestChecker:
    """Checks the manifests of days in *store*; *clock* says how long ago a record was stored.

    ``unsealed`` collects (manifest, set number, SHA-256) of manifests no seal named when the
    chain was read: the caller looks at them again once it has read the seals written since."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.unsealed: list[tuple[str, int, str]] = []

    async def check_day(
        self,
        listing: DayListing,
        docs: dict[str, tuple[str, dict[str, Any]]],
        report: VerifyReport,
        sealed: dict[str, list[tuple[int, str]]],
        gone: dict[str, str | None],
    ) -> None:
        """*docs*: the day's records (file name -> its SHA-256 and document); *gone*: recordings
        erased on request (file name -> the SHA-256 the erasure states)."""
        expected: dict[str, str] = {}
        for name, (sidecar_sha, doc) in docs.items():
            expected[name] = sidecar_sha
            rec = doc.get("recording", {})
            if isinstance(rec, dict) and rec.get("status") == "archived":
                expected[str(rec["key"]).rsplit("/", 1)[-1]] = str(rec.get("sha256"))
        for name in gone:
            expected.pop(name, None)
        covered: set[str] = set()
        stated: dict[str, list[tuple[int, str]]] = {}  # file name -> (set number, SHA-256) of each manifest
        for number, key in listing.manifests.items():  # a set without one: the next run writes it
            raw = await self._store.read(key, MANIFEST_LIMIT)
            digest = hashlib.sha256(raw).hexdigest()
            if sealed.get(key):
                check_sealed(key, number, digest, sealed[key], report)
            else:
                self.unsealed.append((key, number, digest))
            try:
                entries = dayfiles.parse_manifest(raw.decode())
            except (ValueError, UnicodeDecodeError) as exc:
                report.problems.append(Problem(key, f"the manifest does not parse: {exc}"))
                continue
            for name, digest in entries.items():
                covered.add(name)
                stated.setdefault(name, []).append((number, digest))
        for name, statements in sorted(stated.items()):
            if name in gone:  # erased: every manifest must state what the erasure says was removed
                report.problems += [
                    Problem(listing.folder + name, f"manifest {n} gives an erased recording another SHA-256")
                    for n, digest in statements
                    if digest != gone[name]
                ]
                continue
            _check_statements(listing, name, statements, expected.get(name), docs, report)
        if listing.sets:
            await self._report_unmanifested(listing, docs, set(expected) - covered, report)

    async def _report_unmanifested(
        self,
        listing: DayListing,
        docs: dict[str, tuple[str, dict[str, Any]]],
        names: set[str],
        report: VerifyReport,
    ) -> None:
        """Files of a day with day files that no manifest covers: a record the store took in within
        MANIFEST_GRACE waits for the next addendum; an older one was missed, and is a problem. How
        long ago is the store's word (its Last-Modified against the time of its answer, both by
        its clock), not the record's own ``archived_at``, which whoever wrote it chose; a record
        that gives no time, or one dated ahead of now, was not written by the archiver and is a
        problem at once."""
        now = self._clock.now()
        missed = set()
        for name in sorted(names & docs.keys()):
            doc = docs[name][1]
            wrong = await self._unmanifested(listing, name, doc.get("archived_at"), now)
            if wrong is None:
                continue
            rec = dayfiles.mapping(doc.get("recording"))
            missed |= {name, str(rec.get("key", "")).rsplit("/", 1)[-1]}
            report.problems.append(Problem(listing.folder + name, wrong, name.split(".")[0]))
        report.unmanifested += len(names - missed)

    async def _unmanifested(self, listing: DayListing, name: str, archived_at: Any, now: datetime) -> str | None:
        """What is wrong with a record in no manifest (None: it waits for its addendum)."""
        remedy = (
            f"`archiver backfill --since {listing.day.isoformat()} --until "
            f"{(listing.day + timedelta(days=1)).isoformat()}` writes the addendum, which seals it: "
            "know who wrote it first"
        )
        stated = _time(archived_at)
        if stated is None:
            return f"in no manifest, and it gives no time it was stored: not a record the archiver writes ({remedy})"
        if stated > now + CLOCK_SLACK:
            return f"in no manifest, and dated {archived_at}, ahead of now: not written by the archiver ({remedy})"
        info = await self._store.head(listing.folder + name)
        if info is not None and info.age is not None and info.last_modified is not None:
            age, stored = info.age, f"{seal.utc_text(info.last_modified)} (the store's clock)"
        else:  # the store gives no time: the record's own, against this verify's clock
            age, stored = now - stated, str(archived_at)
        if age <= MANIFEST_GRACE:
            return None
        return f"in no manifest, though its day has day files and it was stored on {stored}: {remedy}"


def _check_statements(
    listing: DayListing,
    name: str,
    statements: list[tuple[int, str]],
    current: str | None,
    docs: dict[str, tuple[str, dict[str, Any]]],
    report: VerifyReport,
) -> None:
    """The manifests' word on one file: the last must give the SHA-256 it has now. An earlier one
    may differ only for a record archived again after it was lost from the archive (its addendum
    names the new record); a recording archived again must have the sealed bytes."""
    call_id = name.split(".", maxsplit=1)[0]
    if current is None:
        for number, _ in statements:
            report.problems.append(
                Problem(listing.folder + name, f"manifest {number} lists a file that is not in the archive")
            )
        return
    number, latest = statements[-1]
    if latest != current:
        report.problems.append(Problem(listing.folder + name, f"manifest {number} gives another SHA-256", call_id))
        return
    replaced = [n for n, digest in statements[:-1] if digest != current]
    if not replaced:
        return
    if name not in docs:  # a recording: what was archived again must be what was sealed
        report.problems.append(
            Problem(
                listing.folder + name,
                f"archived again with other bytes than manifest {replaced[0]} sealed for it",
                call_id,
            )
        )
        return
    stored = docs[name][1].get("archived_at")
    report.history.append(
        Problem(
            listing.folder + name,
            f"lost from the archive and archived again from the PBX on {stored}: manifest {number} seals the "
            f"new record, manifest {replaced[0]} the one it replaced",
            call_id,
        )
    )


def check_sealed(key: str, number: int, digest: str, seals: list[tuple[int, str]], report: VerifyReport) -> None:
    """The manifest *key* must be named by a seal, with the SHA-256 its bytes have now."""
    if not seals:
        report.problems.append(
            Problem(
                key,
                f"manifest {number} is in no seal: written after the last seal (the archiver seals it when it "
                "next closes a day) or by someone else",
            )
        )
    elif all(stated != digest for _, stated in seals):
        report.problems.append(
            Problem(key, f"manifest {number} changed after seal {seals[0][0]} sealed it: its bytes were rewritten")
        )


def _time(value: Any) -> datetime | None:
    """A record's timestamp, or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
