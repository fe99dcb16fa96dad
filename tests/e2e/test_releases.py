"""An archive written by an older version is read and extended by this one.

The wheels of the previous release and of the first version are built from their commits (named
in CHANGELOG.md, found in this checkout's history) and installed in a virtual environment of their
own, with their dependencies as pip resolves them today. Each archives two days into an S3 bucket
(moto) with the ledger an upgrade keeps; then this checkout's code, on the same configuration and
ledger, backfills a range over those days and the next (writing nothing again for the old days),
verifies every byte, and reconciles the range with the PBX.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
import yaml

from archiver import __version__
from archiver.simulator import Dataset, Simulator
from tests.helpers import REQUIRE_OS_TOOLS, Bucket, archive_objects, is_sidecar, run_cli

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Release:
    name: str
    commit: str


def releases() -> list[Release]:
    """The previous release and the first version, as CHANGELOG.md names them."""
    text = (REPO / "CHANGELOG.md").read_text()
    previous = re.search(r"^## (\d+\.\d+\.\d+) \(.*\bcommit ([0-9a-f]{40})\)$", text, re.M)
    first = re.search(r"^### .*the first version \(commit ([0-9a-f]{40})\)$", text, re.M)
    assert previous, "CHANGELOG.md names no release with its commit"
    assert first, "CHANGELOG.md names no first version with its commit"
    return [
        Release(f"the previous release {previous.group(1)}", previous.group(2)),
        Release("the first version", first.group(1)),
    ]


def source_of(release: Release, into: Path) -> Path:
    """The release's tree from this checkout's history; a skip (a failure where CI must have the
    history) that says why when the commit cannot be had."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{release.commit}^{{commit}}"], capture_output=True, check=False
    )
    if found.returncode != 0:
        message = (
            f"{release.name} is commit {release.commit} (CHANGELOG.md), which this checkout's history does not "
            "hold: a shallow clone, or no git checkout at all; testing against it needs a clone with full history"
        )
        if REQUIRE_OS_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", release.commit], capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def installed(source: Path, venv: Path) -> Path:
    """The release's wheel built from *source* and installed in *venv*; its console script."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    dist = source / "dist"
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)]
    built = subprocess.run(wheel, capture_output=True, text=True, check=False, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    pip = [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", *map(str, dist.glob("*.whl"))]
    done = subprocess.run(pip, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "archiver"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("release", releases(), ids=lambda r: r.name.split()[1])
def test_an_archive_an_older_version_wrote_is_verified_and_extended_by_this_one(
    release: Release, bucket: Bucket, tmp_path: Path
) -> None:
    """The older version's archive passes this version's verify (the previous release's as it
    stands; one written before seals existed once this version has closed a day, which seals its
    manifests); a backfill over it writes nothing again there and archives the next day; every
    older object keeps its bytes and its one version; reconcile finds every PBX call archived."""
    older = installed(source_of(release, tmp_path / "source"), tmp_path / "venv")
    dataset = Dataset(seed=5, calls_per_day=40, max_duration=3)
    with Simulator(dataset) as sim:
        raw = {
            "source": {"base_url": sim.url, "api_key": sim.api_key, "api_secret": sim.api_secret},
            "storage": {"url": bucket.url, "endpoint_url": bucket.endpoint},
            "state": {"path": str(tmp_path / "ledger.sqlite3")},  # one ledger, as an upgrade keeps it
        }
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        written = subprocess.run(
            [str(older), "backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-03"],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert written.returncode == 0, written.stderr[-3000:]
        assert subprocess.run([str(older), "--version"], capture_output=True, text=True, check=True).stdout.strip() == (
            "archiver 0.1.0"
        )
        before = archive_objects(bucket)
        old_days = {k for k in before if is_sidecar(k)}
        assert len(old_days) > 40

        if release.name.startswith("the previous release"):
            verified = run_cli("verify", "-c", str(config), "--deep")
            assert verified.returncode == 0, verified.stdout + verified.stderr
        extended = run_cli("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-04", timeout=300)
        assert extended.returncode == 0, extended.stdout + extended.stderr[-3000:]
        after = archive_objects(bucket)  # and no key holds two versions
        assert {k: v for k, v in after.items() if k in before} == before
        new = {k for k in after if is_sidecar(k)} - old_days
        assert new
        assert all(k.startswith("archive/2026/11/03/") for k in new)
        assert {json.loads(after[k])["archiver"]["version"] for k in new} == {__version__}
        assert {json.loads(after[k])["archiver"]["version"] for k in old_days} == {"0.1.0"}

        verified = run_cli("verify", "-c", str(config), "--deep")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "0 problem(s)" in verified.stdout
        reconciled = run_cli("reconcile", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-04")
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


def test_a_release_the_history_does_not_hold_is_said_by_name(tmp_path: Path) -> None:
    """A shallow clone lacks the commits: the test says which release and why, not a git error."""
    missing = Release("the previous release 9.9.9", "0" * 40)
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as said:
        source_of(missing, tmp_path)
    assert "the previous release 9.9.9 is commit 0000000000000000000000000000000000000000" in str(said.value)
    assert "full history" in str(said.value)
