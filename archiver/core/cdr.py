"""The typed CDR: the raw row kept exactly as received, its parsed fields, and its call id.

Pure: no I/O. Parsing never raises on bad data; each field that does not parse is ``None``
and the reason is added to ``Cdr.problems``, so the raw row is still archived.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archiver.core.identity import call_id_for_row, call_id_for_url

_START_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S")
_HMS = re.compile(r"^(\d+):([0-5]?\d):([0-5]?\d)$")
_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)\s*s?$")


@dataclass(frozen=True)
class Cdr:
    """One call detail record.

    ``raw`` is the ``Cdr`` object exactly as the API sent it (or the whole row when the row
    was not wrapped as ``{"Cdr": {...}}``). ``recording_url`` is ``None`` when the call has
    no recording; ``recording_url_invalid`` says why a present value cannot be fetched, and
    ``recording_value`` is the link as received. ``suspicious`` says why a call listed without a
    recording looks as if it had one (the link under a name this client does not know?).
    """

    raw: Any
    call_id: str
    start_local: datetime | None
    duration_seconds: float | None
    tta_seconds: float | None
    pdd_seconds: float | None
    mos: float | None
    direction: str | None
    hangup_cause: str | None
    recording_url: str | None
    recording_url_invalid: str | None = None
    problems: tuple[str, ...] = field(default=())
    wrapped: bool = True
    salvaged_day: date | None = None  # the date in a start that does not parse as a time
    recording_value: Any = None
    suspicious: str | None = None

    @property
    def row(self) -> Any:
        """The row as the API listed it, for parking and re-parsing later."""
        return {"Cdr": self.raw} if self.wrapped else self.raw

    @property
    def start_utc(self) -> datetime | None:
        return self.start_local.astimezone(UTC) if self.start_local else None

    @property
    def has_recording(self) -> bool:
        return self.recording_url is not None or self.recording_url_invalid is not None

    def end_utc(self) -> datetime | None:
        """When the call ended: start + time to answer + talk time (unknown parts count 0)."""
        start = self.start_utc
        if start is None:
            return None
        return start + timedelta(seconds=(self.tta_seconds or 0) + (self.duration_seconds or 0))

    def started_within(self, bounds: tuple[datetime, datetime] | None) -> bool:
        """False only for a call whose start parsed and lies outside ``[bounds[0], bounds[1])``."""
        if bounds is None or self.start_local is None:
            return True
        return bounds[0] <= self.start_local < bounds[1]

    def day(self, fallback: date) -> date:
        """The call's start date in the PBX's zone; else a date found in ``start``; else *fallback*."""
        if self.start_local:
            return self.start_local.date()
        return self.salvaged_day or fallback

    def call_summary(self) -> dict[str, Any]:
        """The parsed fields for the sidecar's ``call`` object."""
        start = self.start_local
        end = self.end_utc()
        return {
            "start_local": start.isoformat() if start else None,
            "start_utc": _utc_text(start) if start else None,
            "end_utc": _utc_text(end) if end else None,
            "duration_seconds": self.duration_seconds,
            "tta_seconds": self.tta_seconds,
            "pdd_seconds": self.pdd_seconds,
            "mos": self.mos,
            "direction": self.direction,
            "hangup_cause": self.hangup_cause,
        }


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


LINK_FIELDS = ("recording_file", "recording")  # the wire's name, and the vendor's prose's
_CDR_FIELDS = frozenset({*LINK_FIELDS, "start", "source", "destination", "direction", "status", "duration"})
_ANSWERED = frozenset({"NORMAL_CLEARING", "SUCCESS"})


def reread(stored: Any, tz: ZoneInfo) -> Cdr:
    """A CDR as a sidecar stores it (``cdr``: the row's fields, unwrapped), read again."""
    return parse_row({"Cdr": stored} if isinstance(stored, dict) and "Cdr" not in stored else stored, tz)


