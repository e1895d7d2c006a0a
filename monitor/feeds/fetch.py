"""Fetch one feed over HTTP: conditional GET, a hard body cap, a total deadline.

Returns plain data (`FetchResult`) for every outcome; nothing here raises for
a bad server, because one feed's failure must never stop the others.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

OK = "ok"
NOT_MODIFIED = "not_modified"
GONE = "gone"
RATE_LIMITED = "rate_limited"
BLOCKED = "blocked"
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
TIMEOUT = "timeout"
NETWORK_ERROR = "network_error"
TOO_LARGE = "too_large"
PARSE_ERROR = "parse_error"

OUTCOMES = (OK, NOT_MODIFIED, GONE, RATE_LIMITED, BLOCKED, HTTP_4XX, HTTP_5XX, TIMEOUT,
            NETWORK_ERROR, TOO_LARGE, PARSE_ERROR)
"""Every fetch outcome; a bounded label set for metrics."""


@dataclass(frozen=True)
class FetchRequest:
    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResult:
    outcome: str
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    retry_after: float | None = None
    """Seconds the server asked us to wait (429/503 `Retry-After`)."""
    error: str | None = None
    duration: float = 0.0

    @property
    def failed(self) -> bool:
        return self.outcome not in (OK, NOT_MODIFIED)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _classify(status: int, headers: httpx.Headers) -> str:
    if status == 410:
        return GONE
    if status in (429, 503) and headers.get("retry-after"):
        return RATE_LIMITED
    if status == 429:
        return RATE_LIMITED
    if status == 403 and headers.get("cf-mitigated", "").lower() == "challenge":
        return BLOCKED
    if status >= 500:
        return HTTP_5XX
    return HTTP_4XX


async def fetch(client: httpx.AsyncClient, req: FetchRequest, *, max_bytes: int,
                deadline: float) -> FetchResult:
    """GET `req.url`; never raises for network or server misbehaviour."""
    started = time.monotonic()
    headers = {}
    if req.etag:
        headers["If-None-Match"] = req.etag
    if req.last_modified:
        headers["If-Modified-Since"] = req.last_modified
    try:
        async with asyncio.timeout(deadline):
            return await _fetch(client, req.url, headers, max_bytes, started)
    except TimeoutError:
        return FetchResult(TIMEOUT, error=f"no complete answer within {deadline:g}s",
                           duration=time.monotonic() - started)
    except httpx.TimeoutException as exc:
        return FetchResult(TIMEOUT, error=f"timeout: {type(exc).__name__}",
                           duration=time.monotonic() - started)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return FetchResult(NETWORK_ERROR, error=f"{type(exc).__name__}: {exc}"[:500],
                           duration=time.monotonic() - started)


async def _fetch(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                 max_bytes: int, started: float) -> FetchResult:
    async with client.stream("GET", url, headers=headers) as resp:
        common = {
            "status": resp.status_code,
            "final_url": str(resp.url),
            "etag": resp.headers.get("etag"),
            "last_modified": resp.headers.get("last-modified"),
            "content_type": resp.headers.get("content-type"),
        }
        if resp.status_code == 304:
            return FetchResult(NOT_MODIFIED, duration=time.monotonic() - started, **common)
        if resp.status_code >= 400:
            return FetchResult(
                _classify(resp.status_code, resp.headers),
                retry_after=parse_retry_after(resp.headers.get("retry-after")),
                error=f"HTTP {resp.status_code} {resp.reason_phrase}",
                duration=time.monotonic() - started, **common)
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            return FetchResult(TOO_LARGE, error=f"Content-Length {declared} > {max_bytes}",
                               duration=time.monotonic() - started, **common)
        chunks: list[bytes] = []
        size = 0
        # aiter_bytes decompresses; the cap applies to what we would have to hold.
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                return FetchResult(TOO_LARGE, error=f"body exceeds {max_bytes} bytes",
                                   duration=time.monotonic() - started, **common)
            chunks.append(chunk)
        return FetchResult(OK, body=b"".join(chunks), duration=time.monotonic() - started,
                           **common)
