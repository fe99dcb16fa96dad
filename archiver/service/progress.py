"""Progress of a long backfill: a live bar on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Never, TextIO

import structlog

from archiver.archive.events import ArchiveEvents
from archiver.core.quantities import format_size
from archiver.core.report import RunReport

if TYPE_CHECKING:
    from tqdm import tqdm

log = structlog.get_logger("archiver.service.progress")


class TerminalLogStream:
    """A file for log lines that prints them above the progress bar instead of through it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            from tqdm import tqdm  # noqa: PLC0415 - only a terminal needs it

            tqdm.write(line, file=self._stream)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return True


class BackfillProgress(ArchiveEvents):
    """Feeds on the run's RunReport after each call (an observer of the archiving path).

    On a terminal: a bar over the days of the range, with calls, bytes, rate and ETA.
    Elsewhere: a ``backfill.progress`` log event every *every* seconds.
    """

    def __init__(self, *, terminal: bool, stream: TextIO = sys.stderr, every: float = 10.0) -> None:
        self._bar: tqdm[Never] | None = None
        self._terminal = terminal
        self._stream = stream
        self._every = every
        self._began = time.monotonic()
        self._last_log = self._began

    def progressed(self, report: RunReport) -> None:
        elapsed = max(time.monotonic() - self._began, 1e-6)
        rate = report.bytes / elapsed
        if self._terminal:
            if self._bar is None:
                columns, rows = _screen(self._stream)
                from tqdm import tqdm  # noqa: PLC0415 - only a terminal needs it

                self._bar = tqdm(total=report.windows, unit="day", file=self._stream, ncols=columns, nrows=rows)
            bar = self._bar
            bar.n = report.windows_done
            speed = f"{format_size(int(rate))}/s"
            bar.set_postfix_str(f"{report.done} calls, {format_size(report.bytes)}, {speed}", refresh=False)
            bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_log >= self._every:
            self._last_log = now
            eta = (
                elapsed / report.windows_done * (report.windows - report.windows_done) if report.windows_done else None
            )
            log.info(
                "backfill.progress",
                days_done=report.windows_done,
                days=report.windows,
                calls=report.done,
                bytes=report.bytes,
                bytes_per_second=round(rate),
                eta_seconds=round(eta) if eta is not None else None,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _screen(stream: TextIO) -> tuple[int, int]:
    """The terminal's (columns, rows); 100 x 24 where it does not say (a fresh pty reports 0 x 0,
    and tqdm hides a bar that does not fit in 0 rows)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return 100, 24
    return (size.columns if size.columns > 0 else 100), (size.lines if size.lines > 0 else 24)
