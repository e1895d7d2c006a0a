"""The notifier interface and how HTTP answers are classified for retry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from monitor.feeds.fetch import parse_retry_after


@dataclass(frozen=True)
class Thread:
    """Where a notifier posted an alert, so later changes can reply to it or edit it."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Message:
    """One alert change to deliver: its frozen payload, its idempotency key, its thread."""

    payload: dict[str, Any]
    key: str
    thread: Thread | None = None


@dataclass(frozen=True)
class Outcome:
    """Result of one delivery attempt."""

    ok: bool
    retryable: bool = False
    error: str | None = None
    retry_after: float | None = None
    thread: Thread | None = None
    """A thread the notifier opened, to be stored with the alert."""


DELIVERED = Outcome(ok=True)


class Notifier(Protocol):
    name: str
    kind: str

    async def send(self, msg: Message) -> Outcome:
        """Deliver one alert change; never raises for a failing receiver."""
        ...

    def preview(self, msg: Message) -> str:
        """What `send` would transmit, for `storywatch alerts preview`."""
        ...


def classify_response(resp: httpx.Response) -> Outcome:
    """2xx delivered; 408, 425, 429 and 5xx worth retrying; other 4xx permanent."""
    if 200 <= resp.status_code < 300:
        return DELIVERED
    retryable = resp.status_code in (408, 425, 429) or resp.status_code >= 500
    return Outcome(ok=False, retryable=retryable,
                   error=f"HTTP {resp.status_code}: {resp.text[:200]}",
                   retry_after=parse_retry_after(resp.headers.get("retry-after")))


def classify_exception(exc: Exception) -> Outcome:
    """Timeouts and connection errors are transient; anything else is a bug to surface."""
    return Outcome(ok=False, retryable=isinstance(exc, httpx.TransportError | OSError),
                   error=f"{type(exc).__name__}: {exc}"[:300])


async def post_json(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str],
                    timeout: float) -> Outcome | httpx.Response:
    """POST a JSON body; a transport failure comes back as an Outcome, an answer as-is."""
    try:
        return await client.post(url, content=body,
                                 headers={**headers, "Content-Type": "application/json"},
                                 timeout=timeout)
    except Exception as exc:
        return classify_exception(exc)


async def deliver_json(client: httpx.AsyncClient, url: str, body: bytes,
                       headers: dict[str, str], timeout: float) -> Outcome:
    """POST a JSON body and classify whatever happens."""
    resp = await post_json(client, url, body, headers, timeout)
    return resp if isinstance(resp, Outcome) else classify_response(resp)


def dumps(body: Any) -> bytes:
    """Compact, key-sorted JSON: the same payload always gives the same bytes."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
