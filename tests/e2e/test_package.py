"""The Debian package: built from this checkout with dpkg-buildpackage and dh-virtualenv, installed
with apt on a booted Debian 12 as the README says (its blocks run verbatim), started, upgraded to
the next version while the daemon runs, then removed and purged; the bucket is never touched.

The next version is built from a copy of the same tree the way a maintainer makes one: a
debian/changelog entry, the version in archiver/__init__.py, and a changed config.example.yaml,
so the upgrade meets a conffile the operator and the new version both changed.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from archiver.simulator import Dataset, Simulator
from tests.booted import REPO, Machine, booted, readme_block
from tests.debian import CONFFILE_NOTE, build_package, next_version, version
from tests.helpers import AWS_ENV, Bucket, archive_objects, free_port, metric, need_os_tools, wait_until

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SECRET = "0a1b2c3d"
VENV = "/opt/venvs/ccall-archiver"


@pytest.fixture(autouse=True)
def _building_needs_debian_tools() -> None:
    need_os_tools("building the Debian package", "dpkg-buildpackage", "dh_virtualenv")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """This checkout's .deb and the next version's, built side by side."""
    need_os_tools("building the Debian package", "dpkg-buildpackage", "dh_virtualenv")
    here, after = tmp_path_factory.mktemp("this"), tmp_path_factory.mktemp("next")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(build_package, here)
        second = pool.submit(build_package, after, bump=True)
        yield first.result(), second.result()


def members(deb: Path) -> dict[str, tarfile.TarInfo]:
    """The files of *deb*'s data archive, by path (without the leading ./), as dpkg sees them."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


@pytest.mark.timeout(1800)
def test_the_package_holds_the_archiver_its_units_and_a_private_configuration(
    packages: tuple[Path, Path], tmp_path: Path
) -> None:
    """ccall-archiver_VERSION_ARCH.deb: the virtual environment under /opt/venvs, /usr/bin/archiver,
    the units (ExecStart on /usr/bin/archiver, otherwise as in systemd/), /etc/archiver (0700) with
    config.yaml (0600, a conffile, the example as shipped), the monitoring files and the docs; it
    depends on the interpreter its environment links to."""
    deb, _ = packages
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)

    def read(name: str) -> str:
        return (unpacked / name).read_text()

    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    assert deb.name == f"ccall-archiver_{version()}_{arch}.deb"
    fields = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    control = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line and not line.startswith(" "))
    assert control["Package"] == "ccall-archiver"
    assert control["Version"] == version()
    python = Path("/usr/bin/python3").resolve()
    assert python.name in control["Depends"].replace(",", " ").split()
    files = members(deb)
    assert files["usr/bin/archiver"].issym()
    assert files["usr/bin/archiver"].linkname == f"{VENV}/bin/archiver"
    assert files[f"{VENV.lstrip('/')}/bin/{python.name}"].linkname == str(python)  # not the default python3
    assert read(f"{VENV.lstrip('/')}/bin/archiver").startswith(f"#!{VENV}/bin/python")
    etc, conf = files["etc/archiver"], files["etc/archiver/config.yaml"]
    assert (etc.mode, etc.uname, conf.mode, conf.uname) == (0o700, "root", 0o600, "root")
    assert read("etc/archiver/config.yaml") == (REPO / "config.example.yaml").read_text()
    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True, text=True, check=True)
    assert conffiles.stdout.split() == ["/etc/archiver/config.yaml"]
    units = sorted(p.name for p in (REPO / "systemd").iterdir())
    assert (
        sorted(
            n.removeprefix("lib/systemd/system/")
            for n in files
            if n.startswith("lib/systemd/system/") and files[n].isfile()
        )
        == units
    )
    for unit in units:
        shipped = read(f"lib/systemd/system/{unit}")
        assert shipped == (REPO / "systemd" / unit).read_text().replace("/usr/local/bin/archiver", "/usr/bin/archiver")
        if unit.endswith(".service"):
            assert "ExecStart=/usr/bin/archiver " in shipped
    for name in ("archiver.rules.yml", "archiver.dashboard.json"):
        assert read(f"usr/share/ccall-archiver/monitoring/{name}") == (REPO / "monitoring" / name).read_text()
    docs = {"README.md.gz", "runbook.md.gz", "retention.md.gz", "auditing.md.gz", "changelog.gz"}  # CHANGELOG.md
    assert {f"usr/share/doc/ccall-archiver/{name}" for name in docs} <= set(files)


def set_addresses(machine: Machine, sim: Simulator, bucket: Bucket, metrics_port: int) -> str:
    """What the operator does after the secrets: the PBX's and the bucket's addresses, the metrics
    for the alerts (and a faster poll, so the test need not wait minutes). The file's new text."""
    path = machine.root / "etc/archiver/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["source"] |= {"base_url": sim.url, "recording_retention": "90d"}
    config["storage"] |= {"url": bucket.url, "endpoint_url": bucket.endpoint}
    config["poll"] = {**config.get("poll", {}), "interval": "1s", "settle": "1s", "lookback": "2h"}
    config["metrics"] = {**config.get("metrics", {}), "listen": f"127.0.0.1:{metrics_port}"}
    text = yaml.safe_dump(config)
    path.write_text(text)
    return text


