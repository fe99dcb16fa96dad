"""HTTP Range requests of recordings, and which of them the access trail counts as a play. Pure.

What is served (RFC 9110, section 14):

- no ``Range``, a unit other than ``bytes``, several ranges (``bytes=0-9,20-29``), a range that is
  not valid (``bytes=5-1``, ``bytes=x-``), or any ``If-Range`` (browse sends no validator an
  ``If-Range`` could match): the whole recording, 200;
- one valid range (``bytes=FIRST-LAST``, ``bytes=FIRST-``, ``bytes=-SUFFIX``; leading zeros and
  numbers of any length allowed, ``LAST`` past the end means the end): those bytes, 206;
- a valid range that starts at or past the end, or ``bytes=-0``: nothing, 416.

What is a play (:class:`Plays`): every answer that yields bytes of the recording is weighed by
the bytes it served, never by how its ``Range`` was written. It is a play, recorded once, when

1. the bytes served include the recording's first byte, or
2. the bytes served of that recording to that user over the last 24 hours, each byte counted
   once, reach half of the recording (a download in pieces of any size), or the pieces served
   number more than 32;

and requests of the same user for the same recording within 10 minutes of a recorded play (or of
the last request after it) are that same play: seeking in the player makes no new event.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

_SPEC = re.compile(r"^[ \t]*bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$", re.IGNORECASE)
_HUGE = 1 << 62  # any number past this is larger than any recording
SESSION_SECONDS = 600.0
MEMORY_SECONDS = 86400.0
MAX_PIECES = 32
REMEMBERED = 10_000


class Unsatisfiable(Exception):
    """A valid range that holds none of the recording's bytes (416)."""


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > 18 else int(digits)


def served_range(header: str | None, size: int, *, if_range: str | None = None) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of the bytes a GET with this ``Range`` is answered with
    (206), or None for the whole recording (200). Raises Unsatisfiable (416)."""
    if not header or if_range is not None or "," in header:
        return None
    found = _SPEC.match(header)
    if found is None:
        return None  # another unit, or not a valid range: ignored, as RFC 9110 allows
    first, last = found.group(1), found.group(2)
    if first == "":
        if last == "":
            return None
        suffix = _number(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size
    start = _number(first)
    if last != "" and _number(last) < start:
        return None  # an invalid range-spec
    if start >= size:
        raise Unsatisfiable
    end = size if last == "" else min(size, _number(last) + 1)
    return start, end


@dataclass
class _Reader:
    """What one user has been served of one recording."""

    pieces: list[tuple[int, int]] = field(default_factory=list)  # merged, sorted
    first_seen: float = 0.0
    last_seen: float = 0.0
    playing: bool = False  # a play was recorded and its session is live

    def add(self, start: int, end: int) -> int:
        """Add ``[start, end)``; the number of distinct bytes now covered."""
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self.pieces, (start, end)]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.pieces = merged
        return sum(b - a for a, b in merged)


class Plays:
    """Decides which served ranges are plays (see the module's text). *clock* is monotonic seconds.

    Remembers at most REMEMBERED (user, recording) pairs, the least recently used forgotten first.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._readers: OrderedDict[tuple[str, str], _Reader] = OrderedDict()

    def served(self, user: str, recording: str, size: int, start: int, end: int) -> bool:
        """Note that *user* was served bytes ``[start, end)`` of *recording* (*size* bytes);
        whether that makes a play to record."""
        now = self._clock()
        key = (user, recording)
        reader = self._readers.pop(key, None)
        if reader is not None and reader.playing and now - reader.last_seen > SESSION_SECONDS:
            reader = None  # the play is over: what comes now is weighed afresh
        if reader is not None and not reader.playing and now - reader.first_seen > MEMORY_SECONDS:
            reader = None
        if reader is None:
            reader = _Reader(first_seen=now, last_seen=now)
        self._readers[key] = reader
        while len(self._readers) > REMEMBERED:
            self._readers.popitem(last=False)
        if reader.playing:
            reader.last_seen = now
            return False
        covered = reader.add(start, end)
        reader.last_seen = now
        if start == 0 or 2 * covered >= size or len(reader.pieces) > MAX_PIECES:
            reader.pieces, reader.playing = [], True
            return True
        return False
