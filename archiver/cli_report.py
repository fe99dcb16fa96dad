"""Human summaries printed at the end of a command. Pure formatting."""

from __future__ import annotations

from typing import Any, TextIO

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


def print_status(status: dict[str, Any], out: TextIO) -> None:
    """The human form of ``archiver status``."""
    calls = status["calls"]
    lag = status["cursor_lag_seconds"]
    rows = [
        ("store", status["store"]),
        (
            "cursor",
            f"{status['cursor']} ({lag:.0f} s behind now)"
            if status["cursor"]
            else "none yet (the daemon has not polled)",
        ),
        ("calls", ", ".join(f"{k} {v}" for k, v in calls.items())),
    ]
    pending = status["pending"]
    if pending["count"]:
        rows.append(("waiting", f"{pending['count']} call(s) for their recording; next try {pending['next_attempt']}"))
    else:
        rows.append(("waiting", "none"))
    last = status["last_poll"]
    if last:
        rows.append(("last poll", f"{last['at']} " + ("ok" if last["ok"] else f"FAILED: {last['error']}")))
    rows.append(("last success", status["last_success"] or "never"))
    rows.append(("failing", f"{len(status['failures'])} call(s)" if status["failures"] else "none"))
    for name, value in rows:
        print(f"{name:<13}{value}", file=out)
    for failure in status["failures"]:
        print(f"  call {failure['call_id']} ({failure['day']}): {failure['error']}", file=out)
