"""``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics.listen``: a Starlette application,
served on uvicorn inside the daemon's task group (:mod:`archiver.asgi`).

``/metrics`` is prometheus_client's own ASGI application over the archiver's registry (it
negotiates the exposition format and gzip with the scraper).
"""

from __future__ import annotations

from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from archiver.service.health import Health
from archiver.service.metrics import Metrics


class _Mounted:
    """An ASGI application at exactly one path (Starlette routes to an object as ASGI, where it
    would call a plain function with a Request)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def endpoints(metrics: Metrics, health: Health) -> Starlette:
    """The service's endpoints over *metrics* and *health*."""

    async def healthz(request: Request) -> Response:
        if health.alive():
            return PlainTextResponse("ok\n")
        return PlainTextResponse("stalled: the poll loop made no progress\n", status_code=503)

    async def readyz(request: Request) -> Response:
        if health.ready():
            return PlainTextResponse("ready\n")
        reason = health.last_error or "no poll has succeeded recently"
        return PlainTextResponse(f"not ready: {reason}\n", status_code=503)

    async def elsewhere(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("try /metrics, /healthz or /readyz\n", status_code=404)

    return Starlette(
        routes=[
            Route("/metrics", _Mounted(make_asgi_app(registry=metrics.registry))),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        exception_handlers={404: elsewhere},
    )
