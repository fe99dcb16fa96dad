"""The evidence bundle ``archiver export`` writes: calls as stored, and how to check them.

A zip file (stored, not compressed) holding, under the same ``YYYY/MM/DD/`` names as the
bucket: each call's audio and every record of it, byte for byte; the day's manifests whole,
and ``manifest-lines.txt`` with the lines that name the exported files; the seals that seal
those manifests (``seals/``); ``verification.json``, the check made while exporting; a
``README.txt`` for the recipient; and ``SHA256SUMS`` over every other file.

An encrypted recording (an age file) is there as stored, beside its key (``….key``, an age
identity file that opens that recording alone) and its audio decrypted (the name without
``.age``): the chain from the sealed manifest to the plaintext, each step checkable with
``sha256sum`` and ``age -d``. Making such a bundle needs the archive's identity.

The same calls give the same bytes: entries in a fixed order with fixed times and modes, and
nothing in them that depends on when the bundle was made (the encrypted recording's own
bytes are the archive's; its key and plaintext are what they are).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from typing import IO, Any

from archiver import __version__
from archiver.audit.catalog import CallFiles
from archiver.audit.evidence import Evidence, Read, examine
from archiver.audit.plaintext import Decrypter
from archiver.core import dayfiles, keys, seal
from archiver.core.encryption import Digest, public
from archiver.core.outcome import Encrypted, shredded_by_erasure
from archiver.errors import CallError, ConfigError
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT
from archiver.store.seals import SEAL_LIMIT

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_ENCRYPTED = """
4. The archive holds encrypted recordings (age files, CALL_ID.wav.age): the manifest and the
   record state the SHA-256 of those bytes, as stored. Each one's own key is here
   (CALL_ID.wav.key, it opens that recording alone), and so is its audio decrypted (CALL_ID.wav).
   With the stock age tool (https://age-encryption.org):

     age -d -i YYYY/MM/DD/CALL_ID.wav.key YYYY/MM/DD/CALL_ID.wav.age | sha256sum
     grep plaintext_sha256 YYYY/MM/DD/CALL_ID.json
     sha256sum YYYY/MM/DD/CALL_ID.wav

   gives the same digest three times: the audio is what was archived, encrypted.
"""


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

    async def add_decrypted(self, name: str, store: Store, rec: dict[str, Any], decrypter: Decrypter) -> Digest:
        """The recording *rec* names, decrypted as it streams into the entry *name* (written in the
        worker thread that decrypts it; memory stays flat); its key beside it, as ``….key``."""
        key = await decrypter.key_for(rec)
        stem = name.removesuffix(keys.ENCRYPTED)
        text = f"# the key of {stem}{keys.ENCRYPTED} alone: age -d -i {stem}.key -o {stem} {stem}{keys.ENCRYPTED}\n"
        self.add(f"{stem}.key", f"{text}# public key: {public(key)}\n{key}\n".encode())
        hasher = hashlib.sha256()

        def write(piece: bytes) -> None:
            entry.write(piece)
            hasher.update(piece)

        with self._zip.open(self._info(stem), "w", force_zip64=True) as entry:
            digest = await decrypter.decrypt(store, rec, write)
        assert digest is not None  # read to its end
        self.sums[stem] = hasher.hexdigest()
        return digest

    def __enter__(self) -> _Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()


async def export(
    store: Store,
    prefix: str,
    calls: list[CallFiles],
    chain: seal.Chain,
    out: IO[bytes],
    *,
    decrypter: Decrypter | None = None,
    why_not: str = "storage.encryption.identity_file is not set",
) -> list[Evidence]:
    """Write the bundle of *calls* to *out*; the evidence of each call, as checked while copying.

    An encrypted recording needs *decrypter* (ConfigError naming the identity file, saying
    *why_not*, before anything is written when there is none)."""
    with _Bundle(out) as bundle:  # closed on a failure too: the caller throws the file away
        strip = len(prefix) + 1 if prefix else 0
        read: dict[str, bytes] = {}  # the records and manifests the check read, copied as they were read

        async def read_once(key: str, max_bytes: int) -> bytes:
            if key not in read:
                read[key] = await store.read(key, max_bytes)
            return read[key]

        sealed = {files.call_id: await _encrypted(read_once, files) for files in calls}
        if decrypter is None and any(sealed.values()):
            names = ", ".join(cid for cid, recs in sorted(sealed.items()) if recs)
            raise ConfigError(
                [
                    f"At 'storage.encryption.identity_file': the recordings of {names} are encrypted, and the bundle "
                    f"holds their audio decrypted: {why_not}"
                ]
            )
        bundle.add("README.txt", _readme(calls, encrypted=any(sealed.values())).encode())
        evidence: list[Evidence] = []
        day_lines: dict[str, list[str]] = {}  # day folder in the bundle -> manifest lines naming exported files
        seals_needed: set[int] = set()

        for files in sorted(calls, key=lambda c: c.call_id):
            digests = {key: await bundle.add_stream(key[strip:], store, key) for key in files.audio}
            plain: dict[str, Digest] = {}
            for key, rec in sealed[files.call_id].items():
                if key in files.audio and decrypter is not None:
                    plain[key] = await bundle.add_decrypted(key[strip:], store, rec, decrypter)
            checked = await examine(
                store, files, chain, digests=digests, read=read_once, decrypter=decrypter, decrypted=plain
            )
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
    return evidence


async def _encrypted(read: Read, files: CallFiles) -> dict[str, dict[str, Any]]:
    """The call's encrypted recordings that can still be read (not crypto-shredded): key -> the
    ``recording`` of the record that names it."""
    found: dict[str, dict[str, Any]] = {}
    shredded: set[str] = set()
    for key in files.records.values():
        try:
            rec = dayfiles.mapping(json.loads(await read(key, SIDECAR_LIMIT)).get("recording"))
        except (ValueError, CallError):
            continue  # the check names a record that does not parse
        if Encrypted.of(rec) is not None and rec.get("status") == "archived":
            found[str(rec["key"])] = rec
        shredded |= {s.key for s in shredded_by_erasure(rec)}
    return {k: v for k, v in found.items() if k not in shredded}


def _readme(calls: list[CallFiles], *, encrypted: bool = False) -> str:
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
{_ENCRYPTED if encrypted else ""}
Produced by ccall-archiver {__version__}. The same calls exported again give the same bytes.
"""
