"""``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics.listen``, served from a thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from archiver.service.health import Health
from archiver.service.metrics import Metrics


def serve(listen: str, metrics: Metrics, health: Health) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on *listen* (host:port) from a daemon thread.

    Raises OSError when the address cannot be bound.
    """
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"stalled: the poll loop made no progress\n")
            elif path == "/readyz":
                ok = health.ready()
                reason = health.last_error or "no poll has succeeded recently"
                self._answer(200 if ok else 503, b"ready\n" if ok else f"not ready: {reason}\n".encode())
            else:
                self._answer(404, b"try /metrics, /healthz or /readyz\n")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics", daemon=True).start()
    return server
