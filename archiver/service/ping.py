"""The dead-man ping: a healthchecks.io-style URL hit after each poll, so silence is noticed."""

from __future__ import annotations

import structlog

from archiver.service.metrics import DEFAULT_SOURCE
from archiver.source.http import HttpClient, HttpUnanswered

log = structlog.get_logger("archiver.service")


class DeadManPing:
    """Hits a healthchecks.io-style URL after each poll: the URL on success, ``URL/fail`` on failure.

    Several sources share one check: it fails when any source's last poll failed, and succeeds
    again only when none is failing (so one source's success does not hide another's failure).
    The URL is a secret (its path is the check's token), so it is never logged.
    """

    def __init__(self, http: HttpClient, url: str) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._failing: set[str] = set()

    async def success(self, source: str = DEFAULT_SOURCE) -> None:
        self._failing.discard(source)
        if not self._failing:
            await self._hit(self._url, "")

    async def failure(self, error: str, source: str = DEFAULT_SOURCE) -> None:
        self._failing.add(source)
        await self._hit(self._url + "/fail", error)

    async def _hit(self, url: str, body: str) -> None:
        try:
            response = await self._http.request("POST", url, data=body.encode()[:10_000], within=10)
        except HttpUnanswered as exc:
            log.warning("ping.failed", error=exc.name)
            return
        if response.status >= 400:
            log.warning("ping.failed", http_status=response.status)
