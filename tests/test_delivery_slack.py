"""Slack against a Slack-shaped local server: Block Kit, threads, edits, rate limits, errors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.rules.schema import Rule
from tests.alerting import RULE, Outbox
from tests.servers import Reply, Request, Server

RESOLVING = Rule.model_validate({**RULE.model_dump(), "resolve_after": "10m"})
QUIET = Rule.model_validate({**RULE.model_dump(), "resolve_after": 0})
"""The same rule, resolving at once: the story has been quiet for zero seconds already."""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    b = Outbox(tmp_path)
    yield b
    b.close()


class FakeSlack:
    """`chat.postMessage` and `chat.update` as Slack answers them; `script` overrides."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.script: list[Reply] = []
        self.ts = (f"1700000000.{n:06d}" for n in itertools.count(1))
        server.routes["/api/chat.postMessage"] = self.post
        server.routes["/api/chat.update"] = self.update

    def _scripted(self) -> Reply | None:
        return self.script.pop(0) if self.script else None

    def post(self, req: Request) -> Reply:
        body = req.json()
        return self._scripted() or _ok({"channel": "C0ALERTS", "ts": next(self.ts),
                                        "message": {"text": body["text"]}})

    def update(self, req: Request) -> Reply:
        body = req.json()
        return self._scripted() or _ok({"channel": body["channel"], "ts": body["ts"]})

    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.path.rsplit("/", 1)[1], r.json()) for r in self.server.requests]


def _ok(extra: dict[str, Any]) -> Reply:
    return Reply(200, json.dumps({"ok": True, **extra}).encode(),
                 headers={"Content-Type": "application/json"})


def _error(code: str, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps({"ok": False, "error": code}).encode(), headers=headers)


def bot(server: Server, **extra: Any) -> dict[str, Any]:
    return {"slack": {"type": "slack", "token": "xoxb-test", "channel": "#alerts",
                      "api_url": server.url("/api"), **extra}}


def test_incoming_webhook_block_kit(box: Outbox, receiver: Server) -> None:
    receiver.routes["/services/T/B/X"] = Reply(200, b"ok")
    story = box.story("Quake M>6 hits valley & town", ["Wire A", "Ledger B"])
    box.fire(story, ["slack"])
    box.deliver({"slack": {"type": "slack", "webhook_url": receiver.url("/services/T/B/X")}})
    [req] = receiver.hits("/services/T/B/X")
    body = req.json()
    payload = box.deliveries()[0][1].payload
    assert req.headers["idempotency-key"] == payload["idempotency_key"]
    assert body["text"] == (":rotating_light: Earthquake reported: Quake M&gt;6 hits valley "
                            "&amp; town (2 sources)")
    header, summary, sources, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                 "text": "ALERT Earthquake reported"}}
    assert summary["text"]["text"] == "*Quake M&gt;6 hits valley &amp; town*"
    assert [f["text"] for f in summary["fields"]] == [
        "*Severity*\nhigh", "*Status*\nfiring", "*Sources*\n2",
        f"*First seen*\n{payload['story']['first_seen']}"]
    assert sources["text"]["text"] == (
        f"• <https://wirea.example/{story}|Wire A>: Wire A on Quake M&gt;6 hits valley "
        f"&amp; town\n"
        f"• <https://ledgerb.example/{story}|Ledger B>: Ledger B on Quake M&gt;6 hits valley "
        f"&amp; town")
    assert context["type"] == "context"


def test_bot_threads_replies_and_edits_parent_on_resolve(box: Outbox, server: Server) -> None:
    slack = FakeSlack(server)
    story = box.story("Quake", ["A", "B"])
    box.fire(story, ["slack"], rule=RESOLVING)
    box.fire(story, ["slack"], rule=RESOLVING, add_source="C")  # queued before the first is sent
    box.deliver(bot(server))
    box.fire(story, ["slack"], rule=RESOLVING, add_source="D")
    assert box.resolve(["slack"], RESOLVING) == []
    [fp] = box.resolve(["slack"], QUIET)
    box.deliver(bot(server))

    calls = slack.calls()
    assert [(m, b.get("thread_ts"), b.get("ts")) for m, b in calls] == [
        ("chat.postMessage", None, None),
        ("chat.postMessage", "1700000000.000001", None),
        ("chat.postMessage", "1700000000.000001", None),
        ("chat.update", None, "1700000000.000001"),
    ]
    parent, update1, update2, resolved = (b for _, b in calls)
    assert parent["channel"] == "#alerts"
    assert parent["metadata"]["event_payload"]["fingerprint"] == fp
    assert update1["channel"] == update2["channel"] == resolved["channel"] == "C0ALERTS"
    assert "New source: C" in update1["blocks"][2]["text"]["text"]
    assert "New source: D" in update2["blocks"][2]["text"]["text"]
    assert resolved["blocks"][0]["text"]["text"] == "RESOLVED Earthquake reported"
    assert resolved["text"].startswith(":white_check_mark:")
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert len(set(keys)) == 4
    assert server.requests[0].headers["authorization"] == "Bearer xoxb-test"
    with box.sessions() as session:
        from monitor.db.models import AlertThread

        [thread] = session.query(AlertThread).all()
        assert (thread.notifier, thread.channel, thread.ts) == (
            "slack", "C0ALERTS", "1700000000.000001")


def test_bot_reopened_alert_replies_and_updates_parent(box: Outbox, server: Server) -> None:
    slack = FakeSlack(server)
    story = box.story("Quake", ["A", "B"])
    box.fire(story, ["slack"], rule=RESOLVING)
    box.resolve(["slack"], QUIET)
    assert box.fire(story, ["slack"], rule=RESOLVING, add_source="C") == "firing"
    box.deliver(bot(server))
    assert [(m, b.get("thread_ts") or b.get("ts")) for m, b in slack.calls()] == [
        ("chat.postMessage", None),
        ("chat.update", "1700000000.000001"),
        ("chat.postMessage", "1700000000.000001"),
        ("chat.update", "1700000000.000001"),
    ]
    assert [a.seq for a in box.alerts()] == [3]


def test_rate_limit_and_retryable_errors_then_success(box: Outbox, server: Server) -> None:
    slack = FakeSlack(server)
    slack.script = [_error("ratelimited", 429, **{"Retry-After": "0"}),
                    _error("internal_error"), Reply(502, b"<html>bad gateway</html>")]
    box.fire(box.story("Quake", ["A", "B"]), ["slack"])
    box.deliver(bot(server))
    [(row, _)] = box.deliveries()
    assert (row.status, row.attempts) == ("delivered", 4)
    assert len({r.headers["idempotency-key"] for r in server.requests}) == 1


def test_permanent_slack_error_dead_letters(box: Outbox, server: Server) -> None:
    slack = FakeSlack(server)
    slack.script = [_error("channel_not_found")]
    box.fire(box.story("Quake", ["A", "B"]), ["slack"])
    box.deliver(bot(server))
    [(row, _)] = box.deliveries()
    assert (row.status, row.attempts, row.last_error) == (
        "dead", 1, "chat.postMessage: channel_not_found")


def test_bad_template_is_a_permanent_failure_with_a_clear_error(box: Outbox,
                                                                server: Server) -> None:
    FakeSlack(server)
    box.fire(box.story("Quake", ["A", "B"]), ["slack"])
    box.deliver(bot(server, template="{{ stroy.title }}"))
    [(row, _)] = box.deliveries()
    assert row.status == "dead" and row.last_error == "template: 'stroy' is undefined"
    assert server.requests == []
