"""Reading the archive as an auditor would: verify it, write each closed day's files.

Verification needs nothing but the store: every sidecar is read; its recording must exist with
the size and SHA-256 the sidecar states (the store's own checksum is used where it keeps one,
``ChecksumMode=ENABLED`` on S3; otherwise, or with ``--deep``, or for a ``--sample``, the bytes
are read and hashed); every recording must have a sidecar; every day's manifests must match.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import anyio
import structlog

from archiver.core import dayfiles, keys
from archiver.core.sidecar import SCHEMA
from archiver.errors import CallError, ObjectExists
from archiver.store import Store, put_bytes

log = structlog.get_logger("archiver.audit.verify")
SIDECAR_LIMIT = 1 << 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the archive, named by call (when there is one) and key."""

    key: str
    what: str
    call_id: str | None = None

    def __str__(self) -> str:
        return (f"call {self.call_id}: " if self.call_id else "") + f"{self.what} ({self.key})"


@dataclass
class VerifyReport:
    days: int = 0
    calls: int = 0
    recordings: int = 0
    rehashed: int = 0
    bytes_rehashed: int = 0
    unmanifested: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "days": self.days,
            "calls": self.calls,
            "recordings": self.recordings,
            "rehashed": self.rehashed,
            "bytes_rehashed": self.bytes_rehashed,
            "not_yet_in_a_manifest": self.unmanifested,
            "problems": [{"call_id": p.call_id, "key": p.key, "problem": p.what} for p in self.problems],
        }


@dataclass
class DayListing:
    """The objects of one day's folder, sorted by what they are."""

    day: date
    folder: str
    sidecars: dict[str, str] = field(default_factory=dict)  # call id -> key
    audio: dict[str, list[str]] = field(default_factory=dict)  # call id -> keys
    sets: dict[int, dict[str, str]] = field(default_factory=dict)  # set number -> {kind: key}
    strays: list[str] = field(default_factory=list)

    def add(self, key: str) -> None:
        name = key[len(self.folder) :]
        parsed = keys.parse_call_key(key)
        number = dayfiles.set_number(name)
        if parsed and "/" not in name:
            _, call_id, ext = parsed
            if ext == "json":
                self.sidecars[call_id] = key
            else:
                self.audio.setdefault(call_id, []).append(key)
        elif number is not None:
            kind = name.split(".")[0]
            self.sets.setdefault(number, {})[kind] = key
        else:
            self.strays.append(key)


async def day_listings(store: Store, prefix: str, days: list[date] | None) -> AsyncIterator[DayListing]:
    """Each day's listing: of *days*, or of every day in the archive (streamed, a day at a time)."""
    if days is not None:
        for day in days:
            listing = DayListing(day, keys.day_prefix(prefix, day))
            async for key in store.list_keys(listing.folder):
                listing.add(key)
            yield listing
        return
    current: DayListing | None = None
    root = f"{prefix}/" if prefix else ""
    async for key in store.list_keys(root):
        parsed_day = _day_of(key[len(root) :])
        if parsed_day is None:
            continue  # control objects (_archiver/) and anything outside the day folders
        if current is None or current.day != parsed_day:
            if current is not None:
                yield current
            current = DayListing(parsed_day, keys.day_prefix(prefix, parsed_day))
        current.add(key)
    if current is not None:
        yield current


async def stored_call_ids(store: Store, prefix: str, day: date) -> set[str]:
    """The call ids of *day* that have a sidecar in *store*."""
    found = set()
    async for key in store.list_keys(keys.day_prefix(prefix, day)):
        parsed = keys.parse_call_key(key)
        if parsed and parsed[2] == "json":
            found.add(parsed[1])
    return found


def _day_of(relative: str) -> date | None:
    parts = relative.split("/")
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    try:
        return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None


