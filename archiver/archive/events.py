"""What the archiving path tells the outside world, through one interface.

Metrics, liveness and the progress display are observers: each subclasses
:class:`ArchiveEvents` and overrides the hooks it cares about (the others do nothing). The
runner holds one :class:`EventFanout` of them, so adding an observer touches no constructor.
Hooks are called from the event loop and must not block.
"""

from __future__ import annotations

from collections.abc import Iterable

from archiver.core.outcome import RecordingStatus
from archiver.core.report import RunReport


class ArchiveEvents:
    """The hooks, each a no-op here."""

    def row_read(self) -> None:
        """A CDR row came from the API (the loop is alive)."""

    def row_suspicious(self, call_id: str, reason: str) -> None:
        """A row looks recorded but has no link field the client knows (the API's format changed?)."""

    def call_queued(self) -> None:
        """A call was handed to the workers."""

    def call_started(self) -> None:
        """A worker took a call."""

    def call_finished(self) -> None:
        """A worker is done with a call, whatever became of it."""

    def call_done(self, call_id: str, status: RecordingStatus, size: int) -> None:
        """The call's sidecar is stored; *size* is the audio's bytes (0 without audio)."""

    def call_parked(self, call_id: str) -> None:
        """The call waits for its recording; a retry is scheduled."""

    def call_failed(self, call_id: str, error: BaseException) -> None:
        """The call could not be finished in this run."""

    def call_quarantined(self, call_id: str) -> None:
        """The call failed run after run: set aside, so that it no longer holds the cursor."""

    def progressed(self, report: RunReport) -> None:
        """The run's counts after a call; *report* may be a view over several runs (a sharded range)."""


class EventFanout(ArchiveEvents):
    """Passes every hook to each of its observers, in order."""

    def __init__(self, observers: Iterable[ArchiveEvents] = ()) -> None:
        self.observers = list(observers)

    def row_read(self) -> None:
        for each in self.observers:
            each.row_read()

    def row_suspicious(self, call_id: str, reason: str) -> None:
        for each in self.observers:
            each.row_suspicious(call_id, reason)

    def call_queued(self) -> None:
        for each in self.observers:
            each.call_queued()

    def call_started(self) -> None:
        for each in self.observers:
            each.call_started()

    def call_finished(self) -> None:
        for each in self.observers:
            each.call_finished()

    def call_done(self, call_id: str, status: RecordingStatus, size: int) -> None:
        for each in self.observers:
            each.call_done(call_id, status, size)

    def call_parked(self, call_id: str) -> None:
        for each in self.observers:
            each.call_parked(call_id)

    def call_failed(self, call_id: str, error: BaseException) -> None:
        for each in self.observers:
            each.call_failed(call_id, error)

    def call_quarantined(self, call_id: str) -> None:
        for each in self.observers:
            each.call_quarantined(call_id)

    def progressed(self, report: RunReport) -> None:
        for each in self.observers:
            each.progressed(report)
