"""Building the Debian package from a copy of this checkout, as a release is built: ``dpkg-buildpackage
-us -uc -b`` with the checkout's debian/, the dependencies' wheels taken from the tests' wheelhouse
(offline). ``next_version`` makes the release after this one from the same tree, the way a
maintainer does: a new debian/changelog entry, the version in archiver/__init__.py, and a changed
config.example.yaml (so the upgrade meets a conffile changed on both sides)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from email.utils import formatdate
from pathlib import Path

from tests.booted import REPO, wheelhouse

# Left out of the copy: what a checkout accumulates and a release is not built from.
_NOT_BUILT_FROM = (".git", ".venv", "__pycache__", "*.egg-info", ".*_cache", "dist", "build", "archiver-demo")
CONFFILE_NOTE = "# Changed in the next version: the upgrade test's conffile change."


def version() -> str:
    """The version this checkout builds (debian/changelog's first entry)."""
    match = re.match(r"ccall-archiver \(([^)]+)\)", (REPO / "debian/changelog").read_text())
    assert match, "debian/changelog does not start with an entry of ccall-archiver"
    return match.group(1)


def next_version(current: str) -> str:
    major, minor, patch = (int(part) for part in current.split("."))
    return f"{major}.{minor}.{patch + 1}"


def build_package(workdir: Path, *, bump: bool = False) -> Path:
    """Build the .deb in *workdir* (the next version's with *bump*); its path."""
    source = workdir / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*_NOT_BUILT_FROM), symlinks=True)
    shutil.rmtree(source / "debian" / "ccall-archiver", ignore_errors=True)  # a developer's own earlier build
    made = version()
    if bump:
        made = next_version(made)
        _bump(source, made)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PIP_NO_INDEX": "1",  # every wheel from the wheelhouse: the build does not depend on the network
        "PIP_FIND_LINKS": str(wheelhouse()),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # A quicker compression than the default xz: the tests install the package, they do not ship it.
        "DPKG_DEB_COMPRESSOR_TYPE": "gzip",
        "DPKG_DEB_COMPRESSOR_LEVEL": "1",
    }
    built = subprocess.run(
        ["dpkg-buildpackage", "-us", "-uc", "-b"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    deb = workdir / f"ccall-archiver_{made}_{arch}.deb"
    assert deb.exists(), os.listdir(workdir)
    return deb


def _bump(source: Path, made: str) -> None:
    init = source / "archiver" / "__init__.py"
    text = init.read_text()
    assert f'__version__ = "{version()}"' in text
    init.write_text(text.replace(f'__version__ = "{version()}"', f'__version__ = "{made}"'))
    changelog = source / "debian" / "changelog"
    entry = (
        f"ccall-archiver ({made}) bookworm; urgency=medium\n\n"
        "  * The next version, made by the upgrade test.\n\n"
        f" -- ccall archiver tests <tests@ccall-archiver.example>  {formatdate(localtime=False)}\n\n"
    )
    changelog.write_text(entry + changelog.read_text())
    example = source / "config.example.yaml"
    example.write_text(example.read_text() + CONFFILE_NOTE + "\n")