def parse_row(row: Any, tz: ZoneInfo) -> Cdr:
    """Turn one element of the API's ``rows`` into a :class:`Cdr`. Never raises.

    A row is read wrapped (``{"Cdr": {...}}``, as the wire has it) or bare (the fields
    themselves); the link under ``recording_file`` or ``recording``.
    """
    problems: list[str] = []
    if isinstance(row, dict) and isinstance(row.get("Cdr"), dict):
        raw: Any = row["Cdr"]
        fields: dict[str, Any] = raw
    elif isinstance(row, dict) and _CDR_FIELDS & row.keys():
        raw = fields = row  # a bare row: the fields without their wrapper
    else:
        raw = row
        fields = {}
        problems.append("row is not a CDR object (neither {'Cdr': {...}} nor its fields)")

    link_field = next((name for name in LINK_FIELDS if fields.get(name) not in (None, "")), None)
    link_field = link_field or next((name for name in LINK_FIELDS if name in fields), None)
    value = fields.get(link_field) if link_field else None
    url, url_invalid = _recording_url(link_field or LINK_FIELDS[0], value, problems)
    call_id = call_id_for_url(url) if url is not None else call_id_for_row(raw)

    start = _parse_start(fields.get("start"), tz, problems)
    duration = _parse_number(fields, "duration", _hms, problems)
    hangup_cause = _text(fields, "status", problems)
    suspicious = None
    if fields and link_field is None and hangup_cause in _ANSWERED and (duration or 0) > 0:
        suspicious = (
            f"an answered call with {duration:g} s of talk time, listed without a recording link under "
            f"{' or '.join(LINK_FIELDS)}: the API's format may have changed"
        )
        problems.append(suspicious)
    return Cdr(
        raw=raw,
        call_id=call_id,
        start_local=start,
        salvaged_day=None if start else _salvage_day(fields.get("start")),
        duration_seconds=duration,
        tta_seconds=_parse_number(fields, "tta", _seconds, problems),
        pdd_seconds=_parse_number(fields, "pdd", _seconds, problems),
        mos=_parse_number(fields, "mos", _plain_float, problems),
        direction=_text(fields, "direction", problems),
        hangup_cause=hangup_cause,
        recording_url=url,
        recording_url_invalid=url_invalid,
        problems=tuple(problems),
        wrapped=raw is not row,
        recording_value=value,
        suspicious=suspicious,
    )


def _recording_url(name: str, value: Any, problems: list[str]) -> tuple[str | None, str | None]:
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        problems.append(f"{name} is a {type(value).__name__}, not a string")
        return None, f"{name} is a {type(value).__name__}, not a URL"
    return value.strip(), None


def _parse_start(value: Any, tz: ZoneInfo, problems: list[str]) -> datetime | None:
    if value is None:
        problems.append("start is missing")
        return None
    if isinstance(value, str):
        text = value.strip()
        try:  # the usual form, read at C speed; strptime below takes what it does not (2016-1-4 9:05:00)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return parsed.astimezone(tz) if parsed.tzinfo else parsed.replace(tzinfo=tz)
        for fmt in _START_FORMATS:
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=tz)
            except ValueError:
                continue
    problems.append(f"start {value!r} is not a time of the form YYYY-MM-DD HH:MM:SS")
    return None


_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DMY_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")  # the Vietnamese day/month/year


def _salvage_day(value: Any) -> date | None:
    """A calendar date inside a start that is not a valid time ("14/01/2016 25:61")."""
    if not isinstance(value, str):
        return None
    for pattern, order in ((_ISO_DATE, (0, 1, 2)), (_DMY_DATE, (2, 1, 0))):
        match = pattern.search(value)
        if match:
            parts = [int(g) for g in match.groups()]
            try:
                return date(parts[order[0]], parts[order[1]], parts[order[2]])
            except ValueError:
                continue
    return None


def _hms(text: str) -> float | None:
    match = _HMS.match(text)
    if match:
        h, m, s = (int(g) for g in match.groups())
        return float(h * 3600 + m * 60 + s)
    return _seconds(text)


def _seconds(text: str) -> float | None:
    match = _SECONDS.match(text)
    return float(match.group(1)) if match else None


def _plain_float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_number(fields: dict[str, Any], name: str, parse: Any, problems: list[str]) -> float | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    result: float | None = parse(value.strip()) if isinstance(value, str) else None
    if result is None:
        problems.append(f"{name} {value!r} does not parse")
    return result


def _text(fields: dict[str, Any], name: str, problems: list[str]) -> str | None:
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{name} is a {type(value).__name__}, not a string")
    return str(value)
