"""``archiver backfill --processes N``: one backfill run by N worker processes on this host.

One Python process uses one core. The workers are ordinary backfills of the same range that
share it by day through the day-shard claims several hosts already use (so the archive must be
on S3 with coordination on); each keeps a ledger of its own (``ledger.p1.sqlite3``, …), which
also makes each a claim owner of its own. The parent starts them, shows one progress bar (or
passes their JSON log lines on, each with its ``worker``), forwards a stop signal, and prints one
summary from the reports the workers hand back on their standard output.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from archiver.core.report import RunReport

REPORT_EVENT = "backfill.worker_report"  # the one line a worker prints on its standard output


def worker_ledger(path: Path, worker: int) -> Path:
    """Worker *worker*'s ledger beside *path* (worker 0 keeps *path* itself)."""
    return path if worker == 0 else path.with_name(f"{path.stem}.p{worker}{path.suffix}")


def report_line(reports: Sequence[RunReport]) -> str:
    """What a worker prints on its standard output when it ends: its report for each source."""
    return json.dumps({"event": REPORT_EVENT, "reports": [r.to_dict() for r in reports]})


@dataclass
class Progress:
    """What the workers' log lines say so far: calls stored, bytes, and by which workers."""

    calls: int = 0
    bytes: int = 0
    workers_seen: set[int] = field(default_factory=set)


class Workers:
    """Runs *count* workers of the backfill *argv* (``archiver`` arguments without ``--worker``)."""

    def __init__(
        self,
        argv: list[str],
        count: int,
        *,
        total_days: int,
        terminal: bool,
        stderr: TextIO = sys.stderr,
        python: str = sys.executable,
    ) -> None:
        self._argv = argv
        self._count = count
        self._total_days = total_days
        self._terminal = terminal
        self._stderr = stderr
        self._python = python
        self._lock = threading.Lock()
        self.progress = Progress()
        self.errors: list[str] = []  # each failed worker's last words (command.failed)

    def run(self) -> tuple[list[RunReport] | None, list[int]]:
        """Run the workers to the end. Their reports merged per source (None when one handed back
        none), and each worker's exit code."""
        processes = [
            subprocess.Popen(  # noqa: S603 - this program, with the arguments it was given
                [self._python, "-m", "archiver", "--log-format", "json", *self._argv, "--worker", str(k)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
            for k in range(self._count)
        ]
        outputs: list[list[str]] = [[] for _ in processes]
        bar = self._bar()
        readers = []
        for k, process in enumerate(processes):
            assert process.stdout is not None
            assert process.stderr is not None
            readers.append(threading.Thread(target=self._log_lines, args=(k, process.stderr, bar), daemon=True))
            readers.append(threading.Thread(target=_collect, args=(process.stdout, outputs[k]), daemon=True))
        for reader in readers:
            reader.start()
        previous = {s: signal.signal(s, _forward(processes)) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            codes = [process.wait() for process in processes]
            for reader in readers:
                reader.join()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if bar is not None:
                bar.close()
        return merged_reports(outputs), codes

    def _bar(self) -> Any:
        if not self._terminal:
            return None
        from tqdm import tqdm  # noqa: PLC0415 - only a terminal needs it

        return tqdm(total=self._total_days, unit="day", file=self._stderr, desc=f"{self._count} processes")

    def _log_lines(self, worker: int, stream: IO[str], bar: Any) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                self._write(line, bar)
                continue
            with self._lock:
                self._count_event(worker, event, bar)
            if event.get("event") == "command.failed":
                self.errors.append(f"worker {worker}: {event.get('error')}")
            if bar is None:
                self._write(json.dumps({**event, "worker": worker}, ensure_ascii=False) + "\n", bar)
            elif event.get("level") in ("warning", "error", "critical") and event.get("event") != "command.failed":
                self._write(f"worker {worker}: {event.get('level')}: {event.get('event')} {_details(event)}\n", bar)

    def _count_event(self, worker: int, event: dict[str, Any], bar: Any) -> None:
        name = event.get("event")
        if name == "shard.done":
            if bar is not None:
                bar.update(1)
        elif name == "call.archived":
            self.progress.calls += 1
            self.progress.workers_seen.add(worker)
            size = event.get("size")
            self.progress.bytes += size if isinstance(size, int) else 0
            if bar is not None:
                bar.set_postfix(calls=self.progress.calls, MiB=round(self.progress.bytes / (1 << 20)), refresh=False)

    def _write(self, text: str, bar: Any) -> None:
        with self._lock:
            if bar is not None:
                bar.write(text.rstrip("\n"), file=self._stderr)
            else:
                self._stderr.write(text)
                self._stderr.flush()


def _collect(stream: IO[str], into: list[str]) -> None:
    into.extend(stream)


def _forward(processes: list[subprocess.Popen[str]]) -> Callable[[int, object], None]:
    """A signal handler that passes a stop on to every worker (each finishes its calls in hand)."""

    def handler(signum: int, frame: object) -> None:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    return handler


def merged_reports(outputs: list[list[str]]) -> list[RunReport] | None:
    """Each source's report, the workers' added up; None when a worker handed back none."""
    merged: list[RunReport] | None = None
    for lines in outputs:
        found = [json.loads(line) for line in lines if REPORT_EVENT in line]
        if not found:
            return None
        reports = [RunReport.from_dict(r) for r in found[-1]["reports"]]
        if merged is None:
            merged = reports
            continue
        for total, part in zip(merged, reports, strict=True):
            total.merge(part)
            total.windows = max(total.windows, part.windows)
    count = len(outputs)
    for total in merged or []:
        # Each worker counts the others' days as done by peers: (count - 1) times what the workers
        # stored; what is left over was stored by other hosts, and each worker counted it once.
        total.by_peers = max(0, total.by_peers - (count - 1) * total.done) // count
    return merged


def _details(event: dict[str, Any]) -> str:
    skip = {"event", "level", "timestamp", "logger"}
    return " ".join(f"{k}={v}" for k, v in event.items() if k not in skip)
