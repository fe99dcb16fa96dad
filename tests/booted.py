"""A booted Debian 12 for the install tests: a debootstrap root built once and cached, copies of it
booted with systemd-nspawn (sharing the host's network, so the simulator and the S3 server on
loopback are reachable from inside), commands run in it through nsenter, and the README's
install blocks as written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ARCHIVER_TEST_CACHE", "/var/cache/ccall-archiver-tests"))
BUILD_BACKEND = "hatchling>=1.24"  # pyproject.toml's [build-system]
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "ca-certificates", "util-linux")


def readme_block(marker: str) -> str:
    """The shell block that follows ``<!-- install:MARKER`` in the README (inside a list item too)."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- install:" + marker + r"\b[^\n]*-->\n([ \t]*)```sh\n(.*?)\n[ \t]*```", text, re.S)
    assert match, f"README has no install:{marker} block"
    indent = match.group(1)
    return "\n".join(line.removeprefix(indent) for line in match.group(2).split("\n")) + "\n"


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
    """Wheels of every dependency, and of the build backend (hatchling, for the package build),
    built once per dependency list: the container installs, and the package builds, offline."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + BUILD_BACKEND.encode()).hexdigest()[:12]
    house = CACHE / f"wheelhouse-{key}"
    if not house.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=CACHE, prefix="wheels-"))
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(building), str(REPO), BUILD_BACKEND]
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


@contextlib.contextmanager
def booted(tmp_path: Path, binds: dict[Path, str] | None = None) -> Iterator[Machine]:
    """A fresh copy of the cached root, prepared by the caller (it is at ``.root`` before boot:
    the caller puts files in ``machine.root`` first, then calls ``boot()``), and powered off and
    removed at the end."""
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base_root()), str(root)], check=True, timeout=300)
    root.chmod(0o755)  # / of the container (a root cached by an earlier version may be 0700)
    box = Machine(root, tmp_path / "nspawn.log", binds or {})
    try:
        yield box
    finally:
        box.shutdown()
        shutil.rmtree(root, ignore_errors=True)
