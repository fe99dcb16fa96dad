"""A call's id: the only thing from the API that enters an object key. Pure.

- a recording link with a FreeSWITCH UUID in its path: that UUID, lower case;
- a link without one: ``rf-`` + the first 32 hex digits of SHA-256 of the URL;
- a call without a recording: ``nr-`` + the first 32 hex digits of SHA-256 of a canonical
  JSON object of the row's identity fields.

:data:`CALL_ID_RE` accepts exactly these three forms, so a key built from a call id cannot
leave its folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
CALL_ID_RE = re.compile(r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?:rf|nr)-[0-9a-f]{32})$")


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no spaces, UTF-8: the form hashed for ``nr-`` call ids."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def call_id_for_url(url: str) -> str:
    """The FreeSWITCH UUID in the link's path, lower case; else ``rf-`` + SHA-256 of the URL."""
    try:
        path = urlsplit(url).path
    except ValueError:
        path = ""
    segments = [s for s in path.split("/") if s]
    for i, segment in enumerate(segments):
        if i > 0 and segments[i - 1] == "cdr" and _UUID.match(segment):
            return segment.lower()
    for segment in segments:
        if _UUID.match(segment):
            return segment.lower()
    return "rf-" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:32]


IDENTITY_FIELDS = ("start", "source", "destination", "direction", "status", "duration")


def call_id_for_row(raw: Any) -> str:
    """``nr-`` + SHA-256 of the canonical JSON of the row's identity fields, for calls without a
    recording.

    Only :data:`IDENTITY_FIELDS` count (absent ones as null): fields that can change between two
    reads of the same call (``mos``, ``pdd``, ``tta``, ``cid_name``, anything the vendor adds)
    stay out, so the call keeps its id. A row that is not an object at all has no fields to
    pick: its whole value is hashed, so that two different unreadable rows stay two calls.
    """
    identity = {name: raw.get(name) for name in IDENTITY_FIELDS} if isinstance(raw, dict) else raw
    return "nr-" + hashlib.sha256(canonical_json(identity)).hexdigest()[:32]


def legacy_call_id_for_row(raw: Any) -> str:
    """The ``nr-`` id earlier versions gave: SHA-256 of the whole row. Archives written then keep
    theirs; a call found under it is the same call (see ``archive.daysync``)."""
    return "nr-" + hashlib.sha256(canonical_json(raw)).hexdigest()[:32]
