"""The evidence bundle ``archiver export`` writes: calls as stored, and how to check them.

A zip file (stored, not compressed) holding, under the same ``YYYY/MM/DD/`` names as the
bucket: each call's audio and every record of it, byte for byte; the day's manifests whole,
and ``manifest-lines.txt`` with the lines that name the exported files; the seals that seal
those manifests (``seals/``); ``verification.json``, the check made while exporting; a
``README.txt`` for the recipient; and ``SHA256SUMS`` over every other file.

The same calls give the same bytes: entries in a fixed order with fixed times and modes, and
nothing in them that depends on when the bundle was made.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from typing import IO

from archiver import __version__
from archiver.audit.catalog import CallFiles
from archiver.audit.evidence import Evidence, examine
from archiver.core import seal
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT
from archiver.store.seals import SEAL_LIMIT

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


class _Bundle:
    def __init__(self, out: IO[bytes]) -> None:
        self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.sums: dict[str, str] = {}

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=_EPOCH)
        info.compress_type = zipfile.ZIP_STORED
        info.create_system = 3  # unix, so that the mode below means the same everywhere
        info.external_attr = 0o100644 << 16
        return info

    def add(self, name: str, data: bytes) -> None:
        if name in self.sums:
            return
        self._zip.writestr(self._info(name), data)
        self.sums[name] = hashlib.sha256(data).hexdigest()

    async def add_stream(self, name: str, store: Store, key: str) -> tuple[int, str]:
        hasher, size = hashlib.sha256(), 0
        with self._zip.open(self._info(name), "w", force_zip64=True) as entry:
            async for chunk in store.stream(key):
                entry.write(chunk)
                hasher.update(chunk)
                size += len(chunk)
        self.sums[name] = hasher.hexdigest()
        return size, self.sums[name]

    def close(self) -> None:
        self._zip.close()


async def export(
    store: Store, prefix: str, calls: list[CallFiles], chain: seal.Chain, out: IO[bytes]
) -> list[Evidence]:
    """Write the bundle of *calls* to *out*; the evidence of each call, as checked while copying."""
    bundle = _Bundle(out)
    strip = len(prefix) + 1 if prefix else 0
    bundle.add("README.txt", _readme(calls).encode())
    evidence: list[Evidence] = []
    day_lines: dict[str, list[str]] = {}  # day folder in the bundle -> manifest lines naming exported files
    seals_needed: set[int] = set()
    read: dict[str, bytes] = {}  # the records and manifests the check read, copied as they were read

    async def read_once(key: str, max_bytes: int) -> bytes:
        if key not in read:
            read[key] = await store.read(key, max_bytes)
        return read[key]

    for files in sorted(calls, key=lambda c: c.call_id):
        digests = {key: await bundle.add_stream(key[strip:], store, key) for key in files.audio}
        checked = await examine(store, files, chain, digests=digests, read=read_once)
        evidence.append(checked)
        folder = files.listing.folder[strip:]
        for key in files.records.values():
            bundle.add(key[strip:], await read_once(key, SIDECAR_LIMIT))
        for key in files.listing.manifests.values():
            bundle.add(key[strip:], await read_once(key, MANIFEST_LIMIT))
        for line in checked.manifest_lines:
            day_lines.setdefault(folder, []).append(f"{line.sha256}  {line.name}\n")
            seals_needed.update(line.sealed_by)
    for folder, lines in sorted(day_lines.items()):
        bundle.add(folder + "manifest-lines.txt", "".join(sorted(set(lines))).encode())
    for number in sorted(seals_needed):
        key = seal.seal_key(prefix, number)
        bundle.add(key[strip:], await store.read(key, SEAL_LIMIT))
    report = {
        "archiver": {"version": __version__},
        "verified": all(e.ok for e in evidence),
        "calls": [e.as_dict() for e in evidence],
    }
    bundle.add("verification.json", (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    sums = "".join(f"{digest}  {name}\n" for name, digest in sorted(bundle.sums.items()))
    bundle.add("SHA256SUMS", sums.encode())
    bundle.close()
    return evidence


def _readme(calls: list[CallFiles]) -> str:
    listed = "\n".join(f"  {c.call_id}  ({c.day.isoformat()})" for c in sorted(calls, key=lambda c: c.call_id))
    return f"""Evidence bundle: call recordings from a ccall.vn PBX archive
=============================================================

Calls in this bundle:
{listed}

Every file is a byte-for-byte copy of the object stored in the archive, under the same
YYYY/MM/DD/ folder and name (the day the call started, in the PBX's time zone).

  {{call_id}}.wav (or .mp3, .ogg, .flac)   the recording, as the PBX served it
  {{call_id}}.json                         the call's record: the PBX's call detail record,
                                          the recording's size and SHA-256, when it was archived
  {{call_id}}.rev2.json, .rev3.json, ...   later corrections, if any; the highest is current,
                                          each names the record it supersedes and why
  manifest-sha256*.txt                   the day's manifests, whole, as the archive holds them
  manifest-lines.txt                     the lines of those manifests that name the files here
  seals/NNNNNNNN.json                    the seals that sealed those manifests
  verification.json                      the check made when this bundle was exported
  SHA256SUMS                             the SHA-256 of every other file in this bundle

How to check it (any system with sha256sum; on macOS use `shasum -a 256`):

1. Nothing in the bundle changed since it was exported:

     sha256sum -c SHA256SUMS

2. Each recording is what was archived: its SHA-256 is the one its record states.

     sha256sum YYYY/MM/DD/CALL_ID.wav
     grep '"sha256"' YYYY/MM/DD/CALL_ID.json

   and the day's manifest, written when the day was closed, lists the same digests:

     cd YYYY/MM/DD && sha256sum -c manifest-lines.txt

3. The manifest is the one that was sealed: its SHA-256 is in a seal under seals/.

     sha256sum YYYY/MM/DD/manifest-sha256.txt
     grep -A1 manifest-sha256 seals/*.json

   Each seal names the seal before it by its SHA-256, so the seals form a chain. Whoever keeps
   the archive records the chain's latest seal ("the head") outside the archive. `archiver
   verify --recorded-seal SHA256` checks, on the archive, that a recorded head is still part of
   the chain: then no sealed manifest, and so no file it lists, was rewritten since.

Produced by ccall-archiver {__version__}. The same calls exported again give the same bytes.
"""
