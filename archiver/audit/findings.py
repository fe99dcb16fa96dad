"""What ``verify`` finds: each problem, each piece of history, and the counts of what was checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from archiver.core import seal

# How far ahead of the verifier's clock a record may be dated before it is one made "in the future"
# (by a clock that was wrong, or by hand): the auditor's clock may be a little slow.
CLOCK_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the archive (or one thing that happened to it), named by call (when
    there is one) and key."""

    key: str
    what: str
    call_id: str | None = None

    def __str__(self) -> str:
        return (f"call {self.call_id}: " if self.call_id else "") + f"{self.what} ({self.key})"


@dataclass
class VerifyReport:
    days: int = 0
    calls: int = 0
    recordings: int = 0
    store_checked: int = 0  # compared with the store's own checksum (never the writer's metadata), not read
    rehashed: int = 0  # read back and hashed
    # What the store does with the checksums it is sent: refused (checks them), kept unchecked, none, not probed.
    store_checksums: str = "not probed"
    bytes_rehashed: int = 0
    unmanifested: int = 0
    seals: int = 0
    erased: int = 0  # calls whose recordings were erased on request
    cold: int = 0  # in cold storage, not read back: compared with the store's checksum (of store_checked)
    expired: dict[str, int] = field(default_factory=dict)  # retention policy -> days expired under it
    seal_head: seal.Link | None = None  # the chain's last seal: what an operator records elsewhere
    problems: list[Problem] = field(default_factory=list)
    history: list[Problem] = field(default_factory=list)  # what happened and was made good: no problem

    def as_dict(self) -> dict[str, Any]:
        head = self.seal_head
        return {
            "ok": not self.problems,
            "seals": self.seals,
            "seal_head": None if head is None else {"sequence": self.seals, "key": head.key, "sha256": head.sha256},
            "days": self.days,
            "calls": self.calls,
            "recordings": self.recordings,
            "compared_with_store_checksum": self.store_checked,
            "store_checksums": self.store_checksums,
            "rehashed": self.rehashed,
            "bytes_rehashed": self.bytes_rehashed,
            "not_yet_in_a_manifest": self.unmanifested,
            "erased": self.erased,
            "in_cold_storage": self.cold,
            "expired_days": self.expired,
            "problems": [{"call_id": p.call_id, "key": p.key, "problem": p.what} for p in self.problems],
            "history": [{"call_id": p.call_id, "key": p.key, "what": p.what} for p in self.history],
        }
