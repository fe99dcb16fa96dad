"""The README's wheel install (for other distributions), run verbatim on a booted Debian 12,
gives working units.

A minimal Debian 12 root is built once with debootstrap (from the Debian archive this machine's
apt uses) and cached; each run boots a copy of it with systemd-nspawn, sharing the host's
network, so the simulator and the moto S3 server on loopback are reachable from inside
(tests/booted.py). The checkout's wheel, units and example config are put where an operator would
have them, the README's wheel, secrets and start blocks are run as written, and then the units
are put through what an operator relies on. The Debian package's install is test_package.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from archiver.simulator import Dataset, Simulator
from tests.booted import REPO, Machine, booted, readme_block, wheelhouse
from tests.helpers import AWS_ENV, Bucket, archive_objects, free_port, metric, need_os_tools, wait_until

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SECRET = "0a1b2c3d"


@pytest.fixture(autouse=True)
def _booting_needs_root_and_tools() -> None:
    need_os_tools("booting Debian 12 in a container", "debootstrap", "systemd-nspawn", root=True)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    with booted(tmp_path, {wheelhouse(): "/root/wheelhouse"}) as box:
        prepare_checkout(box.root / "root/ccall-archiver")
        box.boot()
        yield box


def prepare_checkout(checkout: Path) -> None:
    """What the wheel path starts from: the checkout's wheel, units and example config."""
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


def set_addresses(machine: Machine, sim: Simulator, bucket: Bucket, **sections: dict[str, Any]) -> None:
    """What the operator does between the blocks: point the config at the PBX and the bucket
    (here also a faster poll, so the test need not wait minutes), and set *sections*' keys."""
    path = machine.root / "etc/archiver/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["source"]["base_url"] = sim.url
    config["storage"]["url"] = bucket.url
    config["storage"]["endpoint_url"] = bucket.endpoint
    config["poll"] = {**config.get("poll", {}), "interval": "1s", "settle": "1s", "lookback": "2h"}
    config["retention"] = {"keep": "3650d"}  # ten years: the daily expire reads it and removes nothing here
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
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
        machine.ok(readme_block("wheel"), env=offline, cwd="/root/ccall-archiver", timeout=600)
        machine.ok(readme_block("secrets"), env=secrets, cwd="/root/ccall-archiver")
        metrics_port = free_port()  # the container shares this machine's network
        set_addresses(machine, sim, bucket, metrics={"listen": f"127.0.0.1:{metrics_port}"})
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
            timeout=180,  # 6 s to notice, RestartSec=15s, then a start that takes a minute on a loaded CI host
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

        # The three scheduled units wrote how they ended where the daemon reads it, and it serves them.
        assert machine.ok("ls /var/lib/archiver/metrics").split() == ["expire.prom", "reconcile.prom", "verify.prom"]
        served = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        for command in ("verify", "reconcile", "expire"):
            assert metric(served, "archiver_command_last_exit_code", command=command) == 0
            assert metric(served, "archiver_command_last_success_timestamp_seconds", command=command) > 0

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