class Auditor:
    """Checks the archive in *store* under *prefix*. *rng* picks the ``--sample``."""

    def __init__(self, store: Store, prefix: str, *, concurrency: int = 8, rng: random.Random | None = None) -> None:
        self._store = store
        self._prefix = prefix
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._rng = rng or random.Random()

    async def verify(self, days: list[date] | None, *, deep: bool = False, sample_percent: float = 0.0) -> VerifyReport:
        report = VerifyReport()
        async for listing in day_listings(self._store, self._prefix, days):
            if not listing.sidecars and not listing.audio and not listing.sets:
                continue
            report.days += 1
            await self._verify_day(listing, report, deep=deep, sample=sample_percent / 100)
        return report

    async def _verify_day(self, listing: DayListing, report: VerifyReport, *, deep: bool, sample: float) -> None:
        docs: dict[str, tuple[str, dict[str, Any]]] = {}  # call id -> (sidecar sha256, doc)

        async def check(call_id: str, key: str) -> None:
            async with self._limiter:
                result = await self._check_call(call_id, key, listing, report, deep=deep, sample=sample)
            if result is not None:
                docs[call_id] = result

        async with anyio.create_task_group() as tg:
            for call_id, key in sorted(listing.sidecars.items()):
                tg.start_soon(check, call_id, key)
        report.calls += len(listing.sidecars)
        for call_id, audio_keys in sorted(listing.audio.items()):
            if call_id not in listing.sidecars:
                report.problems += [
                    Problem(
                        k, "a recording without its sidecar (an interrupted write? `backfill` completes it)", call_id
                    )
                    for k in audio_keys
                ]
        for key in listing.strays:
            report.problems.append(Problem(key, "an object that is neither a call's nor a day file"))
        replaced = getattr(self._store, "replaced_keys", None)  # stores that keep versions (S3)
        if replaced is not None:
            async for key, what in replaced(listing.folder):
                parsed = keys.parse_call_key(key)
                report.problems.append(Problem(key, what, parsed[1] if parsed else None))
        await self._verify_manifests(listing, docs, report)

    async def _check_call(
        self, call_id: str, key: str, listing: DayListing, report: VerifyReport, *, deep: bool, sample: float
    ) -> tuple[str, dict[str, Any]] | None:
        try:
            raw = await self._store.read(key, SIDECAR_LIMIT)
        except CallError as exc:
            report.problems.append(Problem(key, f"the sidecar cannot be read: {exc}", call_id))
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            report.problems.append(Problem(key, "the sidecar is not valid JSON", call_id))
            return None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("call_id") != call_id:
            report.problems.append(Problem(key, f"the sidecar is not a {SCHEMA} document for this call", call_id))
            return None
        rec = dayfiles.mapping(doc.get("recording"))
        present = listing.audio.get(call_id, [])
        if rec.get("status") != "archived":
            for extra in present:
                report.problems.append(
                    Problem(extra, f"a recording for a call whose sidecar says {rec.get('status')!r}", call_id)
                )
            return hashlib.sha256(raw).hexdigest(), doc
        report.recordings += 1
        if rec.get("key") not in present:
            report.problems.append(
                Problem(str(rec.get("key")), "the recording the sidecar names is not in the archive", call_id)
            )
            return hashlib.sha256(raw).hexdigest(), doc
        await self._check_recording(call_id, rec, report, rehash=deep or self._rng.random() < sample)
        return hashlib.sha256(raw).hexdigest(), doc

    async def _check_recording(self, call_id: str, rec: dict[str, Any], report: VerifyReport, *, rehash: bool) -> None:
        key = str(rec["key"])
        info = await self._store.head(key)
        if info is None:
            report.problems.append(Problem(key, "the recording vanished during the check", call_id))
            return
        if info.size != rec.get("size"):
            report.problems.append(
                Problem(key, f"the recording is {info.size} bytes, the sidecar says {rec.get('size')}", call_id)
            )
            return
        stated = str(rec.get("sha256"))
        if info.sha256 is not None and not rehash:
            if info.sha256.hex() != stated:
                report.problems.append(Problem(key, "the store's checksum differs from the sidecar's sha256", call_id))
            return
        size, digest = await self._store.digest(key)
        report.rehashed += 1
        report.bytes_rehashed += size
        if digest.hex() != stated:
            report.problems.append(
                Problem(key, "the recording's SHA-256 differs from the sidecar's: its bytes changed", call_id)
            )

    async def _verify_manifests(
        self, listing: DayListing, docs: dict[str, tuple[str, dict[str, Any]]], report: VerifyReport
    ) -> None:
        expected: dict[str, str] = {}
        for call_id, (sidecar_sha, doc) in docs.items():
            expected[f"{call_id}.json"] = sidecar_sha
            rec = doc.get("recording", {})
            if rec.get("status") == "archived":
                expected[str(rec["key"]).rsplit("/", 1)[-1]] = str(rec.get("sha256"))
        covered: set[str] = set()
        for number, files in sorted(listing.sets.items()):
            key = files.get("manifest-sha256")
            if key is None:
                continue  # a set whose manifest was never written: the next run writes it
            try:
                entries = dayfiles.parse_manifest((await self._store.read(key, 64 << 20)).decode())
            except (ValueError, UnicodeDecodeError) as exc:
                report.problems.append(Problem(key, f"the manifest does not parse: {exc}"))
                continue
            for name, digest in entries.items():
                covered.add(name)
                if name not in expected:
                    report.problems.append(
                        Problem(listing.folder + name, f"manifest {number} lists a file that is not in the archive")
                    )
                elif expected[name] != digest:
                    report.problems.append(
                        Problem(listing.folder + name, f"manifest {number} gives another SHA-256", name.split(".")[0])
                    )
        if listing.sets:
            report.unmanifested += len(set(expected) - covered)

    async def read_sidecars(self, day: date) -> dict[str, dict[str, Any]]:
        """Every sidecar of *day*, parsed (unreadable ones are left out: ``verify`` names them)."""
        listing = DayListing(day, keys.day_prefix(self._prefix, day))
        async for key in self._store.list_keys(listing.folder):
            listing.add(key)
        docs: dict[str, dict[str, Any]] = {}

        async def read(call_id: str, key: str) -> None:
            async with self._limiter:
                try:
                    doc = json.loads(await self._store.read(key, SIDECAR_LIMIT))
                except (CallError, ValueError):
                    return
            if isinstance(doc, dict):
                docs[call_id] = doc

        async with anyio.create_task_group() as tg:
            for call_id, key in listing.sidecars.items():
                tg.start_soon(read, call_id, key)
        return docs

    # -- writing a closed day's files -------------------------------------------------------------

    async def write_day_files(self, day: date, known: dict[str, dayfiles.CallEntry] | None = None) -> int:
        """Write the next set of day files covering every call not in an earlier manifest.

        *known* holds entries of calls whose sidecar this archiver wrote (from the ledger), so
        that only the others are read back from the store.

        Returns how many calls the day's manifests cover now. Create-only: a file that exists
        (left by an interrupted run) is kept, and the manifest, written last, is the set's marker.
        """
        listing = DayListing(day, keys.day_prefix(self._prefix, day))
        async for key in self._store.list_keys(listing.folder):
            listing.add(key)
        covered: set[str] = set()
        for files in listing.sets.values():
            if "manifest-sha256" in files:
                text = (await self._store.read(files["manifest-sha256"], 64 << 20)).decode()
                covered |= set(dayfiles.parse_manifest(text))
        entries = []
        for call_id, key in sorted(listing.sidecars.items()):
            if f"{call_id}.json" in covered:
                continue
            entry = (known or {}).get(call_id)
            if entry is None:
                entry = dayfiles.CallEntry.from_sidecar(call_id, await self._store.read(key, SIDECAR_LIMIT))
            entries.append(entry)
        if not entries:
            return len(listing.sidecars)
        number = max((n for n, f in listing.sets.items() if "manifest-sha256" in f), default=0) + 1
        manifest_name, csv_name, page_name = dayfiles.file_names(number)
        for name, data, kind in (
            (csv_name, dayfiles.calls_csv(entries), "text/csv; charset=utf-8"),
            (page_name, dayfiles.index_html(day, entries, number=number), "text/html; charset=utf-8"),
            (manifest_name, dayfiles.manifest(entries), "text/plain; charset=utf-8"),
        ):
            try:
                await put_bytes(self._store, listing.folder + name, data, kind)
            except ObjectExists:
                log.warning("day_file.already_stored", key=listing.folder + name)
        log.info("day.closed", day=day.isoformat(), set=number, calls=len(entries))
        return len(listing.sidecars)
