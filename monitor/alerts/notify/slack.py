"""Slack: incoming webhooks, or a bot token that keeps each alert in one thread.

Bot mode posts the first change of an alert with `chat.postMessage` and
stores the message's channel and `ts`; new sources and repeats are replies
in that thread (`thread_ts`), and resolving edits the parent with
`chat.update`. Slack answers 200 with `ok: false` for most errors, so the
`error` code decides whether to retry; 429 carries `Retry-After`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from monitor.alerts import render
from monitor.alerts.notify.base import (
    DELIVERED,
    Message,
    Outcome,
    Thread,
    classify_response,
    deliver_json,
    dumps,
    post_json,
)
from monitor.config import SlackNotifier as SlackConfig
from monitor.feeds.fetch import parse_retry_after

RETRYABLE_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout"})
"""`ok: false` codes that are Slack's trouble, not ours; every other code is permanent."""

_EMOJI = {"firing": ":rotating_light:", "updated": ":heavy_plus_sign:",
          "resolved": ":white_check_mark:", "digest": ":newspaper:"}


def _fields(payload: dict[str, Any]) -> list[dict[str, str]]:
    story = payload["story"]
    pairs: tuple[tuple[str, Any], ...] = (
        ("Severity", payload["rule"]["severity"]),
        ("Status", payload["status"]),
        ("Sources", story["source_count"]),
        ("First seen", story["first_seen"] or "-"),
    )
    if payload["event"] == "digest":
        digest = payload["digest"]
        pairs = (("Severity", payload["rule"]["severity"]), ("Alerts", digest["items"]),
                 ("From", digest["period_start"]), ("To", digest["period_end"]))
    return [{"type": "mrkdwn", "text": f"*{label}*\n{render.mrkdwn(value)}"}
            for label, value in pairs]


def blocks(payload: dict[str, Any], body: str) -> list[dict[str, Any]]:
    """Block Kit: title header, severity/status/sources/first-seen fields, sources list."""
    title = f"{render.MARKS.get(payload['event'], '')} {payload['rule']['title']}".strip()
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": f"*{render.mrkdwn(payload['story']['title'])}*"},
         "fields": _fields(payload)},
    ]
    if body.strip():
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}})
    out.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"storywatch · {payload['rule']['id']} · "
                                   f"{payload['idempotency_key'][:12]}"}]})
    return out


class SlackNotifier:
    kind = "slack"

    def __init__(self, name: str, cfg: SlackConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.cfg = cfg
        self.client = client
        self.template = render.compile_template(cfg.template or render.SLACK, name)

    def message(self, msg: Message) -> dict[str, Any]:
        p = msg.payload
        text = f"{_EMOJI.get(p['event'], '')} {render.mrkdwn(p['summary'])}".strip()
        return {"text": text, "blocks": blocks(p, render.render(self.template, p))}

    def preview(self, msg: Message) -> str:
        return json.dumps(self.message(msg), indent=2)

    async def send(self, msg: Message) -> Outcome:
        if self.cfg.webhook_url is not None:
            return await deliver_json(self.client, self.cfg.webhook_url,
                                      dumps(self.message(msg)), {"Idempotency-Key": msg.key},
                                      self.cfg.timeout)
        return await self._bot(msg)

    async def _bot(self, msg: Message) -> Outcome:
        content = self.message(msg)
        event = msg.payload["event"]
        if event == "digest":  # each digest is a message of its own, never a thread reply
            assert self.cfg.channel is not None
            return (await self._api("chat.postMessage", {"channel": self.cfg.channel, **content},
                                    msg.key))[0]
        if msg.thread is None:
            assert self.cfg.channel is not None
            outcome, data = await self._api("chat.postMessage", {
                "channel": self.cfg.channel, **content,
                "metadata": {"event_type": "storywatch_alert",
                             "event_payload": {"idempotency_key": msg.key,
                                               "fingerprint": msg.payload["fingerprint"]}},
            }, msg.key)
            if data is None:
                return outcome
            return Outcome(ok=True, thread=Thread(str(data["channel"]), str(data["ts"])))
        parent = {"channel": msg.thread.channel, "ts": msg.thread.ts}
        if event == "resolved":
            return (await self._api("chat.update", {**parent, **content}, msg.key))[0]
        outcome, data = await self._api("chat.postMessage", {
            "channel": msg.thread.channel, "thread_ts": msg.thread.ts, **content}, msg.key)
        if data is not None and event == "firing":
            # A re-opened alert: the parent shows it is firing again.
            return (await self._api("chat.update", {**parent, **content}, msg.key))[0]
        return outcome

    async def _api(self, method: str, body: dict[str, Any],
                   key: str) -> tuple[Outcome, dict[str, Any] | None]:
        """Call a Web API method; the answer's data only when Slack said `ok: true`."""
        assert self.cfg.token is not None
        resp = await post_json(self.client, f"{self.cfg.api_url.rstrip('/')}/{method}",
                               dumps(body), {"Authorization": f"Bearer {self.cfg.token}",
                                             "Idempotency-Key": key}, self.cfg.timeout)
        if isinstance(resp, Outcome):
            return resp, None
        if resp.status_code != 200:
            return classify_response(resp), None
        try:
            data = resp.json()
        except ValueError:
            return Outcome(ok=False, retryable=True,
                           error=f"{method}: answer is not JSON: {resp.text[:100]}"), None
        if not isinstance(data, dict) or not data.get("ok"):
            error = str(data.get("error", "unknown") if isinstance(data, dict) else data)
            return Outcome(ok=False, retryable=error in RETRYABLE_ERRORS,
                           error=f"{method}: {error}",
                           retry_after=parse_retry_after(resp.headers.get("retry-after"))), None
        return DELIVERED, data
