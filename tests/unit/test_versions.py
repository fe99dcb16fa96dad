"""One version, said the same everywhere: archiver/__init__.py, debian/changelog, CHANGELOG.md and
`archiver --version`; and every release in CHANGELOG.md names the commit it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archiver import __version__
from archiver.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
RELEASE = re.compile(r"^## (\d+\.\d+\.\d+) \((.*)\)$", re.M)


def test_the_package_the_changelog_and_the_code_name_one_version() -> None:
    """debian/changelog's first entry and CHANGELOG.md's first heading are the code's version."""
    debian = re.match(r"ccall-archiver \(([^)]+)\) \S+; urgency=\w+\n", (ROOT / "debian/changelog").read_text())
    assert debian, "debian/changelog does not start with a ccall-archiver entry"
    assert debian.group(1) == __version__
    releases = RELEASE.findall((ROOT / "CHANGELOG.md").read_text())
    assert releases[0][0] == __version__


def test_archiver_version_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`archiver --version` answers with the version, exit 0."""
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out.strip() == f"archiver {__version__}"


def test_every_release_before_this_one_names_its_commit_and_the_versions_go_down() -> None:
    """Past releases are findable in the history by their full commit hash (there are no tags),
    newest first; the first heading is the one being made."""
    releases = RELEASE.findall((ROOT / "CHANGELOG.md").read_text())
    assert len(releases) >= 2
    numbers = [tuple(int(p) for p in number.split(".")) for number, _ in releases]
    assert numbers == sorted(numbers, reverse=True)
    assert len(set(numbers)) == len(numbers)
    for _, said in releases[1:]:
        assert re.search(r"\bcommit [0-9a-f]{40}\b", said), said
