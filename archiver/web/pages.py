"""The pages ``archiver browse`` serves: plain HTML and one stylesheet, no script, nothing from
elsewhere. Pure.

The Content-Security-Policy allows that one stylesheet by its SHA-256 (no inline style attribute,
no other style), media from the desk itself, forms that post back to it, and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from archiver.audit.catalog import STATUSES, Found
from archiver.audit.evidence import Evidence, Recording
from archiver.core import seal

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th {
  border-bottom: 1px solid #ddd;
  padding: 0.3em 0.6em;
  text-align: left;
  font-size: 0.9em;
  vertical-align: top;
}
code { font-size: 0.85em; word-break: break-all; }
form label { margin-right: 0.8em; }
.ok { color: #176b2c; font-weight: bold; } .bad { color: #a11; font-weight: bold; }
nav a { margin-right: 1em; }
p.who { font-size: 0.85em; color: #555; margin: 0.3em 0 0; }
nav.sources { margin: 0.5em 0; } nav.sources a.here { font-weight: bold; }
.strip {
  display: flex;
  flex-wrap: wrap;
  gap: 0.5em 1.5em;
  background: #f4f5f7;
  border: 1px solid #dde;
  padding: 0.6em 0.9em;
  margin: 0.5em 0 1em;
  font-size: 0.9em;
}
.strip div { min-width: 12em; }
.strip b { display: block; font-size: 0.8em; color: #555; font-weight: normal; }
.legend { display: flex; flex-wrap: wrap; gap: 0.4em 1em; font-size: 0.8em; margin: 0.3em 0 1em; }
.legend span::before {
  content: "";
  display: inline-block;
  width: 0.9em;
  height: 0.9em;
  margin-right: 0.3em;
  vertical-align: -0.1em;
  border: 1px solid #999;
}
.year h2 { font-size: 1.15em; margin: 1.2em 0 0.3em; }
.year h2 small { font-weight: normal; color: #555; font-size: 0.8em; }
.months { display: grid; grid-template-columns: repeat(auto-fill, minmax(15.5em, 1fr)); gap: 0.8em 1.2em; }
.month h3 { font-size: 0.95em; margin: 0 0 0.2em; }
.grid { display: grid; grid-template-columns: repeat(7, 1fr); gap: 2px; }
.grid .wd { font-size: 0.7em; color: #777; text-align: center; }
.grid a, .grid span.d {
  display: block;
  min-height: 2.3em;
  padding: 1px 2px;
  font-size: 0.72em;
  line-height: 1.15;
  text-decoration: none;
  color: #222;
  border: 1px solid #e3e3e3;
  border-radius: 3px;
}
.grid b { display: block; font-weight: 600; } .grid i { font-style: normal; color: #333; }
.d.sealed, .summary.sealed, .legend .sealed::before { background: #cdebd3; border-color: #8cc79a; }
.d.open, .summary.open, .legend .open::before { background: #d6e6fb; border-color: #8fb3e6; }
.d.unsealed, .d.unreadable, .summary.unsealed, .summary.unreadable, .legend .unsealed::before {
  background: #f8cccc;
  border-color: #d77;
}
.d.expired, .summary.expired, .legend .expired::before {
  background: repeating-linear-gradient(45deg, #eee, #eee 3px, #ddd 3px, #ddd 6px);
  color: #666;
}
.d.empty, .d.nofolder, .legend .nofolder::before { background: #fff; color: #999; }
.d.late { box-shadow: inset 0 0 0 2px #e3a21a; }
.legend .late::before { box-shadow: inset 0 0 0 2px #e3a21a; }
.d.warn i::after { content: " !"; color: #a11; font-weight: bold; }
.summary td, .summary th { font-size: 0.85em; }
@media (max-width: 40em) {
  body { margin: 0.6em; }
  .months { grid-template-columns: 1fr; }
  .grid a, .grid span.d { min-height: 2.6em; font-size: 0.8em; }
  table.calls { font-size: 0.8em; }
}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; media-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def h(value: Any) -> str:
    return html.escape("" if value is None else str(value))


NAV = '<nav><a href="/">Search</a><a href="/days">Days</a></nav>'


def signed_in(page: bytes, user: str, sees: str) -> bytes:
    """*page* saying, under its navigation, who is signed in and which sources they see."""
    who = f'<p class="who">Signed in as <b>{h(user)}</b>; sees {h(sees)}</p>'
    return page.replace(NAV.encode(), (NAV + who).encode(), 1)


def page(title: str, body: str) -> bytes:
    """A whole page."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{h(title)}</title>
