"""Human summaries printed at the end of a command. Pure formatting."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from archiver.archive.rearchive import RearchiveReport
from archiver.core.outcome import DONE_STATUSES
from archiver.core.quantities import format_size
from archiver.core.report import RunReport

if TYPE_CHECKING:  # the audit commands' reports; a backfill, which prints its own, does not load them
    from archiver.audit.findings import VerifyReport
    from archiver.audit.reconcile import ReconcileReport


def print_report(report: RunReport, out: TextIO) -> None:
    """The human summary of a backfill: counts, then every call that is not done."""
    o = report.outcomes
    archived, none, missing, rejected = (o[s] for s in DONE_STATUSES)
    print(
        f"archived {archived} recordings ({format_size(report.bytes)}), {none} calls without a recording, "
        f"{missing} missing, {rejected} rejected; {report.skipped} already archived; "
        f"{len(report.parked)} waiting; {len(report.failed)} failed"
        + (f"; {report.by_peers} archived by other hosts sharing the run" if report.by_peers else ""),
        file=out,
    )
    if report.suspicious:
        print(
            f"suspicious: {report.suspicious} answered call(s) with talk time came without a recording link the "
            "archiver knows (recording_file or recording); archived as 'none' with the problem named. Has the "
            "API's format changed? See cdr.suspicious in the log, and `archiver check`",
            file=out,
        )
    for call_id in report.parked:
        print(f"waiting: call {call_id}: its recording is not served yet; a retry is scheduled", file=out)
    for call_id, error in report.failed:
        print(f"failed: call {call_id}: {error}", file=out)
    for call_id in report.quarantined:
        print(f"quarantined: call {call_id}: failed run after run; set aside and retried hourly to daily", file=out)
    if report.interrupted:
        print("interrupted before the end of the range; run it again to finish", file=out)


def print_rearchive(report: RearchiveReport, out: TextIO, *, dry_run: bool) -> None:
    """The human summary of ``archiver rearchive``: a line per call, then the counts."""
    for revised in report.revised:
        call = f"call {revised.call_id} ({revised.day}): {revised.before}"
        if dry_run:
            print(f"would read again: {call}; next record {revised.key}", file=out)
        else:
            print(f"revised: {call} -> {revised.after}; {revised.key}", file=out)
    for retried in report.retried:
        call = f"call {retried.call_id} ({retried.day}): quarantined"
        print(f"would retry: {call}" if dry_run else f"retried: {call} -> {retried.after}; {retried.key}", file=out)
    for call_id, error in report.failed:
        print(f"failed: call {call_id}: {error}", file=out)
    verb = "would read again" if dry_run else "revised"
    print(
        f"{report.considered} call(s) read again: {len(report.revised)} {verb}, {len(report.retried)} quarantined "
        f"retried, {len(report.unchanged)} unchanged, "
        f"{len(report.failed)} failed" + ("; nothing was written" if dry_run else "; nothing was overwritten"),
        file=out,
    )


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
    aside = status.get("quarantined", [])
    rows.append(("quarantined", f"{len(aside)} call(s), retried hourly to daily" if aside else "none"))
    for name, value in rows:
        print(f"{name:<13}{value}", file=out)
    for failure in status["failures"]:
        print(f"  call {failure['call_id']} ({failure['day']}): {failure['error']}", file=out)
    for call in aside:
        print(
            f"  quarantined call {call['call_id']} ({call['day']}), {call['failures']} time(s) since {call['since']}; "
            f"next try {call['next_attempt']}: {call['error']}",
            file=out,
        )


_STORE_CHECKSUMS = {
    "refused": "its own (it refuses a body whose ChecksumSHA256 disagrees with its bytes)",
    "kept unchecked": "the writer's word (it keeps what it is sent unchecked): every recording was read instead",
    "none": "none kept: every recording was read",
    "not probed": "taken as its own, not probed (no write access: `archiver check` with the writer's "
    "configuration says whether the store checks them)",
}


def print_verify(report: VerifyReport, out: TextIO) -> None:
    """The human form of ``archiver verify``: one line per problem, then the totals."""
    for event in report.history:
        print(f"HISTORY  {event}", file=out)
    for problem in report.problems:
        print(f"PROBLEM  {problem}", file=out)
    print(
        f"verified {report.days} days: {report.calls} calls, {report.recordings} recordings; "
        f"{len(report.problems)} problem(s)"
        + (f"; {report.unmanifested} file(s) not yet in a manifest" if report.unmanifested else "")
        + (f"; {report.erased} call(s) erased on request" if report.erased else ""),
        file=out,
    )
    compared = [
        f"{report.rehashed} read back and hashed ({format_size(report.bytes_rehashed)})" if report.rehashed else "",
        f"{report.store_checked} compared with the store's own checksum of their bytes, not read"
        if report.store_checked
        else "",
    ]
    if any(compared):
        print("recordings: " + "; ".join(c for c in compared if c), file=out)
    print(f"the store's checksums: {_STORE_CHECKSUMS.get(report.store_checksums, report.store_checksums)}", file=out)
    if report.cold:
        print(
            f"{report.cold} recording(s) in cold storage could not be read back: compared with the store's own "
            "checksum instead; `archiver restore` brings them back",
            file=out,
        )
    for policy, count in sorted(report.expired.items()):
        print(f"{count} days expired under retention {policy}", file=out)
    head = report.seal_head
    if head is None:
        print("seal chain: no seal yet (the first is written when the archiver next closes a day)", file=out)
    else:
        print(
            f"seal chain: {report.seals} seals; head {head.key} sha256 {head.sha256} "
            "(record it elsewhere; `verify --recorded-seal SHA256` checks it later)",
            file=out,
        )


def print_reconcile(
    report: ReconcileReport, since: datetime, until: datetime, out: TextIO, *, fill: str | None = None
) -> None:
    """The human form of ``archiver reconcile``."""
    for day, call_id in report.not_archived:
        print(f"NOT ARCHIVED  call {call_id} ({day}): the PBX lists it, the archive lacks it", file=out)
    for call_id in report.not_listed:
        print(f"NOT LISTED    call {call_id}: archived, but the PBX no longer lists it", file=out)
    for call_id, error in report.recordings_missing:
        print(f"MISSING REC   call {call_id}: the PBX never served its recording ({error})", file=out)
    if report.expired:
        days = sorted({day for day, _ in report.expired})
        print(
            f"EXPIRED       {len(report.expired)} call(s) the PBX lists on {len(days)} day(s) expired under retention "
            f"({days[0]} to {days[-1]}): removed from the archive on purpose",
            file=out,
        )
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(report.statuses.items()))
    print(
        f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}: the PBX lists {report.listed} calls, the archive holds "
        f"{report.archived} ({statuses or 'none'}); {len(report.not_archived)} not archived, "
        f"{len(report.not_listed)} no longer listed",
        file=out,
    )
    if fill:
        print(f"to archive what is not archived, while the PBX still serves it: {fill}", file=out)
