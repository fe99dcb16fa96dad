"""A small fault-injecting HTTP proxy in front of an S3 server (moto, Ceph RGW), for the answers
neither gives: what AWS, MinIO, StorageGRID and other stores send under load, on retries, or
for features they lack.

Each request is shown to a *rule* with a ``forward`` function. The rule returns None (the
request goes to the server as it came), or an :class:`Answer` of its own: made up
(:func:`error`), or the server's answer to a request it forwarded itself, possibly with another
body, and possibly replaced afterwards (the store did the work; the client never heard). Every
request and the status it got is kept in ``requests``, for the tests to count.

Only path-style addressing and bodies with a ``Content-Length`` are understood, which is what the
archiver's clients send (checksums ``when_required``, no aws-chunked uploads).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

_HOP = frozenset({"host", "connection", "transfer-encoding", "content-length", "keep-alive"})
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
ET.register_namespace("", _S3_NS)  # the documents rewritten here keep S3's default namespace


@dataclass(frozen=True)
class S3Request:
    """One request as the proxy received it."""

    method: str
    path: str  # /bucket/key, without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def bucket(self) -> str:
        return self.path.lstrip("/").split("/", 1)[0]

    @property
    def key(self) -> str:
        parts = self.path.lstrip("/").split("/", 1)
        return unquote(parts[1]) if len(parts) > 1 else ""

    @property
    def operation(self) -> str:
        """The S3 operation's name, from the method, the query and the headers."""
        q, m = self.query, self.method
        if m == "HEAD":
            return "HeadObject" if self.key else "HeadBucket"
        if m == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        if m == "POST":
            if "uploads" in q:
                return "CreateMultipartUpload"
            if "uploadId" in q:
                return "CompleteMultipartUpload"
            return {"delete": "DeleteObjects", "restore": "RestoreObject"}.get(next(iter(q), ""), "Post")
        if m == "PUT":
            if "partNumber" in q:
                return "UploadPart"
            for sub, name in (("retention", "PutObjectRetention"), ("legal-hold", "PutObjectLegalHold")):
                if sub in q:
                    return name
            return "CopyObject" if "x-amz-copy-source" in self.headers else "PutObject"
        if not self.key:
            for sub, name in (("versions", "ListObjectVersions"), ("versioning", "GetBucketVersioning")):
                if sub in q:
                    return name
            return "ListObjects"
        for sub, name in (("retention", "GetObjectRetention"), ("legal-hold", "GetObjectLegalHold")):
            if sub in q:
                return name
        return "GetObject"


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


Forward = Callable[..., Answer]  # forward(body=None, drop=()) -> the server's answer
Rule = Callable[[S3Request, Forward], Answer | None]


def error(status: int, code: str, message: str = "injected by the test's proxy") -> Answer:
    """An S3 error answer, as the stores write it."""
    xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Answer(status, xml.encode(), [("Content-Type", "application/xml")])


class FaultProxy:
    """An HTTP proxy in front of the S3 server at *target* (``http://host:port``).

    *rule* decides each request (see the module); *strip* names request headers dropped on the
    way, as some S3-compatible servers ignore them (If-None-Match, If-Match).
    """

    def __init__(self, target: str, rule: Rule | None = None, *, strip: Iterable[str] = ()) -> None:
        host, port = target.removeprefix("http://").split(":")
        dropped = {h.lower() for h in strip} | _HOP
        self.requests: list[tuple[S3Request, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = S3Request(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )

                def forward(body: bytes | None = None, drop: Iterable[str] = ()) -> Answer:
                    gone = dropped | {d.lower() for d in drop}
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in gone}
                    data = request.body if body is None else body
                    headers["Content-Length"] = str(len(data))
                    upstream = http.client.HTTPConnection(host, int(port), timeout=30)
                    try:
                        upstream.request(self.command, self.path, body=data, headers=headers)
                        answer = upstream.getresponse()
                        content = answer.read()
                    finally:
                        upstream.close()
                    kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP]
                    if self.command == "HEAD":  # no body: its Content-Length is the object's, as the server said
                        kept.append(("Content-Length", answer.getheader("Content-Length") or "0"))
                    return Answer(answer.status, content, kept)

                answer = (rule(request, forward) if rule is not None else None) or forward()
                proxy.requests.append((request, answer.status))
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                if not any(k.lower() == "content-length" for k, _ in answer.headers):
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_one

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def count(self, operation: str, status: int | None = None) -> int:
        """How many requests of *operation* (with answer *status*) came through so far."""
        return sum(1 for r, s in self.requests if r.operation == operation and status in (None, s))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def once(rule: Rule) -> Rule:
    """*rule* for the first request it answers; every later request goes through untouched."""
    spent = threading.Event()

    def first(request: S3Request, forward: Forward) -> Answer | None:
        if spent.is_set():
            return None
        answer = rule(request, forward)
        if answer is not None:
            spent.set()
        return answer

    return first


