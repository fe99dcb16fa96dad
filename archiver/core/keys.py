"""Object keys in the bucket. Pure.

``{prefix}/{YYYY}/{MM}/{DD}/{call_id}.{ext}`` and ``….json``; a revision N (2, 3, …) of a call
adds ``{call_id}.rev{N}.json`` and, when it brings audio to a call that already had some,
``{call_id}.rev{N}.{ext}``. An encrypted recording (``storage.encryption``) is an age file named
``{call_id}.{ext}.age``. Nothing from the API but the call id enters a key, and a call id is
checked against :data:`archiver.core.identity.CALL_ID_RE` first, so no key can leave the prefix
whatever the API sends.
"""

from __future__ import annotations

import re
from datetime import date
from typing import NamedTuple

from archiver.core.identity import CALL_ID_RE

AUDIO_EXTENSIONS = ("wav", "mp3", "ogg", "flac")
ENCRYPTED = ".age"  # what an encrypted recording's key ends in, after its audio extension
_DAY_KEY = re.compile(
    r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/([^/]+?)(?:\.rev([1-9]\d*))?\.(json|(?:wav|mp3|ogg|flac)(?:\.age)?)$"
)


class CallKey(NamedTuple):
    """What a call object's key says: its day, call id, extension (``wav``, ``wav.age`` for an
    encrypted one, ``json``) and revision (1: the first)."""

    day: date
    call_id: str
    ext: str
    revision: int

    @property
    def encrypted(self) -> bool:
        return self.ext.endswith(ENCRYPTED)


def day_prefix(prefix: str, day: date) -> str:
    """The folder of one day, ending in ``/``."""
    base = f"{day.year:04d}/{day.month:02d}/{day.day:02d}/"
    return f"{prefix}/{base}" if prefix else base


def sidecar_key(prefix: str, day: date, call_id: str, revision: int = 1) -> str:
    """The sidecar of a call's first record, or of its *revision* (2, 3, …)."""
    return day_prefix(prefix, day) + _checked(call_id) + _revision(revision) + ".json"


def audio_key(prefix: str, day: date, call_id: str, ext: str, revision: int = 1, *, encrypted: bool = False) -> str:
    """The audio of a call: ``{call_id}.{ext}``, or ``{call_id}.rev{N}.{ext}`` for audio a revision
    adds to a call that already had some; *encrypted*: an age file, ``….{ext}.age``."""
    if ext not in AUDIO_EXTENSIONS:
        raise ValueError(f"not an audio extension: {ext!r}")
    name = day_prefix(prefix, day) + _checked(call_id) + _revision(revision) + "." + ext
    return name + ENCRYPTED if encrypted else name


def parse_call_key(key: str) -> CallKey | None:
    """What a call's object key says, or None for any other key."""
    match = _DAY_KEY.search(key)
    if not match or not CALL_ID_RE.match(match.group(4)):
        return None
    revision = int(match.group(5)) if match.group(5) else 1
    if match.group(5) and revision < 2:
        return None  # .rev1 is not a name the archiver writes
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return CallKey(day, match.group(4), match.group(6), revision)


def _revision(revision: int) -> str:
    if revision < 1:
        raise ValueError(f"not a revision: {revision}")
    return "" if revision == 1 else f".rev{revision}"


def _checked(call_id: str) -> str:
    if not CALL_ID_RE.match(call_id):
        raise ValueError(f"not a call id: {call_id!r}")
    return call_id
