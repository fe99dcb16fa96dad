"""The command line as a user runs it: a subprocess, exit codes, what it prints, what it leaves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from archiver.core.identity import call_id_for_row
from archiver.simulator import Dataset, Dialect, Simulator
from tests.helpers import (
    Bucket,
    MotoServer,
    TinyServer,
    ToggleProxy,
    archive_objects,
    config_dict,
    free_port,
    is_sidecar,
    make_bucket,
    run_cli,
    wait_for_port,
    write_config,
)

SECRET = "9f8e7d6c"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
def secret_sim(dataset: Dataset) -> Iterator[Simulator]:
    with Simulator(dataset, api_secret=SECRET) as server:
        yield server


def cli_config(tmp_path: Path, sim: Simulator, storage: dict[str, Any], **sections: dict[str, Any]) -> Path:
    """A config whose API secret comes from the environment (so no file holds it)."""
    raw = config_dict(api=sim, storage=storage, state="ledger.sqlite3")
    raw["source"]["api_secret"] = "${TEST_CCALL_SECRET}"
    raw.update(sections)
    return write_config(tmp_path, raw)


def archiver(*args: str, secret: str = SECRET, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"TEST_CCALL_SECRET": secret}, timeout=timeout)


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in (SECRET, os.environ["AWS_SECRET_ACCESS_KEY"], *secrets):
        assert secret not in result.stdout
        assert secret not in result.stderr
    assert "Traceback" not in result.stderr


def s3(bucket: Bucket) -> dict[str, str]:
    return {"url": bucket.url, "endpoint_url": bucket.endpoint}


def test_backfill_exits_0_and_a_rerun_writes_nothing(secret_sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """A backfill into S3 exits 0 with a summary; the same command again writes nothing."""
    config = cli_config(tmp_path, secret_sim, s3(bucket))
    first = archiver("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert first.returncode == 0, first.stderr
    calls = secret_sim.dataset.calls_between(
        datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 3, tzinfo=TZ), secret_sim.now()
    )
    recorded = sum(c.has_recording for c in calls)
    assert f"archived {recorded} recordings" in first.stdout
    assert f"{len(calls) - recorded} calls without a recording" in first.stdout
    assert_no_secret(first)
    events = [json.loads(line) for line in first.stderr.splitlines()]
    assert sum(e["event"] == "call.archived" for e in events) == len(calls)
    objects = archive_objects(bucket)  # control objects (claims, the run) are renewed by design
    assert sum(is_sidecar(k) for k in objects) == len(calls)

    second = archiver("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03")
    assert second.returncode == 0, second.stderr
    assert "archived 0 recordings" in second.stdout
    assert f"{len(calls)} already archived" in second.stdout
    assert archive_objects(bucket) == objects
    assert '"shard.run_started"' in second.stderr  # a re-run is a new run: it read every day again

    # The seals now state the zone the days are filed in; a configuration that names another is a
    # FAIL (exit 2), as every command that writes refuses it.
    moved = cli_config(tmp_path, secret_sim, s3(bucket))
    raw = yaml.safe_load(moved.read_text())
    raw["source"]["timezone"] = "UTC"
    moved.write_text(yaml.safe_dump(raw))
    checked = archiver("check", "-c", str(moved))
    assert checked.returncode == 2, checked.stdout
    assert (
        "FAIL  time zone: source.timezone says UTC, the archive's seals say its days are filed in Asia/Ho_Chi_Minh"
        in checked.stdout
    ), checked.stdout
    refused = archiver("backfill", "-c", str(moved), "--since", "2026-11-03", "--until", "2026-11-04")
    assert refused.returncode == 2
    assert "At 'source.timezone': it names UTC, but the seals of" in refused.stderr
    assert archive_objects(bucket) == objects


def test_a_dry_run_prints_the_plan_and_writes_nothing(secret_sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """--dry-run lists calls per day and creates neither objects nor a ledger."""
    config = cli_config(tmp_path, secret_sim, s3(bucket))
    result = archiver("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("plan for 2026-11-01 00:00 to 2026-11-03 00:00")
    assert [line.split()[0] for line in lines[2:]] == ["2026-11-01", "2026-11-02", "total"]
    calls = secret_sim.dataset.calls_between(
        datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 3, tzinfo=TZ), secret_sim.now()
    )
    assert lines[-1].split()[1] == str(len(calls))
    assert bucket.objects() == {}
    assert not (tmp_path / "ledger.sqlite3").exists()
    assert_no_secret(result)


def test_an_unknown_config_key_exits_2_naming_it(secret_sim: Simulator, tmp_path: Path) -> None:
    """Configuration errors exit 2, name every key, and print no traceback."""
    config = cli_config(
        tmp_path, secret_sim, {"url": f"file://{tmp_path}/a"}, download={"concurency": 4, "max_bytes": "lots"}
    )
    result = archiver("backfill", "-c", str(config), "--since", "2026-11-01")
    assert result.returncode == 2
    assert "At 'download.concurency': unknown key (did you mean 'concurrency'?)" in result.stderr
    assert "At 'download.max_bytes': expected a size" in result.stderr
    assert_no_secret(result)


def test_wrong_credentials_exit_2_without_showing_the_secret(secret_sim: Simulator, tmp_path: Path) -> None:
    """The API refusing the credentials stops the program with a clear message."""
    config = cli_config(tmp_path, secret_sim, {"url": f"file://{tmp_path}/a"})
    wrong = "0badc0de"
    result = archiver("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-02", secret=wrong)
    assert result.returncode == 2
    assert "rejected the credentials (HTTP 401)" in result.stderr
    assert_no_secret(result, wrong)


def test_a_missing_bucket_exits_2_naming_it(secret_sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """A bucket that does not exist is a configuration error, not a retry loop."""
    config = cli_config(tmp_path, secret_sim, {"url": "s3://no-such-bucket-xyz/p", "endpoint_url": bucket.endpoint})
    result = archiver("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-02")
    assert result.returncode == 2
    assert "bucket 'no-such-bucket-xyz' does not exist" in result.stderr
    assert_no_secret(result)


def test_bad_dates_exit_2(secret_sim: Simulator, tmp_path: Path) -> None:
    """A date in the wrong form, or a range that ends before it starts, is a usage error."""
    config = cli_config(tmp_path, secret_sim, {"url": f"file://{tmp_path}/a"})
    assert "YYYY-MM-DD" in archiver("backfill", "-c", str(config), "--since", "1/11/2026").stderr
    result = archiver("backfill", "-c", str(config), "--since", "2026-11-02", "--until", "2026-11-01")
    assert result.returncode == 2
    assert "is not after --since" in result.stderr


def test_check_reports_each_part(secret_sim: Simulator, tmp_path: Path, bucket: Bucket) -> None:
    """check passes with good settings and fails (exit 2) naming the part that is wrong."""
    config = cli_config(tmp_path, secret_sim, s3(bucket))
    good = archiver("check", "-c", str(config))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok    ccall API" in good.stdout
    assert "3 registered device(s)" in good.stdout
    assert f"ok    store s3://{bucket.name}" in good.stdout
    assert good.stdout.count("ok    row ") == 5  # recent calls as parsed
    assert "ok    recording 127.0.0.1: the first bytes are WAV audio" in good.stdout
    assert "ok    create-only: the store refuses a second multipart upload of a key too" in good.stdout
    # moto keeps the ChecksumSHA256 it is sent without checking it: said, so that no one takes it for proof
    assert "WARN  checksums: the store keeps the ChecksumSHA256 it is sent without checking it" in good.stdout
    assert "WARN  time zone: no seal states the zone the archive's days are filed in yet" in good.stdout
    assert bucket.objects() == {}  # the probe object is removed again
    bad = archiver("check", "-c", str(config), secret="0badc0de")
    assert bad.returncode == 2
    assert "FAIL  ccall API" in bad.stdout
    assert_no_secret(bad, "0badc0de")


def test_check_says_what_the_store_answered(secret_sim: Simulator, tmp_path: Path, moto_server: MotoServer) -> None:
    """A store that answers 503 SlowDown to everything is reported as having said so (exit 1, a
    passing fault), never as a store that did not answer; one that is not there at all, as such."""
    bucket = make_bucket(moto_server.endpoint)
    proxy = ToggleProxy(moto_server.port).start()
    try:
        proxy.slowdown(True)
        busy = archiver(
            "check", "-c", str(cli_config(tmp_path, secret_sim, s3(bucket) | {"endpoint_url": proxy.endpoint}))
        )
        proxy.down()
        gone = archiver(
            "check", "-c", str(cli_config(tmp_path, secret_sim, s3(bucket) | {"endpoint_url": proxy.endpoint}))
        )
    finally:
        proxy.stop()
    assert busy.returncode == 1, busy.stdout + busy.stderr
    assert re.search(r"answered (SlowDown|503)", busy.stdout), busy.stdout
    assert "FAIL  create-only could not be proved now" in busy.stdout
    assert "did not answer" not in busy.stdout
    assert gone.returncode == 1, gone.stdout + gone.stderr
    assert "did not answer" in gone.stdout
    assert "Traceback" not in busy.stderr + gone.stderr


SSO_PROFILES = """[profile sso-never-logged-in]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Archiver
[sso-session corp]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
"""


@pytest.mark.parametrize(
    ("profile", "says"),
    [
        ("no-such-profile", "the AWS profile for s3://"),
        ("sso-never-logged-in", "the AWS SSO session for s3://"),
    ],
)
def test_an_aws_profile_that_gives_no_credentials_stops_with_what_to_do(
    profile: str, says: str, secret_sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """AWS_PROFILE names a profile that does not exist, or an SSO profile nobody logged in to:
    check and backfill stop once (exit 2) saying what to do, not an internal error per request."""
    aws_config = tmp_path / "aws-config"
    aws_config.write_text(SSO_PROFILES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_PROFILE": profile,
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "TEST_CCALL_SECRET": SECRET,
    }
    config = str(cli_config(tmp_path, secret_sim, s3(bucket)))
    runs = {
        command: subprocess.run(
            [sys.executable, "-m", "archiver", command, "-c", config, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        for command, extra in (("check", ()), ("backfill", ("--since", "2026-11-01", "--until", "2026-11-02")))
    }
    for result in runs.values():
        assert result.returncode == 2, result.stdout + result.stderr
        assert says in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert "internal error" not in (result.stdout + result.stderr).lower()
    assert "AWS_PROFILE" in runs["check"].stdout
    assert bucket.objects() == {}


@pytest.mark.parametrize(
    ("dialect", "seen"),
    [
        (None, "ok    row "),  # as documented
        ("link_field=recording", "ok    row "),  # the vendor's prose's name is read too
    ],
)
def test_check_shows_recent_rows_as_parsed(dialect: str | None, seen: str, tmp_path: Path, bucket: Bucket) -> None:
    """check prints recent calls as the archiver reads them, and the first bytes of one recording."""
    with Simulator(
        Dataset(seed=5, calls_per_day=200, max_duration=4),
        api_secret=SECRET,
        dialect=Dialect.parse([dialect] if dialect else []),
    ) as sim:
        result = archiver("check", "-c", str(cli_config(tmp_path, sim, s3(bucket))))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(seen) == 5
    assert "the first bytes are WAV audio" in result.stdout


def test_check_fails_on_rows_whose_link_it_cannot_find_or_may_not_fetch(tmp_path: Path, bucket: Bucket) -> None:
    """A renamed link field (calls that look recorded, without a link) and a link on a host the
    allow-list refuses are both named before any day is archived."""
    with Simulator(Dataset(seed=5, calls_per_day=200, max_duration=4), api_secret=SECRET) as sim:
        refused = archiver(
            "check",
            "-c",
            str(
                cli_config(
                    tmp_path,
                    sim,
                    s3(bucket),
                    source={
                        "base_url": sim.url,
                        "api_key": sim.api_key,
                        "api_secret": "${TEST_CCALL_SECRET}",
                        "allowed_recording_hosts": ["recordings.example.net"],
                    },
                )
            ),
        )
    assert refused.returncode == 2, refused.stdout
    assert "which would be refused: host '127.0.0.1' is not in source.allowed_recording_hosts" in refused.stdout
    # A call two hours ago, whatever today is: check samples the last three days.
    started = (datetime.now(TZ) - timedelta(hours=2)).replace(second=0, microsecond=0)
    answered = {
        "start": started.strftime("%Y-%m-%d %H:%M:%S"),
        "source": "0986",
        "destination": "1001",
        "direction": "inbound",
        "status": "NORMAL_CLEARING",
        "duration": "00:01:05",
        "recording_link": "http://x/cdr/a",
    }

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        body = json.dumps(
            {"response": {"registrations": []}} if "ext_reg" in handler.path else {"response": [{"Cdr": answered}]}
        ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with TinyServer(respond) as api:
        config = cli_config(
            tmp_path,
            sim,
            s3(bucket),
            source={"base_url": api.url, "api_key": "a1b2c3d4", "api_secret": "${TEST_CCALL_SECRET}"},
        )
        renamed = archiver("check", "-c", str(config))
    assert renamed.returncode == 1, renamed.stdout
    assert f"FAIL  row {started:%Y-%m-%d %H:%M} inbound NORMAL_CLEARING 65 s" in renamed.stdout
    assert "listed without a recording link under recording_file or recording" in renamed.stdout
    assert "recording_link" in renamed.stdout  # its fields are shown, never their values


def test_the_daemon_archives_arriving_calls_promptly_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """run archives each call within interval + settle + a few seconds of its end; SIGTERM exits 0."""
    dataset = Dataset(seed=3, calls_per_day=30000, max_duration=2, business_hours_share=0)
    today = datetime.now(TZ).date()
    calls = [c for offset in (-1, 0, 1) for c in dataset.calls_on(today + timedelta(days=offset))]  # generated up front
    bound = timedelta(seconds=1 + 2 + 4)  # poll.interval + poll.settle + a few seconds
    root = tmp_path / "archive"
    with Simulator(dataset, api_secret=SECRET) as sim:
        config = cli_config(
            tmp_path, sim, {"url": f"file://{root}"}, poll={"interval": "1s", "settle": "2s", "lookback": "5m"}
        )
        env = {**os.environ, "TEST_CCALL_SECRET": SECRET}
        started = datetime.now(TZ)
        ends = sorted(c.end for c in calls if c.end > started + timedelta(seconds=2))
        watch_until = ends[4] + bound + timedelta(seconds=1)  # long enough for five calls to end and be archived
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            time.sleep(max(0.0, (watch_until - datetime.now(TZ)).total_seconds()))
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=30)
        stopped = datetime.now(TZ)
    assert process.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines()]
    assert "poll.completed" in events
    assert "shutdown.requested" in events
    assert events[-1] == "daemon.stopped"
    measured = [c for c in calls if started + timedelta(seconds=2) < c.end < stopped - bound]
    assert len(measured) >= 5
    for call in measured:
        cid = call.uuid if call.has_recording else call_id_for_row(call.cdr(sim.url)["Cdr"])
        sidecar = root / f"{call.start:%Y/%m/%d}" / f"{cid}.json"
        assert sidecar.exists(), f"call {cid} ended at {call.end} and was not archived"
        lag = datetime.fromtimestamp(sidecar.stat().st_mtime, TZ) - call.end
        assert lag < bound, f"call {cid} archived {lag} after it ended"
    assert not [p for p in root.rglob(".*") if p.is_file()]  # no temporary file left half-written
    assert SECRET not in stdout + stderr


def test_help_and_version_answer_without_loading_the_archiving_stack() -> None:
    """--help, --version and usage errors import no network or storage library, so they answer at once."""
    probe = (
        "import sys, contextlib\n"
        "from archiver.cli.main import main\n"
        "for argv in (['--version'], ['backfill', '--help'], ['nonsense']):\n"
        "    with contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'httpx', 'starlette', 'uvicorn', 'cattrs') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "usage: archiver backfill" in done.stdout


def test_the_demo_runs_from_nothing(tmp_path: Path) -> None:
    """archiver demo archives two days from the simulator into a folder and says so; then the same
    days encrypted, each recording an age file whose key is in a folder apart, one call erased by
    destroying its key."""
    result = archiver("demo", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo ok" in result.stdout
    assert "second pass: 0 calls written" in result.stdout
    assert list((tmp_path / "demo" / "archive").rglob("*.wav"))
    sealed = list((tmp_path / "demo" / "archive-encrypted").rglob("*.wav.age"))
    assert sealed
    assert not list((tmp_path / "demo" / "archive-encrypted").rglob("*.wav"))
    assert len(list((tmp_path / "demo" / "keys").rglob("*.age"))) == len(sealed) - 1  # one key destroyed
    assert f"{len(sealed)} recordings decrypted" in result.stdout
    assert "1 call(s) erased by destroying their keys" in result.stdout


def test_simulate_serves_the_api_on_the_given_port(tmp_path: Path) -> None:
    """archiver simulate listens where told and answers the CDR API with its printed credentials."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archiver",
            "simulate",
            "--port",
            str(port),
            "--calls-per-day",
            "10",
            "--fault",
            "recording_delay=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner
        wait_for_port(port)
        body = {
            "submission": {
                "api_key": "a1b2c3d4",
                "api_secret": "5e6f7a8b",
                "date_range": {"from": "2026-11-01 00:00", "to": "2026-11-01 23:59"},
            }
        }
        answer = httpx.post(f"http://127.0.0.1:{port}/cdrs/json", json=body).json()
        assert 8 <= len(answer["response"]) <= 12
        assert set(answer["response"][0]["Cdr"]) >= {"recording_file", "start", "duration", "status"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=10)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 0


