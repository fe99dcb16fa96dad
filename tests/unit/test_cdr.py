"""Typed CDRs: parsing the API's string fields and deriving the call id."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from archiver.core.cdr import parse_row
from archiver.core.identity import call_id_for_url, canonical_json, legacy_call_id_for_row

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DOC_ROW = {
    "Cdr": {
        "direction": "local",
        "cid_name": "Test 3 owner",
        "source": "102",
        "destination": "100",
        "recording_file": "http://api.ccall.local/cdr/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb/cGJ4X2luc3RhbmNlXzI1",
        "start": "2016-01-14 13:14:15",
        "tta": "3s",
        "duration": "00:00:01",
        "pdd": "0.54s",
        "mos": "4.47",
        "status": "NORMAL_CLEARING",
    }
}


def test_the_documented_row_parses_to_the_sidecar_fields() -> None:
    """The example row of the API page gives the call id and fields of the design card."""
    cdr = parse_row(DOC_ROW, TZ)
    assert cdr.call_id == "09dc3fa8-ba86-11e5-a8af-dbc80e22bddb"
    assert cdr.raw is DOC_ROW["Cdr"]
    assert cdr.problems == ()
    assert cdr.call_summary() == {
        "start_local": "2016-01-14T13:14:15+07:00",
        "start_utc": "2016-01-14T06:14:15Z",
        "end_utc": "2016-01-14T06:14:19Z",
        "duration_seconds": 1.0,
        "tta_seconds": 3.0,
        "pdd_seconds": 0.54,
        "mos": 4.47,
        "direction": "local",
        "hangup_cause": "NORMAL_CLEARING",
    }
    assert cdr.day(date(2000, 1, 1)) == date(2016, 1, 14)
    assert cdr.end_utc() == datetime(2016, 1, 14, 6, 14, 19, tzinfo=UTC)


def test_a_call_without_recording_gets_an_nr_id_from_its_identity_fields() -> None:
    """nr- + the first 32 hex digits of SHA-256 of the canonical JSON of start, source, destination,
    direction, status and duration (keys sorted, no spaces, UTF-8)."""
    row = {"Cdr": {**DOC_ROW["Cdr"], "recording_file": None, "cid_name": "Thanh Phạm"}}
    cdr = parse_row(row, TZ)
    identity = {k: row["Cdr"][k] for k in ("start", "source", "destination", "direction", "status", "duration")}
    assert cdr.call_id == "nr-" + hashlib.sha256(canonical_json(identity)).hexdigest()[:32]
    assert legacy_call_id_for_row(row["Cdr"]) == "nr-" + hashlib.sha256(canonical_json(row["Cdr"])).hexdigest()[:32]
    assert canonical_json({"b": 1, "a": "Phạm"}) == '{"a":"Phạm","b":1}'.encode()
    assert not cdr.has_recording


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/cdr/09DC3FA8-BA86-11E5-A8AF-DBC80E22BDDB/eA==", "09dc3fa8-ba86-11e5-a8af-dbc80e22bddb"),
        ("https://h/rec/2016/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav", None),
        ("https://h/files/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb", "09dc3fa8-ba86-11e5-a8af-dbc80e22bddb"),
        ("https://h/x?id=09dc3fa8-ba86-11e5-a8af-dbc80e22bddb", None),
        ("https://h/cdr/../../etc/passwd", None),
    ],
)
def test_call_ids_come_from_the_uuid_in_the_link_path(url: str, expected: str | None) -> None:
    """A UUID path segment is the id, lower case; otherwise rf- + SHA-256 of the URL."""
    got = call_id_for_url(url)
    if expected is None:
        assert got == "rf-" + hashlib.sha256(url.encode()).hexdigest()[:32]
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"start": "14/01/2016"}, "start '14/01/2016' is not a time of the form YYYY-MM-DD HH:MM:SS"),
        ({"start": None}, "start is missing"),
        ({"duration": "a while"}, "duration 'a while' does not parse"),
        ({"mos": "NaN"}, "mos 'NaN' does not parse"),
        ({"status": 17}, "status is a int, not a string"),
        ({"recording_file": 42}, "recording_file is a int, not a string"),
    ],
)
def test_bad_values_are_reported_and_the_row_is_kept(fields: dict[str, object], problem: str) -> None:
    """A field that does not parse becomes None with a problem; the raw row is untouched."""
    row = {"Cdr": {**DOC_ROW["Cdr"], **fields}}
    cdr = parse_row(row, TZ)
    assert problem in cdr.problems
    assert cdr.raw == row["Cdr"]


def test_a_non_string_link_is_kept_as_an_invalid_link() -> None:
    """recording_file of the wrong type is not fetched, but the call still counts as recorded."""
    cdr = parse_row({"Cdr": {**DOC_ROW["Cdr"], "recording_file": {"url": "x"}}}, TZ)
    assert cdr.recording_url is None
    assert cdr.recording_url_invalid == "recording_file is a dict, not a URL"
    assert cdr.has_recording
    assert cdr.call_id.startswith("nr-")


@pytest.mark.parametrize("row", [["not", "a", "dict"], {"cdr": {}}, "text", None, {"Cdr": "x"}])
def test_rows_of_the_wrong_shape_are_still_archivable(row: object) -> None:
    """A row that is neither {'Cdr': {...}} nor bare CDR fields gets an nr- id and a problem."""
    cdr = parse_row(row, TZ)
    assert cdr.call_id.startswith("nr-")
    assert cdr.raw == row
    assert cdr.row == row
    assert "row is not a CDR object (neither {'Cdr': {...}} nor its fields)" in cdr.problems
    assert cdr.day(date(2026, 11, 1)) == date(2026, 11, 1)


@pytest.mark.parametrize(
    "change", [{"mos": "3.1"}, {"pdd": "0.9s"}, {"tta": None}, {"cid_name": "Khác"}, {"vendor_added": 1}]
)
def test_an_unrecorded_call_keeps_its_id_when_volatile_fields_change(change: dict[str, object]) -> None:
    """Two reads of the same unrecorded call give one id, whatever changed outside the identity."""
    base = {**DOC_ROW["Cdr"], "recording_file": None}
    assert parse_row({"Cdr": {**base, **change}}, TZ).call_id == parse_row({"Cdr": base}, TZ).call_id


@pytest.mark.parametrize("change", [{"start": "2016-01-14 13:14:16"}, {"destination": "101"}, {"duration": "00:00:02"}])
def test_different_calls_have_different_ids(change: dict[str, object]) -> None:
    """Any identity field that differs makes another call."""
    base = {**DOC_ROW["Cdr"], "recording_file": None}
    assert parse_row({"Cdr": {**base, **change}}, TZ).call_id != parse_row({"Cdr": base}, TZ).call_id


def test_a_bare_row_reads_as_its_wrapped_form() -> None:
    """Rows sent without the {'Cdr': ...} wrapper are the same call, kept as they came."""
    bare = dict(DOC_ROW["Cdr"])
    wrapped, unwrapped = parse_row(DOC_ROW, TZ), parse_row(bare, TZ)
    assert unwrapped.call_id == wrapped.call_id
    assert unwrapped.recording_url == wrapped.recording_url
    assert unwrapped.raw == bare
    assert unwrapped.row == bare  # parked and parsed again as it came
    assert unwrapped.problems == ()


def test_the_link_may_be_called_recording() -> None:
    """The vendor's prose calls the link 'recording'; it is read under that name too."""
    fields = {k: v for k, v in DOC_ROW["Cdr"].items() if k != "recording_file"}
    cdr = parse_row({"Cdr": {**fields, "recording": DOC_ROW["Cdr"]["recording_file"]}}, TZ)
    assert cdr.recording_url == DOC_ROW["Cdr"]["recording_file"]
    assert cdr.call_id == parse_row(DOC_ROW, TZ).call_id
    assert cdr.suspicious is None


