"""The scheduled commands' results as metrics: what the nightly ``verify`` and ``reconcile`` and the
daily ``expire`` last said, for the alerts that watch them.

A command run with ``--metrics-file PATH`` (as the units run them) writes, however it ends, its
result to PATH in the Prometheus text format: the node exporter's textfile convention, written
to a temporary file beside it and renamed into place, so a reader never sees half a file::

    archiver_command_last_run_timestamp_seconds{command="verify"} 1.7649e+09
    archiver_command_last_exit_code{command="verify"} 0
    archiver_command_last_duration_seconds{command="verify"} 84.2
    archiver_command_last_success_timestamp_seconds{command="verify"} 1.7649e+09

The last success is carried over from the file a failed run replaces. The daemon serves every
``*.prom`` file of ``metrics.textfile_dir`` (by default ``metrics/`` beside the ledger, where the
units write) on its own ``/metrics`` (:class:`CommandResults`), so the alerts need no node
exporter; where one runs, its textfile collector can read the same folder instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

PREFIX = "archiver_command_"
LAST_SUCCESS = "archiver_command_last_success_timestamp_seconds"


def write_result(path: Path, command: str, *, started: float, finished: float, exit_code: int) -> None:
    """Write *command*'s result to *path* (created with its folder where missing, replaced
    atomically). Raises OSError when it cannot be written."""
    registry = CollectorRegistry()

    def gauge(name: str, help_text: str, value: float) -> None:
        Gauge(name, help_text, ["command"], registry=registry).labels(command=command).set(value)

    gauge("archiver_command_last_run_timestamp_seconds", "When the command last ended (Unix time).", finished)
    gauge("archiver_command_last_exit_code", "How the command last ended: 0 done, 1 a problem, 2 usage.", exit_code)
    gauge("archiver_command_last_duration_seconds", "How long the command's last run took.", finished - started)
    success = finished if exit_code == 0 else _last_success(path, command)
    if success is not None:
        gauge(LAST_SUCCESS, "When the command last ended with exit code 0 (Unix time).", success)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def _last_success(path: Path, command: str) -> float | None:
    """The last success *path* records for *command*; None when it records none or is unreadable."""
    try:
        families = _families(_read_small(path))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    for family in families:
        for sample in family.samples:
            if sample.name == LAST_SUCCESS and sample.labels.get("command") == command:
                return float(sample.value)
    return None


MAX_RESULT_BYTES = 64 * 1024  # a command's result is a few hundred bytes; anything larger is not one


def _read_small(path: Path) -> str:
    """*path*'s text, read only when it is as small as a result is (a scrape reads every file)."""
    with path.open("rb") as file:
        data = file.read(MAX_RESULT_BYTES + 1)
    if len(data) > MAX_RESULT_BYTES:
        raise ValueError(f"{path} is larger than a result ({MAX_RESULT_BYTES} bytes)")
    return data.decode("utf-8")


def _families(text: str) -> list[Metric]:
    """The families of a textfile; ValueError when it is not the text format."""
    return list(text_string_to_metric_families(text))


class CommandResults(Collector):
    """Serves the ``archiver_command_*`` families of every ``*.prom`` file in *folder*, read at each
    scrape, and how many of those files could not be read (a file being replaced is never seen
    half-written: writers rename it into place). Where two files hold the same series, the newer
    file's is served: a duplicate series would make Prometheus refuse the whole scrape."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def collect(self) -> Iterator[Metric]:
        unreadable = 0
        merged: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for path in self._newest_first():
            try:
                families = _families(_read_small(path))
            except (OSError, UnicodeDecodeError, ValueError):
                unreadable += 1
                continue
            for family in families:
                if not family.name.startswith(PREFIX):
                    continue
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    series = (sample.name, tuple(sorted(sample.labels.items())))
                    if series not in seen:
                        seen.add(series)
                        into.samples.append(sample)
        yield from merged.values()
        yield GaugeMetricFamily(
            "archiver_textfiles_unreadable",
            "Files in metrics.textfile_dir that could not be read as the text format at this scrape.",
            value=unreadable,
        )

    def _newest_first(self) -> list[Path]:
        found = []
        for path in self._folder.glob("*.prom") if self._folder.is_dir() else []:
            try:
                found.append((path.stat().st_mtime, path))
            except OSError:
                continue  # replaced or removed since the listing
        return [path for _, path in sorted(found, reverse=True)]
