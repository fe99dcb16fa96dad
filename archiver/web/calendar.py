"""The archive at a glance: the strip and the calendar of ``/days``, and a day's summary. Pure.

Drawn in HTML and the desk's one stylesheet: a grid per month, each day a cell coloured by its
state (sealed, open, not sealed, unreadable, expired, no folder) with its number of calls; its
figures in full in the cell's title and on the day's page. Years newest first, every month from
the archive's first day to its last, so that a day without a folder shows as a gap.
"""

from __future__ import annotations

import calendar as stdlib_calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from archiver.audit import daybook
from archiver.audit.daybook import DaySummary, Figures
from archiver.core import seal
from archiver.web.pages import h, where

_STATE_WORDS = {
    daybook.SEALED: "closed, every manifest sealed",
    daybook.OPEN: "open: not closed yet",
    daybook.UNSEALED: "closed, a manifest NOT sealed",
    daybook.UNREADABLE: "a day file cannot be read",
    daybook.EXPIRED: "expired",
    daybook.EMPTY: "a folder without calls",
}
_OUTCOME_WORDS = (
    ("archived", "recordings archived"),
    ("none", "without a recording"),
    ("missing", "missing"),
    ("rejected", "rejected"),
    ("erased", "erased"),
    ("superseded", "superseded"),
)


@dataclass(frozen=True)
class Strip:
    """What the strip above the calendar says."""

    head: seal.Link | None
    head_sealed_at: str | None  # as the head seal states it (UTC, ISO 8601)
    chain_problems: int
    latest_closed: date | None
    trail_written: datetime | None
    trail_pending: int
    now: datetime


