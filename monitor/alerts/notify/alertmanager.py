"""Alertmanager: alerts pushed to `/api/v2/alerts`, so users route through their own setup.

Alertmanager forgets an alert that is not re-sent within its `resolve_timeout`,
so firing alerts are re-posted every `resend_interval` (see `resend`); a
resolved alert is sent once more with `endsAt`. The same alert object also
makes the webhook's Alertmanager-v4-compatible shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import httpx
from jinja2 import Template

from monitor.alerts import render
from monitor.alerts.notify.base import DELIVERED, Message, Outcome, deliver_json, dumps
from monitor.config import AlertmanagerNotifier as AlertmanagerConfig

_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")
RESEND_CHUNK = 500
ZERO_TIME = "0001-01-01T00:00:00Z"
"""What Alertmanager's own webhook sends as `endsAt` for a firing alert."""


def _label_name(key: str) -> str:
    name = _LABEL_NAME.sub("_", key)
    return name if name and not name[0].isdigit() else f"_{name}"


def alert_labels(payload: dict[str, Any]) -> dict[str, str]:
    """`alertname` is the rule id; the fingerprint label keeps stories apart, and a
    digest's `storywatch_digest` (its period) makes each digest an alert of its own."""
    out = {_label_name(k): str(v) for k, v in payload["labels"].items()}
    out.update(alertname=payload["rule"]["id"], storywatch_fingerprint=payload["fingerprint"])
    if payload["event"] == "digest":
        digest = payload["digest"]
        out["storywatch_digest"] = f"{digest['period_start']}#{digest['part']}"
    return out


def alert_annotations(payload: dict[str, Any], summary: Template) -> dict[str, str]:
    story = payload["story"]
    out = {
        "summary": render.render(summary, payload),
        "story_title": story["title"],
        "sources": ", ".join(s["name"] for s in payload["sources"]),
        "first_seen": story["first_seen"] or "",
        "idempotency_key": payload["idempotency_key"],
    }
    if payload["rule"]["description"]:
        out["description"] = payload["rule"]["description"]
    if payload["event"] == "digest":
        out["items"] = str(payload["digest"]["items"])
        out["stories"] = "\n".join(
            f"{item['story']['title']} ({', '.join(item['sources'])})"
            for item in payload["items"])
    return out


def alert(payload: dict[str, Any], summary: Template) -> dict[str, Any]:
    """One alert as `POST /api/v2/alerts` takes it (`endsAt` only once resolved)."""
    body: dict[str, Any] = {
        "labels": alert_labels(payload),
        "annotations": alert_annotations(payload, summary),
        "startsAt": payload["first_fired"],
    }
    urls = [s["url"] for s in payload["sources"] if s.get("url")]
    if urls:
        body["generatorURL"] = urls[0]
    if payload["event"] == "resolved":
        body["endsAt"] = payload["changed_at"]
    return body


class AlertmanagerNotifier:
    kind = "alertmanager"

    def __init__(self, name: str, cfg: AlertmanagerConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.cfg = cfg
        self.client = client
        self.endpoint = cfg.url.rstrip("/") + "/api/v2/alerts"
        self.summary = render.compile_template(cfg.template or render.SUMMARY, name)
        self.resend_interval = cfg.resend_interval

    def preview(self, msg: Message) -> str:
        return json.dumps([alert(msg.payload, self.summary)], indent=2)

    async def send(self, msg: Message) -> Outcome:
        return await self._post([alert(msg.payload, self.summary)], msg.key)

    async def resend(self, payloads: Sequence[dict[str, Any]]) -> Outcome:
        """Re-post still-firing alerts, a few hundred per request, so Alertmanager keeps them."""
        outcome = DELIVERED
        for start in range(0, len(payloads), RESEND_CHUNK):
            chunk = payloads[start:start + RESEND_CHUNK]
            sent = await self._post([alert(p, self.summary) for p in chunk], None)
            outcome = outcome if sent.ok else sent
        return outcome

    async def _post(self, alerts: list[dict[str, Any]], key: str | None) -> Outcome:
        headers = dict(self.cfg.headers)
        if key:
            headers["Idempotency-Key"] = key
        return await deliver_json(self.client, self.endpoint, dumps(alerts), headers,
                                  self.cfg.timeout)
