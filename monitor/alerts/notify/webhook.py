"""Generic JSON webhook: the documented payload, an idempotency key and an HMAC signature.

The signature header is `X-Storywatch-Signature: t=<unix time>,v1=<hex>` where
`v1 = HMAC-SHA256(secret, f"{t}.{body}")`, so receivers can reject both forged
and replayed requests. `shape: alertmanager` sends Alertmanager's webhook v4
body instead, for receivers written for Alertmanager.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from monitor.alerts import render
from monitor.alerts.notify import alertmanager
from monitor.alerts.notify.base import Message, Outcome, deliver_json, dumps
from monitor.config import WebhookNotifier as WebhookConfig


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """The receiver's side of `sign`, in constant time, rejecting stale timestamps."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body)
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, header)


def alertmanager_v4(payload: dict[str, Any], receiver: str,
                    summary: Any) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) holding this one alert."""
    am = alertmanager.alert(payload, summary)
    status = "resolved" if payload["event"] == "resolved" else "firing"
    one = {"status": status, **am, "endsAt": am.get("endsAt", alertmanager.ZERO_TIME),
           "generatorURL": am.get("generatorURL", ""), "fingerprint": payload["fingerprint"]}
    return {
        "version": "4",
        "groupKey": f"{{}}:{{storywatch_fingerprint=\"{payload['fingerprint']}\"}}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"storywatch_fingerprint": payload["fingerprint"]},
        "commonLabels": am["labels"],
        "commonAnnotations": am["annotations"],
        "externalURL": "",
        "alerts": [one],
    }


class WebhookNotifier:
    kind = "webhook"

    def __init__(self, name: str, cfg: WebhookConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.cfg = cfg
        self.client = client
        self.summary = render.compile_template(cfg.template or render.SUMMARY, name)

    def body(self, msg: Message) -> dict[str, Any]:
        if self.cfg.shape == "alertmanager":
            return alertmanager_v4(msg.payload, self.name, self.summary)
        return msg.payload

    def preview(self, msg: Message) -> str:
        return json.dumps(self.body(msg), indent=2, sort_keys=True)

    async def send(self, msg: Message) -> Outcome:
        body = dumps(self.body(msg))
        headers = {**self.cfg.headers, "Idempotency-Key": msg.key}
        if self.cfg.secret:
            headers["X-Storywatch-Signature"] = sign(self.cfg.secret, int(time.time()), body)
        return await deliver_json(self.client, self.cfg.url, body, headers, self.cfg.timeout)
