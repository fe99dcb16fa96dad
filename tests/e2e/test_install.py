"""The README's install, run verbatim on a booted Debian 12, gives working units.

A minimal Debian 12 root is built once with debootstrap (from the Debian archive this machine's
apt uses) and cached; each run boots a copy of it with systemd-nspawn, sharing the host's
network, so the simulator and the moto S3 server on loopback are reachable from inside. The
checkout's wheel, units and example config are put where an operator would have them, the
README's two install blocks are run as written, and then the units are put through what an
operator relies on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from archiver.simulator import Dataset, Simulator
from tests.helpers import AWS_ENV, Bucket, archive_objects, need_os_tools, wait_until

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ARCHIVER_TEST_CACHE", "/var/cache/ccall-archiver-tests"))
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "ca-certificates", "util-linux")
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SECRET = "0a1b2c3d"


@pytest.fixture(autouse=True)
def _booting_needs_root_and_tools() -> None:
    need_os_tools("booting Debian 12 in a container", "debootstrap", "systemd-nspawn", root=True)


def readme_block(marker: str) -> str:
    """The shell block that follows ``<!-- install:MARKER`` in the README."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- install:" + marker + r"\b[^\n]*-->\n```sh\n(.*?)```", text, re.S)
    assert match, f"README has no install:{marker} block"
    return match.group(1)


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (deb.debian.org where none is named)."""
    sources = [*Path("/etc/apt").glob("sources.list.d/*.sources"), Path("/etc/apt/sources.list")]
    for source in sources:
        with contextlib.suppress(OSError):
            for url in re.findall(r"(https?://\S+/debian)/?(?:\s|$)", source.read_text()):
                return str(url)
    return "http://deb.debian.org/debian"


def base_root() -> Path:
    """A booted-systemd-ready Debian 12 root, built once and kept in CACHE."""
    key = hashlib.sha256(",".join(PACKAGES).encode()).hexdigest()[:12]
    root = CACHE / f"debian12-{key}"
    if (root / "usr/lib/systemd/systemd").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=CACHE, prefix="building-"))
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "bookworm", str(building)]
    result = subprocess.run([*command, debian_mirror()], capture_output=True, text=True, check=False, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    building.chmod(0o755)  # mkdtemp made it 0700: inside the container, / must be traversable by all
    _settle(building, root)
    return root


def wheelhouse() -> Path:
    """Wheels of every dependency, built once per dependency list: the container installs offline."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    house = CACHE / f"wheelhouse-{key}"
    if not house.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=CACHE, prefix="wheels-"))
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(building), str(REPO)]
        result = subprocess.run(pip, capture_output=True, text=True, check=False, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        _settle(building, house)
    return house


def _settle(built: Path, final: Path) -> None:
    """Move a finished build into the cache; a run that finished the same build first wins."""
    try:
        built.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(built, ignore_errors=True)


class Machine:
    """A copy of a Debian root, booted with systemd-nspawn; commands run in it through nsenter."""

    def __init__(self, root: Path, log: Path, binds: dict[Path, str]) -> None:
        self.root = root
        self._log = log
        self._binds = binds
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def boot(self) -> None:
        binds = [f"--bind-ro={host}:{inside}" for host, inside in self._binds.items()]
        # --register=no --keep-unit: no machined, no transient scope (the host need not run systemd).
        command = ["systemd-nspawn", "-q", "-D", str(self.root), "--register=no", "--keep-unit", *binds, "-b"]
        with self._log.open("ab") as out:
            self._nspawn = subprocess.Popen(
                [*command, "--console=pipe"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        wait_until(lambda: self._find_init() != 0, timeout=30)
        self.pid = self._find_init()
        wait_until(lambda: self.run("test -S /run/systemd/private").returncode == 0, timeout=60)  # the manager's socket
        booted = self.run("systemctl is-system-running --wait", timeout=120)
        state = booted.stdout.strip()
        assert state in ("running", "degraded"), booted.stderr + self.run("systemctl --failed --no-legend").stdout

    def _find_init(self) -> int:
        """The container's systemd: a descendant of nspawn called systemd."""
        assert self._nspawn is not None
        children: dict[int, list[int]] = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError, ValueError, StopIteration):
                ppid = int(
                    next(line for line in status.read_text().splitlines() if line.startswith("PPid:")).split()[1]
                )
                children.setdefault(ppid, []).append(int(status.parent.name))
        queue = [self._nspawn.pid]
        while queue:
            pid = queue.pop()
            with contextlib.suppress(OSError):
                if pid != self._nspawn.pid and Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return pid
            queue += children.get(pid, [])
        return 0

    def run(
        self, script: str, *, env: dict[str, str] | None = None, cwd: str = "/root", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """*script* in a root shell inside, with a clean environment plus *env*."""
        variables = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
        variables |= {"LANG": "C.UTF-8", **(env or {})}
        command = ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "--", "/usr/bin/env", "-i"]
        command += [f"{k}={v}" for k, v in variables.items()]
        command += ["/bin/bash", "-euo", "pipefail", "-c", f"cd {cwd}\n{script}"]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)

    def ok(self, script: str, **kwargs: object) -> str:
        """Run *script*; fail the test with its output unless it exits 0. Its stdout."""
        result = self.run(script, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, f"{script}\n-> {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def show(self, unit: str, prop: str) -> str:
        return self.ok(f"systemctl show {unit} -p {prop} --value").strip()

    def shutdown(self) -> None:
        """Power the container off; failing that, kill it. A container whose nspawn dies keeps
        running on its own (its PID 1 ignores SIGTERM), so its init is killed too."""
        if self._nspawn is None:
            return
        if self._nspawn.poll() is None and self.pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run("systemctl poweroff --no-block", timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._nspawn.wait(timeout=30)
        with contextlib.suppress(OSError):
            if self.pid and Path(f"/proc/{self.pid}/comm").read_text().strip() == "systemd":
                os.kill(self.pid, signal.SIGKILL)
        if self._nspawn.poll() is None:
            self._nspawn.kill()
        self._nspawn.wait(timeout=30)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    base, house = base_root(), wheelhouse()
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True, timeout=300)
    root.chmod(0o755)  # / of the container (a root cached by an earlier version may be 0700)
    checkout = root / "root/ccall-archiver"
    (checkout / "dist").mkdir(parents=True)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(checkout / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    shutil.copytree(REPO / "systemd", checkout / "systemd")
    shutil.copy(REPO / "config.example.yaml", checkout)
    box = Machine(root, tmp_path / "nspawn.log", {house: "/root/wheelhouse"})
    try:
        box.boot()
        yield box
    finally:
        box.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def set_addresses(machine: Machine, sim: Simulator, bucket: Bucket) -> None:
    """What the operator does between the two blocks: point the config at the PBX and the bucket
    (here also a faster poll, so the test need not wait minutes)."""
    path = machine.root / "etc/archiver/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["source"]["base_url"] = sim.url
    config["storage"]["url"] = bucket.url
    config["storage"]["endpoint_url"] = bucket.endpoint
    config["poll"] = {**config.get("poll", {}), "interval": "1s", "settle": "1s", "lookback": "2h"}
    config["retention"] = {"keep": "3650d"}  # ten years: the daily expire reads it and removes nothing here
    path.write_text(yaml.safe_dump(config))


# Building the cached Debian root (debootstrap) and the wheelhouse (once per pyproject.toml) takes
# minutes on a machine that has neither; the test itself, well under the suite's 120 s.
@pytest.mark.timeout(2400)
def test_the_readme_install_gives_working_units_on_a_booted_debian(
    machine: Machine, bucket: Bucket, tmp_path: Path
) -> None:
    """Install as the README says; then check, the daemon, its watchdog, a config error, a backfill,
    the nightly audit and a clean stop all behave, and the secrets stay root's and the service's."""
    dataset = Dataset(seed=3, calls_per_day=400, max_duration=4, business_hours_share=0)
    with Simulator(dataset, api_secret=SECRET) as sim:
        secrets = {
            "CCALL_API_KEY": sim.api_key,
            "CCALL_API_SECRET": SECRET,
            "AWS_ACCESS_KEY_ID": AWS_ENV["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        }
        offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/root/wheelhouse", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        machine.ok(readme_block("files"), env=secrets | offline, cwd="/root/ccall-archiver", timeout=600)
        set_addresses(machine, sim, bucket)
        started = machine.ok(readme_block("start"), cwd="/root/ccall-archiver", timeout=180)
        assert "FAIL" not in started

        # The secrets: root's files, readable by nobody else; the service reads them as credentials.
        assert machine.ok("stat -c '%U %a %n' /etc/archiver /etc/archiver/*").split("\n")[:-1] == [
            "root 700 /etc/archiver",
            "root 600 /etc/archiver/aws-credentials",
            "root 600 /etc/archiver/ccall-api-key",
            "root 600 /etc/archiver/ccall-api-secret",
            "root 600 /etc/archiver/config.yaml",
        ]
        assert (
            machine.run(
                "setpriv --reuid=65534 --regid=65534 --clear-groups cat /etc/archiver/ccall-api-secret"
            ).returncode
            != 0
        )

        # The daemon: active only once READY=1 came, STATUS= after each poll, archiving.
        wait_until(lambda: "calls archived" in machine.show("archiver.service", "StatusText"), timeout=90)
        assert machine.show("archiver.service", "ActiveState") == "active"
        wait_until(lambda: any(k.endswith(".json") for k in archive_objects(bucket)), timeout=60)

        # A poll loop that hangs is killed by the watchdog and restarted (a test-only drop-in
        # shortens WatchdogSec=5min; the unit is otherwise as installed).
        machine.ok(
            "mkdir -p /etc/systemd/system/archiver.service.d && "
            "printf '[Service]\\nWatchdogSec=6s\\n' > /etc/systemd/system/archiver.service.d/test-watchdog.conf && "
            "systemctl daemon-reload && systemctl restart archiver.service"
        )
        hung = machine.show("archiver.service", "MainPID")
        restarts = int(machine.show("archiver.service", "NRestarts"))
        machine.ok(f"kill -STOP {hung}")
        wait_until(
            lambda: (
                int(machine.show("archiver.service", "NRestarts")) > restarts
                and machine.show("archiver.service", "MainPID") not in ("0", hung)
                and machine.show("archiver.service", "ActiveState") == "active"
            ),
            timeout=90,
        )
        assert "watchdog" in machine.ok("journalctl -u archiver.service -o cat --no-pager").lower()

        # A configuration error exits 2 and is not restarted.
        good = (machine.root / "etc/archiver/config.yaml").read_text()
        (machine.root / "etc/archiver/config.yaml").write_text(good + "pol: {interval: 1s}\n")
        assert machine.run("systemctl restart archiver.service").returncode != 0  # resets NRestarts to 0
        time.sleep(2)  # RestartSec=15s: a restart that was going to come would be scheduled by now
        assert machine.show("archiver.service", "ActiveState") == "failed"
        assert machine.show("archiver.service", "ExecMainStatus") == "2"
        assert machine.show("archiver.service", "NRestarts") == "0"
        assert "At 'pol': unknown key" in machine.ok("journalctl -u archiver.service -o cat --no-pager")
        (machine.root / "etc/archiver/config.yaml").write_text(good)
        machine.ok("systemctl reset-failed archiver.service && systemctl start archiver.service")

        # A backfill through the template, the date as written; the nightly audit and reconcile.
        yesterday = (datetime.now(TZ) - timedelta(days=1)).strftime("%Y-%m-%d")
        machine.ok(f"systemctl start archiver-backfill@{yesterday}.service", timeout=300)
        assert machine.show(f"archiver-backfill@{yesterday}.service", "Result") == "success"
        assert f"since {yesterday}" in machine.show(f"archiver-backfill@{yesterday}.service", "Description")
        verify = machine.run("systemctl start archiver-verify.service", timeout=300)
        assert verify.returncode == 0, machine.ok("journalctl -u archiver-verify.service -o cat --no-pager")
        assert machine.show("archiver-verify.service", "Result") == "success"
        wait_until(
            lambda: machine.show("archiver-reconcile.service", "ActiveState") in ("inactive", "failed"), timeout=120
        )
        assert machine.show("archiver-reconcile.service", "Result") == "success", machine.ok(
            "journalctl -u archiver-reconcile.service -o cat --no-pager"
        )
        assert machine.show("archiver-verify.timer", "ActiveState") == "active"

        # Retention: the daily expire, enabled by the README's start block, runs as its timer would.
        assert machine.show("archiver-expire.timer", "ActiveState") == "active"
        assert machine.show("archiver-expire.timer", "UnitFileState") == "enabled"
        expire = machine.run("systemctl start archiver-expire.service", timeout=300)
        assert expire.returncode == 0, machine.ok("journalctl -u archiver-expire.service -o cat --no-pager")
        assert machine.show("archiver-expire.service", "Result") == "success"
        said = machine.ok("journalctl -u archiver-expire.service -o cat --no-pager")
        assert "retention 3650d: the days before" in said  # the installed config's retention.keep was read

        # The auditors' web UI: the unit starts, serves a call page on 127.0.0.1:8080 and, stopped,
        # leaves the access trail in the bucket.
        machine.ok("systemctl start archiver-browse.service")
        call_key = next(k for k in archive_objects(bucket) if k.endswith(".json") and "/_" not in k)
        page = (
            '/opt/archiver/bin/python -c "import sys, urllib.request; '
            'r = urllib.request.urlopen(sys.argv[1], timeout=10); print(r.status, r.read().decode())" '
        )
        call_url = f"http://127.0.0.1:8080/calls/{call_key.rsplit('/', 1)[-1][:-5]}"
        wait_until(lambda: machine.run(page + call_url).returncode == 0, timeout=60)
        assert machine.ok(page + call_url).startswith("200 ")
        machine.ok("systemctl stop archiver-browse.service", timeout=60)
        assert machine.show("archiver-browse.service", "Result") == "success", machine.ok(
            "journalctl -u archiver-browse.service -o cat --no-pager"
        )
        assert any("/_access/" in k for k in bucket.objects()), "no access trail after browse stopped"

        # A clean stop; the journal holds one JSON object per line and no secret.
        machine.ok("systemctl stop archiver.service", timeout=90)
        assert machine.show("archiver.service", "Result") == "success"
        lines = machine.ok("journalctl -u archiver.service -t archiver -o cat --no-pager").splitlines()
        events = [json.loads(line)["event"] for line in lines]  # every line the daemon wrote, its own errors too
        assert {"daemon.api_answered", "call.archived", "poll.completed", "command.failed", "daemon.stopped"} <= set(
            events
        )
        everything = machine.ok("journalctl -o cat --no-pager")
        for secret in (SECRET, AWS_ENV["AWS_SECRET_ACCESS_KEY"]):
            assert secret not in everything
