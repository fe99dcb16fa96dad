"""Object keys: the layout of the bucket, and that nothing can leave the prefix."""

from __future__ import annotations

from datetime import date

import pytest

from archiver.core.keys import audio_key, day_prefix, parse_call_key, sidecar_key

UUID = "09dc3fa8-ba86-11e5-a8af-dbc80e22bddb"


def test_keys_follow_the_documented_layout() -> None:
    """{prefix}/{YYYY}/{MM}/{DD}/{call_id}.{ext} and .json."""
    day = date(2026, 3, 7)
    assert audio_key("ccall/acme", day, UUID, "wav") == f"ccall/acme/2026/03/07/{UUID}.wav"
    assert sidecar_key("", day, UUID) == f"2026/03/07/{UUID}.json"
    assert day_prefix("p", day) == "p/2026/03/07/"


@pytest.mark.parametrize("call_id", ["../../x", "ABC", UUID.upper(), "nr-xyz", "rf-" + "0" * 31, UUID + "/../y", ""])
def test_anything_but_a_call_id_is_refused_in_a_key(call_id: str) -> None:
    """A key is built only from a checked call id, so it cannot escape the prefix."""
    with pytest.raises(ValueError, match="not a call id"):
        sidecar_key("p", date(2026, 1, 1), call_id)


def test_only_known_audio_extensions_make_keys() -> None:
    """The extension comes from sniffed bytes, never from the API."""
    with pytest.raises(ValueError, match="not an audio extension"):
        audio_key("p", date(2026, 1, 1), UUID, "exe")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"p/2026/03/07/{UUID}.json", (date(2026, 3, 7), UUID, "json", 1)),
        ("2026/12/31/nr-" + "a" * 32 + ".json", (date(2026, 12, 31), "nr-" + "a" * 32, "json", 1)),
        (f"p/2026/03/07/{UUID}.rev2.json", (date(2026, 3, 7), UUID, "json", 2)),
        (f"p/2026/03/07/{UUID}.rev12.wav", (date(2026, 3, 7), UUID, "wav", 12)),
        (f"p/2026/03/07/{UUID}.wav.age", (date(2026, 3, 7), UUID, "wav.age", 1)),
        (f"p/2026/03/07/{UUID}.rev2.mp3.age", (date(2026, 3, 7), UUID, "mp3.age", 2)),
        (f"p/2026/03/07/{UUID}.json.age", None),
        (f"p/2026/03/07/{UUID}.age", None),
        (f"p/2026/03/07/{UUID}.rev1.json", None),  # never written: the first record has no .rev
        (f"p/2026/03/07/{UUID}.rev02.json", None),
        ("p/2026/03/07/manifest-sha256.txt", None),
        ("p/2026/13/07/" + UUID + ".wav", None),
        ("p/_archiver/check/x.txt", None),
    ],
)
def test_call_keys_parse_back(key: str, expected: object) -> None:
    """Listing the bucket recovers day, call id and revision, and ignores other objects."""
    assert parse_call_key(key) == expected


def test_revisions_have_their_own_keys() -> None:
    """Revision N of a call: {call_id}.revN.json, and its audio, when the call already had some, {call_id}.revN.ext."""
    day = date(2026, 3, 7)
    assert sidecar_key("p", day, UUID, 2) == f"p/2026/03/07/{UUID}.rev2.json"
    assert audio_key("p", day, UUID, "wav", 3) == f"p/2026/03/07/{UUID}.rev3.wav"
    assert sidecar_key("p", day, UUID, 1) == sidecar_key("p", day, UUID)


def test_an_encrypted_recording_is_an_age_file_beside_the_sidecar() -> None:
    """With storage.encryption: {call_id}.{ext}.age, and the listing knows it for the call's audio."""
    day = date(2026, 3, 7)
    key = audio_key("p", day, UUID, "wav", encrypted=True)
    assert key == f"p/2026/03/07/{UUID}.wav.age"
    parsed = parse_call_key(key)
    assert parsed is not None
    assert parsed.encrypted
    assert parsed.call_id == UUID
    plain = parse_call_key(audio_key("p", day, UUID, "wav"))
    assert plain is not None
    assert not plain.encrypted
