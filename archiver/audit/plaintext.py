"""Reading encrypted recordings: each one's key opened with the archive's identity, and its bytes
decrypted as they stream from the store (``show``, ``export``, ``browse``, ``verify --decrypt``).

A recording's key is found from its record: the key object the record names, or, after a
``rekey``, the same key under today's recipients (same stem and tag); it must open with one of
the identities of ``storage.encryption.identity_file`` and be the key the record names (its
recipient), so that a key object swapped for another's is found out, not used. The recording is
then decrypted in a worker thread, 64 KiB at a time, each piece authenticated before it is handed
on: memory stays flat whatever the recording's size, and no plaintext touches the disk here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from archiver.core import encryption, keyobjects
from archiver.core.encryption import DecryptionFailed, Digest, Identity, KeyUnreadable
from archiver.core.outcome import Encrypted
from archiver.errors import DecryptionError, KeyObjectError, ObjectMissing
from archiver.store import Store
from archiver.store.keys import KeyStore

Write = Callable[[bytes], object]  # called in a worker thread with each piece of plaintext
NOT_OURS = "not encrypted to any identity"  # what a key says that the identity file cannot open


class _Enough(Exception):
    """The range asked for is written: the decryption stops there."""


class Decrypter:
    """Opens keys in *keys* with *identities*; decrypts recordings (a few at once: *limiter*)."""

    def __init__(
        self, keys: KeyStore, identities: Sequence[Identity], *, limiter: anyio.CapacityLimiter | None = None
    ) -> None:
        self.keys = keys
        self._identities = list(identities)
        self._limiter = limiter or anyio.CapacityLimiter(4)

    async def key_for(self, rec: Mapping[str, Any]) -> Identity:
        """The key of the encrypted recording *rec* (a record's ``recording`` object). Raises
        KeyObjectError naming the recording: no key object left (an erased call's), none that
        opens with the identities, or one that holds another recording's key."""
        stated = Encrypted.of(rec)
        recording = str(rec.get("key"))
        if stated is None:
            raise KeyObjectError(f"the record of {recording} does not say how it was encrypted")
        stem = keyobjects.stem_of(self.keys.prefix, recording)
        if stem is None:
            raise KeyObjectError(f"{recording} is not the key of a recording")
        held = await self.keys.of(stem)
        tag = keyobjects.tag(stated.recipient)
        # Only this recording's keys, of the tag its record states: a record naming any other object
        # (another call's key, a path out of the keys' folder) is never followed.
        candidates = sorted(held.objects.get(tag, {}).values(), key=lambda k: k != stated.key_object)
        reasons = []
        for key_object in candidates:
            try:
                key = encryption.unwrap(await self.keys.read_key(key_object), self._identities)
            except ObjectMissing:
                continue
            except KeyUnreadable as exc:
                reasons.append(f"{key_object}: {exc}")
                continue
            if encryption.public(key) != stated.recipient:
                reasons.append(f"{key_object} holds another recording's key, not the one its record names")
                continue
            return key
        if not reasons:
            raise KeyObjectError(
                f"the key of {recording} is not in {self.keys.description}: it was destroyed (the call erased?) "
                "or lost; the recording cannot be decrypted"
            )
        raise KeyObjectError(f"the key of {recording} cannot be used: {'; '.join(reasons)}")

    async def decrypt(
        self,
        store: Store,
        rec: Mapping[str, Any],
        write: Write,
        *,
        start: int = 0,
        end: int | None = None,
        key: Identity | None = None,
    ) -> Digest | None:
        """Decrypt the recording *rec* names (with *key*, when the caller opened it already),
        handing *write* (in a worker thread) the plaintext from *start* up to *end* (exclusive;
        None: its end). Returns the whole plaintext's size and SHA-256 when it was read to its end
        (None when it stopped at *end*).

        Raises KeyObjectError, DecryptionError (damaged, cut short, another key's), and what the
        store raises (ObjectInColdStorage among them)."""
        key = key or await self.key_for(rec)
        recording = str(rec["key"])
        chunks = store.stream(recording)
        window = _Window(write, start, end)
        reader = _Pull(chunks)
        try:
            async with self._limiter:
                return await anyio.to_thread.run_sync(_run, reader, window, key)
        except DecryptionFailed as exc:
            raise DecryptionError(f"{recording} does not decrypt: {exc}") from None
        finally:
            with anyio.CancelScope(shield=True):
                await chunks.aclose()  # type: ignore[attr-defined]

    async def check(self, store: Store, rec: Mapping[str, Any]) -> Digest:
        """Decrypt the whole recording *rec* names and compare it with the plaintext its record
        states; the plaintext's digest. Raises DecryptionError when they differ."""
        digest = await self.decrypt(store, rec, lambda _: None)
        assert digest is not None  # read to its end
        stated = Encrypted.of(rec)
        if stated is not None and (digest.size, digest.sha256.hex()) != (
            stated.plaintext_size,
            stated.plaintext_sha256,
        ):
            raise DecryptionError(
                f"{rec.get('key')} decrypts to {digest.size} bytes of SHA-256 {digest.sha256.hex()[:16]}…, not to the "
                f"{stated.plaintext_size} bytes of SHA-256 {stated.plaintext_sha256[:16]}… its record states"
            )
        return digest


def _run(reader: _Pull, window: _Window, key: Identity) -> Digest | None:
    try:
        return encryption.decrypt(reader, window, key)
    except _Enough:
        return None


class _Pull:
    """The ciphertext as pyrage reads it, in the worker thread: each chunk fetched from the store
    on the event loop as the one before is used up."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._done = False

    async def _next(self) -> bytes | None:
        return await anext(self._chunks, None)

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._done:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self._done = True
            else:
                self._buffer = chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


class _Window:
    """Hands *write* the plaintext from *start* up to *end*; stops the decryption past *end*."""

    def __init__(self, write: Write, start: int, end: int | None) -> None:
        self._write = write
        self._start = start
        self._end = end
        self._at = 0

    def __call__(self, piece: bytes) -> None:
        first, after = self._at, self._at + len(piece)
        self._at = after
        low, high = max(first, self._start), after if self._end is None else min(after, self._end)
        if low < high:
            self._write(piece[low - first : high - first])
        if self._end is not None and after >= self._end:
            raise _Enough
