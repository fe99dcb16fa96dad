"""The ledger: done calls, parked calls, failures, the cursor and the days to close."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from archiver.core.dayfiles import CallEntry
from archiver.core.outcome import RecordingStatus
from archiver.core.parking import PendingCall
from archiver.errors import ConfigError
from archiver.state.ledger import Ledger

NOW = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
DAY = date(2026, 11, 1)


def parked(call_id: str, next_in: timedelta, day: date = DAY) -> PendingCall:
    return PendingCall(
        call_id=call_id,
        day=day,
        row={"Cdr": {"start": "2026-11-01 09:00:00"}},
        attempts=1,
        first_attempt=NOW,
        last_attempt=NOW,
        next_attempt=NOW + next_in,
        deadline=NOW + timedelta(hours=24),
        last_error={"kind": "not_found"},
    )


def test_a_done_call_is_done_once_and_clears_its_wait_and_failure() -> None:
    """mark_done records the call once; its parked record and failure go."""
    ledger = Ledger.in_memory()
    ledger.retries.park(parked("a", timedelta(minutes=1)))
    ledger.retries.record_failure("a", DAY, "store down", NOW)
    ledger.calls.mark_done("a", DAY, RecordingStatus.ARCHIVED, NOW)
    ledger.calls.mark_done("a", DAY, RecordingStatus.ARCHIVED, NOW)
    assert ledger.calls.is_done("a")
    assert (ledger.calls.count_done(), ledger.retries.count_pending(), ledger.retries.failures()) == (1, 0, [])
    assert ledger.progress.status(NOW)["calls"]["archived"] == 1


def test_parked_calls_come_back_when_due_soonest_first() -> None:
    """due() returns the calls whose next try has come, soonest first, with their record intact."""
    ledger = Ledger.in_memory()
    ledger.retries.park(parked("later", timedelta(minutes=5)))
    ledger.retries.park(parked("sooner", timedelta(minutes=1)))
    ledger.retries.park(parked("not yet", timedelta(hours=1)))
    due = list(ledger.retries.due(NOW + timedelta(minutes=10)))
    assert [c.call_id for c in due] == ["sooner", "later"]
    assert due[0] == parked("sooner", timedelta(minutes=1))


def test_a_day_closes_only_when_nothing_of_it_waits_or_fails() -> None:
    """days_to_close names days before the given one with uncovered calls and none parked or failing."""
    ledger = Ledger.in_memory()
    ledger.calls.mark_done("a", DAY, RecordingStatus.NONE, NOW)
    ledger.calls.mark_done("b", DAY + timedelta(days=1), RecordingStatus.NONE, NOW)
    ledger.retries.park(parked("c", timedelta(minutes=1), day=DAY + timedelta(days=1)))
    assert ledger.days.days_to_close(DAY) == []  # the day itself is not before DAY
    assert ledger.days.days_to_close(DAY + timedelta(days=5)) == [DAY]  # the next day still waits for c
    ledger.days.set_covered(DAY, 1)
    assert ledger.days.days_to_close(DAY + timedelta(days=5)) == []
    ledger.calls.mark_done("late", DAY, RecordingStatus.NONE, NOW)  # a call after the day closed: an addendum
    assert ledger.days.days_to_close(DAY + timedelta(days=5)) == [DAY]


def test_a_day_synced_from_the_bucket_counts_its_calls_done() -> None:
    """match_bucket marks the bucket's calls done (status 'stored')."""
    ledger = Ledger.in_memory()
    assert ledger.calls.match_bucket(DAY, ["a", "b"], NOW) == []
    assert ledger.calls.is_done("a")
    assert ledger.progress.status(NOW)["calls"]["stored"] == 2


def test_a_call_the_bucket_lost_is_forgotten_and_its_day_closed_again() -> None:
    """The bucket is the truth: a call done in the ledger whose sidecar is gone is archived again,
    and its day's files are written again; a call done after the listing began is kept."""
    ledger = Ledger.in_memory()
    for call_id in ("a", "b", "c"):
        ledger.calls.mark_done(call_id, DAY, RecordingStatus.NONE, NOW)
    ledger.days.set_covered(DAY, 3)
    assert ledger.days.days_to_close(DAY + timedelta(days=5)) == []
    ledger.calls.mark_done("d", DAY, RecordingStatus.NONE, NOW + timedelta(minutes=2))  # during the listing
    assert ledger.calls.match_bucket(DAY, ["a", "c"], NOW + timedelta(minutes=1)) == ["b"]
    assert not ledger.calls.is_done("b")
    assert ledger.calls.is_done("d")
    ledger.calls.mark_done("b", DAY, RecordingStatus.NONE, NOW + timedelta(minutes=3))  # archived again
    assert ledger.days.days_to_close(DAY + timedelta(days=5)) == [DAY]


def test_the_cursor_and_the_last_poll_are_kept() -> None:
    """The cursor round-trips in UTC; status shows the last poll and the last success."""
    ledger = Ledger.in_memory()
    assert ledger.progress.cursor() is None
    ledger.progress.set_cursor(NOW)
    ledger.progress.record_poll(NOW, ok=True, summary={"archived": 3})
    ledger.progress.record_poll(NOW + timedelta(minutes=1), ok=False, error="API down")
    status = ledger.progress.status(NOW + timedelta(minutes=2))
    assert ledger.progress.cursor() == NOW
    assert status["cursor_lag_seconds"] == 120.0
    assert status["last_poll"]["error"] == "API down"
    assert status["last_success"] == NOW.isoformat()


def test_a_ledger_refuses_another_store(tmp_path: Path) -> None:
    """A ledger file belongs to one archive; opened for another it names state.path."""
    Ledger.open(tmp_path / "l.sqlite3", store_identity="s3://one").close()
    with pytest.raises(ConfigError, match="state.path"):
        Ledger.open(tmp_path / "l.sqlite3", store_identity="s3://two")


def test_day_file_entries_survive_the_ledger_in_both_forms() -> None:
    """Entries round-trip with named fields, and rows an earlier version wrote (a list) still read."""
    ledger = Ledger.in_memory()
    entry = CallEntry("a", "f" * 64, start_local="2026-11-01T09:00:00+07:00", source="0986", recording_status="none")
    ledger.calls.mark_done("a", DAY, RecordingStatus.NONE, NOW, entry)
    assert ledger.days.entries(DAY) == {"a": entry}
    old = json.dumps(
        {
            "call_id": "b",
            "sidecar_sha256": "e" * 64,
            "row": ["b", None, None, "0986", "1001", None, 3.0, None, "archived", "k/b.wav", 10, "d" * 64],
        }
    )
    read = CallEntry.from_json(old)
    assert (read.source, read.destination, read.audio_name, read.audio_sha256) == ("0986", "1001", "b.wav", "d" * 64)