@pytest.mark.parametrize(
    ("change", "suspicious"),
    [
        ({}, True),  # answered, 1 s of talk, and no link field at all
        ({"recording_file": None}, False),  # the field is there: the PBX says there is no recording
        ({"status": "ORIGINATOR_CANCEL"}, False),  # not answered
        ({"duration": "00:00:00"}, False),  # no talk time
        ({"recording_link": "http://x/y"}, True),  # a name the client does not know
    ],
)
def test_an_answered_call_without_a_known_link_field_is_suspicious(change: dict[str, object], suspicious: bool) -> None:
    """No silent 'none': a row that looks recorded but has no link field it knows is named as such."""
    fields = {k: v for k, v in DOC_ROW["Cdr"].items() if k != "recording_file"}
    cdr = parse_row({"Cdr": {**fields, **change}}, TZ)
    assert (cdr.suspicious is not None) == suspicious
    assert (cdr.suspicious in cdr.problems) == suspicious


def test_numbers_sent_as_numbers_are_accepted() -> None:
    """A value of the right meaning but JSON number type is read, not refused."""
    cdr = parse_row({"Cdr": {**DOC_ROW["Cdr"], "mos": 4, "duration": 61}}, TZ)
    assert cdr.mos == 4.0
    assert cdr.duration_seconds == 61.0
    assert cdr.problems == ()


