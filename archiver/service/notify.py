"""systemd's notify protocol (sd_notify), spoken over the socket in ``$NOTIFY_SOCKET``.

Without ``NOTIFY_SOCKET`` (not under systemd, or ``Type=`` is not notify) every call is a
no-op. The watchdog interval comes from ``$WATCHDOG_USEC``; pings are sent from a task that
checks the poll loop's heartbeat, so a loop that hangs stops the pings and systemd restarts it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import anyio
import structlog

from archiver.service.health import Health

log = structlog.get_logger("archiver.service.notify")


class Notifier:
    """Sends ``READY=1``, ``STATUS=…``, ``WATCHDOG=1`` and ``STOPPING=1`` to systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *fields: str) -> None:
        if not self._address:
            return
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("notify.failed", error=exc.strerror or str(exc))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: finishing the calls in flight")

    async def watchdog(self, health: Health) -> None:
        """Ping at half the watchdog interval while the loop is alive; forever, until cancelled."""
        if self.watchdog_seconds is None or not self._address:
            return
        while True:
            if health.alive():
                self.send("WATCHDOG=1")
            else:
                log.error("watchdog.withheld", reason="the poll loop made no progress")
            await anyio.sleep(self.watchdog_seconds / 2)