def refused(operation: str, status: int, code: str, *, key_prefix: str = "") -> Rule:
    """*operation* (on keys under *key_prefix*) answered with an error, without reaching the store."""

    def rule(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation == operation and request.key.startswith(key_prefix):
            return error(status, code)
        return None

    return rule


def needs_content_md5(request: S3Request, forward: Forward) -> Answer | None:
    """A store that refuses DeleteObjects without a Content-MD5 that matches the body (older
    MinIO, CubeFS and others: they do not read the newer x-amz-checksum-* headers)."""
    if request.operation != "DeleteObjects":
        return None
    sent = request.headers.get("content-md5")
    if sent is None:
        return error(400, "MissingContentMD5", "Missing required header for this request: Content-Md5.")
    if sent != base64.b64encode(hashlib.md5(request.body, usedforsecurity=False).digest()).decode():
        return error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
    return None


def delete_errors(failing: Callable[[str], str | None]) -> Rule:
    """DeleteObjects answered with a per-key error for each key *failing* names a code for
    (InternalError, SlowDown…): those keys are not sent on to the store, the others are."""

    def rule(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation != "DeleteObjects":
            return None
        tree = ET.fromstring(request.body)
        ns = {"s3": _S3_NS} if tree.tag.startswith("{") else {}
        prefix = "s3:" if ns else ""
        failed: list[tuple[str, str | None, str]] = []
        for obj in list(tree.findall(f"{prefix}Object", ns)):
            key = obj.findtext(f"{prefix}Key", "", ns)
            code = failing(key)
            if code is not None:
                failed.append((key, obj.findtext(f"{prefix}VersionId", None, ns), code))
                tree.remove(obj)
        if not failed:
            return None
        if tree.find(f"{prefix}Object", ns) is not None:
            sent = ET.tostring(tree)
            answer = forward(sent, drop=("content-md5", "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm"))
            result = ET.fromstring(answer.body)
        else:
            result = ET.Element(f"{{{_S3_NS}}}DeleteResult")
        for key, version, code in failed:
            entry = ET.SubElement(result, f"{{{_S3_NS}}}Error")
            ET.SubElement(entry, f"{{{_S3_NS}}}Key").text = key
            if version is not None:
                ET.SubElement(entry, f"{{{_S3_NS}}}VersionId").text = version
            ET.SubElement(entry, f"{{{_S3_NS}}}Code").text = code
            ET.SubElement(entry, f"{{{_S3_NS}}}Message").text = "injected by the test's proxy"
        return Answer(
            200, ET.tostring(result, xml_declaration=True, encoding="UTF-8"), [("Content-Type", "application/xml")]
        )

    return rule


def checks_sha256(request: S3Request, forward: Forward) -> Answer | None:
    """A store that checks ``x-amz-checksum-sha256`` against the body, as AWS does (moto and Ceph
    RGW 16 do not): a mismatch is 400 BadDigest, and nothing is stored."""
    sent = request.headers.get("x-amz-checksum-sha256")
    if sent is None or request.operation not in ("PutObject", "UploadPart"):
        return None
    if sent != base64.b64encode(hashlib.sha256(request.body).digest()).decode():
        return error(400, "BadDigest", "The SHA256 you specified did not match the calculated checksum.")
    return None


def both(*rules: Rule) -> Rule:
    """The first of *rules* that answers a request answers it."""

    def rule(request: S3Request, forward: Forward) -> Answer | None:
        for each in rules:
            answer = each(request, forward)
            if answer is not None:
                return answer
        return None

    return rule
