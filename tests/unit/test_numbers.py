"""Every common way of writing one phone number reduces to the same form; others stay apart."""

import pytest

from archiver.core.numbers import canonical_number, looks_numeric, same_number


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("+84 986 123 456", "986123456"),
        ("+84-986-123-456", "986123456"),
        ("84986123456", "986123456"),
        ("0986123456", "986123456"),
        ("0986.123.456", "986123456"),
        ("0084986123456", "986123456"),
        ("986123456", "986123456"),
        ("(028) 3812 3456", "2838123456"),  # a Ho Chi Minh City landline
        ("+84 28 3812 3456", "2838123456"),
        ("0849123456", "849123456"),  # a national number that starts with 84 keeps it
        ("849123456", "849123456"),
        ("101", "101"),  # extensions stay as they are
        ("0101", "0101"),
        ("+1 415 555 0100", "+14155550100"),  # a foreign number keeps its country code
        ("sip:101@pbx.example", "sip:101@pbx.example"),
        ("Anonymous", "anonymous"),
    ],
)
def test_canonical_forms(written: str, canonical: str) -> None:
    assert canonical_number(written) == canonical


def test_same_number_across_forms_and_not_across_numbers() -> None:
    assert same_number("0986123456", "+84 986 123 456")
    assert same_number("84986123456", "0986-123-456")
    assert not same_number("0986123457", "+84 986 123 456")
    assert not same_number("101", "+84 101")
    assert not same_number(None, "101")
    assert same_number("0412345678", "+61 412 345 678", country_code="61")  # another country's PBX


@pytest.mark.parametrize(
    ("value", "numeric"), [("0986123456", True), ("+84986", True), ("101", True), ("Lan", False), ("09-86", False)]
)
def test_what_a_spreadsheet_reads_as_a_number(value: str, numeric: bool) -> None:
    assert looks_numeric(value) is numeric