def bucket_state(bucket: Bucket) -> list[tuple[str, str, bool]]:
    """Every version and delete marker in the bucket, control objects included."""
    pages = bucket.client.get_paginator("list_object_versions").paginate(Bucket=bucket.name)
    found = []
    for page in pages:
        found += [(v["Key"], v["VersionId"], False) for v in page.get("Versions", [])]
        found += [(m["Key"], m["VersionId"], True) for m in page.get("DeleteMarkers", [])]
    return sorted(found)


# Building both packages takes about a minute and a half on two cores (the first run also builds
# the cached Debian root and the wheelhouse); the booted part, about two minutes.
@pytest.mark.timeout(2400)
def test_the_package_installs_upgrades_and_is_removed_on_a_booted_debian(
    packages: tuple[Path, Path], bucket: Bucket, tmp_path: Path
) -> None:
    """apt install as the README says; unconfigured, the daemon stops with the reason and is not
    restarted; configured and started it archives; upgraded to the next version while it runs, it
    is restarted on the new code with its ledger and configuration (a conffile changed on both
    sides is kept, the new one beside it), nothing lost or written twice, and verify passes;
    remove and purge keep what they should and leave the bucket as it was."""
    need_os_tools("booting Debian 12 in a container", "debootstrap", "systemd-nspawn", root=True)
    first, second = packages
    dataset = Dataset(seed=3, calls_per_day=3000, max_duration=4, business_hours_share=0)
    with booted(tmp_path) as machine, Simulator(dataset, api_secret=SECRET) as sim:
        for folder, deb in (("root/ccall-archiver", first), ("root/next", second)):
            (machine.root / folder).mkdir(parents=True)
            shutil.copy(deb, machine.root / folder)
        machine.boot()
        began = datetime.now(TZ)

        # Installed as the README says: the layout is there, nothing is enabled or running.
        machine.ok(readme_block("package"), cwd="/root/ccall-archiver", timeout=600)
        assert machine.ok("archiver --version").strip() == f"archiver {version()}"
        assert machine.ok("stat -c '%U %a %n' /etc/archiver /etc/archiver/*").splitlines() == [
            "root 700 /etc/archiver",
            "root 600 /etc/archiver/config.yaml",
        ]
        for unit in ("archiver.service", "archiver-verify.timer", "archiver-expire.timer", "archiver-browse.service"):
            assert machine.run(f"systemctl is-enabled {unit}").stdout.strip() == "disabled", unit
            assert machine.show(unit, "ActiveState") == "inactive", unit

        # Started before it is configured: it stops at once, says why, and is not restarted.
        assert machine.run("systemctl start archiver.service", timeout=60).returncode != 0
        time.sleep(3)  # RestartSec=15s: a restart that was going to come would be scheduled by now
        assert machine.show("archiver.service", "ActiveState") == "failed"
        assert machine.show("archiver.service", "ExecMainStatus") == "2"
        assert machine.show("archiver.service", "NRestarts") == "0"
        status = machine.run("systemctl status archiver.service --no-pager --lines=20").stdout
        assert "status=2" in status
        said = (
            "Status: \"stopped with exit code 2: At 'source.api_key_file': cannot read "
            "/run/credentials/archiver.service/archiver_ccall-api-key: No such file or directory (a systemd "
            "credential: put the file in the folder the unit's LoadCredential= names, /etc/archiver as shipped) "
            '(and 1 more problem(s): journalctl -u archiver)"'
        )
        assert said in status, status

        # Configured and started as the README says.
        secrets = {
            "CCALL_API_KEY": sim.api_key,
            "CCALL_API_SECRET": SECRET,
            "AWS_ACCESS_KEY_ID": AWS_ENV["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        }
        machine.ok(readme_block("secrets"), env=secrets, cwd="/root/ccall-archiver")
        port = free_port()  # the container shares this machine's network
        configured = set_addresses(machine, sim, bucket, port)
        started = machine.ok(readme_block("start"), cwd="/root/ccall-archiver", timeout=180)
        assert "FAIL" not in started
        wait_until(lambda: "calls archived" in machine.show("archiver.service", "StatusText"), timeout=90)
        wait_until(lambda: any(k.endswith(".json") for k in archive_objects(bucket)), timeout=60)
        scrape = f"http://127.0.0.1:{port}/metrics"
        assert metric(httpx.get(scrape).text, "archiver_build_info", version=version()) == 1

        # The nightly audit through its unit: the daemon serves how it ended.
        verify = machine.run("systemctl start archiver-verify.service", timeout=300)
        assert verify.returncode == 0, machine.ok("journalctl -u archiver-verify.service -o cat --no-pager")
        assert metric(httpx.get(scrape).text, "archiver_command_last_exit_code", command="verify") == 0

        # The next version, while the daemon runs: stopped before unpacking, started after.
        old_pid = machine.show("archiver.service", "MainPID")
        ledger = "/var/lib/private/archiver/ledger.sqlite3"
        ledger_inode = machine.ok(f"stat -c %i {ledger}")
        done_before = json.loads(machine.ok("archiver status -c /etc/archiver/config.yaml --json"))["calls"]["archived"]
        upgraded = machine.run(readme_block("upgrade"), cwd="/root/next", timeout=600)
        assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr[-3000:]
        new = next_version(version())
        assert machine.ok("archiver --version").strip() == f"archiver {new}"
        assert machine.show("archiver.service", "ActiveState") == "active"
        new_pid = machine.show("archiver.service", "MainPID")
        assert new_pid not in ("0", old_pid)
        wait_until(lambda: _served(scrape, new), timeout=60)
        # The ledger and the configuration are kept; the new version's example waits beside it.
        assert machine.ok(f"stat -c %i {ledger}") == ledger_inode
        assert (machine.root / "etc/archiver/config.yaml").read_text() == configured
        shipped = (machine.root / "etc/archiver/config.yaml.dpkg-dist").read_text()
        assert shipped.endswith(CONFFILE_NOTE + "\n")
        assert machine.ok("stat -c '%U %a' /etc/archiver /etc/archiver/config.yaml").split("\n")[:2] == [
            "root 700",
            "root 600",
        ]
        assert machine.ok("stat -c '%U %a' /etc/archiver/ccall-api-secret").strip() == "root 600"
        # The new process polls on, from the ledger's cursor.
        wait_until(lambda: _polls_by(machine, new_pid) >= 2, timeout=90)
        checked_until = datetime.now(TZ) - timedelta(seconds=30)
        done_after = json.loads(machine.ok("archiver status -c /etc/archiver/config.yaml --json"))["calls"]["archived"]
        assert done_after >= done_before

        # Stopped: nothing was written twice, none of the PBX's calls is missing, verify passes.
        machine.ok("systemctl stop archiver.service", timeout=90)
        assert machine.show("archiver.service", "Result") == "success"
        archive_objects(bucket)
        since = (began - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
        until = checked_until.strftime("%Y-%m-%d %H:%M")
        reconcile = machine.run(f"archiver reconcile -c /etc/archiver/config.yaml --since '{since}' --until '{until}'")
        assert reconcile.returncode == 0, reconcile.stdout[-3000:] + reconcile.stderr[-3000:]
        first_day = (began - timedelta(hours=2)).strftime("%Y-%m-%d")
        verified = machine.run(f"archiver verify -c /etc/archiver/config.yaml --since {first_day}", timeout=300)
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]

        # Removed: the program goes, the configuration, the secrets and the ledger stay.
        kept = bucket_state(bucket)
        machine.ok("apt-get remove -y ccall-archiver", timeout=300)
        for gone in ("/usr/bin/archiver", VENV, "/lib/systemd/system/archiver.service"):
            assert machine.run(f"test -e {gone}").returncode != 0, gone
        for stays in ("/etc/archiver/config.yaml", "/etc/archiver/ccall-api-secret", ledger):
            assert machine.run(f"test -e {stays}").returncode == 0, stays
        assert machine.show("archiver.service", "LoadState") == "not-found"
        assert bucket_state(bucket) == kept

        # Purged: the configuration and the ledger go; the operator's secrets stay, and it says so.
        purged = machine.run("apt-get purge -y ccall-archiver", timeout=300)
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert "kept /etc/archiver" in purged.stdout + purged.stderr
        for gone in ("/etc/archiver/config.yaml", "/var/lib/private/archiver", "/var/lib/archiver"):
            assert machine.run(f"test -e {gone}").returncode != 0, gone
        assert machine.run("test -e /etc/archiver/ccall-api-secret").returncode == 0
        assert machine.ok("ls /etc/systemd/system/*.wants/ | grep -c archiver || true").strip() == "0"
        assert bucket_state(bucket) == kept


def _served(scrape: str, expected: str) -> bool:
    """Whether the daemon at *scrape* answers, as version *expected*."""
    try:
        text = httpx.get(scrape, timeout=2).text
    except httpx.HTTPError:
        return False
    return f'archiver_build_info{{version="{expected}"}} 1.0' in text


def _polls_by(machine: Machine, pid: str) -> int:
    """Polls the process *pid* completed, from the journal."""
    lines = machine.ok(f"journalctl _PID={pid} -o cat --no-pager").splitlines()
    return sum(1 for line in lines if line.startswith("{") and json.loads(line).get("event") == "poll.completed")
