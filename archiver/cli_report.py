"""Human summaries printed at the end of a command. Pure formatting."""

from __future__ import annotations

from typing import TextIO

from archiver.pipeline import RunReport
from archiver.units import format_size


def print_report(report: RunReport, out: TextIO) -> None:
    """The human summary of a backfill: counts, then every call that is not done."""
    o = report.outcomes
    print(
        f"archived {o['archived']} recordings ({format_size(report.bytes)}), {o['none']} calls without a recording, "
        f"{o['missing']} missing, {o['rejected']} rejected; {report.skipped} already archived; "
        f"{len(report.parked)} waiting; {len(report.failed)} failed",
        file=out,
    )
    for call_id in report.parked:
        print(f"waiting: call {call_id}: its recording is not served yet; a retry is scheduled", file=out)
    for call_id, error in report.failed:
        print(f"failed: call {call_id}: {error}", file=out)
    if report.interrupted:
        print("interrupted before the end of the range; run it again to finish", file=out)