<style>{STYLE}</style>
</head>
<body>
{NAV}
<h1>{h(title)}</h1>
{body}
</body>
</html>
""".encode()


_HERE = ' class="here"'


def source_nav(sources: Sequence[str], here: str, path: str) -> str:
    """Links to *path* of each source the user sees, when there are several."""
    if len(sources) < 2:
        return ""
    links = "".join(
        f'<a href="{h(path)}?{urlencode({"source": s})}"{_HERE if s == here else ""}>{h(s)}</a>' for s in sources
    )
    return f'<nav class="sources">Sources: {links}</nav>'


def search_form(params: dict[str, str], sources: Sequence[str] = ()) -> str:
    """The search form; *sources*: the sources the user sees, when several (a choice among them)."""

    def field(name: str, label: str, placeholder: str = "") -> str:
        return (
            f'<label>{h(label)} <input name="{name}" value="{h(params.get(name, ""))}" '
            f'placeholder="{h(placeholder)}"></label>'
        )

    def choice(name: str, label: str, options: Iterable[str]) -> str:
        chosen = params.get(name, "")
        items = "".join(
            f'<option value="{h(o)}"{" selected" if o == chosen else ""}>{h(o or "any")}</option>'
            for o in ("", *options)
        )
        return f'<label>{h(label)} <select name="{name}">{items}</select></label>'

    return (
        '<form method="get" action="/">'
        + (choice("source", "Source", sources) if len(sources) > 1 else "")
        + field("number", "Number", "+84 986 123 456")
        + field("extension", "Extension", "101")
        + choice("direction", "Direction", ("inbound", "outbound", "local"))
        + choice("status", "Recording", STATUSES)
        + field("since", "From", "2026-03-12 09:00")
        + field("until", "Until", "2026-03-12 11:00")
        + ' <button type="submit">Find</button></form>'
    )


def where(source: str | None, **more: str) -> str:
    """The query string that says which source (None: the only one) and day a link is about."""
    params = {**({"source": source} if source else {}), **more}
    return f"?{urlencode(params)}" if params else ""


def call_rows(found: Sequence[tuple[str | None, Found]], *, by_source: bool = True) -> str:
    """A table of calls, each with its source (None: the file's only one), in a column of its own
    where *by_source* and there is a source to name."""
    many = by_source and any(source for source, _ in found)
    rows = []
    for source, f in found:
        e = f.entry
        link = f"/calls/{quote(e.call_id)}{where(source, day=f.day.isoformat())}"
        seconds = "" if e.duration_seconds is None else f"{e.duration_seconds:g}"
        rows.append(
            f'<tr><td><a href="{h(link)}">{h(e.start.replace("T", " ")[:19] or e.call_id)}</a></td>'
            + (f"<td>{h(source)}</td>" if many else "")
            + f"<td>{h(e.direction)}</td><td>{h(e.source)}</td><td>{h(e.destination)}</td><td>{h(e.cid_name)}</td>"
            f"<td>{h(seconds)}</td><td>{h(e.recording_status)}</td><td><code>{h(e.call_id)}</code></td></tr>"
        )
    head = (
        "<tr><th>start</th>"
        + ("<th>source</th>" if many else "")
        + "<th>direction</th><th>from</th><th>to</th><th>name</th><th>seconds</th><th>recording</th>"
        "<th>call id</th></tr>"
    )
    table = f'<table class="calls"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<p class="count">{len(found)} call(s)</p>{table}'


def day_page(
    day: date,
    source: str | None,
    summary: str,
    found: list[Found],
    manifests: list[tuple[str, str, tuple[int, ...]]],
) -> bytes:
    lines = "".join(
        f"<li><code>{h(key)}</code> sha256 <code>{h(digest)}</code> "
        + (f"sealed by seal {h(', '.join(map(str, by)))}" if by else '<span class="bad">not sealed</span>')
        + "</li>"
        for key, digest, by in manifests
    )
    closed = f"<ul>{lines}</ul>" if manifests else "<p>The day is not closed yet: no manifest.</p>"
    title = f"Calls of {day.isoformat()}" + (f" ({source})" if source else "")
    back = f'<p><a href="/days{h(where(source))}">All days</a></p>'
    rows = call_rows([(source, f) for f in found], by_source=False)
    return page(title, f"{summary}<h2>Manifests</h2>{closed}<h2>Calls</h2>{rows}{back}")


def _plaintext(recording: Recording, evidence: Evidence) -> str:
    """What the page says of an encrypted recording's plaintext."""
    if recording.plaintext is not None:
        size, digest = recording.plaintext
        return f"; encrypted (age), decrypts to {size} bytes, sha256 <code>{h(digest)}</code>"
    if recording.key in evidence.not_decrypted:
        return "; encrypted (age), not decrypted here"
    if recording.key in evidence.shredded:
        return "; encrypted (age), its key destroyed"
    return ""


def call_page(
    evidence: Evidence, source: str | None, audio_url: str | None, head: seal.Link | None, *, note: str | None = None
) -> bytes:
    e = evidence.entry
    verdict = (
        '<p class="verdict ok">Verified now: every stored byte of this call matches its record, '
        "its manifest and the seals.</p>"
        if evidence.verified
        else '<p class="verdict ok">Checked now as far as it can be read: its records, manifest and seals match; '
        "a recording in cold storage was not read.</p>"
        if evidence.ok
        else '<p class="verdict bad">NOT verified:</p><ul>'
        + "".join(f"<li>{h(p)}</li>" for p in evidence.problems)
        + "</ul>"
    )
    facts = ""
    if e is not None:
        facts = (
            "<table>"
            + "".join(
                f"<tr><th>{h(label)}</th><td>{h(value)}</td></tr>"
                for label, value in (
                    ("start", e.start_local),
                    ("direction", e.direction),
                    ("from", e.source),
                    ("to", e.destination),
                    ("caller name", e.cid_name),
                    ("talk seconds", e.duration_seconds),
                    ("hangup cause", e.hangup_cause),
                    ("recording", e.recording_status),
                )
            )
            + "</table>"
        )
    player = f'<audio controls preload="metadata" src="{h(audio_url)}"></audio>' if audio_url else ""
    if note:
        player += f'<p class="verdict" id="sealed">{h(note)}</p>'
    for key in evidence.cold:
        player += f'<p class="verdict cold" id="cold">{h(cold_text(None, key))}</p>'
    if evidence.erased is not None:
        erased = evidence.erased
        removed = ", ".join(
            f"{item.get('key')} ({item.get('size')} bytes, sha256 {item.get('sha256')})"
            for item in erased.get("removed") or []
            if isinstance(item, dict)
        )
        shredded = ", ".join(
            f"{item.get('key')} ({item.get('size')} bytes, sha256 {item.get('sha256')})"
            for item in erased.get("crypto_shredded") or []
            if isinstance(item, dict)
        )
        player += (
            f'<p class="verdict" id="erased">Erased on {h(erased.get("erased_at"))}: {h(erased.get("reason"))}. '
            + (f"Removed: {h(removed)}. " if removed else "")
            + (f"Key destroyed (crypto-shredded; the recording stays, unreadable): {h(shredded)}." if shredded else "")
            + "</p>"
        )
    records = "".join(
        f'<tr><td>{r.revision}</td><td><a href="{h(_file_url(evidence, source, r.key))}">'
        f"<code>{h(r.key)}</code></a></td>"
        f"<td><code>{h(r.sha256)}</code></td><td>{h(r.status)}</td><td>{h(r.archived_at)}</td>"
        f"<td>{h(r.reason or '')}{h(' supersedes ' + r.supersedes if r.supersedes else '')}"
        f"{h(' superseded by ' + r.superseded_by if r.superseded_by else '')}</td></tr>"
        for r in evidence.records
    )
    recordings = "".join(
        f'<tr><td><a href="{h(_file_url(evidence, source, r.key))}"><code>{h(r.key)}</code></a></td><td>{r.size}</td>'
        f'<td><code class="sha256">{h(r.sha256)}</code></td>'
        f"<td>{_MATCHES if r.ok else _DIFFERS}{_plaintext(r, evidence)}</td></tr>"
        for r in evidence.recordings
    )
    lines = "".join(
        f"<tr><td><code>{h(m.manifest)}</code></td><td>{h(m.name)}</td><td><code>{h(m.sha256)}</code></td>"
        f"<td>{h(', '.join(map(str, m.sealed_by)) or 'none')}</td></tr>"
        for m in evidence.manifest_lines
    )
    chain = f"<p>Seal chain head: <code>{h(head.key)}</code> sha256 <code>{h(head.sha256)}</code></p>" if head else ""
    body = (
        f"{verdict}{facts}{player}"
        f"<h2>Records (the highest revision is current)</h2><table><tr><th>revision</th><th>key</th>"
        f"<th>SHA-256 of the record</th><th>status</th><th>archived</th><th>correction</th></tr>{records}</table>"
        f"<h2>Recordings</h2><table><tr><th>key</th><th>bytes</th><th>SHA-256 of the bytes</th><th>check</th></tr>"
        f"{recordings}</table>"
        f"<h2>Manifest lines</h2><table><tr><th>manifest</th><th>file</th><th>SHA-256</th><th>sealed by</th></tr>"
        f"{lines}</table>{chain}"
        f'<p><a id="evidence" href="{h(_evidence_url(evidence, source))}">Evidence bundle (zip)</a>: '
        "the call's files, "
        "its manifest lines and seals, and the check of them: the same bytes as "
        f"<code>archiver export {h(evidence.call_id)}</code></p>"
        f'<p><a href="/days/{h(evidence.day)}{h(where(source))}">All calls of {h(evidence.day)}</a></p>'
    )
    return page(f"Call {evidence.call_id}", body)


_MATCHES = '<span class="ok">matches its record</span>'
_DIFFERS = '<span class="bad">differs from its record</span>'


def _evidence_url(evidence: Evidence, source: str | None) -> str:
    return f"/calls/{quote(evidence.call_id)}/evidence.zip{where(source, day=evidence.day)}"


def _file_url(evidence: Evidence, source: str | None, key: str) -> str:
    return f"/calls/{quote(evidence.call_id)}/files/{quote(key.rsplit('/', 1)[-1])}{where(source, day=evidence.day)}"


def cold_text(storage_class: str | None, key: str) -> str:
    """What a page says of a recording in cold storage, and how it comes back."""
    call_id = key.rsplit("/", 1)[-1].split(".", 1)[0]
    return (
        f"The recording is in cold storage ({storage_class or 'an archive tier'}): it cannot be played or "
        f"downloaded until it is restored. `archiver restore -c CONFIG {call_id}` brings it back (hours, for "
        "GLACIER and DEEP_ARCHIVE); reload this page once it is readable."
    )


def message_page(title: str, text: str) -> bytes:
    return page(title, f"<p>{h(text)}</p>")
