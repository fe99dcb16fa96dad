"""Reading an encrypted archive as its auditors do: ``show``, ``export`` and ``browse`` (a real
uvicorn in a subprocess, Range requests and all) with the archive's identity, and without it
(each says which setting is missing); ``verify --decrypt`` on the command line."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.core.encryption import Identity
from archiver.simulator import SimCall, Simulator
from tests.helpers import (
    SINCE,
    UNTIL,
    Browse,
    age_identity,
    backfill,
    config_for,
    encryption_section,
    need_os_tools,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.anyio


async def encrypted(sim: Simulator, tmp_path: Path) -> tuple[dict[str, Any], Identity, list[SimCall]]:
    """The simulator's days archived, encrypted, into ``tmp_path/archive`` (keys in ``tmp_path/keys``);
    an auditor's configuration (as a dict, with the identity file), the identity, the recorded calls."""
    identity = age_identity(tmp_path)
    section = encryption_section(f"file://{tmp_path / 'keys'}", identity, identity_file=tmp_path / "age-identity")
    await backfill(config_for(sim, f"file://{tmp_path / 'archive'}", tmp_path, storage=section))
    calls = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording]
    raw = {"storage": {"url": f"file://{tmp_path / 'archive'}", **section}}
    return raw, identity, calls


def auditor(tmp_path: Path, raw: dict[str, Any], **encryption: Any) -> Path:
    """The auditor's config, its storage.encryption changed by *encryption* (None removes a key)."""
    changed = json.loads(json.dumps(raw))
    for key, value in encryption.items():
        if value is None:
            changed["storage"]["encryption"].pop(key, None)
        else:
            changed["storage"]["encryption"][key] = value
    return write_config(tmp_path / "auditor.yaml", changed)


async def test_show_checks_the_plaintext_with_the_identity_and_says_what_is_missing_without(
    sim: Simulator, tmp_path: Path
) -> None:
    raw, _, calls = await encrypted(sim, tmp_path)
    call = calls[0]
    served = sim.dataset.recording_bytes(call)
    shown = run_cli("show", "-c", str(auditor(tmp_path, raw)), call.uuid)
    assert shown.returncode == 0, shown.stderr
    assert f"decrypts to {len(served)} bytes, sha256 {hashlib.sha256(served).hexdigest()}" in shown.stdout
    assert "verified: every stored byte matches its record" in shown.stdout

    blind = run_cli("show", "-c", str(auditor(tmp_path, raw, identity_file=None)), call.uuid)
    assert blind.returncode == 0, blind.stderr
    assert "its audio was not decrypted: storage.encryption.identity_file is not set" in blind.stdout

    stranger = age_identity(tmp_path, "stranger")
    wrong = run_cli("show", "-c", str(auditor(tmp_path, raw, identity_file=str(tmp_path / "stranger"))), call.uuid)
    assert wrong.returncode == 1
    assert "not encrypted to any identity in storage.encryption.identity_file" in wrong.stdout
    assert str(stranger) not in wrong.stdout + wrong.stderr  # the secret never printed

    missing = run_cli("show", "-c", str(auditor(tmp_path, raw, identity_file=str(tmp_path / "gone"))), call.uuid)
    assert missing.returncode == 2
    assert "storage.encryption.identity_file" in missing.stderr
    assert "cannot read" in missing.stderr


