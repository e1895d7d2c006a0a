"""Fetch one feed over HTTP: conditional GET, redirects hop by hop, hard limits.

Returns plain data (`FetchResult`) for every outcome; nothing here raises for
a bad server, because one feed's failure must never stop the others.
Redirects are followed here rather than by httpx so that every hop passes
the SSRF guard and the caller learns whether every hop was permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from monitor.feeds.decode import ACCEPT_ENCODING, DecodeError, decoder_for
from monitor.feeds.guard import AddressGuard, AddressRefused

OK = "ok"
NOT_MODIFIED = "not_modified"
REDIRECT = "redirect"
GONE = "gone"
RATE_LIMITED = "rate_limited"
BLOCKED = "blocked"
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
TIMEOUT = "timeout"
NETWORK_ERROR = "network_error"
TOO_LARGE = "too_large"
PARSE_ERROR = "parse_error"

OUTCOMES = (OK, NOT_MODIFIED, REDIRECT, GONE, RATE_LIMITED, BLOCKED, HTTP_4XX, HTTP_5XX,
            TIMEOUT, NETWORK_ERROR, TOO_LARGE, PARSE_ERROR)
"""Every fetch outcome; a bounded label set for metrics. `redirect` means a redirect
that could not be followed (loop, too many hops, bad Location)."""

PERMANENT = frozenset({301, 308})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
DRAIN_BYTES = 64 * 1024
"""Most bytes read from an answer whose body we do not use (304, redirects, errors)."""
DRAIN_SECONDS = 1.0
"""Longest wait for such a body: a slow error page must not turn an answer into a timeout."""


@dataclass(frozen=True)
class FetchRequest:
    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    """Decompressed body cap."""
    max_compressed_bytes: int
    """Cap on bytes read from the network."""
    deadline: float
    """Seconds for the whole fetch, every hop and the body included (slow-loris guard)."""
    max_redirects: int = 5


@dataclass(frozen=True)
class FetchResult:
    outcome: str
    status: int | None = None
    body: bytes | None = None
    body_hash: str | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    permanent_redirect: bool = False
    """True when at least one redirect was followed and every hop was 301/308."""
    retry_after: float | None = None
    """Seconds the server asked us to wait (429/503 `Retry-After`)."""
    fresh_for: float | None = None
    """Seconds the answer stays fresh by `Cache-Control: max-age` or `Expires`."""
    error: str | None = None
    duration: float = 0.0
    downloaded: int = 0

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
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def freshness(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """How long the server says this answer stays fresh (`max-age` wins over `Expires`)."""
    match = _MAX_AGE.search(headers.get("cache-control", ""))
    if match:
        return float(match.group(1))
    expires = headers.get("expires")
    if not expires:
        return None
    try:
        when = email.utils.parsedate_to_datetime(expires)
        date = email.utils.parsedate_to_datetime(headers["date"]) if "date" in headers else None
    except (TypeError, ValueError, IndexError):
        return None
    base = date or now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if base.tzinfo is None:
        base = base.replace(tzinfo=UTC)
    return max(0.0, (when - base).total_seconds())


def classify(status: int, headers: httpx.Headers) -> str:
    if status == 410:
        return GONE
    if status == 429 or (status == 503 and headers.get("retry-after")):
        return RATE_LIMITED
    if status == 403 and headers.get("cf-mitigated", "").lower() == "challenge":
        return BLOCKED
    if status >= 500:
        return HTTP_5XX
    return HTTP_4XX


class _Stop(Exception):
    def __init__(self, outcome: str, error: str) -> None:
        super().__init__(error)
        self.outcome = outcome


async def fetch(client: httpx.AsyncClient, req: FetchRequest, limits: Limits,
                guard: AddressGuard) -> FetchResult:
    """GET `req.url`; never raises for network or server misbehaviour."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limits.deadline):
            result = await _follow(client, req, limits, guard)
    except _Stop as stop:
        result = FetchResult(stop.outcome, error=str(stop))
    except TimeoutError:
        result = FetchResult(TIMEOUT, error=f"no complete answer within {limits.deadline:g}s")
    except httpx.TimeoutException as exc:
        result = FetchResult(TIMEOUT, error=f"timeout: {type(exc).__name__}")
    except AddressRefused as exc:
        result = FetchResult(NETWORK_ERROR, error=str(exc))
    except (httpx.HTTPError, OSError, ValueError) as exc:
        result = FetchResult(NETWORK_ERROR, error=f"{type(exc).__name__}: {exc}"[:500])
    return replace(result, duration=time.monotonic() - started)


