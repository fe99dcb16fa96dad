"""Encrypting a verified download before it is stored (``storage.encryption``).

For each recording: a fresh call key; the download encrypted to it, streaming, into a local
buffer (the ciphertext's SHA-256 is needed before the upload, which carries it); then the key
object (the call key, age-encrypted to the configured recipients) and its label, create-only, in
the keys store; only then the recording. So no recording is ever stored without its key.

The archiver holds recipients, never an identity: it cannot decrypt what it stored. When it
meets an encrypted recording an earlier run stored and never recorded (a crash between the
recording and its sidecar), it cannot compare plaintexts; it finds the label that run wrote with
the key, whose ciphertext digest must be the stored recording's (read and hashed) and whose
plaintext digest must be the fresh download's. A key this run made for a recording it then did
not store is removed again.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import anyio.to_thread
import structlog

from archiver.archive.outage import StoreOutage
from archiver.core import encryption, keyobjects
from archiver.core.encryption import CallKey
from archiver.core.keyobjects import Label
from archiver.core.outcome import Archived, Encrypted
from archiver.errors import ArchiveConflict, CallError, ObjectExists, ObjectMissing, SpoolError, StoreUnavailable
from archiver.source.fetch import Download
from archiver.store import Store
from archiver.store.keys import KeyStore, put_new

log = structlog.get_logger("archiver.archive")


Put = Callable[["Ciphertext"], Awaitable[str | None]]  # stores a ciphertext create-only; its composite checksum


def archived_encrypted(
    key: str, size: int, sha256: bytes, label: Label, encrypted: Encrypted, source_url: str, composite: str | None
) -> Archived:
    """The record of an encrypted recording stored under *key*: its own size and SHA-256 are the
    ciphertext's; what it decrypts to is as *label* states the download it was encrypted from."""
    return Archived(
        key=key,
        size=size,
        sha256=sha256.hex(),
        format=label.format,
        source_url=source_url,
        audio=label.audio,
        trailing_bytes=label.trailing_bytes,
        composite_sha256=composite,
        encryption=encrypted,
    )


