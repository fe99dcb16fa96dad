"""What a revision may change of the record it supersedes (archiver.core.revisions)."""

from __future__ import annotations

from typing import Any

import pytest

from archiver.core.revisions import fault

CDR = {"uuid": "09dc3fa8-ba86-11e5-a8af-dbc80e22bddb", "start": "2026-11-01 09:00:00", "duration": 42}
CALL = {"start_utc": "2026-11-01T02:00:00Z", "duration_seconds": 42}


def record(status: str, **changes: Any) -> dict[str, Any]:
    return {"cdr": CDR, "call": CALL, "recording": {"status": status}, **changes}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("none", "superseded"),  # rearchive: the call turned out to be another, recorded one
        ("missing", "archived"),  # rearchive: fetched again
        ("rejected", "missing"),
        ("missing", "rejected"),
        ("archived", "erased"),  # erase
        ("missing", "erased"),  # erase of a call whose earlier revision's audio is still there
    ],
)
def test_the_revisions_the_archiver_writes_are_allowed(before: str, after: str) -> None:
    assert fault(record(before), record(after)) is None


@pytest.mark.parametrize(
    ("before", "after", "said"),
    [
        ("archived", "archived", "only an erasure follows that"),
        ("archived", "missing", "only an erasure follows that"),
        ("erased", "archived", "which nothing follows"),
        ("erased", "erased", "erased already"),
        ("superseded", "archived", "which nothing follows"),
        ("none", "made up", "it says 'made up' after 'none'"),
    ],
)
def test_a_revision_the_archiver_never_writes_is_named(before: str, after: str, said: str) -> None:
    wrong = fault(record(before), record(after))
    assert wrong is not None
    assert said in wrong


def test_a_revision_keeps_the_cdr_as_it_is() -> None:
    changed = record("missing", cdr={**CDR, "duration": 7})
    assert fault(record("missing"), changed) == "it rewrites the call's CDR, which a revision keeps as it is"


def test_a_revision_may_read_the_call_as_the_cdr_reads_now_and_not_otherwise() -> None:
    reread = {**CALL, "direction": "inbound"}  # a later archiver reads a field the earlier did not
    later = record("missing", call=reread)
    assert fault(record("none"), later, read_call=lambda cdr: reread) is None
    assert fault(record("none"), later, read_call=lambda cdr: CALL) is not None
    assert fault(record("none"), later, read_call=None) is not None  # the zone unknown: only the same call