def test_simulate_refuses_an_unknown_fault() -> None:
    """A fault name the simulator does not know is a usage error that lists the known ones."""
    result = archiver("simulate", "--fault", "gremlins=1")
    assert result.returncode == 2
    assert "unknown fault 'gremlins=1'" in result.stderr
    assert "api_error_rate" in result.stderr


def test_every_command_works_on_each_source_of_a_sources_list(tmp_path: Path) -> None:
    """Two tenants in one file into one folder: backfill, verify, reconcile, status and check work on
    both (with a heading each, JSON keyed by name) or on the one --source picks; secrets of
    both stay out of the output."""
    second_secret = "0a1b2c3d"
    first, second = Dataset(seed=41, calls_per_day=12), Dataset(seed=42, calls_per_day=9)
    with Simulator(first, api_secret=SECRET) as hq, Simulator(second, api_secret=second_secret) as dn:
        raw = {
            "sources": [
                {"name": "hq", "base_url": hq.url, "api_key": hq.api_key, "api_secret": "${TEST_CCALL_SECRET}"},
                {"name": "danang", "base_url": dn.url, "api_key": dn.api_key, "api_secret": second_secret},
            ],
            "storage": {"url": f"file://{tmp_path}/archive"},
            "state": {"path": "ledger.sqlite3"},
        }
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        span = ("--since", "2026-11-01", "--until", "2026-11-03")
        done = archiver("backfill", "-c", str(config), *span)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "== source hq" in done.stdout
        assert "== source danang" in done.stdout
        archived = [json.loads(line) for line in done.stderr.splitlines() if '"call.archived"' in line]
        assert {event["source"] for event in archived} == {"hq", "danang"}  # each line names its source
        recorded = {
            name: {c.uuid for c in d.calls_on(date(2026, 11, 1))} for name, d in (("hq", first), ("danang", second))
        }
        for event in archived:
            if event["status"] == "archived" and event["call_id"] in recorded["hq"] | recorded["danang"]:
                assert event["call_id"] in recorded[event["source"]]  # named after the source it came from
        verified = archiver("verify", "-c", str(config), "--json")
        reconciled = archiver("reconcile", "-c", str(config), *span)
        status = archiver("status", "-c", str(config), "--source", "danang", "--json")
        wrong = archiver("status", "-c", str(config), "--source", "hanoi")
        checked = archiver("check", "-c", str(config))
        for result in (done, verified, reconciled, status, checked):
            assert_no_secret(result, second_secret)
    assert verified.returncode == 0, verified.stdout
    report = json.loads(verified.stdout)["sources"]
    assert sorted(report) == ["danang", "hq"]
    for name, dataset in (("hq", first), ("danang", second)):
        calls = dataset.calls_between(datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 3, tzinfo=TZ), hq.now())
        sidecars = [p for p in (tmp_path / "archive" / name).rglob("*.json") if is_sidecar(p.as_posix())]
        assert len([s for s in sidecars if s.name[0] != "_"]) == len(calls)
    assert reconciled.returncode == 0, reconciled.stdout
    assert reconciled.stdout.count("== source") == 2
    assert status.returncode == 0
    picked = json.loads(status.stdout)
    assert "sources" not in picked  # one source picked: its document, not keyed by name
    assert picked["calls"]["archived"] > 0
    assert (tmp_path / "ledger.hq.sqlite3").exists()
    assert (tmp_path / "ledger.danang.sqlite3").exists()
    assert wrong.returncode == 2
    assert "no source named 'hanoi' (known: hq, danang)" in wrong.stderr
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.count("ok    store file://") == 2
