"""One call's evidence: every record and recording, checked against each other, the day's
manifests and the seal chain (``show``), and the bundle that hands it over (``export``).

The check reads every stored byte of the call: a recording's SHA-256 is computed from the
bytes, never taken from the store's metadata. An encrypted recording is checked as stored (the
ciphertext), and, given a :class:`~archiver.audit.plaintext.Decrypter`, decrypted and compared with
the plaintext its record states; without one, it is named as not decrypted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from archiver import __version__
from archiver.audit.catalog import CallFiles
from archiver.audit.plaintext import Decrypter
from archiver.core import dayfiles, seal
from archiver.core.encryption import Digest
from archiver.core.outcome import Encrypted, removed_by_erasure, shredded_by_erasure
from archiver.errors import CallError, ObjectInColdStorage
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT


@dataclass(frozen=True)
class Record:
    """One record of the call (its first, or a revision), as stored."""

    revision: int
    key: str
    sha256: str  # of the sidecar's bytes
    status: str | None
    recording_key: str | None
    size: int | None
    recording_sha256: str | None
    archived_at: str | None
    reason: str | None = None
    supersedes: str | None = None
    supersedes_call: str | None = None
    superseded_by: str | None = None


@dataclass(frozen=True)
class Recording:
    """One audio object of the call: what its record states, and what its bytes are."""

    key: str
    size: int
    sha256: str
    stated_size: int | None
    stated_sha256: str | None
    # An encrypted recording: what its record states it decrypts to, and (decrypted) what it does.
    stated_plaintext: tuple[int, str] | None = None
    plaintext: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        stored = self.size == self.stated_size and self.sha256 == self.stated_sha256
        return stored and (self.plaintext is None or self.plaintext == self.stated_plaintext)


@dataclass(frozen=True)
class ManifestLine:
    """A line of a day manifest that names one of the call's files."""

    manifest: str  # its key
    manifest_sha256: str
    name: str
    sha256: str
    sealed_by: tuple[int, ...]  # the seals that name this manifest with the digest its bytes have


@dataclass
class Evidence:
    call_id: str
    day: str
    records: list[Record] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    manifest_lines: list[ManifestLine] = field(default_factory=list)
    seal_head: seal.Link | None = None
    problems: list[str] = field(default_factory=list)
    not_in_a_manifest: list[str] = field(default_factory=list)  # the day's next set will list them
    entry: dayfiles.CallEntry | None = None  # what the current record says of the call
    cold: list[str] = field(default_factory=list)  # recordings in cold storage: not read, so not checked
    erased: dict[str, Any] | None = None  # the current record's ``recording`` when it says ``erased``
    not_decrypted: list[str] = field(default_factory=list)  # encrypted, and no identity to decrypt them with
    shredded: list[str] = field(default_factory=list)  # encrypted, their keys destroyed by an erasure

    @property
    def ok(self) -> bool:
        """Nothing found wrong (a recording in cold storage is not checked, and not wrong)."""
        return not self.problems

    @property
    def verified(self) -> bool:
        """Every stored byte read and found as recorded."""
        return self.ok and not self.cold

    @property
    def current(self) -> Record | None:
        return self.records[-1] if self.records else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "day": self.day,
            "verified": self.verified,
            "problems": self.problems,
            "in_cold_storage": self.cold,
            "erased": self.erased,
            "not_decrypted": self.not_decrypted,
            "crypto_shredded": self.shredded,
            "current_revision": self.current.revision if self.current else None,
            "call": None if self.entry is None else {c: getattr(self.entry, c) for c in dayfiles.CSV_COLUMNS},
            "records": [asdict(r) for r in self.records],
            "recordings": [asdict(r) | {"ok": r.ok} for r in self.recordings],
            "manifest_lines": [asdict(m) for m in self.manifest_lines],
            "not_in_a_manifest": self.not_in_a_manifest,
            "seal_head": None if self.seal_head is None else asdict(self.seal_head),
            "archiver": {"version": __version__},
        }


Read = Callable[[str, int], Awaitable[bytes]]  # (key, max bytes) -> the object's bytes


