"""Ceph RGW for the tests: a real S3 implementation that verifies every SigV4 signature and
``x-amz-content-sha256``, as AWS S3 does (moto verifies none).

A one-node cluster of Debian's packages (``ceph-mon``, ``ceph-osd``, ``radosgw``,
``ceph-common``), started as plain processes in a folder of the test's: one monitor, one OSD on
``memstore`` (in memory), no cephx inside the cluster, pools of size 1, then ``radosgw`` with the
``beast`` frontend on a loopback port and one S3 user, whose keys are the tests' own
(``AWS_ENV``), so the AWS chain finds them as it does for moto. Every daemon runs in the foreground as a
child of the test process, so :meth:`CephRgw.stop` ends every process it started.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

from tests.helpers import AWS_ENV, free_port

TOOLS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")

_CONF = """[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_port}]
auth cluster required = none
auth service required = none
auth client required = none
# Without cephx there are no session keys, so no "secure" connection mode (radosgw asks for it).
ms mon client mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms cluster mode = crc
ms service mode = crc
client mount timeout = 20
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
ms bind ipv6 = false
osd objectstore = memstore
memstore device bytes = 4294967296
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
pid file = {root}/run/$name.pid
mon data = {root}/mon
osd data = {root}/osd
keyring = /dev/null
[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {root}/rgw
rgw dns name = localhost
rgw enable usage log = false
"""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class CephRgw:
    """A one-node Ceph cluster with RGW on loopback, in *root*."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mon_port = free_port()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.conf = root / "ceph.conf"
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 90.0) -> CephRgw:
        for folder in ("mon", "osd", "run", "log", "rgw"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        fsid = uuid.uuid4()
        self.conf.write_text(_CONF.format(fsid=fsid, mon_port=self.mon_port, rgw_port=self.port, root=self.root))
        monmap = self.root / "monmap"
        self._run(
            "monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", "--fsid", str(fsid), str(monmap)
        )
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._daemon("ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        self._run("ceph", "-c", str(self.conf), "osd", "new", osd_uuid, timeout=60)
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("ceph-osd", "-i", "0")
        self._daemon("radosgw", "-n", "client.rgw.test")
        self._wait_for_http(timeout)
        self._run(
            "radosgw-admin", "-c", str(self.conf), "user", "create", "--uid", "archiver", "--display-name", "archiver",
            "--access-key", AWS_ENV["AWS_ACCESS_KEY_ID"], "--secret-key", AWS_ENV["AWS_SECRET_ACCESS_KEY"], timeout=60,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.terminate()
        for process in reversed(self._processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self._processes.clear()

    def log(self, name: str = "client.rgw.test") -> str:
        """The tail of a daemon's log, for a failing test's message."""
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def _run(self, *argv: str, timeout: float = 30) -> None:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
            )

    def _daemon(self, name: str, *argv: str) -> None:
        process = subprocess.Popen(
            [name, "-f", "-c", str(self.conf), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._processes.append(process)

    def _wait_for_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self._processes):
                break
            try:
                with urllib.request.urlopen(self.endpoint, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        log = self.log()
        self.stop()
        raise RuntimeError(f"radosgw did not answer on {self.endpoint} within {timeout} s:\n{log}")
