"""A sample of the API's recent rows as the archiver reads them: what ``check`` shows first.

A changed wire format, a wrong allow-list or a link that serves an error page should be seen
before the first day is archived, not in an auditor's report months later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from archiver.core.audio import NotAudio, sniff
from archiver.core.cdr import Cdr
from archiver.errors import RecordingError
from archiver.source.ccall import CcallClient
from archiver.source.fetch import Fetcher, LinkPolicy
from archiver.source.listed import listed_calls


@dataclass(frozen=True)
class SampledRow:
    """One recent call as parsed, and what would become of its recording link."""

    cdr: Cdr
    link_refusal: str | None  # why policy would refuse its link; None when it may be fetched


@dataclass(frozen=True)
class Peek:
    """What one recording link serves first: its format, or why it is not a recording."""

    url: str
    format: str | None
    problem: str | None


async def recent_rows(
    client: CcallClient, policy: LinkPolicy, *, tz: ZoneInfo, now: datetime, count: int = 5, days: int = 3
) -> list[SampledRow]:
    """Up to *count* calls of the last *days* days, newest windows last, as parsed."""
    out: list[SampledRow] = []
    stream = listed_calls(client, tz, now - timedelta(days=days), now)
    try:
        async for _, cdr in stream:
            refusal = policy.refusal(cdr.recording_url) if cdr.recording_url else None
            out.append(SampledRow(cdr, refusal))
            if len(out) >= count:
                break
    finally:
        await stream.aclose()
    return out


async def peek_recording(fetcher: Fetcher, rows: list[SampledRow]) -> Peek | None:
    """The first bytes of the first allowed recording link among *rows*; None when there is none."""
    url = next((r.cdr.recording_url for r in rows if r.cdr.recording_url and r.link_refusal is None), None)
    if url is None:
        return None
    try:
        head = await fetcher.peek(url)
    except RecordingError as exc:
        return Peek(url, None, str(exc))
    try:
        return Peek(url, sniff(head), None)
    except NotAudio as exc:
        return Peek(url, None, f"the body is {exc}")


def host(url: str | None) -> str:
    return (urlsplit(url).hostname or "?") if url else "-"
