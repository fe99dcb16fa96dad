"""Retention's pure parts: lifecycle rules read against the layout, expiry records in seals,
what a HEAD says of cold storage, and the configuration keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archiver.config.load import load_config
from archiver.core import lifecycle, retention, seal
from archiver.errors import ConfigError
from archiver.store import Hold, ObjectInfo

PREFIX = "archive"


def rule(prefix: str | None = "", **actions: object) -> dict[str, object]:
    return {"ID": "r1", "Status": "Enabled", "Filter": {} if prefix is None else {"Prefix": prefix}, **actions}


@pytest.mark.parametrize(
    ("rule_prefix", "covered"),
    [
        ("", {"days", "seals"}),
        ("arch", {"days", "seals"}),
        ("archive/", {"days", "seals"}),
        ("archive/2019/", {"days"}),
        ("archive/2019/03/04/", {"days"}),
        ("archive/seals/", {"seals"}),
        ("archive/_archiver/", set()),
        ("archive/_access/", set()),
        ("other/", set()),
    ],
)
def test_which_objects_a_rule_prefix_covers(rule_prefix: str, covered: set[str]) -> None:
    assert lifecycle.touches(rule_prefix, PREFIX) == covered


def test_a_transition_of_the_day_folders_is_warned_about() -> None:
    [line] = lifecycle.warnings([rule("archive/", Transitions=[{"Days": 30, "StorageClass": "GLACIER"}])], PREFIX, None)
    assert "moves records, day files and recordings and seals to GLACIER after 30 days" in line
    assert "storage.storage_class" in line


def test_an_expiration_is_warned_about_and_says_when_it_is_before_keep() -> None:
    keep = timedelta(days=2557)
    [early] = lifecycle.warnings([rule("", Expiration={"Days": 365})], PREFIX, keep)
    assert "deletes records, day files and recordings and seals after 365 days, before retention.keep (2557d)" in early
    [late] = lifecycle.warnings([rule("", Expiration={"Days": 3000})], PREFIX, keep)
    assert "before retention.keep" not in late
    assert "archiver expire" in late
    [keep_all] = lifecycle.warnings([rule("", Expiration={"Days": 3000})], PREFIX, None)
    assert "retention.keep is null" in keep_all


def test_rules_that_cannot_touch_the_archive_are_not_warned_about() -> None:
    rules: list[dict[str, object]] = [
        rule("archive/_archiver/", Expiration={"Days": 1}),  # control objects
        rule("", NoncurrentVersionExpiration={"NoncurrentDays": 30}),  # old versions only
        rule("", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 7}),
        {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Expiration": {"Days": 1}},
        {**rule("", Expiration={"Days": 1}), "Status": "Disabled"},
    ]
    assert lifecycle.warnings(rules, PREFIX, timedelta(days=30)) == []


def test_the_older_rule_form_and_and_filters_are_read() -> None:
    old = {"ID": "o", "Status": "Enabled", "Prefix": "archive/2020/", "Expiration": {"Days": 10}}
    anded = {
        "ID": "a",
        "Status": "Enabled",
        "Filter": {"And": {"Prefix": "archive/seals/", "ObjectSizeGreaterThan": 1}},
        "Transitions": [{"Days": 1, "StorageClass": "DEEP_ARCHIVE"}],
    }
    lines = lifecycle.warnings([old, anded], PREFIX, timedelta(days=30))
    assert "deletes records, day files and recordings after 10 days" in lines[0]
    assert "moves seals to DEEP_ARCHIVE" in lines[1]


def test_a_default_retention_is_read_in_days() -> None:
    assert lifecycle.retention_days("GOVERNANCE 30 days") == 30
    assert lifecycle.retention_days("COMPLIANCE 7 years") == 7 * 365
    assert lifecycle.retention_days(None) is None


def test_an_expiry_record_round_trips_through_a_seal_and_the_chain_finds_it() -> None:
    expiry = seal.Expiry(
        "2019-01-02",
        "archive/2019/01/02/",
        (seal.Link("archive/2019/01/02/manifest-sha256.txt", "a" * 64),),
        "2557d",
        "t",
    )
    first = seal.Seal.new(
        1, {"archive/2019/01/02/manifest-sha256.txt": "a" * 64}, None, datetime(2019, 1, 3, tzinfo=UTC)
    )
    raw1 = first.to_bytes()
    assert b"expired" not in raw1  # a seal without expiries has the bytes it always had
    chain = seal.check_chain(PREFIX, {seal.seal_key(PREFIX, 1): raw1})
    second = seal.Seal.new(2, {}, chain.head, datetime(2026, 1, 3, tzinfo=UTC), expired=(expiry,))
    raw2 = second.to_bytes()
    assert seal.Seal.parse(raw2) == second
    chain = seal.check_chain(PREFIX, {seal.seal_key(PREFIX, 1): raw1, seal.seal_key(PREFIX, 2): raw2})
    assert chain.problems == []
    assert chain.expired() == {"archive/2019/01/02/": (2, expiry)}


def test_a_malformed_expiry_record_makes_the_seal_a_problem() -> None:
    doc = b'{"schema": "ccall-archiver/seal/v1", "sequence": 1, "manifests": [], "previous": null, "expired": [{}]}'
    chain = seal.check_chain(PREFIX, {seal.seal_key(PREFIX, 1): doc})
    assert chain.problems
    assert "expiry record" in chain.problems[0][1]


def test_a_head_says_whether_an_object_can_be_read_now() -> None:
    glacier = ObjectInfo("k", 1, None, storage_class="GLACIER")
    assert glacier.cold
    assert glacier.in_archive_tier
    assert not glacier.restoring
    restoring = ObjectInfo("k", 1, None, storage_class="GLACIER", restore='ongoing-request="true"')
    assert restoring.cold
    assert restoring.restoring
    restored = ObjectInfo(
        "k",
        1,
        None,
        storage_class="DEEP_ARCHIVE",
        restore='ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
    )
    assert not restored.cold
    assert restored.restored_until == datetime(2012, 12, 21, tzinfo=UTC)
    assert not ObjectInfo("k", 1, None, storage_class="GLACIER_IR").cold
    assert ObjectInfo("k", 1, None, storage_class="INTELLIGENT_TIERING", archive_status="ARCHIVE_ACCESS").cold


def test_a_hold_says_what_holds_it() -> None:
    until = datetime(2033, 1, 1, tzinfo=UTC)
    assert str(Hold("k", "v", "COMPLIANCE", until)) == "k is under COMPLIANCE retention until 2033-01-01"
    assert str(Hold("k", "v", None, None, legal_hold=True)) == "k is under a legal hold"
    assert Hold("k", "v", "GOVERNANCE", until).governance_only
    assert not Hold("k", "v", "GOVERNANCE", until, legal_hold=True).governance_only


def _config(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(
        "source: {base_url: 'https://api.example', api_key: k, api_secret: s}\n"
        f"storage: {{url: 'file://{tmp_path}/a'{extra}}}\n"
    )
    return str(path)


def test_an_unknown_storage_class_names_the_key_and_the_classes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(Path(_config(tmp_path, ", storage_class: COLD")), environ={})
    [problem] = raised.value.problems
    assert "storage.storage_class" in problem
    assert "'STANDARD'" in problem
    assert "'DEEP_ARCHIVE'" in problem
    assert "'GLACIER_IR'" in problem


def test_retention_keep_is_read_as_days_and_must_be_a_day_at_least(tmp_path: Path) -> None:
    path = Path(_config(tmp_path, ""))
    path.write_text(path.read_text() + "retention: {keep: 2557d}\n")
    config = load_config(path, environ={})
    assert config.retention.keep == timedelta(days=2557)
    assert config.retention.policy == "2557d"
    path.write_text(path.read_text().replace("2557d", "12h"))
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert "retention.keep" in raised.value.problems[0]
    assert "at least 1d" in raised.value.problems[0]


LA = ZoneInfo("America/Los_Angeles")


def test_the_oldest_day_kept_is_reckoned_on_absolute_time_across_a_change_of_clocks() -> None:
    """Daylight saving time ended on 2026-11-01 in Los Angeles: 30 days before 23:30 on 30
    November is 00:30 on 1 November by absolute time, 23:30 on 31 October by the wall clock.
    retention reckons absolute time, so 31 October (which ended 30 days ago) is the last day let go."""
    now = datetime(2026, 11, 30, 23, 30, tzinfo=LA)
    assert retention.first_kept(now, timedelta(days=30), LA) == date(2026, 11, 1)
    assert (now - timedelta(days=30)).date() == date(2026, 10, 31)  # what wall-clock arithmetic gives


@pytest.mark.parametrize("hour", range(0, 48))
def test_expire_backfill_and_verify_agree_on_every_day_hour_by_hour_across_the_change(hour: int) -> None:
    """Whatever the hour, around the change of clocks: a day is before the oldest day kept exactly
    when its end plus keep has passed (what verify asks of an expiry record)."""
    now = datetime(2026, 11, 30, tzinfo=UTC) + timedelta(hours=hour)
    keep = timedelta(days=30)
    first = retention.first_kept(now, keep, LA)
    for day in (date(2026, 10, 30) + timedelta(days=n) for n in range(5)):
        assert (day < first) == (retention.expired_early(day, keep, now, LA) is None), (hour, day)
