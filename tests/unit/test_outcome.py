"""What became of a recording is typed, and its JSON is the sidecar's recording object."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from archiver.core.outcome import DONE_STATUSES, Archived, Missing, NoRecording, RecordingStatus, Rejected
from archiver.core.report import RunReport
from archiver.service.workers import merged_reports, report_line

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


def test_a_report_travels_as_json_and_workers_reports_add_up_once() -> None:
    """A worker hands its report to the parent as JSON; the parent adds the workers' up, without
    counting the days each saw done by the others as done by other hosts."""
    one = RunReport(parked=["a"], failed=[("b", "boom")], skipped=2, bytes=10, by_peers=3, interrupted=False)
    one.outcomes[RecordingStatus.ARCHIVED] = 3
    two = RunReport(skipped=1, bytes=5, by_peers=3)
    two.outcomes[RecordingStatus.NONE] = 3
    assert RunReport.from_dict(json.loads(json.dumps(one.to_dict()))) == one
    lines = [[report_line([one]) + "\n"], ["a log line\n", report_line([two]) + "\n"]]
    [total] = merged_reports(lines) or []
    assert total.done == 6
    assert (total.skipped, total.bytes, total.by_peers) == (3, 15, 0)  # each saw the other's 3 calls: no other host
    assert total.failed == [("b", "boom")]
    assert merged_reports([[report_line([one])], []]) is None  # a worker that handed back nothing
