"""Timestamps in S3 answers are parsed as botocore parses them, only cheaper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import botocore.utils
import pytest

from archiver.store.s3_bucket import parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05T16:03:59.000Z", datetime(2026, 12, 5, 16, 3, 59, tzinfo=UTC)),  # a listing's LastModified
        ("2026-12-05T16:03:59Z", datetime(2026, 12, 5, 16, 3, 59, tzinfo=UTC)),
        (
            "2026-12-05T16:03:59.123456+07:00",
            datetime(2026, 12, 5, 16, 3, 59, 123456, tzinfo=timezone(timedelta(hours=7))),
        ),
        ("2026-12-05T16:03:59", datetime(2026, 12, 5, 16, 3, 59, tzinfo=UTC)),  # no zone: UTC, never naive
        ("Sat, 05 Dec 2026 16:03:59 GMT", datetime(2026, 12, 5, 16, 3, 59, tzinfo=UTC)),  # a header's Last-Modified
        ("1796486639", datetime(2026, 12, 5, 16, 3, 59, tzinfo=UTC)),  # epoch seconds: botocore's own parser
    ],
)
def test_each_form_parses_to_the_moment_botocore_reads(text: str, expected: datetime) -> None:
    """ISO 8601, RFC 1123 and epoch forms give the moment botocore's default parser gives, always
    aware (a moment without a zone is UTC, as S3 means it)."""
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is not None
    botocores = botocore.utils.parse_timestamp(text)
    assert parsed == (botocores if botocores.tzinfo else botocores.replace(tzinfo=UTC))


def test_a_moment_with_the_rfc_5322_unknown_zone_is_utc() -> None:
    """'-0000' (RFC 5322: no zone stated) is read as UTC, not as a naive time that compares with nothing."""
    assert parse_timestamp("Sat, 05 Dec 2026 16:03:59 -0000") == datetime(2026, 12, 5, 16, 3, 59, tzinfo=UTC)
