"""The notifier interface and how HTTP answers are classified for retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from monitor.feeds.fetch import parse_retry_after


@dataclass(frozen=True)
class Outcome:
    """Result of one delivery attempt."""

    ok: bool
    retryable: bool = False
    error: str | None = None
    retry_after: float | None = None


DELIVERED = Outcome(ok=True)


class Notifier(Protocol):
    name: str
    kind: str

    async def send(self, payload: dict[str, Any], idempotency_key: str) -> Outcome:
        """Deliver one alert change; never raises for a failing receiver."""
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