async def test_export_bundles_the_ciphertext_its_key_and_its_audio_and_age_proves_the_chain(
    sim: Simulator, tmp_path: Path
) -> None:
    """The bundle holds the recording as stored, its own key and its audio decrypted; SHA256SUMS
    covers them all; the README's `age -d` step gives the plaintext digest the record states.
    Without the identity file: exit 2 naming it, and no bundle."""
    raw, _, calls = await encrypted(sim, tmp_path)
    call = calls[0]
    served = sim.dataset.recording_bytes(call)
    out = tmp_path / "evidence.zip"
    done = run_cli("export", "-c", str(auditor(tmp_path, raw)), call.uuid, "--out", str(out))
    assert done.returncode == 0, done.stderr
    folder = f"{call.start:%Y/%m/%d}/{call.uuid}"
    with zipfile.ZipFile(out) as bundle:
        names = set(bundle.namelist())
        files = {n: bundle.read(n) for n in names}
    assert {f"{folder}.wav", f"{folder}.wav.age", f"{folder}.wav.key", f"{folder}.json"} <= names
    assert files[f"{folder}.wav"] == served
    assert files[f"{folder}.wav.age"] == (tmp_path / "archive" / f"{folder}.wav.age").read_bytes()
    sums = dict(line.split("  ", 1)[::-1] for line in files["SHA256SUMS"].decode().splitlines())
    assert all(hashlib.sha256(files[n]).hexdigest() == d for n, d in sums.items())
    assert f"{folder}.wav.key" in sums
    assert "age -d -i" in files["README.txt"].decode()
    record = json.loads(files[f"{folder}.json"])
    assert record["recording"]["encryption"]["plaintext_sha256"] == hashlib.sha256(served).hexdigest()
    need_os_tools("the bundle's age step", "age")
    work = tmp_path / "unzipped"
    zipfile.ZipFile(out).extractall(work)
    opened = subprocess.run(
        ["age", "-d", "-i", f"{folder}.wav.key", f"{folder}.wav.age"], cwd=work, capture_output=True, check=True
    )
    assert hashlib.sha256(opened.stdout).hexdigest() == record["recording"]["encryption"]["plaintext_sha256"]

    out.unlink()
    blind = run_cli("export", "-c", str(auditor(tmp_path, raw, identity_file=None)), call.uuid, "--out", str(out))
    assert blind.returncode == 2
    assert "storage.encryption.identity_file" in blind.stderr
    assert not out.exists()


