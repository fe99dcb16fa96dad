"""age through pyrage: call keys, key objects, streaming encryption, and the names in the keys store."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import date
from typing import IO, cast

import pytest

from archiver.core import encryption, keyobjects
from archiver.core.encryption import CallKey, DecryptionFailed, Identity, KeyUnreadable
from archiver.core.keyobjects import Label

UUID = "09dc3fa8-ba86-11e5-a8af-dbc80e22bddb"
RECORDING = f"ccall/2026/03/07/{UUID}.wav.age"


def test_a_recording_encrypts_to_its_own_key_and_decrypts_to_the_same_bytes_streaming() -> None:
    """encrypt() and decrypt() stream a file object through pyrage and give both digests."""
    plain = os.urandom(300_000)
    key = CallKey()
    sink = io.BytesIO()
    before, cipher = encryption.encrypt(io.BytesIO(plain), sink, key.recipient)
    ciphertext = sink.getvalue()
    assert before == encryption.Digest(len(plain), hashlib.sha256(plain).digest())
    assert cipher == encryption.Digest(len(ciphertext), hashlib.sha256(ciphertext).digest())
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    pieces: list[bytes] = []
    after = encryption.decrypt(io.BytesIO(ciphertext), pieces.append, key.identity)
    assert b"".join(pieces) == plain
    assert after == before
    assert max(len(p) for p in pieces) <= 64 << 10  # handed over a chunk at a time


@pytest.mark.parametrize("damage", ["flip", "cut", "other key"])
def test_damaged_or_foreign_ciphertext_never_decrypts(damage: str) -> None:
    """A flipped bit, a cut-off end or another recording's key: DecryptionFailed, never wrong bytes."""
    key = CallKey()
    sink = io.BytesIO()
    encryption.encrypt(io.BytesIO(bytes(200_000)), sink, key.recipient)
    ciphertext = bytearray(sink.getvalue())
    opener = key.identity
    if damage == "flip":
        ciphertext[150_000] ^= 1
    elif damage == "cut":
        del ciphertext[-100:]
    else:
        opener = Identity.generate()
    with pytest.raises(DecryptionFailed):
        encryption.decrypt(io.BytesIO(bytes(ciphertext)), lambda _: None, opener)


def test_an_error_of_the_file_underneath_is_raised_as_itself() -> None:
    """A spool that fails mid-read is an OSError from the spool, not pyrage's own error."""

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: object) -> int:
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        encryption.encrypt(cast("IO[bytes]", Failing()), io.BytesIO(), CallKey().recipient)


def test_a_key_object_opens_with_any_recipient_identity_and_holds_the_call_key() -> None:
    """The key object is the call key as an age identity file, encrypted to every recipient."""
    operations, escrow, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    key = CallKey()
    wrapped = key.wrapped([encryption.public(operations), encryption.public(escrow)], recording=RECORDING)
    for holder in (operations, escrow):
        assert encryption.public(encryption.unwrap(wrapped, [holder])) == key.recipient
    with pytest.raises(KeyUnreadable, match="not encrypted to any identity"):
        encryption.unwrap(wrapped, [stranger])
    with pytest.raises(KeyUnreadable, match="not an age file"):
        encryption.unwrap(b"garbage", [operations])
    with pytest.raises(KeyUnreadable, match="damaged"):
        encryption.unwrap(wrapped[:-20] + bytes(20), [operations])


def test_rewrapping_keeps_the_key_and_changes_who_can_open_it() -> None:
    """rekey's step: the same key, encrypted to the new recipients only."""
    old, new = Identity.generate(), Identity.generate()
    key = CallKey()
    wrapped = key.wrapped([encryption.public(old)], recording=RECORDING)
    again, inside = encryption.rewrap(wrapped, [old], [encryption.public(new)])
    assert encryption.public(inside) == key.recipient
    assert encryption.public(encryption.unwrap(again, [new])) == key.recipient
    with pytest.raises(KeyUnreadable):
        encryption.unwrap(again, [old])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no age identity"),
        ("# only a comment\n", "holds no age identity"),
        ("age1qqq\n", "line 1 is not an age X25519 identity"),
        ("# c\nAGE-SECRET-KEY-1NOTAKEY\n", "line 2 is not a valid age X25519 identity"),
    ],
)
def test_an_identity_file_that_holds_no_identity_is_named_by_line_never_quoted(text: str, message: str) -> None:
    """The message names the line; what is on it (perhaps a secret) is not repeated."""
    with pytest.raises(ValueError, match=message) as caught:
        encryption.parse_identities(text)
    assert "NOTAKEY" not in str(caught.value)


def test_an_identity_file_as_age_keygen_writes_it_parses() -> None:
    """Comments and several identities: age's own format."""
    a, b = Identity.generate(), Identity.generate()
    text = f"# created: 2026-01-01T00:00:00Z\n# public key: {encryption.public(a)}\n{a}\n\n{b}\n"
    assert [encryption.public(i) for i in encryption.parse_identities(text)] == [
        encryption.public(a),
        encryption.public(b),
    ]


@pytest.mark.parametrize("text", ["age1bad", "ssh-ed25519 AAAA", "AGE-SECRET-KEY-1X", ""])
def test_a_recipient_that_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an age X25519 recipient"):
        encryption.recipient(text)


def test_the_fingerprint_of_a_recipient_set_ignores_order_and_repeats() -> None:
    a, b = encryption.public(Identity.generate()), encryption.public(Identity.generate())
    assert encryption.recipients_fingerprint([a, b]) == encryption.recipients_fingerprint([b, a, a])
    assert encryption.recipients_fingerprint([a]) != encryption.recipients_fingerprint([a, b])
    assert len(encryption.recipients_fingerprint([a])) == 12


def test_key_objects_and_labels_are_named_by_recording_tag_and_recipient_set() -> None:
    """{stem}.{tag}.{set}.age and {stem}.{tag}.json, under the recording's day; and they parse back."""
    stem = keyobjects.stem("keys/hq", date(2026, 3, 7), UUID, 2)
    assert stem == f"keys/hq/2026/03/07/{UUID}.rev2"
    assert keyobjects.stem_of("keys/hq", f"ccall/hq/2026/03/07/{UUID}.rev2.wav.age") == stem
    key = keyobjects.key_object_key(stem, "0123456789abcdef", "a1b2c3d4e5f6")
    label = keyobjects.label_key(stem, "0123456789abcdef")
    assert keyobjects.parse(key) == (stem, "0123456789abcdef", "a1b2c3d4e5f6")
    assert keyobjects.parse(label) == (stem, "0123456789abcdef", None)
    assert keyobjects.parse(label).is_label  # type: ignore[union-attr]
    for other in (
        f"keys/2026/03/07/{UUID}.json",
        f"keys/2026/03/07/{UUID}.rev1.0123456789abcdef.json",
        "keys/2026/03/07/../x.0123456789abcdef.json",
        f"keys/2026/03/07/{UUID}.0123456789ABCDEF.json",
    ):
        assert keyobjects.parse(other) is None, other


def test_a_label_round_trips_and_a_damaged_one_is_refused() -> None:
    label = Label(RECORDING, "age1x", 10, "c" * 64, 8, "p" * 64, "wav", {"sample_rate": 8000}, 2)
    assert Label.parse(label.to_bytes()) == label
    for raw, why in (
        (b"{", "not valid JSON"),
        (b'{"schema": "other"}', "not a ccall-archiver/key-label/v1 document"),
        (label.to_bytes().replace(b'"size": 10', b'"size": -1'), "not a whole number"),
    ):
        with pytest.raises(ValueError, match=why):
            Label.parse(raw)
