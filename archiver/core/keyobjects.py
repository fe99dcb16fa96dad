"""Where an encrypted recording's key lives in the keys store, and what its label says. Pure.

For the recording ``{prefix}/YYYY/MM/DD/{call_id}[.revN].{ext}.age``, the keys store holds, under
``storage.encryption.keys_url``'s prefix and the same day::

    YYYY/MM/DD/{call_id}[.revN].{tag}.json        the label: which recording, its digests (plaintext JSON)
    YYYY/MM/DD/{call_id}[.revN].{tag}.{set}.age   the key object, wrapped to the recipient set {set}

``tag`` (16 hex digits of the SHA-256 of the call key's recipient) tells apart the keys made for
one recording by runs that stopped before storing it, so no key is ever written over another.
``set`` is :func:`archiver.core.encryption.recipients_fingerprint` of the recipients the key is
wrapped to: ``rekey`` writes the same key under today's set, then removes the others, and a
listing alone says which keys are wrapped to today's recipients.

The label is written with the key, before the recording: it is what lets an archiver without any
identity tell, after a crash between the recording and its sidecar, whether the encrypted
recording in the archive is the one it downloads again (the ciphertext's digest, and the
plaintext's). Nothing in it is secret: the sidecar states the same digests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from archiver.core import keys
from archiver.core.documents import parse_document
from archiver.core.identity import CALL_ID_RE

LABEL_SCHEMA = "ccall-archiver/key-label/v1"
LABEL_LIMIT = 64 << 10  # bytes; a label is a few hundred
KEY_LIMIT = 64 << 10  # bytes; a key object is about 400
_NAME = re.compile(r"^(?P<stem>.+)\.(?P<tag>[0-9a-f]{16})(?:\.(?P<set>[0-9a-f]{12})\.age|\.json)$")


class KeyName(NamedTuple):
    """What a key store's key says: the recording it is for (*stem*), which key (*tag*), and for a
    key object the recipient set it is wrapped to (None: the label)."""

    stem: str
    tag: str
    recipients: str | None

    @property
    def is_label(self) -> bool:
        return self.recipients is None


def stem(keys_prefix: str, day: date, call_id: str, revision: int = 1) -> str:
    """The keys store's name of one recording (call and revision), without tag or suffix."""
    return keys.sidecar_key(keys_prefix, day, call_id, revision).removesuffix(".json")


def stem_of(keys_prefix: str, recording_key: str) -> str | None:
    """The stem of the key of the encrypted recording *recording_key* (None: not a recording's key)."""
    parsed = keys.parse_call_key(recording_key)
    if parsed is None or parsed.ext == "json":
        return None
    return stem(keys_prefix, parsed.day, parsed.call_id, parsed.revision)


def tag(recipient: str) -> str:
    """The name of one call key among a recording's keys: from its recipient (public, and unique)."""
    return hashlib.sha256(recipient.encode()).hexdigest()[:16]


def key_object_key(stem_: str, tag_: str, recipients: str) -> str:
    return f"{stem_}.{tag_}.{recipients}.age"


def label_key(stem_: str, tag_: str) -> str:
    return f"{stem_}.{tag_}.json"


def parse(key: str) -> KeyName | None:
    """What a key in the keys store says, or None for any other key."""
    found = _NAME.match(key)
    if found is None:
        return None
    call, rev, revision = found.group("stem").rsplit("/", 1)[-1].partition(".rev")
    if not CALL_ID_RE.match(call) or (rev and not (revision.isdigit() and int(revision) >= 2)):
        return None
    return KeyName(found.group("stem"), found.group("tag"), found.group("set"))


@dataclass(frozen=True)
class Label:
    """What was encrypted under one key: the recording's key in the archive, the call key's
    recipient, and the size and SHA-256 of the ciphertext stored and of the plaintext downloaded
    (its format and audio parameters too, as the download's checks found them)."""

    recording: str
    recipient: str
    ciphertext_size: int
    ciphertext_sha256: str
    plaintext_size: int
    plaintext_sha256: str
    format: str
    audio: dict[str, float | int] | None = None
    trailing_bytes: int = 0

    def to_bytes(self) -> bytes:
        doc = {
            "schema": LABEL_SCHEMA,
            "recording": self.recording,
            "recipient": self.recipient,
            "ciphertext": {"size": self.ciphertext_size, "sha256": self.ciphertext_sha256},
            "plaintext": {
                "size": self.plaintext_size,
                "sha256": self.plaintext_sha256,
                "format": self.format,
                "audio": self.audio,
                "trailing_bytes": self.trailing_bytes,
            },
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> Label:
        """A label from its bytes; ValueError when they are not one."""
        doc = parse_document(raw, LABEL_SCHEMA)
        cipher, plain = doc.get("ciphertext"), doc.get("plaintext")
        if not isinstance(cipher, dict) or not isinstance(plain, dict):
            raise ValueError("no ciphertext or plaintext member")
        try:
            return cls(
                recording=_text(doc["recording"]),
                recipient=_text(doc["recipient"]),
                ciphertext_size=_whole(cipher["size"]),
                ciphertext_sha256=_text(cipher["sha256"]),
                plaintext_size=_whole(plain["size"]),
                plaintext_sha256=_text(plain["sha256"]),
                format=_text(plain["format"]),
                audio=plain.get("audio") if isinstance(plain.get("audio"), dict) else None,
                trailing_bytes=_whole(plain.get("trailing_bytes", 0)),
            )
        except KeyError as exc:
            raise ValueError(f"no {exc.args[0]}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a value that is not text")
    return value


def _whole(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("a size that is not a whole number")
    return value
