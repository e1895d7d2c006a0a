"""Generic JSON webhook: the documented payload, an idempotency key and an HMAC signature.

The signature header is `X-Storywatch-Signature: t=<unix time>,v1=<hex>` where
`v1 = HMAC-SHA256(secret, f"{t}.{body}")`, so receivers can reject both forged
and replayed requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from monitor.alerts.notify.base import Outcome, classify_exception, classify_response
from monitor.config import WebhookNotifier as WebhookConfig


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class WebhookNotifier:
    kind = "webhook"

    def __init__(self, name: str, cfg: WebhookConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.cfg = cfg
        self.client = client

    async def send(self, payload: dict[str, Any], idempotency_key: str) -> Outcome:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {**self.cfg.headers, "Content-Type": "application/json",
                   "Idempotency-Key": idempotency_key}
        if self.cfg.secret:
            headers["X-Storywatch-Signature"] = sign(self.cfg.secret, int(time.time()), body)
        try:
            resp = await self.client.post(self.cfg.url, content=body, headers=headers,
                                          timeout=self.cfg.timeout)
        except Exception as exc:
            return classify_exception(exc)
        return classify_response(resp)