@dataclass
class Ciphertext:
    """One download, encrypted to *key*, in a local buffer. Close it when done."""

    file: IO[bytes]
    size: int
    sha256: bytes
    key: CallKey

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Ciphertext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Encryptor:
    """Encrypts downloads into *store* (the archive, its steps through *outage*), and keeps their
    keys in *keys* (through *keys_outage*, its own gate), wrapped to *recipients*."""

    def __init__(
        self,
        keys: KeyStore,
        recipients: tuple[str, ...],
        *,
        store: Store,
        outage: StoreOutage,
        keys_outage: StoreOutage,
        spool_dir: Path | None = None,
        spool_memory: int = 1 << 20,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.keys = keys
        self._store = store
        self._outage = outage
        self._keys_outage = keys_outage
        self._recipients = recipients
        self.fingerprint = encryption.recipients_fingerprint(recipients)
        self._spool_dir = spool_dir
        self._spool_memory = spool_memory
        self._limiter = limiter

    async def store(self, key: str, download: Download, source_url: str, put: Put) -> Archived:
        """Encrypt *download*, store its key (key object, then label), then the recording under
        *key* with *put*, each create-only: no recording is stored without its key stored first."""
        with await self.encrypt(download) as sealed:
            download.close()  # the plaintext is not needed any more: its buffer goes at once
            label = self._label(key, sealed, download)
            try:
                encrypted = await self._keys_outage.run(partial(self._store_key, label, sealed.key))
            except StoreUnavailable as exc:
                raise StoreUnavailable(
                    f"the keys store (storage.encryption.keys_url) did not take the key of {key}, so the recording "
                    f"was not stored: {exc}"
                ) from None
            try:
                composite = await put(sealed)
            except ObjectExists:
                return await self._existing(key, sealed, label, encrypted, source_url)
            return archived_encrypted(key, sealed.size, sealed.sha256, label, encrypted, source_url, composite)

    async def earlier(self, key: str, source_url: str) -> Archived:
        """The record of the encrypted recording an earlier run stored under *key* and never
        recorded: its bytes read and hashed, described by the label written with its key (no
        identity here to decrypt it; ``verify --decrypt`` proves the plaintext the label states)."""
        info = await self._outage.run(partial(self._store.head, key))
        if info is None:
            raise ArchiveConflict(f"{key} was there a moment ago and cannot be found now")
        size, digest = await self._outage.run(partial(self._store.digest, key))
        label, encrypted = await self._keys_outage.run(partial(self.stored, key, size, digest))
        return archived_encrypted(key, size, digest, label, encrypted, source_url, info.composite_sha256)

    async def _existing(
        self, key: str, sealed: Ciphertext, label: Label, encrypted: Encrypted, source_url: str
    ) -> Archived:
        """The encrypted recording under *key* exists already. Its bytes are read and hashed: this
        run's own write, landed (its answer lost), is kept with this run's key; an earlier run's is
        kept only when the label written with its key states this ciphertext and the plaintext
        downloaded now (this run's key is then removed). Anything else is a conflict."""
        info = await self._outage.run(partial(self._store.head, key))
        if info is None:
            raise ArchiveConflict(f"{key} was reported as existing but cannot be found")
        size, digest = await self._outage.run(partial(self._store.digest, key))
        if (size, digest) == (sealed.size, sealed.sha256):
            log.info("store.write_landed", key=key)
            return archived_encrypted(key, size, digest, label, encrypted, source_url, info.composite_sha256)
        await self._keys_outage.run(partial(self._discard_key, key, encrypted))
        earlier, found = await self._keys_outage.run(partial(self.stored, key, size, digest))
        if (earlier.plaintext_size, earlier.plaintext_sha256) != (label.plaintext_size, label.plaintext_sha256):
            raise ArchiveConflict(
                f"{key} already holds an encrypted recording of other audio ({earlier.plaintext_size} bytes, sha256 "
                f"{earlier.plaintext_sha256[:16]}…) than the recording now served ({label.plaintext_size} bytes, "
                f"sha256 {label.plaintext_sha256[:16]}…); nothing was overwritten"
            )
        log.info("recording.already_stored", key=key, encrypted=True)
        return archived_encrypted(key, size, digest, earlier, found, source_url, info.composite_sha256)

    async def encrypt(self, download: Download) -> Ciphertext:
        """The download, encrypted to a fresh call key, in a local buffer (in a worker thread: the
        encryption streams, 64 KiB at a time). The plaintext is hashed again as it is read: a
        buffer that no longer holds the bytes downloaded is never encrypted (SpoolError)."""
        key = CallKey()
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by Ciphertext.close
            max_size=self._spool_memory, dir=str(self._spool_dir) if self._spool_dir else None
        )

        def run() -> tuple[encryption.Digest, encryption.Digest]:
            download.file.seek(0)
            return encryption.encrypt(download.file, spool, key.recipient)

        try:
            try:
                plain, cipher = await anyio.to_thread.run_sync(run, limiter=self._limiter)
            except OSError as exc:
                where = str(self._spool_dir or tempfile.gettempdir())
                log.error("spool.failed", spool_dir=where, error=exc.strerror, errno=exc.errno)
                raise SpoolError(f"cannot encrypt the download into {where}: {exc.strerror}") from None
            if (plain.size, plain.sha256) != (download.size, download.sha256):
                log.error("spool.changed", url=download.url, sha256_read=plain.sha256.hex())
                raise SpoolError(
                    "the local download buffer no longer holds the bytes downloaded: nothing was encrypted or "
                    "stored; the call is tried again (is the spool disk failing? download.spool_dir)"
                )
            spool.seek(0)
            return Ciphertext(spool, cipher.size, cipher.sha256, key)
        except BaseException:
            spool.close()
            raise

    @staticmethod
    def _label(recording_key: str, sealed: Ciphertext, download: Download) -> Label:
        return Label(
            recording=recording_key,
            recipient=sealed.key.recipient,
            ciphertext_size=sealed.size,
            ciphertext_sha256=sealed.sha256.hex(),
            plaintext_size=download.size,
            plaintext_sha256=download.sha256.hex(),
            format=download.format,
            audio=download.audio.as_dict() if download.audio else None,
            trailing_bytes=download.trailing_bytes,
        )

    async def _store_key(self, label: Label, key: CallKey) -> Encrypted:
        """The key object, then its label, create-only in the keys store; what the recording's
        record will say of its encryption."""
        stem = self.keys.stem(label.recording)
        tag = keyobjects.tag(key.recipient)
        key_object = keyobjects.key_object_key(stem, tag, self.fingerprint)
        await put_new(self.keys, key_object, key.wrapped(self._recipients, recording=label.recording))
        await put_new(self.keys, keyobjects.label_key(stem, tag), label.to_bytes())
        log.debug("key.stored", key_object=key_object)
        return Encrypted(key.recipient, key_object, label.plaintext_size, label.plaintext_sha256)

    async def _discard_key(self, recording_key: str, encrypted: Encrypted) -> None:
        """Remove the key this run made for *recording_key*, which it did not store after all (an
        earlier run's recording is there): a key for nothing is never left behind on purpose."""
        stem = self.keys.stem(recording_key)
        tag = keyobjects.tag(encrypted.recipient)
        removal = await self.keys.remove([encrypted.key_object, keyobjects.label_key(stem, tag)])
        log.info("key.discarded", recording=recording_key, key_object=encrypted.key_object, versions=removal.removed)

    async def stored(self, recording_key: str, size: int, sha256: bytes) -> tuple[Label, Encrypted]:
        """The label and key of the ciphertext an earlier run stored under *recording_key* (whose
        bytes, read and hashed, have *size* and *sha256*). Raises ArchiveConflict when no label of
        the recording states that ciphertext, or its key object is gone."""
        stem = self.keys.stem(recording_key)
        held = await self.keys.of(stem)
        for tag, label_key in sorted(held.labels.items()):
            try:
                label = await self.keys.read_label(label_key)
            except (CallError, ObjectMissing):
                continue  # a damaged label names nothing; verify reports it
            if (label.recording, label.ciphertext_size, label.ciphertext_sha256) != (recording_key, size, sha256.hex()):
                continue
            objects = held.objects.get(tag, {})
            if not objects:
                raise ArchiveConflict(
                    f"{recording_key} is an encrypted recording whose key object is gone from {self.keys.description} "
                    "(erased? see `archiver verify`); nothing was overwritten"
                )
            key_object = objects.get(self.fingerprint) or objects[sorted(objects)[0]]
            return label, Encrypted(label.recipient, key_object, label.plaintext_size, label.plaintext_sha256)
        raise ArchiveConflict(
            f"{recording_key} holds an encrypted recording ({size} bytes, sha256 {sha256.hex()[:16]}…) that no key "
            f"label in {self.keys.description} describes: it cannot be checked against the recording now served; "
            "nothing was overwritten"
        )
