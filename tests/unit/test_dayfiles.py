"""Day files for people: numbers stay text in a spreadsheet, formulas never run, and the CSV reads back."""

from datetime import date

from archiver.core import dayfiles
from archiver.core.dayfiles import CallEntry

ENTRY = CallEntry(
    call_id="09dc3fa8-ba86-11e5-a8af-dbc80e22bddb",
    sidecar_sha256="a" * 64,
    start_local="2026-03-12T10:02:11+07:00",
    direction="inbound",
    source="0986123456",
    destination="+84283812345",
    cid_name='=HYPERLINK("http://evil")',
    duration_seconds=42.0,
    hangup_cause="NORMAL_CLEARING",
    recording_status="archived",
    recording_key="p/2026/03/12/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav",
    size=16044,
    sha256="b" * 64,
    revision=2,
)


def test_numbers_are_written_as_text_and_formulas_are_neutralised() -> None:
    text = dayfiles.calls_csv([ENTRY]).decode("utf-8-sig")
    assert '"=""0986123456"""' in text  # ="0986123456": Excel, LibreOffice and Sheets show 0986123456
    assert '"=""+84283812345"""' in text
    assert "'=HYPERLINK" in text  # the CDR's text cannot run as a formula


def test_the_csv_reads_back_as_written() -> None:
    [row] = dayfiles.parse_calls_csv(dayfiles.calls_csv([ENTRY]))
    back = CallEntry.from_csv_row(row)
    assert back == CallEntry(**{**ENTRY.__dict__, "sidecar_sha256": ""})


def test_a_csv_of_earlier_versions_reads_too() -> None:
    old = "\ufeffcall_id,start_local,source,destination,duration_seconds\r\nx,2026,0986,'+84986,1.5\r\n".encode()
    [row] = dayfiles.parse_calls_csv(old)
    entry = CallEntry.from_csv_row(row)
    assert (entry.source, entry.destination, entry.duration_seconds, entry.revision) == ("0986", "+84986", 1.5, 1)


def test_the_page_shows_each_recording_s_sha256_and_links_the_other_sets() -> None:
    page = dayfiles.index_html(date(2026, 3, 12), [ENTRY], number=3).decode()
    assert "b" * 64 in page
    assert 'href="index.html"' in page  # the earlier sets
    assert 'href="index.2.html"' in page
    assert 'href="index.4.html"' in page  # where later calls would be
    assert "(revision 2)" in page
    assert "<script" not in page
