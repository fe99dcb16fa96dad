"""What one backfill or poll did: counts by outcome, and every call that is not done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archiver.core.outcome import DONE_STATUSES, RecordingStatus


@dataclass
class RunReport:
    """What one backfill or poll did. ``failed`` and ``parked`` name each call."""

    outcomes: dict[RecordingStatus, int] = field(default_factory=lambda: dict.fromkeys(DONE_STATUSES, 0))
    parked: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # failed run after run: set aside, retried slowly
    skipped: int = 0  # already in the bucket
    by_peers: int = 0  # archived during this run by a peer sharing it (another host or process)
    suspicious: int = 0  # rows that look recorded but came without a link field the client knows
    rows: int = 0
    bytes: int = 0
    windows: int = 0
    windows_done: int = 0
    interrupted: bool = False

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    def summary(self) -> dict[str, int]:
        """The counts, for log events and the ledger."""
        counts = {
            "parked": len(self.parked),
            "failed": len(self.failed),
            "skipped": self.skipped,
            "suspicious": self.suspicious,
            "quarantined": len(self.quarantined),
        }
        return {
            **{str(k): v for k, v in self.outcomes.items()},
            **counts,
            "rows": self.rows,
            "bytes": self.bytes,
            "windows": self.windows,
        }

    @property
    def complete(self) -> bool:
        """Every call seen is done: nothing failed, waits, or was left by an interruption."""
        return not self.failed and not self.parked and not self.interrupted

    def merge(self, part: RunReport) -> None:
        """Add *part*'s calls and counts to these (its windows are the caller's to count)."""
        for status, count in part.outcomes.items():
            self.outcomes[status] += count
        self.parked += part.parked
        self.failed += part.failed
        self.quarantined += part.quarantined
        self.skipped += part.skipped
        self.by_peers += part.by_peers
        self.suspicious += part.suspicious
        self.rows += part.rows
        self.bytes += part.bytes
        self.interrupted = self.interrupted or part.interrupted

    def to_dict(self) -> dict[str, object]:
        """Everything in the report, as JSON can carry it (a worker process hands it to its parent)."""
        return {
            "outcomes": {str(k): v for k, v in self.outcomes.items()},
            "parked": self.parked,
            "failed": [list(f) for f in self.failed],
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "by_peers": self.by_peers,
            "suspicious": self.suspicious,
            "rows": self.rows,
            "bytes": self.bytes,
            "windows": self.windows,
            "windows_done": self.windows_done,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        """A report as :meth:`to_dict` wrote it."""
        report = cls(
            parked=[str(c) for c in data.get("parked", [])],
            failed=[(str(c), str(e)) for c, e in data.get("failed", [])],
            quarantined=[str(c) for c in data.get("quarantined", [])],
            skipped=int(data.get("skipped", 0)),
            by_peers=int(data.get("by_peers", 0)),
            suspicious=int(data.get("suspicious", 0)),
            rows=int(data.get("rows", 0)),
            bytes=int(data.get("bytes", 0)),
            windows=int(data.get("windows", 0)),
            windows_done=int(data.get("windows_done", 0)),
            interrupted=bool(data.get("interrupted", False)),
        )
        for status, count in dict(data.get("outcomes", {})).items():
            report.outcomes[RecordingStatus(status)] = int(count)
        return report
