"""What the tests of the desk (``archiver browse``) share: an archive to browse, users files,
logins, a real nginx in front, clients that speak from a chosen loopback address, and the
access trail as the bucket and the log lines hold it."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from archiver.simulator import SimCall, Simulator
from tests.helpers import SINCE, UNTIL, backfill, config_for, free_port, need_os_tools, wait_for_port, write_config

PASSWORD = "correct horse battery staple"


def htpasswd(path: Path, users: dict[str, str], *, cost: int = 4, groups: dict[str, str] | None = None) -> Path:
    """An htpasswd file as ``htpasswd -B -C cost`` writes it ($2y$), each user with their groups
    after a second colon where *groups* names them."""
    lines = []
    for user, password in users.items():
        digest = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(cost)).decode().replace("$2b$", "$2y$", 1)
        extra = f":{groups[user]}" if groups and user in groups else ""
        lines.append(f"{user}:{digest}{extra}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header, the name and password as UTF-8 (as browsers send them)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def archived(sim: Simulator, tmp_path: Path, **browse: Any) -> tuple[Path, list[SimCall]]:
    """The simulator's days archived into ``tmp_path/archive``, and an auditor's config for them
    (with *browse* as its ``browse:`` section); the calls that have a recording."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    calls = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording]
    raw: dict[str, Any] = {"storage": {"url": f"file://{root}"}}
    if browse:
        raw["browse"] = browse
    return write_config(tmp_path / "auditor.yaml", raw), calls


def from_address(address: str, base_url: str, **settings: Any) -> httpx.Client:
    """A client whose connections come from *address* (any of 127.0.0.0/8 on Linux)."""
    transport = httpx.HTTPTransport(local_address=address, **settings.pop("transport", {}))
    return httpx.Client(base_url=base_url, transport=transport, timeout=30, **settings)


def log_lines(log: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of a browse (of *event* only, when given)."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if event is None or line.get("event") == event]


def trail(root: Path) -> list[dict[str, Any]]:
    """The events in the archive's access trail (every source's), in time order."""
    lines = [line for path in sorted(root.rglob("_access/**/*.jsonl")) for line in path.read_text().splitlines()]
    return sorted((json.loads(line) for line in lines), key=lambda e: e["at"])


NGINX_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
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
            {extra}
        }}
    }}
}}
"""


@contextmanager
def nginx(folder: Path, users: Path, upstream: str, extra: str = "") -> Iterator[str]:
    """A real nginx on a free port, signing users in from *users* and passing the name on to
    *upstream* from 127.0.0.2; its URL. nginx's complaints are raised if it stops badly."""
    need_os_tools("an authenticating reverse proxy", "nginx")
    folder.mkdir(exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=port, users=users, upstream=upstream.rstrip("/"), extra=extra))
    process = subprocess.Popen(
        [shutil.which("nginx") or "nginx", "-p", str(folder), "-c", str(conf)], stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=20)
        assert process.returncode in (0, -15), errors.decode(errors="replace")
