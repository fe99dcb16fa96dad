"""browse behind a login: no open door, HTTP Basic against bcrypt entries (failures slowed), and
a trusted authenticating proxy (a real nginx in front), each request told in ``browse.access``."""

from __future__ import annotations

import base64
import getpass
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from archiver.simulator import Simulator
from tests.helpers import (
    SINCE,
    UNTIL,
    Browse,
    backfill,
    config_for,
    free_port,
    need_os_tools,
    run_cli,
    wait_for_port,
    write_config,
)

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery staple"


def htpasswd(path: Path, **users: str) -> Path:
    """An htpasswd file as ``htpasswd -B`` writes it ($2y$; cost 4 keeps the test quick)."""
    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode().replace('$2b$', '$2y$', 1)}"
        for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def archived(sim: Simulator, tmp_path: Path, **browse: Any) -> tuple[Path, Any]:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    call = next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording)
    raw: dict[str, Any] = {"storage": {"url": f"file://{root}"}}
    if browse:
        raw["browse"] = browse
    return write_config(tmp_path / "auditor.yaml", raw), call


def access(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "browse.access"]


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


def _through_nginx(conf: Path, port: int, browse_url: str, call_id: str) -> tuple[httpx.Response, ...]:
    """nginx started on *conf*: a signed-in request and one without a login through it, and a
    forged header straight to browse; nginx's own complaints come back when the first fails."""
    nginx = subprocess.Popen(
        [shutil.which("nginx") or "nginx", "-p", str(conf.parent), "-c", str(conf)], stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port)
        with httpx.Client(timeout=30) as client:
            signed_in = client.get(f"http://127.0.0.1:{port}/calls/{call_id}", headers=basic("alice", PASSWORD))
            no_login = client.get(f"http://127.0.0.1:{port}/calls/{call_id}")
            forged = client.get(f"{browse_url}/calls/{call_id}", headers={"X-Forwarded-User": "mallory"})
    finally:
        nginx.terminate()
        _, errors = nginx.communicate(timeout=20)
    assert signed_in.status_code == 200, signed_in.text[:500] + errors.decode(errors="replace")
    return signed_in, no_login, forged


def _trail(root: Path) -> list[dict[str, Any]]:
    """The events in the archive's access trail, in time order."""
    lines = [line for path in sorted((root / "_access").rglob("*.jsonl")) for line in path.read_text().splitlines()]
    return sorted((json.loads(line) for line in lines), key=lambda e: e["at"])


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


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
    users = htpasswd(tmp_path / "users", alice=PASSWORD)
    config, call = await archived(sim, tmp_path, users_file=str(users))
    log = tmp_path / "browse.log"
    server = Browse(config, log)
    try:
        results = _as_an_auditor(server.url, call.uuid)
    finally:
        assert server.close() == 0
    logins, (page, played, seeked, evidence) = results
    stored = _trail(tmp_path / "archive")  # written when browse stopped (SIGTERM), not a minute later
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
    trail = [(a["user"], a["action"], a["call_id"]) for a in access(log)]
    assert trail == [  # a seek is the same play
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


NGINX_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_basic "archive";
            auth_basic_user_file {users};
            proxy_pass {upstream};
            proxy_bind 127.0.0.2;
            proxy_set_header X-Forwarded-User $remote_user;
        }}
    }}
}}
"""


async def test_a_trusted_proxy_names_the_user_and_nothing_else_may(sim: Simulator, tmp_path: Path) -> None:
    """nginx signs the auditor in and passes the name on from 127.0.0.2; the same header sent
    straight to browse from anywhere else is refused."""
    need_os_tools("an authenticating reverse proxy", "nginx")
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    users = htpasswd(nginx_dir / "users", alice=PASSWORD)
    config, call = await archived(sim, tmp_path, trusted_proxy={"from": ["127.0.0.2"]})
    log = tmp_path / "browse.log"
    server = Browse(config, log)
    port = free_port()
    conf = nginx_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=nginx_dir, port=port, users=users, upstream=server.url))
    try:
        _, no_login, forged = _through_nginx(conf, port, server.url, call.uuid)
    finally:
        assert server.close() == 0
    assert no_login.status_code == 401  # nginx's own answer
    assert forged.status_code == 403
    trail = [(a["user"], a["action"], a["call_id"], a["remote"]) for a in access(log)]
    assert trail == [("alice", "view", call.uuid, "127.0.0.2")]
    assert "browse.login_refused" in log.read_text()
