"""The async client of the ccall.vn REST API: the only code that knows its wire format.

Every call is ``POST {base}/…/json`` with ``{"submission": {api_key, api_secret, …}}``; the
answer is JSON with a ``response`` key. See ``shared/ccall-api.md`` for what the vendor's page
gets wrong. Failures are classified once, here:

- 401/403, or an error body that names the credentials: :class:`AuthenticationError`;
- another 4xx: :class:`ApiRejected`;
- 5xx, 429 (``Retry-After`` honoured), timeouts, connection errors, a body that is not JSON,
  JSON without ``response``: :class:`ApiUnavailable`, retried with backoff, then raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from archiver.errors import ApiRejected, ApiUnavailable, AuthenticationError, redact
from archiver.retry import RetryPolicy, retry_after_seconds
from archiver.source.http import Answer, HttpClient, HttpUnanswered

log = structlog.get_logger("archiver.source.ccall")

_AUTH_WORDS = re.compile(
    r"api[_ ]?key|api[_ ]?secret|auth|credential|unauthori[sz]ed|forbidden|permission|denied", re.I
)
MAX_REREADS = 3


@dataclass(frozen=True)
class Registration:
    """One device registered to an extension (``ext_reg``)."""

    user: str
    agent: str | None
    network_ip: str | None
    status: str | None

    @property
    def extension(self) -> str:
        return self.user.split("@", 1)[0]


class CcallClient:
    """Reads CDRs and registrations from one ccall account.

    *http* is an :class:`~archiver.source.http.HttpClient` the caller owns (a seam for tests and for
    connection limits). The credentials never appear in a log line or an exception.
    """

    def __init__(
        self,
        http: HttpClient,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        domain_name: str | None = None,
        page_size: int = 100,
        retry: RetryPolicy | None = None,
        max_pages: int = 10_000,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._credentials = {"api_key": api_key, "api_secret": api_secret}
        if domain_name:
            self._credentials["domain_name"] = domain_name
        self._secrets = (api_key, api_secret)
        self._page_size = page_size
        self._retry = retry or RetryPolicy()
        self._max_pages = max_pages

    async def cdr_rows(self, query_from: str, query_to: str) -> AsyncIterator[Any]:
        """Yield every raw row of the window ``date_range {from, to}``, page by page.

        Paging stops at the first of: a page without rows, a page that repeats the previous one
        (a server that ignores ``page``), ``page_count``, ``next_page`` false, or ``max_pages``.
        Paging values are read as JSON numbers and booleans or as their strings. Rows shift
        between pages while calls arrive (newest first), so when ``record_count`` changes during
        the read the window is read again (rows already yielded are yielded again; the caller
        de-duplicates by call id).
        """
        for reread in range(MAX_REREADS):
            first_count: int | None = None
            count: int | None = None
            seen = 0
            page = 1
            previous: list[Any] | None = None
            while True:
                value = await self._post(
                    "/cdrs/json",
                    {"date_range": {"from": query_from, "to": query_to}, "page": page, "limit": self._page_size},
                )
                rows, paging = _split_page(value)
                log.debug("cdr_page.fetched", window_from=query_from, window_to=query_to, page=page, rows=len(rows))
                last_count, count = count, _number(paging.get("record_count")) if paging else None
                if previous is not None and rows == previous and count == last_count:
                    # The same page again, and no call came or went: the server ignores ``page``.
                    log.info("cdr_page.repeated", window_from=query_from, window_to=query_to, page=page)
                    break
                for row in rows:
                    yield row
                seen += len(rows)
                if paging is None:
                    return  # the list shape: the whole window at once
                if first_count is None:
                    first_count = count
                page_count = _number(paging.get("page_count"))
                more = _flag(paging.get("next_page"))
                if not rows or more is False or (page_count is not None and page >= page_count):
                    break
                if page >= self._max_pages:
                    log.warning("cdr_window.too_many_pages", window_from=query_from, pages=page)
                    break
                previous = rows
                page += 1
            if count == first_count and (count is None or seen >= count):
                return
            log.info(
                "cdr_window.shifted",
                window_from=query_from,
                window_to=query_to,
                first_count=first_count,
                last_count=count,
                seen=seen,
                reread=reread + 1,
            )
        log.warning("cdr_window.unstable", window_from=query_from, window_to=query_to, rereads=MAX_REREADS)

    async def cdrs_by_call_id(self, call_id: str) -> list[Any]:
        """The rows the API returns for one call id (the SIP Call-ID of the dialog)."""
        value = await self._post("/cdrs/json", {"call_id": call_id})
        rows, _ = _split_page(value)
        return rows

    async def registrations(self) -> list[Registration]:
        """The extensions registered now (``ext_reg``). Also the cheapest credential check."""
        value = await self._post("/ext_reg/json", {})
        regs = value.get("registrations") if isinstance(value, dict) else None
        if not isinstance(regs, list):
            raise ApiUnavailable(f"ext_reg answered without a registrations list: {self._excerpt(json.dumps(value))}")
        out = []
        for item in regs:
            if isinstance(item, dict) and isinstance(item.get("user"), str):
                out.append(
                    Registration(
                        user=item["user"],
                        agent=_str_or_none(item.get("agent")),
                        network_ip=_str_or_none(item.get("network-ip")),
                        status=_str_or_none(item.get("status")),
                    )
                )
        return out

    async def _post(self, path: str, params: dict[str, Any]) -> Any:
        async for attempt in self._retry.context():
            with attempt:
                return await self._post_once(path, params)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_once(self, path: str, params: dict[str, Any]) -> Any:
        url = self._base_url + path
        body = {"submission": {**self._credentials, **params}}
        try:
            response = await self._http.request("POST", url, json_body=body)
        except HttpUnanswered as exc:
            if exc.timed_out:
                raise ApiUnavailable(f"POST {url} timed out ({exc.name})") from None
            raise ApiUnavailable(f"POST {url} failed: {self._excerpt(str(exc)) or exc.name}") from None
        status = response.status
        if status in (401, 403):
            raise AuthenticationError(
                f"the ccall API at {self._base_url} rejected the credentials (HTTP {status}); "
                "check source.api_key and source.api_secret"
            )
        if status == 429 or status >= 500:
            raise ApiUnavailable(
                f"POST {url} answered HTTP {status}",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise ApiRejected(
                f"POST {url} answered HTTP {status}: {self._excerpt(response.text)}; is source.base_url right?"
            )
        value = self._decode(url, response)
        if not isinstance(value, dict) or "response" not in value:
            shown = self._excerpt(json.dumps(value, ensure_ascii=False))
            if _says_unauthorised(value) or (isinstance(value, dict) and _AUTH_WORDS.search(json.dumps(value))):
                raise AuthenticationError(
                    f"the ccall API at {self._base_url} refused the request: {shown}; "
                    "check source.api_key and source.api_secret"
                )
            raise ApiUnavailable(f"POST {url} answered JSON without a 'response' key: {shown}")
        return value["response"]

    def _decode(self, url: str, response: Answer) -> Any:
        raw = response.body
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Keep every row: the undecodable bytes become U+FFFD, and the rows say so.
            log.warning("cdr_page.invalid_utf8", url=url)
            text = raw.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            kind = response.headers.get("content-type", "no content type")
            raise ApiUnavailable(
                f"POST {url} answered HTTP {response.status} with a body that is not JSON "
                f"({kind}): {self._excerpt(text)}"
            ) from None

    def _excerpt(self, text: str, limit: int = 160) -> str:
        flat = " ".join(redact(text, self._secrets).split())
        return flat if len(flat) <= limit else flat[:limit] + "…"


def _says_unauthorised(value: Any) -> bool:
    """Whether an error body says 401/403 in a status or code field, whatever language its message is in
    (``{"status": 401}``, ``{"code": "403"}``, ``{"error": {"code": 401, "message": "Sai khóa API"}}``)."""
    if not isinstance(value, dict):
        return False
    for key in ("status", "status_code", "statusCode", "code", "error_code", "errorCode"):
        if str(value.get(key)).strip() in ("401", "403"):
            return True
    return _says_unauthorised(value.get("error"))


def _split_page(value: Any) -> tuple[list[Any], dict[str, Any] | None]:
    """``(rows, paging)`` of a ``response``: a list, ``{paging, rows}``, or an empty answer.

    An empty window comes back as ``null``, ``false``, ``""``, ``[]``, ``{}`` or ``{paging,
    rows: null}``, depending on the server; each is no rows. Anything else is not understood.
    """
    if value is None or value is False or value in ("", {}):
        return [], None
    if isinstance(value, list):
        return value, None
    if isinstance(value, dict) and ("rows" in value or "paging" in value):
        rows = value.get("rows")
        paging = value.get("paging")
        if rows is None or rows is False or rows == {}:
            rows = []
        if isinstance(rows, list):
            return rows, paging if isinstance(paging, dict) else {}
    raise ApiUnavailable(f"the CDR response is neither a list nor {{paging, rows}}: {str(value)[:160]}")


def _number(value: Any) -> int | None:
    """A paging number sent as a JSON number or as a string ("17"); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _flag(value: Any) -> bool | None:
    """A paging boolean sent as JSON, as a string ("true", "0") or a number; None when absent."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", ""):
        return False
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
