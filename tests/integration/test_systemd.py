"""The shipped systemd units pass systemd's own checks and its security rating."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import need_os_tools

UNITS = Path(__file__).resolve().parents[2] / "systemd"
ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def analyze() -> str:
    need_os_tools("checking units", "systemd-analyze")
    return ANALYZE or "systemd-analyze"


def installed_copy(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this environment's archiver, as an install would."""
    executable = Path(sys.executable).with_name("archiver")
    assert executable.exists(), "the archiver console script should be installed in this environment"
    folder = tmp_path / "units"
    folder.mkdir()
    for unit in UNITS.iterdir():
        (folder / unit.name).write_text(unit.read_text().replace("/usr/local/bin/archiver", str(executable)))
    return folder


def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path, analyze: str) -> None:
    """systemd-analyze verify finds nothing to complain about in any unit."""
    folder = installed_copy(tmp_path)
    units = sorted(str(p) for p in folder.iterdir())
    assert len(units) == 8
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.parametrize(
    "unit",
    [
        "archiver.service",
        "archiver-backfill@.service",
        "archiver-verify.service",
        "archiver-reconcile.service",
        "archiver-browse.service",
        "archiver-expire.service",
    ],
)
def test_every_service_rates_2_or_better_on_systemd_analyze_security(tmp_path: Path, unit: str, analyze: str) -> None:
    """The hardening keeps the exposure level at 2.0 or lower (lower is safer)."""
    folder = installed_copy(tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", str(folder / unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_every_hardening_line_says_why() -> None:
    """In the daemon's unit, each hardening setting follows a comment (borgmatic's habit)."""
    lines = (UNITS / "archiver.service").read_text().splitlines()
    start = lines.index("# Hardening. Each line takes away something the archiver never needs; relax one only if a")
    block = lines[start : lines.index("[Install]")]
    for i, line in enumerate(block):
        if line and not line.startswith("#"):
            previous = next(b for b in reversed(block[:i]) if b == "" or b.startswith("#") or "=" in b)
            assert previous.startswith("#") or "=" in previous, f"no comment above {line!r}"
