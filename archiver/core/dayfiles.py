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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from archiver.core import numbers

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
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
        """What the day's files say of a call whose current record is *raw* (its bytes)."""
        return cls.from_document(call_id, mapping(json.loads(raw)), raw)

    @classmethod
    def from_document(cls, call_id: str, doc: Mapping[str, Any], raw: bytes) -> CallEntry:
        """As :meth:`from_sidecar`, given the document already parsed (or built) from *raw*."""
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
    def from_csv_row(cls, row: dict[str, str]) -> CallEntry:
        """An entry as a ``calls.csv`` row states it (see :func:`parse_calls_csv`); the CSV holds
        no sidecar digest, so ``sidecar_sha256`` is empty."""

        def number(name: str, kind: type[int] | type[float]) -> Any:
            try:
                return kind(row[name]) if row.get(name) else None
            except ValueError:
                return None

        text = {name: (row.get(name) or None) for name in CSV_COLUMNS}
        return cls(
            call_id=row.get("call_id") or "",
            sidecar_sha256="",
            start_local=text["start_local"],
            direction=text["direction"],
            source=text["source"],
            destination=text["destination"],
            cid_name=text["cid_name"],
            duration_seconds=number("duration_seconds", float),
            hangup_cause=text["hangup_cause"],
            recording_status=text["recording_status"],
            recording_key=text["recording_key"],
            size=number("size", int),
            sha256=text["sha256"],
            revision=number("revision", int) or 1,
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


_NUMBER_COLUMNS = frozenset({"source", "destination"})


def calls_csv(entries: list[CallEntry]) -> bytes:
    """The CSV of *entries*, for spreadsheets: UTF-8 with a BOM, phone numbers kept as text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in sorted(entries, key=lambda e: e.start):
        writer.writerow([csv_cell(column, v) for column, v in zip(CSV_COLUMNS, entry.csv_row(), strict=True)])
    return out.getvalue().encode("utf-8-sig")  # the BOM makes spreadsheet programs read UTF-8


def csv_cell(column: str, value: Any) -> Any:
    """A value as a spreadsheet must see it.

    A phone number a spreadsheet would take for a number (``0986123456``: the zero dropped;
    ``+84986…``: a formula) is written ``="0986123456"``, which Excel, LibreOffice and Google
    Sheets show as that text; other text that starts like a formula gets a ``'`` (CSV injection
    from CDR text). :func:`parse_calls_csv` undoes both.
    """
    if isinstance(value, str) and column in _NUMBER_COLUMNS and numbers.looks_numeric(value):
        return f'="{value}"'
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        return "'" + value
    return value


def parse_calls_csv(data: bytes) -> list[dict[str, str]]:
    """The rows of a ``calls.csv`` (any version of it), their cells as they were before
    :func:`csv_cell` protected them. Raises ValueError when it is not such a CSV."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "call_id" not in reader.fieldnames:
        raise ValueError("no call_id column")
    rows = []
    for row in reader:
        rows.append({k: _plain_cell(v or "") for k, v in row.items() if isinstance(k, str)})
    return rows


def _plain_cell(cell: str) -> str:
    if cell.startswith('="') and cell.endswith('"') and len(cell) >= 3:
        return cell[2:-1].replace('""', '"')
    if cell[:1] == "'" and cell[1:2] in _FORMULA_STARTS:
        return cell[1:]
    return cell


def index_html(day: date, entries: list[CallEntry], *, number: int = 1) -> bytes:
    """The day's page: every call with its metadata, its recording's SHA-256 and a player.

    An addendum's page links the pages before it; every page names the addendum that would
    follow it (files are never rewritten, so a page cannot list what came after it).
    """
    title = f"Calls of {day.isoformat()}" + (f" (addendum {number})" if number > 1 else "")
    rows = []
    for entry in sorted(entries, key=lambda e: e.start):
        shown = entry.csv_row()[1:9]  # start to hangup cause, and the outcome
        cells = "".join(f"<td>{_h(v)}</td>" for v in shown)
        audio = entry.audio_name
        player = f'<audio controls preload="none" src="{_h(audio)}"></audio>' if audio else ""
        if audio and audio.endswith(".age"):  # encrypted: `archiver browse` plays it to those who hold the key
            player = f'<a href="{_h(audio)}">encrypted (age)</a>'

        digest = f'<code class="sha">{_h(entry.audio_sha256)}</code>' if audio else ""
        revision = f" (revision {entry.revision})" if entry.revision > 1 else ""
        rows.append(
            f'<tr id="{_h(entry.call_id)}"><td><a href="{_h(entry.sidecar_name)}">'
            f"{_h(entry.call_id)}</a>{revision}</td>{cells}<td>{digest}</td><td>{player}</td></tr>"
        )
    body = "\n".join(rows)
    manifest_name, csv_name, _ = file_names(number)
    earlier = ", ".join(
        f'<a href="{_h(file_names(n)[2])}">{"the first page" if n == 1 else f"addendum {n}"}</a>'
        for n in range(1, number)
    )
    earlier_line = f"<p>Earlier calls of this day: {earlier}.</p>\n" if earlier else ""
    later = file_names(number + 1)[2]
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
code.sha {{ font-size: 0.75em; word-break: break-all; }}
audio {{ height: 2em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{len(entries)} calls. The SHA-256 shown for each recording is also in
<a href="{manifest_name}"><code>{manifest_name}</code></a> (<code>sha256sum -c {manifest_name}</code>
checks every file of this page) and in the call's <code>.json</code>; the same rows are in
<a href="{csv_name}"><code>{csv_name}</code></a>.</p>
{earlier_line}<p>Calls that reached the archive after this page was written are on
<a href="{later}"><code>{later}</code></a>, if that page exists.</p>
<table>
<thead><tr><th>call</th><th>start</th><th>direction</th><th>from</th><th>to</th><th>name</th>
<th>seconds</th><th>hangup cause</th><th>recording</th><th>SHA-256</th><th>listen</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
    return page.encode("utf-8")


def _h(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def mapping(value: Any) -> dict[str, Any]:
    """*value* if it is a JSON object, else an empty one (sidecars are read defensively)."""
    return value if isinstance(value, dict) else {}