async def _follow(client: httpx.AsyncClient, req: FetchRequest, limits: Limits,
                  guard: AddressGuard) -> FetchResult:
    url = httpx.URL(req.url)
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    if req.etag:
        headers["If-None-Match"] = req.etag
    if req.last_modified:
        headers["If-Modified-Since"] = req.last_modified
    seen = {str(url)}
    permanent = True
    for _hop in range(limits.max_redirects + 1):
        if url.scheme not in ("http", "https") or not url.host:
            raise _Stop(REDIRECT if len(seen) > 1 else NETWORK_ERROR,
                        f"not an http(s) URL: {str(url)[:200]}")
        await guard.check(url.host, url.port or (443 if url.scheme == "https" else 80))
        async with client.stream("GET", url, headers=headers, follow_redirects=False) as resp:
            if resp.status_code in REDIRECTS and resp.headers.get("location"):
                permanent = permanent and resp.status_code in PERMANENT
                url = url.join(resp.headers["location"])
                if str(url) in seen:
                    raise _Stop(REDIRECT, f"redirect loop at {str(url)[:200]}")
                seen.add(str(url))
                await _drain(resp)
                continue
            return await _answer(resp, limits, permanent and len(seen) > 1)
    raise _Stop(REDIRECT, f"more than {limits.max_redirects} redirects")


async def _answer(resp: httpx.Response, limits: Limits, permanent: bool) -> FetchResult:
    common: dict[str, Any] = {
        "status": resp.status_code,
        "final_url": str(resp.url),
        "permanent_redirect": permanent,
        "etag": resp.headers.get("etag"),
        "last_modified": resp.headers.get("last-modified"),
        "content_type": resp.headers.get("content-type"),
        "fresh_for": freshness(resp.headers),
    }
    if resp.status_code >= 300:
        await _drain(resp)
    if resp.status_code == 304:
        return FetchResult(NOT_MODIFIED, **common)
    if resp.status_code >= 300:
        return FetchResult(
            classify(resp.status_code, resp.headers),
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
            error=f"HTTP {resp.status_code} {resp.reason_phrase}",
            **common)
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_compressed_bytes:
        return FetchResult(TOO_LARGE, error=f"Content-Length {declared} > "
                           f"{limits.max_compressed_bytes}", **common)
    try:
        body, downloaded = await _read(resp, limits)
    except DecodeError as exc:
        return FetchResult(NETWORK_ERROR, error=str(exc), **common)
    except _Stop as stop:
        return FetchResult(stop.outcome, error=str(stop), **common)
    return FetchResult(OK, body=body, body_hash=hashlib.sha256(body).hexdigest(),
                       downloaded=downloaded, **common)


async def _drain(resp: httpx.Response) -> None:
    """Read a small unused body to its end, so the connection goes back to the pool.

    httpcore keeps a connection only when the answer was read completely; a 304
    left unread costs the site a new TCP (and TLS) handshake on the next poll.
    A body larger than DRAIN_BYTES, or slower than DRAIN_SECONDS, is abandoned and
    its connection closed; the answer's status stands either way.
    """
    read = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError, OSError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for raw in resp.aiter_raw():
                read += len(raw)
                if read > DRAIN_BYTES:
                    return


async def _read(resp: httpx.Response, limits: Limits) -> tuple[bytes, int]:
    """Stream the body, bounding both the bytes on the wire and the bytes decoded."""
    decoder = decoder_for(resp.headers.get("content-encoding"))
    chunks: list[bytes] = []
    size = wire = 0

    def take(piece: bytes) -> None:
        nonlocal size
        size += len(piece)
        if size > limits.max_bytes:
            raise _Stop(TOO_LARGE, f"decoded body exceeds {limits.max_bytes} bytes")
        chunks.append(piece)

    async for raw in resp.aiter_raw():
        wire += len(raw)
        if wire > limits.max_compressed_bytes:
            raise _Stop(TOO_LARGE, f"body exceeds {limits.max_compressed_bytes} bytes")
        for piece in decoder.feed(raw):
            take(piece)
    for piece in decoder.finish():
        take(piece)
    return b"".join(chunks), wire
