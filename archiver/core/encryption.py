"""Recordings encrypted with age (age-encryption.org/v1), through pyrage (bindings to rage). Pure:
it works on the file objects it is given and opens nothing itself.

Each recording is encrypted to an X25519 identity made for it alone (a *call key*). That
identity, as an age identity file (what ``age-keygen`` writes), is itself encrypted to the
configured recipients: the *key object*. Anyone holding one of the recipients' identities reads
a recording with two stock commands::

    age -d -i archive-identity -o call.key  KEY_OBJECT
    age -d -i call.key          -o call.wav RECORDING

Destroying the key object destroys the only way to the recording's plaintext (crypto-shredding).

No cryptography is written here: pyrage encrypts and decrypts, streaming in chunks of 64 KiB,
each authenticated, so memory stays flat whatever a recording's size. This module only hashes
what passes through (the SHA-256 of the plaintext and of the ciphertext) and reads identity files.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import pyrage

Identity = pyrage.x25519.Identity
_RECIPIENT_PREFIX = "age1"
_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
KEY_HEADER = "# ccall-archiver: the key of one recording (an age identity); keep it where the recording is not"


class KeyUnreadable(ValueError):
    """A key object that does not open with the identities given, or holds no key: *reason* says which."""


class DecryptionFailed(ValueError):
    """The ciphertext does not decrypt: damaged, cut short, or not for this key."""


@dataclass(frozen=True)
class Digest:
    """Size and SHA-256 of a stream that passed through."""

    size: int
    sha256: bytes


def recipient(text: str) -> pyrage.x25519.Recipient:
    """An X25519 recipient (``age1…``); ValueError saying why *text* is not one."""
    value = text.strip()
    if not value.startswith(_RECIPIENT_PREFIX):
        raise ValueError(f"{value[:12]!r} is not an age X25519 recipient (they start with age1…)")
    try:
        return pyrage.x25519.Recipient.from_str(value)
    except pyrage.RecipientError as exc:
        raise ValueError(f"{value!r} is not an age X25519 recipient: {exc}") from None


def recipients_fingerprint(recipients: Iterable[str]) -> str:
    """A short name of a set of recipients (12 hex digits of the SHA-256 of them, sorted): the
    key objects wrapped to this set carry it in their names, so ``rekey`` sees at a listing which
    are wrapped to today's recipients."""
    joined = "\n".join(sorted({r.strip() for r in recipients}))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def parse_identities(text: str) -> list[Identity]:
    """The X25519 identities of an age identity file (one ``AGE-SECRET-KEY-1…`` a line; ``#``
    comments and blank lines allowed). ValueError naming the line, never its content (a secret)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if not value.startswith(_IDENTITY_PREFIX):
            raise ValueError(f"line {number} is not an age X25519 identity (AGE-SECRET-KEY-1…)")
        try:
            found.append(Identity.from_str(value))
        except pyrage.IdentityError:
            raise ValueError(f"line {number} is not a valid age X25519 identity") from None
    if not found:
        raise ValueError("it holds no age identity (AGE-SECRET-KEY-1…)")
    return found


def public(identity: Identity) -> str:
    """The recipient (``age1…``) an identity decrypts for."""
    return str(identity.to_public())


class CallKey:
    """The key of one recording: a fresh X25519 identity, made for it alone."""

    def __init__(self, identity: Identity | None = None) -> None:
        self._identity = identity or Identity.generate()
        self.recipient = public(self._identity)

    @property
    def identity(self) -> Identity:
        return self._identity

    def wrapped(self, recipients: Sequence[str], *, recording: str) -> bytes:
        """The key object: this key as an age identity file (with the recording it opens and its
        public key as comments, as ``age-keygen`` writes them), encrypted to *recipients*."""
        text = f"{KEY_HEADER}\n# recording: {recording}\n# public key: {self.recipient}\n{self._identity}\n"
        return bytes(pyrage.encrypt(text.encode(), [recipient(r) for r in recipients]))


def unwrap(data: bytes, identities: Sequence[Identity]) -> Identity:
    """The call key inside a key object. Raises KeyUnreadable: not an age file, not encrypted to
    any of *identities*, or not holding exactly one key."""
    if not data.startswith(b"age-encryption.org/v1\n"):
        raise KeyUnreadable("it is not an age file (damaged, or not a key object)")
    try:
        text = bytes(pyrage.decrypt(data, list(identities)))
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise KeyUnreadable("it is not encrypted to any identity in storage.encryption.identity_file") from None
        raise KeyUnreadable(f"it is damaged: it does not authenticate ({exc})") from None
    except OSError:  # pyrage's word for a stream that does not authenticate
        raise KeyUnreadable("it is damaged: its ciphertext does not authenticate") from None
    try:
        keys = parse_identities(text.decode())
    except (UnicodeDecodeError, ValueError):
        raise KeyUnreadable("it decrypts, but to no age identity") from None
    if len(keys) != 1:
        raise KeyUnreadable(f"it holds {len(keys)} identities where a key object holds one")
    return keys[0]


def rewrap(data: bytes, identities: Sequence[Identity], recipients: Sequence[str]) -> tuple[bytes, Identity]:
    """The key object *data*, opened with *identities* and encrypted again to *recipients* (its
    text as it was, comments and all); and the key it holds. Raises KeyUnreadable."""
    key = unwrap(data, identities)
    text = bytes(pyrage.decrypt(data, list(identities)))
    return bytes(pyrage.encrypt(text, [recipient(r) for r in recipients])), key


def encrypt(src: IO[bytes], dst: IO[bytes], to: str) -> tuple[Digest, Digest]:
    """Encrypt *src* (from where it stands) into *dst* for the recipient *to*, streaming.

    Returns the size and SHA-256 of the plaintext read and of the ciphertext written. An error
    reading *src* or writing *dst* is raised as itself (an OSError from the spool stays one).
    """
    reading, writing = _Hashing(src.read), _Hashing(dst.write)
    try:
        pyrage.encrypt_io(reading, writing, [recipient(to)])
    except pyrage.EncryptError:
        reading.reraise()
        writing.reraise()
        raise
    return reading.digest(), writing.digest()


def decrypt(src: Any, dst_write: Callable[[bytes], object], key: Identity) -> Digest:
    """Decrypt *src* (a file object, or anything with ``read(n)``) with *key*, streaming, handing
    each piece of plaintext to *dst_write*: every piece has been authenticated before it is
    handed over. Returns the plaintext's size and SHA-256.

    Raises DecryptionFailed (damaged, cut short, or another key's), or whatever *src* or
    *dst_write* raised.
    """
    reading, writing = _Hashing(src.read), _Hashing(dst_write)
    try:
        pyrage.decrypt_io(reading, writing, [key])
    except (pyrage.DecryptError, OSError) as exc:
        reading.reraise()
        writing.reraise()
        if isinstance(exc, pyrage.DecryptError) and "no matching keys" in str(exc).lower():
            raise DecryptionFailed("it is not encrypted to the key its record names") from None
        raise DecryptionFailed("its ciphertext is damaged or cut short: it does not authenticate") from None
    return writing.digest()


class _Hashing(io.RawIOBase):
    """A reader or a writer that hashes what passes through, and keeps the error of the file
    underneath (pyrage turns it into one of its own): :meth:`reraise` raises it as it was."""

    def __init__(self, move: Callable[..., Any]) -> None:
        self._move = move
        self._hasher = hashlib.sha256()
        self._size = 0
        self._error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._move(len(buffer))
        except BaseException as exc:
            self._error = exc
            raise
        data = bytes(data or b"")
        buffer[: len(data)] = data
        self._hasher.update(data)
        self._size += len(data)
        return len(data)

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        try:
            self._move(chunk)
        except BaseException as exc:
            self._error = exc
            raise
        self._hasher.update(chunk)
        self._size += len(chunk)
        return len(chunk)

    def reraise(self) -> None:
        if self._error is not None:
            raise self._error

    def digest(self) -> Digest:
        return Digest(self._size, self._hasher.digest())