async def test_browse_plays_an_encrypted_recording_decrypted_with_range_requests(
    sim: Simulator, tmp_path: Path
) -> None:
    """Whole, a range, a suffix range, a HEAD: the plaintext's bytes and sizes, decrypted on the fly;
    the evidence bundle holds the audio; the call page shows the plaintext checked."""
    raw, _, calls = await encrypted(sim, tmp_path)
    call = calls[0]
    served = sim.dataset.recording_bytes(call)
    server = Browse(auditor(tmp_path, raw), tmp_path / "browse.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            audio = f"/calls/{call.uuid}/audio"
            whole = client.get(audio)
            assert (whole.status_code, whole.content) == (200, served)
            assert whole.headers["content-type"] == "audio/wav"
            part = client.get(audio, headers={"Range": "bytes=100-70099"})
            assert part.status_code == 206
            assert part.content == served[100:70100]
            assert part.headers["content-range"] == f"bytes 100-{min(70099, len(served) - 1)}/{len(served)}"
            tail = client.get(audio, headers={"Range": "bytes=-10"})
            assert (tail.status_code, tail.content) == (206, served[-10:])
            head = client.head(audio)
            assert head.headers["content-length"] == str(len(served))
            too_far = client.get(audio, headers={"Range": f"bytes={len(served)}-"})
            assert too_far.status_code == 416
            page = client.get(f"/calls/{call.uuid}")
            assert f"decrypts to {len(served)} bytes" in page.text
            assert "<audio" in page.text
            bundle = client.get(f"/calls/{call.uuid}/evidence.zip")
            assert bundle.status_code == 200
            with zipfile.ZipFile(io.BytesIO(bundle.content)) as z:
                assert z.read(f"{call.start:%Y/%m/%d}/{call.uuid}.wav") == served
    finally:
        assert server.close() == 0


async def test_browse_without_the_identity_says_which_setting_is_missing(sim: Simulator, tmp_path: Path) -> None:
    """The call page says the recording is encrypted and names the setting, with no player; the
    audio and the bundle are 409 naming it; the stored files are still there to download."""
    raw, _, calls = await encrypted(sim, tmp_path)
    call = calls[0]
    server = Browse(auditor(tmp_path, raw, identity_file=None), tmp_path / "browse.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            page = client.get(f"/calls/{call.uuid}")
            assert page.status_code == 200
            assert "storage.encryption.identity_file" in page.text
            assert "<audio" not in page.text
            audio = client.get(f"/calls/{call.uuid}/audio")
            assert audio.status_code == 409
            assert "storage.encryption.identity_file" in audio.text
            bundle = client.get(f"/calls/{call.uuid}/evidence.zip")
            assert bundle.status_code == 409
            assert "storage.encryption.identity_file" in bundle.text
            stored = client.get(f"/calls/{call.uuid}/files/{call.uuid}.wav.age")
            assert stored.status_code == 200
            assert stored.content.startswith(b"age-encryption.org/v1\n")
    finally:
        assert server.close() == 0


async def test_verify_decrypt_on_the_command_line_reads_every_recording(sim: Simulator, tmp_path: Path) -> None:
    """verify --decrypt: every recording decrypted and found as recorded (exit 0); a record that
    states another plaintext than its recording decrypts to is a problem (exit 1); without the
    identity file, exit 2 naming it."""
    raw, identity, calls = await encrypted(sim, tmp_path)
    config = auditor(tmp_path, raw)
    done = run_cli("verify", "-c", str(config), "--decrypt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(calls)} decrypted" in done.stdout
    assert f"encrypted recordings (age): {len(calls)}" in done.stdout

    first = calls[0]
    sidecar = tmp_path / "archive" / f"{first.start:%Y/%m/%d}/{first.uuid}.json"
    doc = json.loads(sidecar.read_text())
    doc["recording"]["encryption"]["plaintext_sha256"] = "0" * 64  # a record that says other audio
    sidecar.write_text(json.dumps(doc))
    found = run_cli("verify", "-c", str(config), "--decrypt", "--json")
    assert found.returncode == 1
    problems = [p["problem"] for p in json.loads(found.stdout)["problems"] if p["call_id"] == first.uuid]
    assert any("decrypts to" in p and "its record states" in p for p in problems), problems

    blind = run_cli("verify", "-c", str(auditor(tmp_path, raw, identity_file=None)), "--decrypt")
    assert blind.returncode == 2
    assert "storage.encryption.identity_file" in blind.stderr
    age_identity(tmp_path, "stranger")  # an identity, but no recipient's: a configuration error, not tampering
    foreign = run_cli(
        "verify", "-c", str(auditor(tmp_path, raw, identity_file=str(tmp_path / "stranger"))), "--decrypt"
    )
    assert foreign.returncode == 2, foreign.stdout
    assert "it opens none of the" in foreign.stderr
    assert str(identity) not in blind.stderr + found.stdout + done.stdout  # the secret never printed


async def test_a_crypto_shredded_call_reads_as_erased_everywhere(sim: Simulator, tmp_path: Path) -> None:
    """`archiver erase` on the command line destroys the key; show names the call erased and its
    recording crypto-shredded (exit 0: every stored byte is still as recorded); browse answers its
    audio 410 and says its key is destroyed; verify counts it."""
    raw, _, calls = await encrypted(sim, tmp_path)
    call = calls[0]
    config = str(auditor(tmp_path, raw))
    erased = run_cli("erase", "-c", config, call.uuid, "--reason", "DSR-77")
    assert erased.returncode == 0, erased.stderr
    assert "crypto-shredded, its key destroyed" in erased.stdout
    assert (tmp_path / "archive" / f"{call.start:%Y/%m/%d}/{call.uuid}.wav.age").exists()
    assert not list((tmp_path / "keys").rglob(f"{call.uuid}.*"))
    shown = run_cli("show", "-c", config, call.uuid)
    assert shown.returncode == 0, shown.stdout
    assert "ERASED on" in shown.stdout
    assert "crypto-shredded" in shown.stdout
    audit = run_cli("verify", "-c", config, "--decrypt")
    assert audit.returncode == 0, audit.stdout
    assert "1 call(s) erased on request (1 by destroying their keys)" in audit.stdout
    server = Browse(Path(config), tmp_path / "browse.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get(f"/calls/{call.uuid}/audio").status_code == 410
            assert "Key destroyed" in client.get(f"/calls/{call.uuid}").text
    finally:
        assert server.close() == 0


async def test_a_key_object_gone_or_damaged_is_named_by_verify_show_and_browse(sim: Simulator, tmp_path: Path) -> None:
    """A key deleted behind the archiver's back: verify names the recording it opened, even without
    --decrypt; a key object damaged: verify --decrypt and show name it; browse answers 409 saying why.
    Nothing of the secret is printed."""
    raw, identity, calls = await encrypted(sim, tmp_path)
    config = str(auditor(tmp_path, raw))
    lost, damaged = calls[0], calls[1]
    [lost_key] = list((tmp_path / "keys").rglob(f"{lost.uuid}.*.age"))
    lost_key.unlink()
    [damaged_key] = list((tmp_path / "keys").rglob(f"{damaged.uuid}.*.age"))
    damaged_key.chmod(0o644)
    damaged_key.write_bytes(damaged_key.read_bytes()[:-40] + bytes(40))

    plain = run_cli("verify", "-c", config, "--json")
    assert plain.returncode == 1
    found = {p["call_id"]: p["problem"] for p in json.loads(plain.stdout)["problems"]}
    assert "whose key is not in" in found[lost.uuid]
    assert damaged.uuid not in found  # the object is there: only decrypting finds it damaged

    deep = run_cli("verify", "-c", config, "--decrypt", "--json")
    found = {p["call_id"]: p["problem"] for p in json.loads(deep.stdout)["problems"]}
    assert "it is damaged" in found[damaged.uuid]
    shown = run_cli("show", "-c", config, damaged.uuid)
    assert shown.returncode == 1
    assert "it is damaged" in shown.stdout
    server = Browse(Path(config), tmp_path / "browse.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            gone = client.get(f"/calls/{lost.uuid}/audio")
            assert gone.status_code == 409
            assert "cannot be decrypted" in gone.text
    finally:
        assert server.close() == 0
    assert str(identity) not in plain.stdout + deep.stdout + shown.stdout


async def test_a_record_that_names_a_key_object_elsewhere_is_not_followed(sim: Simulator, tmp_path: Path) -> None:
    """Someone rewrites a record to name a key object outside the keys' folder (or another call's):
    nothing but this recording's own keys is read; show and browse still open the right one, and
    nothing fails with a traceback."""
    raw, _, calls = await encrypted(sim, tmp_path)
    call, other = calls[0], calls[1]
    [other_key] = list((tmp_path / "keys").rglob(f"{other.uuid}.*.age"))
    sidecar = tmp_path / "archive" / f"{call.start:%Y/%m/%d}/{call.uuid}.json"
    for named in ("../../../etc/passwd", str(other_key.relative_to(tmp_path / "keys"))):
        doc = json.loads(sidecar.read_text())
        doc["recording"]["encryption"]["key_object"] = named
        sidecar.write_text(json.dumps(doc))
        shown = run_cli("show", "-c", str(auditor(tmp_path, raw)), call.uuid)
        assert "Traceback" not in shown.stderr
        served = sim.dataset.recording_bytes(call)
        assert f"decrypts to {len(served)} bytes, sha256 {hashlib.sha256(served).hexdigest()}" in shown.stdout


async def test_an_export_whose_recording_does_not_decrypt_fails_whole_without_a_traceback(
    sim: Simulator, tmp_path: Path
) -> None:
    """A recording cut short in the archive: export stops (exit 1) naming it, writes no bundle and
    leaves no part of one (decrypted audio in a temporary file); the zip half written was left to
    the garbage collector, which printed a traceback after the message."""
    raw, _, calls = await encrypted(sim, tmp_path)
    call = calls[0]
    recording = tmp_path / "archive" / f"{call.start:%Y/%m/%d}" / f"{call.uuid}.wav.age"
    data = recording.read_bytes()
    recording.chmod(0o644)
    recording.write_bytes(data[: len(data) // 2])
    out = tmp_path / "evidence.zip"
    done = run_cli("export", "-c", str(auditor(tmp_path, raw)), call.uuid, "--out", str(out))
    assert done.returncode == 1
    assert f"{call.uuid}.wav.age does not decrypt" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".evidence", "evidence"))]
