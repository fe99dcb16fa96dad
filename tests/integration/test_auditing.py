"""An auditor's questions, answered from the bucket alone: find, show, export, browse, and the seals.

Each test archives the simulator's calls, then asks through the command line as an auditor does,
with a configuration that holds storage settings and nothing of the PBX.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest

from archiver.core import seal
from archiver.core.keys import day_prefix
from archiver.simulator import SimCall, Simulator
from tests.helpers import (
    SINCE,
    TZ,
    UNTIL,
    Browse,
    Bucket,
    backfill,
    config_dict,
    config_for,
    run_cli,
    s3_client,
    write_config,
)

pytestmark = pytest.mark.anyio


def auditor_config(tmp_path: Path, storage: dict[str, Any]) -> Path:
    """What an auditor is given: where the archive is, and nothing of the PBX (no source: at all)."""
    return write_config(tmp_path / "auditor.yaml", {"storage": storage})


def international(number: str) -> str:
    """0986123456 as an auditor might be given it: +84 986 123 456."""
    digits = number[1:]
    return f"+84 {digits[:3]} {digits[3:6]} {digits[6:]}"


def calls_of(sim: Simulator, since: datetime = SINCE, until: datetime = UNTIL) -> list[SimCall]:
    return sim.dataset.calls_between(since, until, sim.now())


@pytest.fixture
def archived(tmp_path: Path) -> tuple[Path, Path]:
    """Where a test archives into a folder, and the auditor's configuration for it."""
    root = tmp_path / "archive"
    return root, auditor_config(tmp_path, {"url": f"file://{root}"})


async def archive(sim: Simulator, tmp_path: Path, url: str, endpoint: str | None = None) -> None:
    config = config_for(sim, url, tmp_path, endpoint=endpoint)
    await backfill(config)
    today = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    await backfill(config, today, datetime.now(TZ) - timedelta(minutes=2))


async def test_find_matches_a_number_in_any_form_on_closed_and_open_days(
    sim: Simulator, tmp_path: Path, archived: tuple[Path, Path]
) -> None:
    root, auditor = archived
    await archive(sim, tmp_path, f"file://{root}")
    mobile = re.compile(r"^0\d{9}$")
    wanted = next(c for c in calls_of(sim) if mobile.match(c.source) and c.has_recording)
    result = run_cli("find", "-c", str(auditor), "--number", international(wanted.source), "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert wanted.uuid in {f["call_id"] for f in found}
    assert all(wanted.source in (f["source"], f["destination"]) for f in found)
    expected = {c.uuid for c in calls_of(sim) if wanted.source in (c.source, c.destination) and c.has_recording}
    assert {f["call_id"] for f in found if f["recording_status"] == "archived"} == expected
    # Today has no day files yet: its calls are read from their sidecars.
    now = datetime.now(TZ)
    today = calls_of(sim, now.replace(hour=0, minute=0, second=0, microsecond=0), now - timedelta(minutes=2))
    if today:
        result = run_cli("find", "-c", str(auditor), "--since", "today", "--json")
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)) == len(today)
    # By extension, direction and outcome; a table on a terminal, CSV with the numbers as text.
    inbound = [c for c in calls_of(sim) if c.direction == "inbound" and c.destination == wanted.destination]
    result = run_cli(
        "find",
        "-c",
        str(auditor),
        "--extension",
        wanted.destination,
        "--direction",
        "inbound",
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-03",
        "--csv",
    )
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert len(rows) == 1 + len(inbound)
    assert f'"=""{inbound[0].source}"""' in result.stdout
    table = run_cli(
        "find", "-c", str(auditor), "--number", wanted.source, "--since", "2026-11-01", "--until", "2026-11-03"
    )
    assert wanted.uuid in table.stdout
    assert table.stdout.rstrip().endswith("call(s)")
    bad = run_cli("find", "-c", str(auditor), "--status", "lost")
    assert bad.returncode == 2
    assert "--status" in bad.stderr


