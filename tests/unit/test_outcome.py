"""What became of a recording is typed, and its JSON is the sidecar's recording object."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from archiver.core.outcome import DONE_STATUSES, Archived, Missing, NoRecording, RecordingStatus, Rejected
from archiver.core.report import RunReport

AT = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def test_each_outcome_serialises_as_the_sidecar_schema_says() -> None:
    """Status first, then the fields of that status; optional fields only when they say something."""
    archived = Archived(
        key="k.wav", size=10, sha256="ab", format="wav", source_url="http://h/x", fetched_from="http://h/x"
    )
    assert archived.to_json() == {
        "status": "archived",
        "key": "k.wav",
        "size": 10,
        "sha256": "ab",
        "format": "wav",
        "source_url": "http://h/x",
        "audio": None,
    }
    moved = Archived(
        key="k.wav",
        size=10,
        sha256="ab",
        format="wav",
        source_url="http://h/x",
        fetched_from="http://g/y",
        trailing_bytes=2,
    )
    assert (moved.to_json()["fetched_from"], moved.to_json()["trailing_bytes"]) == ("http://g/y", 2)
    assert NoRecording().to_json() == {"status": "none"}
    assert Rejected(7, {"kind": "invalid_link"}).to_json() == {
        "status": "rejected",
        "source_url": 7,
        "reason": {"kind": "invalid_link"},
    }
    missing = Missing(
        source_url="u", attempts=3, first_attempt=AT, last_attempt=AT, gave_up=AT, last_error={"kind": "not_found"}
    )
    assert missing.to_json()["gave_up_at"] == "2026-11-01T10:00:00Z"


def test_a_status_is_its_text_everywhere() -> None:
    """The enum compares, hashes and serialises as the plain string the sidecars hold."""
    assert json.dumps({RecordingStatus.MISSING: RecordingStatus.MISSING}) == '{"missing": "missing"}'
    assert {"archived": 1}[RecordingStatus.ARCHIVED] == 1
    assert [str(s) for s in DONE_STATUSES] == ["archived", "none", "missing", "rejected"]


def test_reports_add_up() -> None:
    """merge adds calls and counts; summary names every outcome with plain keys."""
    total, part = RunReport(windows=2), RunReport()
    part.outcomes[RecordingStatus.ARCHIVED] += 2
    part.failed.append(("c", "store down"))
    total.merge(part)
    total.merge(part)
    assert total.summary()["archived"] == 4
    assert total.summary()["failed"] == 2
    assert not total.complete
