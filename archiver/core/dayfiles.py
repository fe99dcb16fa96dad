"""What an auditor reads in a day's folder besides the calls: manifest, CSV and web page. Pure.

- ``manifest-sha256.txt``: BagIt (RFC 8493) payload-manifest lines, ``<sha256>  <file>``, so
  that ``cd YYYY/MM/DD && sha256sum -c manifest-sha256.txt`` checks a downloaded day;
- ``calls.csv``: one row per call, for spreadsheets;
- ``index.html``: the day's calls with an audio player each; no script, no network.

A call that arrives after its day was closed gets numbered addenda (``manifest-sha256.2.txt``,
``calls.2.csv``, ``index.2.html``): written files are never rewritten.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

_NAME = re.compile(r"^(manifest-sha256|calls|index)(?:\.(\d+))?\.(txt|csv|html)$")
CSV_COLUMNS = (  # CallEntry's fields of the same names
    "call_id",
    "start_local",
    "direction",
    "source",
    "destination",
    "cid_name",
    "duration_seconds",
    "hangup_cause",
    "recording_status",
    "recording_key",
    "size",
    "sha256",
    "revision",
)


@dataclass(frozen=True)
class CallEntry:
    """What a day's files say about one call: its CSV row, and the digests of its two files.

    Built from the sidecar's own bytes (:meth:`from_sidecar`), when it was written or when it
    is read back from the store; kept in the ledger in between (:meth:`to_json`).
    """

    call_id: str
    sidecar_sha256: str
    start_local: str | None = None
    direction: str | None = None
    source: str | None = None
    destination: str | None = None
    cid_name: str | None = None
    duration_seconds: float | None = None
    hangup_cause: str | None = None
    recording_status: str | None = None
    recording_key: str | None = None
    size: int | None = None
    sha256: str | None = None
    revision: int = 1  # 2, 3, …: a revision's record, which supersedes the one before

    @classmethod
    def from_sidecar(cls, call_id: str, raw: bytes) -> CallEntry:
        doc = mapping(json.loads(raw))
        cdr, call, rec = mapping(doc.get("cdr")), mapping(doc.get("call")), mapping(doc.get("recording"))
        return cls(
            call_id=call_id,
            sidecar_sha256=hashlib.sha256(raw).hexdigest(),
            start_local=call.get("start_local"),
            direction=call.get("direction"),
            source=cdr.get("source"),
            destination=cdr.get("destination"),
            cid_name=cdr.get("cid_name"),
            duration_seconds=call.get("duration_seconds"),
            hangup_cause=call.get("hangup_cause"),
            recording_status=rec.get("status"),
            recording_key=rec.get("key"),
            size=rec.get("size"),
            sha256=rec.get("sha256"),
            revision=revision if isinstance(revision := doc.get("revision"), int) else 1,
        )

    @classmethod
    def from_json(cls, text: str) -> CallEntry:
        """An entry as :meth:`to_json` wrote it (or as earlier versions did: a ``row`` list)."""
        data = json.loads(text)
        if "row" in data:  # the CSV_COLUMNS values as a list
            values = dict(zip(CSV_COLUMNS, data["row"], strict=False))  # rows of before the revision column
            return cls(sidecar_sha256=data["sidecar_sha256"], **values)
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    def csv_row(self) -> tuple[Any, ...]:
        """The values of :data:`CSV_COLUMNS`, in order."""
        return tuple(getattr(self, column) for column in CSV_COLUMNS)

    @property
    def sidecar_name(self) -> str:
        return f"{self.call_id}.json" if self.revision == 1 else f"{self.call_id}.rev{self.revision}.json"

    @property
    def start(self) -> str:
        return str(self.start_local or "")

    @property
    def audio_name(self) -> str | None:
        key = self.recording_key
        return key.rsplit("/", 1)[-1] if self.recording_status == "archived" and isinstance(key, str) else None

    @property
    def audio_sha256(self) -> str | None:
        return str(self.sha256) if self.audio_name else None


def file_names(number: int) -> tuple[str, str, str]:
    """The manifest, CSV and page names of a day's *number*-th set (1 has no number)."""
    suffix = "" if number == 1 else f".{number}"
    return f"manifest-sha256{suffix}.txt", f"calls{suffix}.csv", f"index{suffix}.html"


def set_number(name: str) -> int | None:
    """Which set a day file belongs to (1, 2, …), or None for a call's file."""
    match = _NAME.match(name)
    return (int(match.group(2)) if match.group(2) else 1) if match else None


def parse_manifest(text: str) -> dict[str, str]:
    """``{file: sha256}`` from manifest lines; raises ValueError on a malformed line."""
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = re.match(r"^([0-9a-f]{64}) [ *]?(\S.*)$", line)
        if not match:
            raise ValueError(f"line {number} is not '<sha256>  <file>'")
        out[match.group(2)] = match.group(1)
    return out


def manifest(entries: list[CallEntry]) -> bytes:
    """Manifest lines for every sidecar and recording of *entries*, sorted by file name."""
    lines = []
    for entry in entries:
        lines.append((entry.sidecar_name, entry.sidecar_sha256))
        if entry.audio_name and entry.audio_sha256:
            lines.append((entry.audio_name, entry.audio_sha256))
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(lines)).encode()


def calls_csv(entries: list[CallEntry]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in sorted(entries, key=lambda e: e.start):
        writer.writerow([_csv_safe(v) for v in entry.csv_row()])
    return out.getvalue().encode("utf-8-sig")  # the BOM makes spreadsheet programs read UTF-8


def index_html(day: date, entries: list[CallEntry], *, number: int = 1) -> bytes:
    title = f"Calls of {day.isoformat()}" + (f" (addendum {number})" if number > 1 else "")
    rows = []
    for entry in sorted(entries, key=lambda e: e.start):
        shown = entry.csv_row()[1:9]  # start to hangup cause, and the outcome
        cells = "".join(f"<td>{html.escape(str(v if v is not None else ''))}</td>" for v in shown)
        audio = entry.audio_name
        player = (
            f'<audio controls preload="none" src="{html.escape(audio)}"></audio>'
            if audio
            else html.escape(str(entry.recording_status or ""))
        )
        rows.append(
            f'<tr id="{html.escape(entry.call_id)}"><td><a href="{html.escape(entry.sidecar_name)}">'
            f"{html.escape(entry.call_id)}</a></td>{cells}<td>{player}</td></tr>"
        )
    body = "\n".join(rows)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; media-src 'self'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; font-size: 0.9em; }}
audio {{ height: 2em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{len(entries)} calls. Each recording's SHA-256 is in <code>manifest-sha256.txt</code>
(<code>sha256sum -c manifest-sha256.txt</code> checks them) and in the call's <code>.json</code>.</p>
<table>
<thead><tr><th>call</th><th>start</th><th>direction</th><th>from</th><th>to</th><th>name</th>
<th>seconds</th><th>hangup cause</th><th>recording</th><th>listen</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
    return page.encode("utf-8")


def mapping(value: Any) -> dict[str, Any]:
    """*value* if it is a JSON object, else an empty one (sidecars are read defensively)."""
    return value if isinstance(value, dict) else {}


def _csv_safe(value: Any) -> Any:
    """Neutralise cells a spreadsheet would run as a formula (CSV injection from CDR text)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
