"""The dependency floors in pyproject.toml are true: with every runtime dependency at the lowest
version it declares, the store's tests (and the unit tests) pass.

A floor is a promise to the operator who installs next to older packages (a distribution's
boto3, a pinned httpx): the features the archiver uses are there. This installs the floors into a
fresh virtual environment and runs the tests there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = [
    "tests/unit",
    "tests/integration/test_store.py",
    "tests/integration/test_store_faults.py",
    "tests/integration/test_lease_s3.py",
    "tests/integration/test_create_only.py",
    "tests/integration/test_object_settings.py",
    "tests/integration/test_repair.py",
    "tests/integration/test_pipeline.py",
]


def floors() -> dict[str, str]:
    """Each runtime dependency's declared minimum; botocore's is boto3's (they are released together)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = {}
    for requirement in declared:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([0-9.]+)", requirement.split(";")[0].strip())
        assert match, f"{requirement!r} in pyproject.toml has no floor (>=)"
        out[canonical(match.group(1))] = match.group(2)
    out["botocore"] = out["boto3"]
    return out


def canonical(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def numbers(version: str) -> list[int]:
    return [int(part) for part in version.split(".")]


def same_version(installed: str, floor: str) -> bool:
    a, b = numbers(installed), numbers(floor)
    width = max(len(a), len(b))
    return a + [0] * (width - len(a)) == b + [0] * (width - len(b))


@pytest.mark.timeout(1800)
def test_the_store_tests_pass_with_every_dependency_at_its_floor(tmp_path: Path) -> None:
    """pip installs each runtime dependency at exactly its floor (the dev tools at what resolves
    beside them), and the unit and store tests pass there."""
    wanted = floors()
    constraints = tmp_path / "floors.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in wanted.items()))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", str(constraints), "-e", f"{ROOT}[dev]"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    installed = {canonical(p["name"]): p["version"] for p in json.loads(listed)}
    assert {n: installed.get(n) for n in wanted if not same_version(installed.get(n, "0"), wanted[n])} == {}
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov", "-m", "not slow", *TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COVERAGE_PROCESS_START": ""},
        check=False,
        timeout=1500,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