def ago(then: datetime, now: datetime) -> str:
    """``3 h ago``, ``2 d ago``: how long before *now* *then* was."""
    seconds = max(0, int((now - then).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def strip(s: Strip) -> str:
    if s.head is None:
        chain = "no seal yet"
    else:
        number = s.head.key.rsplit("/", 1)[-1].split(".")[0].lstrip("0")
        when = ""
        if s.head_sealed_at:
            try:
                sealed = datetime.fromisoformat(s.head_sealed_at.replace("Z", "+00:00"))
                when = f", sealed {sealed:%Y-%m-%d %H:%M} UTC ({ago(sealed, s.now)})"
            except ValueError:
                when = f", sealed {s.head_sealed_at}"
        chain = f'seal {h(number)}{h(when)}<br><code title="{h(s.head.sha256)}">sha256 {h(s.head.sha256[:16])}…</code>'
    if s.chain_problems:
        chain += f'<br><span class="bad">{s.chain_problems} problem(s) in the chain: run archiver verify</span>'
    closed = h(s.latest_closed.isoformat()) if s.latest_closed else "none yet"
    trail = (
        f"{s.trail_written.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({ago(s.trail_written, s.now)})"
        if s.trail_written
        else "nothing written yet"
    )
    if s.trail_pending:
        trail += f"; {s.trail_pending} event(s) waiting to be written"
    return (
        '<div class="strip" id="strip">'
        f"<div><b>Seal chain head</b>{chain}</div>"
        f"<div><b>Latest day closed</b>{closed}</div>"
        f"<div><b>Access trail, last written</b>{h(trail)}</div>"
        "</div>"
    )


def describe(summary: DaySummary, extensions: frozenset[str] | None) -> str:
    """A day's figures in words (the cell's title, the day page's first line)."""
    if summary.state == daybook.EXPIRED:
        expiry = summary.expiry
        return (
            f"{summary.day}: expired under retention {expiry.policy}, recorded {expiry.at}"
            if expiry
            else f"{summary.day}: expired"
        )
    figures = summary.total(extensions)
    parts = [f"{summary.day}: {calls_of(summary, extensions)} call(s)"]
    parts += [f"{figures.outcomes[k]} {w}" for k, w in _OUTCOME_WORDS if figures.outcomes.get(k)]
    if figures.cold:
        parts.append(f"{figures.cold} in cold storage")
    words = _STATE_WORDS.get(summary.state, summary.state)
    if summary.manifests:
        words += f" ({summary.sealed} of {len(summary.manifests)} manifest(s) sealed)"
    parts.append(words)
    if summary.unlisted and extensions is None:
        parts.append(f"{summary.unlisted} record(s) not yet in a day file")
    elif not summary.closed and extensions is not None:
        parts.append("an open day's calls are counted once it closes")
    return "; ".join(parts)


def calls_of(summary: DaySummary, extensions: frozenset[str] | None) -> int:
    """The day's calls: those its CSVs list (of *extensions*), and, for the whole source, the
    records its listing holds that no CSV lists yet (an open day's calls are all such)."""
    return summary.total(extensions).calls + (summary.unlisted if extensions is None else 0)


def _classes(summary: DaySummary, extensions: frozenset[str] | None) -> str:
    classes = ["d", summary.state]
    if summary.unlisted and summary.closed:
        classes.append("late")
    outcomes = summary.total(extensions).outcomes
    if outcomes.get("missing") or outcomes.get("rejected"):
        classes.append("warn")
    return " ".join(classes)


def calendar(
    summaries: Mapping[date, DaySummary], source: str | None, extensions: frozenset[str] | None, today: date
) -> str:
    """The legend and every month from the first day to the last (or today), newest first."""
    if not summaries:
        return "<p>The archive holds no day yet.</p>"
    first, last = min(summaries), max(*summaries, today)
    by_month: dict[tuple[int, int], Figures] = {}
    calls: dict[int, int] = {}
    for day, summary in summaries.items():
        if summary.state != daybook.EXPIRED:
            key = (day.year, day.month)
            by_month[key] = by_month.get(key, Figures()) + summary.total(extensions)
            calls[day.year] = calls.get(day.year, 0) + calls_of(summary, extensions)
    years = []
    for year in range(last.year, first.year - 1, -1):
        months = []
        total = Figures()
        for month in range(12, 0, -1):
            if (year, month) < (first.year, first.month) or (year, month) > (last.year, last.month):
                continue
            months.append(_month(date(year, month, 1), summaries, source, extensions, today))
            total = total + by_month.get((year, month), Figures())
        said = f"{calls.get(year, 0)} call(s), {total.outcomes.get('archived', 0)} recording(s) archived"
        years.append(
            f'<section class="year" id="y{year}"><h2>{year} <small>{h(said)}</small></h2>'
            f'<div class="months">{"".join(months)}</div></section>'
        )
    return _LEGEND + "".join(years)


_LEGEND = (
    '<div class="legend">'
    '<span class="sealed">closed and sealed</span><span class="open">open</span>'
    '<span class="unsealed">not sealed, or unreadable</span><span class="expired">expired</span>'
    '<span class="nofolder">no folder</span><span class="late">calls not yet in a day file</span>'
    "<span>! missing or rejected recordings</span></div>"
)
_WEEKDAYS = "".join(f'<span class="wd">{d}</span>' for d in ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"))


def _month(
    start: date,
    summaries: Mapping[date, DaySummary],
    source: str | None,
    extensions: frozenset[str] | None,
    today: date,
) -> str:
    cells = ['<span class="d empty"></span>'] * start.weekday()
    for number in range(1, stdlib_calendar.monthrange(start.year, start.month)[1] + 1):
        day = start.replace(day=number)
        summary = summaries.get(day)
        if summary is None:
            kind, said = ("empty", "") if day > today else ("nofolder", f' title="{day}: no folder"')
            cells.append(f'<span class="d {kind}"{said}><b>{number}</b></span>')
            continue
        count = "" if summary.state == daybook.EXPIRED else str(calls_of(summary, extensions))
        cells.append(
            f'<a class="{_classes(summary, extensions)}" href="/days/{day}{h(where(source))}" '
            f'title="{h(describe(summary, extensions))}"><b>{number}</b><i>{count}</i></a>'
        )
    return (
        f'<div class="month"><h3>{stdlib_calendar.month_name[start.month]} {start.year}</h3>'
        f'<div class="grid">{_WEEKDAYS}{"".join(cells)}</div></div>'
    )


def day_summary(summary: DaySummary | None, extensions: frozenset[str] | None) -> str:
    """The figures at the top of a day's page."""
    if summary is None:
        return '<p class="summary">The archive holds no folder for this day.</p>'
    figures = summary.total(extensions)
    rows: Sequence[tuple[str, object]] = [
        ("state", _STATE_WORDS.get(summary.state, summary.state)),
        ("calls", calls_of(summary, extensions)),
        *[(w, figures.outcomes.get(k, 0)) for k, w in _OUTCOME_WORDS],
    ]
    if figures.cold is not None:
        rows = [*rows, ("in cold storage", figures.cold)]
    rows = [*rows, ("manifests", f"{len(summary.manifests)}, {summary.sealed} sealed")]
    if extensions is None:
        rows = [*rows, ("records not yet in a day file", summary.unlisted)]
    if summary.problem:
        rows = [*rows, ("problem", summary.problem)]
    if summary.expiry is not None:
        rows = [*rows, ("expired", f"under retention {summary.expiry.policy}, recorded {summary.expiry.at}")]
    cells = "".join(f"<tr><th>{h(k)}</th><td>{h(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary {h(summary.state)}" id="summary">{cells}</table>'
