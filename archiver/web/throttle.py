"""Failed sign-ins slow down the next ones, before any password is checked. Pure.

Each failure of a key (an address, a user name) closes it for longer than the last (1 s, 2 s,
4 s … up to 30 s); while it is closed nothing is checked for it, whatever the password. A key
that fails no more is forgotten 15 minutes after its last failure, and the table holds at most
10,000 keys (the least recently failed forgotten first), so a flood of names cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
FORGET_AFTER = 900.0
MAX_KEYS = 10_000


@dataclass
class _Failures:
    in_a_row: int
    closed_until: float


class Throttle:
    """Failures by key; *clock* is monotonic seconds."""

    def __init__(self, clock: Callable[[], float], *, max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def closed_for(self, key: str) -> float:
        """Seconds until *key* may try again (0: it may now)."""
        found = self._failures.get(key)
        if found is None:
            return 0.0
        now = self._clock()
        if now > found.closed_until + FORGET_AFTER:
            del self._failures[key]
            return 0.0
        return max(0.0, found.closed_until - now)

    def failed(self, key: str) -> int:
        """Note a failure of *key*: it is closed for longer than after its last one. The number of
        failures in a row."""
        now = self._clock()
        found = self._failures.pop(key, None)
        in_a_row = 1 if found is None or now > found.closed_until + FORGET_AFTER else found.in_a_row + 1
        delay = min(FIRST_DELAY * 2.0 ** (in_a_row - 1), MAX_DELAY)
        self._failures[key] = _Failures(in_a_row, now + delay)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
        return in_a_row

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
