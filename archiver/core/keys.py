"""Object keys in the bucket. Pure.

``{prefix}/{YYYY}/{MM}/{DD}/{call_id}.{ext}`` and ``….json``. Nothing from the API but the
call id enters a key, and a call id is checked against :data:`archiver.core.identity.CALL_ID_RE`
first, so no key can leave the prefix whatever the API sends.
"""

from __future__ import annotations

import re
from datetime import date

from archiver.core.identity import CALL_ID_RE

AUDIO_EXTENSIONS = ("wav", "mp3", "ogg", "flac")
_DAY_KEY = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/([^/]+)\.(json|wav|mp3|ogg|flac)$")


def day_prefix(prefix: str, day: date) -> str:
    """The folder of one day, ending in ``/``."""
    base = f"{day.year:04d}/{day.month:02d}/{day.day:02d}/"
    return f"{prefix}/{base}" if prefix else base


def sidecar_key(prefix: str, day: date, call_id: str) -> str:
    return day_prefix(prefix, day) + _checked(call_id) + ".json"


def audio_key(prefix: str, day: date, call_id: str, ext: str) -> str:
    if ext not in AUDIO_EXTENSIONS:
        raise ValueError(f"not an audio extension: {ext!r}")
    return day_prefix(prefix, day) + _checked(call_id) + "." + ext


def parse_call_key(key: str) -> tuple[date, str, str] | None:
    """``(day, call_id, ext)`` of a call's object key, or None for any other key."""
    match = _DAY_KEY.search(key)
    if not match or not CALL_ID_RE.match(match.group(4)):
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return day, match.group(4), match.group(5)


def _checked(call_id: str) -> str:
    if not CALL_ID_RE.match(call_id):
        raise ValueError(f"not a call id: {call_id!r}")
    return call_id
