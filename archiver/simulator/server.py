"""The ccall API on loopback, with switchable faults.

It speaks the wire format of ``shared/ccall-api.md``: ``POST /cdrs/json`` (the list shape, or
``{paging, rows}`` with ``page``/``limit``, newest first), ``POST /ext_reg/json``, and
``GET /cdr/{uuid}/{instance}`` for recordings. Faults are drawn per request from a seeded
generator, so a run can be repeated; :class:`Faults` may be changed while the server runs.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from archiver.simulator.dataset import Dataset, SimCall
from archiver.simulator.dialect import Dialect
from archiver.simulator.faults import Faults

DEMO_API_KEY = "a1b2c3d4"
DEMO_API_SECRET = "5e6f7a8b"  # noqa: S105 - the simulator's own, published on purpose

_HTML_ERROR = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
)


class Simulator:
    """The API server in a background thread. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEMO_API_KEY,
        api_secret: str = DEMO_API_SECRET,
        faults: Faults | None = None,
        seed: int = 1,
        now: Callable[[], datetime] | None = None,
        public_url: str | None = None,
        ignore_paging: bool = False,
        dialect: Dialect | None = None,
    ) -> None:
        self.dataset = dataset or Dataset(seed=seed)
        self.faults = faults or Faults()
        self.api_key = api_key
        self.api_secret = api_secret
        self.now = now or (lambda: datetime.now(UTC))
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._server = _Server((host, port), _Handler, self)
        self._public_url = public_url
        self.ignore_paging = ignore_paging
        self.dialect = dialect or Dialect()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._public_url:
            return self._public_url
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="ccall-simulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < rate

    def pick(self, options: tuple[int, ...]) -> int:
        with self._rng_lock:
            return self._rng.choice(options)

    def count(self, what: str) -> None:
        with self._rng_lock:
            self.stats[what] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: Simulator) -> None:
        self.sim = sim
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, timed out) is normal here; anything else is printed."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            self.sim.count("client.disconnected")
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- helpers ----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogateescape")  # raw bytes for broken rows
        self._send(status, body, "application/json; charset=utf-8")

    # -- the API ----------------------------------------------------------------------------

    def do_POST(self) -> None:
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path not in ("/cdrs/json", "/ext_reg/json"):
            self._json(404, {"error": "not found"})
            return
        sim.count("api.requests")
        faults = sim.faults
        if faults.api_latency:
            time.sleep(faults.api_latency)
        if sim.chance(faults.api_error_rate):
            sim.count("fault.api_error")
            status = sim.pick((500, 502, 503))
            self._send(status, _HTML_ERROR, "text/html")
            return
        if sim.chance(faults.api_429_rate):
            sim.count("fault.api_429")
            self._send(429, b'{"error":"rate limited"}', "application/json", {"Retry-After": f"{faults.retry_after:g}"})
            return
        if sim.chance(faults.api_html_rate):
            sim.count("fault.api_html")
            self._send(200, _HTML_ERROR, "text/html")
            return
        if sim.chance(faults.api_no_response_rate):
            sim.count("fault.api_no_response")
            self._json(200, {"status": "error", "message": "service temporarily unavailable"})
            return
        try:
            submission = json.loads(raw)["submission"]
            assert isinstance(submission, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            self._json(400, {"error": 'body must be JSON {"submission": {...}}'})
            return
        if submission.get("api_key") != sim.api_key or submission.get("api_secret") != sim.api_secret:
            sim.count("api.unauthorized")
            if sim.dialect.json_auth:  # no English word a client could look for: the code says it
                self._json(200, {"status": "error", "code": "401", "message": "Sai thông tin xác thực"})
            else:
                self._json(401, {"error": "Invalid api_key or api_secret"})
            return
        if self.path == "/ext_reg/json":
            self._json(200, {"response": {"registrations": _registrations()}})
            return
        self._cdrs(sim, submission)

    def _cdrs(self, sim: Simulator, submission: dict[str, Any]) -> None:
        public, dialect = sim.url, sim.dialect
        read = sim.stats["api.requests"]
        if "call_id" in submission:
            call = sim.dataset.find(str(submission["call_id"]))
            found = [dialect.row(call.cdr(public), read)] if call and call.end <= sim.now() else []
            self._json(200, {"response": found or dialect.empty_response()})
            return
        tz = sim.dataset.tz
        try:
            date_range = submission.get("date_range") or {}
            start = datetime.strptime(date_range["from"], "%Y-%m-%d %H:%M").replace(tzinfo=tz)
            # "to" is inclusive of its whole minute, as the PBX's UI reads it.
            end = datetime.strptime(date_range["to"], "%Y-%m-%d %H:%M").replace(tzinfo=tz) + timedelta(minutes=1)
        except (KeyError, TypeError, ValueError):
            self._json(200, {"response": [], "message": "date_range missing or malformed"})
            return
        calls = sim.dataset.calls_between(start, end, sim.now())
        rows = [dialect.row(c.cdr(public), read) for c in calls]
        if sim.ignore_paging or ("page" not in submission and "limit" not in submission):
            self._json(200, {"response": rows or dialect.empty_response()})
            return
        try:
            page = max(1, int(submission.get("page", 1)))
            limit = max(1, min(1000, int(submission.get("limit", 25))))
        except (TypeError, ValueError):
            self._json(400, {"error": "page and limit must be numbers"})
            return
        total = len(rows)
        if not rows:
            self._json(200, {"response": dialect.empty_response()})
            return
        if dialect.ignore_page:  # every row, every time, and always "there is more"
            page, limit = 1, max(limit, total)
        page_count = max(1, -(-total // limit))
        chunk = rows[(page - 1) * limit : page * limit]
        first = (page - 1) * limit + 1 if chunk else 0
        paging = {
            "txtdesc": f"Showing {first} to {first + len(chunk) - 1 if chunk else 0} of {total} entries.",
            "page_current": page,
            "limit": limit,
            "record_count": total,
            "page_count": 10_000 if dialect.ignore_page else page_count,
            "prev_page": page > 1,
            "next_page": dialect.ignore_page or page < page_count,
        }
        self._json(200, {"response": {"paging": dialect.paging(paging), "rows": chunk}})

    # -- recordings ---------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        """Size and type of a plain ``/files/`` recording, as web servers answer file-copy tools."""
        sim = self.server.sim
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        call = None
        if len(parts) == 3 and parts[0] == "files" and parts[2].endswith(".wav"):
            if sim.faults.recording_latency:
                time.sleep(sim.faults.recording_latency)
            call = sim.dataset.find(parts[2].removesuffix(".wav"))
        if call is None or not call.serves_recording or call.end > sim.now():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/x-wav")
        self.send_header("Content-Length", str(call.recording_size))
        self.end_headers()

    def do_GET(self) -> None:
        sim = self.server.sim
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) == 2 and parts[0] == "files":
            self._file_index(sim, parts[1])
            return
        if len(parts) == 3 and parts[0] == "files" and parts[2].endswith(".wav"):
            parts = ["cdr", parts[2].removesuffix(".wav"), ""]  # the same recording, as a plain file
        if len(parts) != 3 or parts[0] != "cdr":
            self._send(404, b"not found", "text/plain")
            return
        sim.count("recording.requests")
        faults = sim.faults
        if faults.recording_latency:
            time.sleep(faults.recording_latency)
        call = sim.dataset.find(parts[1])
        now = sim.now()
        if call is None or not call.has_recording or call.recording_missing or call.end > now:
            self._send(404, b"<html><body>404 Not Found</body></html>", "text/html")
            return
        if now < call.end + timedelta(seconds=faults.recording_delay):
            sim.count("fault.recording_late")
            self._send(404, b"<html><body>404 Not Found</body></html>", "text/html")
            return
        if sim.chance(faults.recording_error_rate):
            sim.count("fault.recording_error")
            self._send(sim.pick((500, 503)), _HTML_ERROR, "text/html")
            return
        if sim.chance(faults.recording_429_rate):
            sim.count("fault.recording_429")
            self._send(429, b"slow down", "text/plain", {"Retry-After": f"{faults.retry_after:g}"})
            return
        if sim.chance(faults.recording_html_rate):
            sim.count("fault.recording_html")
            self._send(200, _HTML_ERROR, "audio/x-wav")
            return
        self._recording(sim, call)

    def _file_index(self, sim: Simulator, day_text: str) -> None:
        """``/files/YYYY-MM-DD/``: the day's servable recordings as a plain directory listing, what
        file-copy tools (rclone's http remote) read, to measure them against the archiver."""
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            self._send(404, b"not found", "text/plain")
            return
        now = sim.now()
        calls = sim.dataset.calls_on(day)
        names = sorted(f"{c.uuid}.wav" for c in calls if c.serves_recording and c.end <= now)
        links = "".join(f'<a href="{name}">{name}</a>\n' for name in names)
        self._send(200, f"<html><body><pre>\n{links}</pre></body></html>".encode(), "text/html")

    def _recording(self, sim: Simulator, call: SimCall) -> None:
        faults = sim.faults
        size = call.recording_size
        truncated = sim.chance(faults.recording_truncated_rate)
        cut = not truncated and sim.chance(faults.recording_cut_rate)
        stall = not truncated and not cut and sim.chance(faults.recording_stall_rate)
        self.send_response(200)
        self.send_header("Content-Type", "audio/x-wav")
        if truncated:
            sim.count("fault.recording_truncated")
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        sent = 0
        limit = size // 2 if (truncated or cut or stall) else size
        try:
            for chunk in sim.dataset.recording_chunks(call):
                if sent + len(chunk) > limit and (truncated or cut or stall):
                    chunk = chunk[: max(0, limit - sent)]
                if truncated:
                    if chunk:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    self.wfile.write(chunk)
                sent += len(chunk)
                if sent >= limit:
                    break
            if truncated:
                self.wfile.write(b"0\r\n\r\n")
            elif cut:
                sim.count("fault.recording_cut")
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            elif stall:
                sim.count("fault.recording_stall")
                self.wfile.flush()
                time.sleep(faults.stall_seconds)
                self.close_connection = True
            else:
                sim.count("recording.served")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _registrations() -> list[dict[str, str]]:
    return [
        {
            "user": "101@acme.ccall.vn",
            "agent": "JsSIP 3.10.0",
            "network-ip": "192.0.2.10",
            "network-port": "5083",
            "status": "Registered(WSS)(unknown) exp(2026-11-26 10:37:31) expsecs(202)",
        },
        {
            "user": "101@acme.ccall.vn",
            "agent": "Yealink SIP-T46U",
            "network-ip": "192.0.2.11",
            "network-port": "5060",
            "status": "Registered(UDP)(unknown) exp(2026-11-26 10:38:02) expsecs(233)",
        },
        {
            "user": "104@acme.ccall.vn",
            "agent": "Zoiper rv2.10",
            "network-ip": "192.0.2.12",
            "network-port": "5060",
            "status": "Registered(UDP)(unknown) exp(2026-11-26 10:39:40) expsecs(331)",
        },
    ]