def test_long_durations_and_mos_forms_parse() -> None:
    """HH:MM:SS beyond a day, a bare integer MOS and a null tta all parse."""
    cdr = parse_row({"Cdr": {**DOC_ROW["Cdr"], "duration": "26:00:05", "mos": "4", "tta": None}}, TZ)
    assert cdr.duration_seconds == 26 * 3600 + 5
    assert cdr.mos == 4.0
    assert cdr.tta_seconds is None


@pytest.mark.parametrize(
    ("start", "day"),
    [
        ("14/01/2016 25:61", date(2016, 1, 14)),
        ("2016-01-14T99:00", date(2016, 1, 14)),
        ("yesterday", date(2000, 1, 1)),
        ("31/02/2016 10:00", date(2000, 1, 1)),
    ],
)
def test_a_start_that_is_not_a_time_still_files_the_call_under_its_date(start: str, day: date) -> None:
    """A date inside a broken start decides the folder; without one, the window's day does."""
    cdr = parse_row({"Cdr": {**DOC_ROW["Cdr"], "start": start}}, TZ)
    assert cdr.start_local is None
    assert cdr.day(date(2000, 1, 1)) == day


@pytest.mark.parametrize(
    ("start", "local"),
    [
        ("2016-01-14 13:14:15", datetime(2016, 1, 14, 13, 14, 15, tzinfo=TZ)),
        ("2016-01-14T13:14:15", datetime(2016, 1, 14, 13, 14, 15, tzinfo=TZ)),
        ("2016-01-14 13:14", datetime(2016, 1, 14, 13, 14, tzinfo=TZ)),
        ("2016-1-4 9:05:00", datetime(2016, 1, 4, 9, 5, tzinfo=TZ)),  # fields without their leading zero
        (" 2016-01-14 13:14:15 ", datetime(2016, 1, 14, 13, 14, 15, tzinfo=TZ)),
        ("2016-01-14T06:14:15+00:00", datetime(2016, 1, 14, 13, 14, 15, tzinfo=TZ)),  # an offset: the same moment
    ],
)
def test_each_form_of_start_is_read_in_the_source_time_zone(start: str, local: datetime) -> None:
    """The usual form, its variants and an explicit offset all give the call's start in the source's zone."""
    cdr = parse_row({"Cdr": {**DOC_ROW["Cdr"], "start": start}}, TZ)
    assert cdr.start_local == local
    assert cdr.problems == ()