async def examine(
    store: Store,
    files: CallFiles,
    chain: seal.Chain,
    *,
    digests: dict[str, tuple[int, str]] | None = None,
    read: Read | None = None,
    decrypter: Decrypter | None = None,
    decrypted: dict[str, Digest] | None = None,
) -> Evidence:
    """Check everything the archive holds of one call.

    *digests*: (size, SHA-256) of audio objects already read (``export`` hashes them as it
    copies them); the others are read here. *read* reads the records and manifests (default:
    the store's own read; ``export`` passes one that keeps what it read, to copy it).
    *decrypter* decrypts encrypted recordings to check their plaintext (*decrypted*: those
    ``export`` decrypted already, as it copied them).
    """
    read = read or store.read
    evidence = Evidence(files.call_id, files.day.isoformat(), seal_head=chain.head)
    own: dict[str, str] = {}  # file name -> SHA-256 of its bytes now
    stated: dict[str, tuple[int | None, str | None]] = {}  # audio key -> what a record says of it
    sealed: dict[str, dict[str, Any]] = {}  # encrypted audio key -> the ``recording`` of the record naming it
    current: bytes | None = None  # the last record read: the call's current state
    for revision, key in files.records.items():
        try:
            raw = await read(key, SIDECAR_LIMIT)
            doc = json.loads(raw)
        except (CallError, ValueError) as exc:
            evidence.problems.append(f"record {revision} ({key}) cannot be read: {exc}")
            continue
        record = _record(revision, key, raw, dayfiles.mapping(doc))
        evidence.records.append(record)
        current = raw
        own[key.rsplit("/", 1)[-1]] = record.sha256
        if record.status == "archived" and record.recording_key:
            stated[record.recording_key] = (record.size, record.recording_sha256)
            rec = dayfiles.mapping(doc.get("recording"))
            if Encrypted.of(rec) is not None:
                sealed[record.recording_key] = rec
        if doc.get("call_id") != files.call_id:
            evidence.problems.append(f"record {revision} ({key}) is not this call's")
    gone: dict[str, str | None] = {}  # recordings erased on request: key -> the SHA-256 the erasure states
    if current is not None:
        evidence.entry = dayfiles.CallEntry.from_sidecar(files.call_id, current)
        rec = dayfiles.mapping(json.loads(current).get("recording"))
        if rec.get("status") == "erased":
            evidence.erased = rec
            gone = {r.key: r.sha256 for r in removed_by_erasure(rec)}
            evidence.shredded = [r.key for r in shredded_by_erasure(rec)]
    for key in sorted(set(files.audio) | set(stated)):
        if key in gone:
            if key in files.audio:
                evidence.problems.append(f"the recording {key} was erased, but is still in the archive")
            elif gone[key] is not None:
                own[key.rsplit("/", 1)[-1]] = str(gone[key])  # what its manifest line must say
            continue
        if key not in files.audio:
            evidence.problems.append(f"the recording {key} that a record names is not in the archive")
            continue
        try:
            size, digest = (digests or {}).get(key) or await _digest(store, key)
        except ObjectInColdStorage:
            evidence.cold.append(key)
            continue
        size_stated, sha_stated = stated.get(key, (None, None))
        recording = Recording(key, size, digest, size_stated, sha_stated)
        if key in sealed and key not in evidence.shredded:
            recording = await _decrypted(store, recording, sealed[key], evidence, decrypter, decrypted or {})
        evidence.recordings.append(recording)
        own[key.rsplit("/", 1)[-1]] = digest
        if key not in stated:
            evidence.problems.append(f"the recording {key} is named by no record of the call")
        elif not recording.ok:
            evidence.problems.append(f"the recording {key} is not what its record states: its bytes changed")
    await _check_manifests(read, files, chain, own, evidence)
    if chain.problems:
        evidence.problems.append(f"the seal chain has {len(chain.problems)} problem(s); `archiver verify` names them")
    return evidence


async def _decrypted(
    store: Store,
    recording: Recording,
    rec: dict[str, Any],
    evidence: Evidence,
    decrypter: Decrypter | None,
    done: dict[str, Digest],
) -> Recording:
    """*recording* (encrypted), with what it decrypts to when it can be decrypted."""
    stated = Encrypted.of(rec)
    assert stated is not None
    recording = dataclasses.replace(recording, stated_plaintext=(stated.plaintext_size, stated.plaintext_sha256))
    if decrypter is None:
        evidence.not_decrypted.append(recording.key)
        return recording
    try:
        digest = done.get(recording.key) or await decrypter.decrypt(store, rec, lambda _: None)
    except CallError as exc:  # its key gone or damaged, or a ciphertext that does not decrypt
        evidence.problems.append(str(exc))
        return recording
    assert digest is not None  # read to its end
    found = dataclasses.replace(recording, plaintext=(digest.size, digest.sha256.hex()))
    if found.plaintext != found.stated_plaintext:
        evidence.problems.append(f"the recording {recording.key} does not decrypt to the plaintext its record states")
    return found


async def _check_manifests(
    read: Read, files: CallFiles, chain: seal.Chain, own: dict[str, str], evidence: Evidence
) -> None:
    listed: set[str] = set()
    for number, key in files.listing.manifests.items():
        raw = await read(key, MANIFEST_LIMIT)
        digest = hashlib.sha256(raw).hexdigest()
        try:
            lines = dayfiles.parse_manifest(raw.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            evidence.problems.append(f"manifest {number} ({key}) does not parse: {exc}")
            continue
        mine = {name: sha for name, sha in lines.items() if name in own}
        if not mine:
            continue
        by = chain.sealed_by(key, digest)
        if not by:
            evidence.problems.append(f"manifest {number} ({key}) is in no seal, or changed after it was sealed")
        for name, sha in sorted(mine.items()):
            listed.add(name)
            evidence.manifest_lines.append(ManifestLine(key, digest, name, sha, by))
            if sha != own[name]:
                evidence.problems.append(f"manifest {number} gives {name} another SHA-256 than its bytes have")
    evidence.not_in_a_manifest = sorted(set(own) - listed)


def _record(revision: int, key: str, raw: bytes, doc: dict[str, Any]) -> Record:
    rec = dayfiles.mapping(doc.get("recording"))

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return Record(
        revision=revision,
        key=key,
        sha256=hashlib.sha256(raw).hexdigest(),
        status=text(rec.get("status")),
        recording_key=text(rec.get("key")),
        size=rec.get("size") if isinstance(rec.get("size"), int) else None,
        recording_sha256=text(rec.get("sha256")),
        archived_at=text(doc.get("archived_at")),
        reason=text(doc.get("reason")),
        supersedes=text(doc.get("supersedes")),
        supersedes_call=text(doc.get("supersedes_call")),
        superseded_by=text(rec.get("superseded_by")),
    )


async def _digest(store: Store, key: str) -> tuple[int, str]:
    size, digest = await store.digest(key)
    return size, digest.hex()
