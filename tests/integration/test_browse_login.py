"""browse behind a login: no open door, HTTP Basic against bcrypt entries (failures close the door), and
a trusted authenticating proxy (a real nginx in front), each request told in ``browse.access``."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.simulator import Simulator
from tests.desk import PASSWORD, archived, basic, htpasswd, log_lines, nginx, trail
from tests.helpers import Browse, run_cli

pytestmark = pytest.mark.anyio


def access(log: Path) -> list[dict[str, Any]]:
    return log_lines(log, "browse.access")


Responses = tuple[httpx.Response, httpx.Response, httpx.Response, httpx.Response]


def _as_an_auditor(url: str, call_id: str) -> tuple[list[tuple[int, str | None]], Responses]:
    """Every URL without a login; a wrong login, the right one too soon after it, a wrong one
    once the address may try again, the right one too soon again; then, after the wait, the call
    page, a play, a seek and the evidence bundle. The statuses (and Retry-After) of the logins."""
    alice = basic("alice", PASSWORD)
    with httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/", f"/calls/{call_id}", f"/calls/{call_id}/audio", "/days"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic ")
        logins = []
        for headers, then in (
            (basic("alice", "wrong"), 0.0),
            (alice, 1.1),  # closed for a second: not even the right password is checked
            (basic("mallory", PASSWORD), 0.0),
            (alice, 2.1),  # the second failure in a row closes it for two
        ):
            answer = client.get("/", headers=headers)
            logins.append((answer.status_code, answer.headers.get("retry-after")))
            time.sleep(then)
        page = client.get(f"/calls/{call_id}", headers=alice)
        played = client.get(f"/calls/{call_id}/audio", headers={**alice, "Range": "bytes=0-"})
        seeked = client.get(f"/calls/{call_id}/audio", headers={**alice, "Range": "bytes=100-"})
        evidence = client.get(f"/calls/{call_id}/evidence.zip", headers=alice)
    return logins, (page, played, seeked, evidence)


async def test_browse_outside_loopback_without_a_login_refuses_to_start(sim: Simulator, tmp_path: Path) -> None:
    config, _ = await archived(sim, tmp_path)
    result = run_cli("browse", "-c", str(config), "--listen", "0.0.0.0:0", timeout=30)
    assert result.returncode == 2
    assert "browse.users_file" in result.stderr
    assert "browse.trusted_proxy" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_users_file_that_is_not_bcrypt_is_named_with_its_line(sim: Simulator, tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# auditors\nalice:$apr1$abc$0123456789abcdefghij.\n")
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    result = run_cli("browse", "-c", str(config), "--listen", "0.0.0.0:0", timeout=30)
    assert result.returncode == 2
    assert "browse.users_file" in result.stderr
    assert "line 2" in result.stderr
    assert "htpasswd -B" in result.stderr


async def test_every_url_asks_for_a_login_and_failures_close_the_door_for_longer(
    sim: Simulator, tmp_path: Path
) -> None:
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD})
    config, [call, *_] = await archived(sim, tmp_path, users_file=str(users))
    log = tmp_path / "browse.log"
    server = Browse(config, log)
    try:
        results = _as_an_auditor(server.url, call.uuid)
    finally:
        assert server.close() == 0
    logins, (page, played, seeked, evidence) = results
    stored = trail(tmp_path / "archive")  # written when browse stopped (SIGTERM), not a minute later
    exported = tmp_path / "export.zip"
    assert run_cli("export", "-c", str(config), call.uuid, "--out", str(exported)).returncode == 0
    read = run_cli("access", "-c", str(config), "--json")
    alice = run_cli("access", "-c", str(config), "--user", "alice", "--call", call.uuid)
    audit = run_cli("verify", "-c", str(config))
    assert logins == [(401, None), (429, "1"), (401, None), (429, "2")]
    assert page.status_code == 200
    assert f'href="/calls/{call.uuid}/evidence.zip' in page.text
    assert evidence.status_code == 200
    assert evidence.headers["content-type"] == "application/zip"
    assert evidence.content == exported.read_bytes()  # byte for byte what export writes
    assert (played.status_code, seeked.status_code) == (206, 206)
    logged = [(a["user"], a["action"], a["call_id"]) for a in access(log)]
    assert logged == [  # a seek is the same play
        ("alice", "view", call.uuid),
        ("alice", "play", call.uuid),
        ("alice", "evidence", call.uuid),
    ]
    assert [(e["user"], e["action"], e["call_id"], e["via"]) for e in stored] == [
        ("alice", "view", call.uuid, "browse"),
        ("alice", "play", call.uuid, "browse"),
        ("alice", "evidence", call.uuid, "browse"),
    ]
    assert read.returncode == 0, read.stderr
    events = json.loads(read.stdout)
    assert [(e["user"], e["action"]) for e in events] == [
        ("alice", "view"),
        ("alice", "play"),
        ("alice", "evidence"),
        (getpass.getuser(), "export"),  # the OS user who ran export
    ]
    assert alice.returncode == 0
    assert "3 access event(s)" in alice.stdout
    assert f"alice            play      call {call.uuid}" in alice.stdout
    assert audit.returncode == 0, audit.stdout  # the trail is not calls
    text = log.read_text()
    assert PASSWORD not in text
    assert "browse.login_failed" in text


async def test_a_trusted_proxy_names_the_user_and_nothing_else_may(sim: Simulator, tmp_path: Path) -> None:
    """nginx signs the auditor in and passes the name on from 127.0.0.2; the same header sent
    straight to browse from anywhere else is refused."""
    users = htpasswd(tmp_path / "nginx-users", {"alice": PASSWORD})
    config, [call, *_] = await archived(sim, tmp_path, trusted_proxy={"from": ["127.0.0.2"]})
    log = tmp_path / "browse.log"
    server = Browse(config, log)
    try:
        with nginx(tmp_path / "nginx", users, server.url) as proxy, httpx.Client(timeout=30) as client:
            signed_in = client.get(f"{proxy}/calls/{call.uuid}", headers=basic("alice", PASSWORD))
            no_login = client.get(f"{proxy}/calls/{call.uuid}")
            forged = client.get(f"{server.url}/calls/{call.uuid}", headers={"X-Forwarded-User": "mallory"})
    finally:
        assert server.close() == 0
    assert signed_in.status_code == 200
    assert no_login.status_code == 401  # nginx's own answer
    assert forged.status_code == 403
    logged = [(a["user"], a["action"], a["call_id"], a["remote"]) for a in access(log)]
    assert logged == [("alice", "view", call.uuid, "127.0.0.2")]
    assert "browse.login_refused" in log.read_text()
