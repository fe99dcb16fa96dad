"""Sizes and durations as the configuration writes them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from archiver.core.quantities import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0B", 0),
        ("512B", 512),
        ("1KiB", 1024),
        ("2GiB", 2 << 30),
        ("1.5MiB", 1572864),
        (4096, 4096),
        (" 3 MiB ", 3 << 20),
    ],
)
def test_sizes_parse(text: object, expected: int) -> None:
    """Binary units and plain byte counts are read exactly."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["2GB", "lots", "-1", -5, True, "1.5", None, "1 KB"])
def test_bad_sizes_say_which_forms_are_accepted(text: object) -> None:
    """A size without a known unit is refused with the accepted forms in the message."""
    with pytest.raises(ValueError, match=r"512MiB|negative"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("60s", 60), ("2m", 120), ("6h", 21600), ("1d", 86400), ("1h30m", 5400), ("250ms", 0.25), (90, 90), (1.5, 1.5)],
)
def test_durations_parse(text: object, expected: float) -> None:
    """Every unit, combined units and plain seconds are read exactly."""
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["soon", "5 minutes", "-1s", -1, False, "1w", ""])
def test_bad_durations_are_refused(text: object) -> None:
    """A duration that is not of the documented forms is refused."""
    with pytest.raises(ValueError, match=r"60s|negative"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0, 0.25, 45, 5400, 90061])
def test_durations_print_in_a_form_that_parses_back(seconds: float) -> None:
    """format_duration and parse_duration round-trip."""
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def test_sizes_print_for_people() -> None:
    """Sizes print with a binary unit."""
    assert [format_size(n) for n in (12, 2048, 5 << 20, 3 << 30)] == ["12 B", "2.0 KiB", "5.0 MiB", "3.0 GiB"]