async def test_show_checks_every_byte_and_names_a_changed_recording(
    sim: Simulator, tmp_path: Path, archived: tuple[Path, Path]
) -> None:
    root, auditor = archived
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    call = next(c for c in calls_of(sim) if c.serves_recording)
    result = run_cli("show", "-c", str(auditor), call.uuid, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    body = sim.dataset.recording_bytes(call)
    assert shown["verified"] is True
    assert shown["call"]["source"] == call.source
    [recording] = shown["recordings"]
    assert recording["sha256"] == hashlib.sha256(body).hexdigest()
    assert recording["ok"]
    assert {line["name"] for line in shown["manifest_lines"]} == {f"{call.uuid}.json", f"{call.uuid}.wav"}
    assert all(line["sealed_by"] for line in shown["manifest_lines"])
    wav = root / recording["key"]
    wav.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))
    result = run_cli("show", "-c", str(auditor), call.uuid)
    assert result.returncode == 1
    assert "PROBLEM" in result.stdout
    assert "its bytes changed" in result.stdout
    missing = run_cli("show", "-c", str(auditor), "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 1
    assert "no call" in missing.stderr
    not_an_id = run_cli("show", "-c", str(auditor), "../../etc/passwd")
    assert not_an_id.returncode == 2
    assert "CALL_ID" in not_an_id.stderr


async def test_export_writes_the_same_bundle_twice_with_the_audio_as_stored(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    await archive(sim, tmp_path, bucket.url, bucket.endpoint)
    auditor = auditor_config(tmp_path, {"url": bucket.url, "endpoint_url": bucket.endpoint})
    calls = [c for c in calls_of(sim) if c.serves_recording][:2]
    out = [tmp_path / "one.zip", tmp_path / "two.zip"]
    for path in out:
        result = run_cli("export", "-c", str(auditor), *(c.uuid for c in calls), "--out", str(path))
        assert result.returncode == 0, result.stderr
    assert out[0].read_bytes() == out[1].read_bytes()  # reproducible
    with zipfile.ZipFile(io.BytesIO(out[0].read_bytes())) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    for call in calls:
        folder = f"{call.start:%Y/%m/%d}/"
        assert files[f"{folder}{call.uuid}.wav"] == sim.dataset.recording_bytes(call)
        assert json.loads(files[f"{folder}{call.uuid}.json"])["call_id"] == call.uuid
        lines = files[f"{folder}manifest-lines.txt"].decode()
        assert f"{hashlib.sha256(sim.dataset.recording_bytes(call)).hexdigest()}  {call.uuid}.wav" in lines
    sums = {
        name: digest for digest, name in (line.split("  ", 1) for line in files["SHA256SUMS"].decode().splitlines())
    }
    assert set(sums) == set(files) - {"SHA256SUMS"}
    assert all(hashlib.sha256(files[name]).hexdigest() == digest for name, digest in sums.items())
    assert any(name.startswith("seals/") for name in files)
    report = json.loads(files["verification.json"])
    assert report["verified"] is True
    assert [c["call_id"] for c in report["calls"]] == sorted(c.uuid for c in calls)
    assert "sha256sum -c SHA256SUMS" in files["README.txt"].decode()


async def test_verify_finds_a_consistent_rewrite_through_the_seals(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """On a bucket without Object Lock or versioning, someone rewrites a recording with its sidecar
    and manifest, all consistent: the seal names the old manifest. Rewriting the seals as well
    leaves a consistent chain, whose head no longer matches the one recorded before."""
    client = s3_client(moto_server.endpoint)
    name = "plain-bucket"
    client.create_bucket(Bucket=name)
    url = f"s3://{name}/archive"
    await backfill(config_for(sim, url, tmp_path, endpoint=moto_server.endpoint))
    auditor = auditor_config(tmp_path, {"url": url, "endpoint_url": moto_server.endpoint})
    first = run_cli("verify", "-c", str(auditor), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    recorded = json.loads(first.stdout)["seal_head"]["sha256"]

    call = next(c for c in calls_of(sim) if c.serves_recording)
    folder = day_prefix("archive", call.start.date())
    forged_audio = sim.dataset.recording_bytes(call)[:-2] + b"\x00\x00"
    digest = hashlib.sha256(forged_audio).hexdigest()

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=name, Key=key, Body=data)

    def get(key: str) -> bytes:
        return bytes(client.get_object(Bucket=name, Key=key)["Body"].read())

    sidecar = json.loads(get(f"{folder}{call.uuid}.json"))
    old_digest = sidecar["recording"]["sha256"]
    sidecar["recording"]["sha256"] = digest
    forged_sidecar = (json.dumps(sidecar, ensure_ascii=False, indent=2) + "\n").encode()
    manifest = get(f"{folder}manifest-sha256.txt").decode()
    old_sidecar_digest = hashlib.sha256(get(f"{folder}{call.uuid}.json")).hexdigest()
    manifest = manifest.replace(old_digest, digest).replace(
        old_sidecar_digest, hashlib.sha256(forged_sidecar).hexdigest()
    )
    put(f"{folder}{call.uuid}.wav", forged_audio)
    put(f"{folder}{call.uuid}.json", forged_sidecar)
    put(f"{folder}manifest-sha256.txt", manifest.encode())

    second = run_cli("verify", "-c", str(auditor), "--json")
    assert second.returncode == 1
    problems = json.loads(second.stdout)["problems"]
    assert [p["key"] for p in problems] == [f"{folder}manifest-sha256.txt"]
    assert "changed after seal" in problems[0]["problem"]

    # The forger rewrites the seals too, from the one naming that manifest to the head.
    stored = {k: get(k) for k in sorted(_keys(client, name, "archive/seals/"))}
    chain = seal.check_chain("archive", stored)
    previous = None
    for number in range(1, chain.length + 1):
        old = chain.seals[number][0]
        links = tuple(
            seal.Link(
                m.key,
                hashlib.sha256(manifest.encode()).hexdigest() if m.key == f"{folder}manifest-sha256.txt" else m.sha256,
            )
            for m in old.manifests
        )
        raw = seal.Seal(number, old.sealed_at, links, previous).to_bytes()
        put(seal.seal_key("archive", number), raw)
        previous = seal.Link(seal.seal_key("archive", number), hashlib.sha256(raw).hexdigest())
    third = run_cli("verify", "-c", str(auditor), "--json")
    assert third.returncode == 0  # consistent in itself...
    fourth = run_cli("verify", "-c", str(auditor), "--recorded-seal", recorded)
    assert fourth.returncode == 1  # ...but not with the head recorded before
    assert "no seal has the recorded SHA-256" in fourth.stdout


def _keys(client: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


async def test_find_by_sip_call_id_asks_the_pbx_and_says_where_the_call_is(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    full = write_config(tmp_path, config_dict(api=sim, storage=f"file://{root}", state=tmp_path / "ledger.sqlite3"))
    call = next(c for c in calls_of(sim) if c.serves_recording)
    result = run_cli("find", "-c", str(full), "--sip-call-id", call.sip_call_id, "--json")
    assert result.returncode == 0, result.stderr
    [answer] = json.loads(result.stdout)
    assert (answer["call_id"], answer["archived"], answer["recording_status"]) == (call.uuid, True, "archived")
    assert answer["sidecar_key"] == f"{call.start:%Y/%m/%d}/{call.uuid}.json"
    unknown = run_cli("find", "-c", str(full), "--sip-call-id", "nobody@nowhere")
    assert unknown.returncode == 1
    assert "knows no call" in unknown.stdout
    auditor = auditor_config(tmp_path, {"url": f"file://{root}"})  # asking the PBX needs its credentials
    refused = run_cli("find", "-c", str(auditor), "--sip-call-id", call.sip_call_id)
    assert refused.returncode == 2
    assert "source:" in refused.stderr


async def test_browse_serves_calls_and_audio_ranges_and_nothing_else(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    server = Browse(auditor_config(tmp_path, {"url": f"file://{root}"}), tmp_path / "browse.log")
    try:
        call = next(c for c in calls_of(sim) if c.serves_recording and c.duration > 1)
        body = sim.dataset.recording_bytes(call)
        await anyio.to_thread.run_sync(_check_browse, server.url, call, body)
    finally:
        assert server.close() == 0


def _check_browse(url: str, call: SimCall, body: bytes) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        search = http.get(
            "/", params={"number": international(call.source) if call.source.startswith("0") else call.source}
        )
        assert search.status_code == 200
        assert call.uuid in search.text
        page = http.get(f"/calls/{call.uuid}")
        assert page.status_code == 200
        assert hashlib.sha256(body).hexdigest() in page.text
        assert "Verified now" in page.text
        assert "<script" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        whole = http.get(f"/calls/{call.uuid}/audio")
        assert (whole.status_code, whole.content, whole.headers["accept-ranges"]) == (200, body, "bytes")
        part = http.get(f"/calls/{call.uuid}/audio", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == body[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(body)}"
        tail = http.get(f"/calls/{call.uuid}/audio", headers={"Range": "bytes=-10"})
        assert tail.status_code == 206
        assert tail.content == body[-10:]
        beyond = http.get(f"/calls/{call.uuid}/audio", headers={"Range": f"bytes={len(body)}-"})
        assert beyond.status_code == 416
        sidecar = http.get(f"/calls/{call.uuid}/files/{call.uuid}.json")
        assert sidecar.status_code == 200
        assert sidecar.json()["call_id"] == call.uuid
        assert http.get(f"/calls/{call.uuid}/files/..%2F..%2Fconfig.yaml").status_code == 404
        assert http.post("/", data={"x": "1"}).status_code == 405
        assert http.get("/", headers={"Host": "attacker.example"}).status_code == 421
        assert http.get("/calls/not-a-call").status_code == 404
        day = http.get(f"/days/{call.start:%Y-%m-%d}")
        assert day.status_code == 200
        assert "sealed by seal" in day.text
