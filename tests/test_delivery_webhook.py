"""Webhook delivery against a real local receiver: payloads, signatures, retries, dead letters."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.alerts.notify.webhook import verify
from monitor.alerts.outbox import DEAD_LETTER_RULE, idempotency_key
from monitor.cli import main
from tests.alerting import Outbox
from tests.servers import Reply, Request, Server


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    b = Outbox(tmp_path)
    yield b
    b.close()


def fail_times(n: int, reply: Reply) -> object:
    """A responder that answers `reply` n times, then 200."""
    left = [n]

    def respond(req: Request) -> Reply:
        if left[0] > 0:
            left[0] -= 1
            return reply
        return Reply(200, b"ok")
    return respond


def test_payload_headers_and_signature(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = Reply(200, b"ok")
    story = box.story("Quake hits valley", ["Wire A", "Ledger B"])
    assert box.fire(story, ["hook"]) == "firing"
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook"), "secret": "s3cret",
                          "headers": {"X-Team": "desk"}}})
    [req] = receiver.hits("/hook")
    body = req.json()
    alert = box.alerts()[0]
    key = idempotency_key(alert.fingerprint, "firing", 1)
    assert req.headers["idempotency-key"] == body["idempotency_key"] == key
    assert key == hashlib.sha256(f"{alert.fingerprint}:firing:1".encode()).hexdigest()[:40]
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-team"] == "desk"
    assert verify("s3cret", req.headers["x-storywatch-signature"], req.body, time.time())
    assert not verify("wrong", req.headers["x-storywatch-signature"], req.body, time.time())
    assert not verify("s3cret", req.headers["x-storywatch-signature"], req.body + b" ",
                      time.time())
    stamp = int(req.headers["x-storywatch-signature"].split(",")[0][2:])
    assert not verify("s3cret", req.headers["x-storywatch-signature"], req.body, stamp + 301)
    assert body == {
        "version": 1, "idempotency_key": key, "fingerprint": alert.fingerprint,
        "event": "firing", "status": "firing", "seq": 1,
        "rule": {"id": "quake", "title": "Earthquake reported", "severity": "high",
                 "description": "A strong earthquake."},
        "labels": {"rule_id": "quake", "severity": "high", "team": "desk"},
        "story": body["story"] | {"id": story, "title": "Quake hits valley",
                                  "source_count": 2, "entry_count": 2},
        "sources": [
            {"name": "Wire A", "title": "Wire A on Quake hits valley",
             "url": f"https://wirea.example/{story}", "published": body["sources"][0]["published"]},
            {"name": "Ledger B", "title": "Ledger B on Quake hits valley",
             "url": f"https://ledgerb.example/{story}",
             "published": body["sources"][1]["published"]}],
        "summary": "Earthquake reported: Quake hits valley (2 sources)",
        "first_fired": body["first_fired"], "changed_at": body["changed_at"],
        "new_sources": [],
    }
    assert set(body["story"]) == {"id", "title", "first_seen", "last_seen", "source_count",
                                  "entry_count"}


def test_updated_carries_new_sources_and_next_key(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = Reply(200)
    story = box.story("Quake", ["A", "B"])
    box.fire(story, ["hook"])
    assert box.fire(story, ["hook"]) is None, "no new source, no change"
    assert box.fire(story, ["hook"], add_source="C") == "updated"
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook")}})
    first, second = (r.json() for r in receiver.hits("/hook"))
    assert (first["event"], first["seq"], second["event"], second["seq"]) == (
        "firing", 1, "updated", 2)
    assert second["new_sources"] == ["C"] and first["fingerprint"] == second["fingerprint"]
    assert first["idempotency_key"] != second["idempotency_key"]


def test_5xx_then_success_resends_identical_body_and_key(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = fail_times(3, Reply(503, b"busy"))  # type: ignore[assignment]
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook")}})
    hits = receiver.hits("/hook")
    assert len(hits) == 4
    assert len({r.body for r in hits}) == 1
    assert len({r.headers["idempotency-key"] for r in hits}) == 1
    [(row, _)] = box.deliveries()
    assert (row.status, row.attempts, row.last_error) == ("delivered", 4, None)


def test_429_retry_after_is_honoured(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = fail_times(  # type: ignore[assignment]
        1, Reply(429, b"slow down", headers={"Retry-After": "30"}))
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook")}},
                until=lambda: len(receiver.hits("/hook")) == 1 and box.deliveries()[0][0].attempts)
    [(row, _)] = box.deliveries()
    assert row.status == "pending" and row.last_error == "HTTP 429: slow down"
    # backoff_max is 0.2s here: only Retry-After can push the next attempt 30s out.
    assert row.next_attempt_at - row.created_at >= timedelta(seconds=30)


def test_stalled_receiver_times_out_and_is_retried(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = fail_times(1, Reply(200, delay=1.0))  # type: ignore[assignment]
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook"), "timeout": 0.2}})
    [(row, _)] = box.deliveries()
    assert row.status == "delivered" and row.attempts == 2
    assert len(receiver.hits("/hook")) == 2


def test_connection_refused_is_retried_until_max_attempts(box: Outbox, receiver: Server) -> None:
    dead_port = Server()
    url = dead_port.url("/hook")
    dead_port.close()
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    box.deliver({"hook": {"type": "webhook", "url": url, "max_attempts": 3}})
    [(row, _)] = box.deliveries()
    assert (row.status, row.attempts) == ("dead", 3)
    assert row.last_error and "ConnectError" in row.last_error


def test_4xx_is_permanent_raises_meta_alert_and_can_be_retried(box: Outbox, receiver: Server,
                                                              capsys: pytest.CaptureFixture[str],
                                                              ) -> None:
    receiver.routes["/hook"] = Reply(400, b"bad field")
    receiver.routes["/ops"] = Reply(200)
    notifiers = {"hook": {"type": "webhook", "url": receiver.url("/hook")},
                 "ops": {"type": "webhook", "url": receiver.url("/ops")}}
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    box.deliver(notifiers, dead_letter_notifier="ops")
    assert len(receiver.hits("/hook")) == 1, "a 400 is not retried"
    [meta] = [r.json() for r in receiver.hits("/ops")]
    rows = box.deliveries()
    dead = next(d for d, _ in rows if d.status == "dead")
    assert meta["rule"]["id"] == DEAD_LETTER_RULE and meta["event"] == "firing"
    assert meta["dead_letter"] == {"delivery_id": dead.id, "notifier": "hook", "attempts": 1,
                                   "error": "HTTP 400: bad field",
                                   "idempotency_key": dead.idempotency_key, "rule_id": "quake"}
    assert main(["--database", box.url, "alerts", "dead"]) == 0
    assert "HTTP 400: bad field" in capsys.readouterr().out
    assert main(["--database", box.url, "alerts", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(a["rule"], a["dead"]) for a in listed} == {("quake", 1), (DEAD_LETTER_RULE, 0)}

    receiver.routes["/hook"] = Reply(200)
    assert main(["--database", box.url, "alerts", "retry", str(dead.id)]) == 0
    assert main(["--database", box.url, "alerts", "retry", str(dead.id)]) == 1, "not dead now"
    box.deliver(notifiers, dead_letter_notifier="ops")
    assert [r.headers["idempotency-key"] for r in receiver.hits("/hook")] == [
        dead.idempotency_key] * 2
    assert {d.status for d, _ in box.deliveries()} == {"delivered"}


def test_fallback_failures_do_not_loop(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = Reply(404)
    receiver.routes["/ops"] = Reply(404)
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook")},
                 "ops": {"type": "webhook", "url": receiver.url("/ops")}},
                dead_letter_notifier="ops")
    assert [(d.notifier, d.status) for d, _ in box.deliveries()] == [
        ("hook", "dead"), ("ops", "dead")]


def test_max_age_dead_letters_old_rows(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = Reply(500)
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook"), "max_age": "0s"}})
    [(row, _)] = box.deliveries()
    assert (row.status, row.attempts) == ("dead", 1)


def test_alertmanager_shape(box: Outbox, receiver: Server) -> None:
    receiver.routes["/am"] = Reply(200)
    box.fire(box.story("Quake", ["A", "B"]), ["am"])
    box.deliver({"am": {"type": "webhook", "url": receiver.url("/am"), "shape": "alertmanager",
                        "template": "{{ rule.title }} ({{ story.source_count }})"}})
    [req] = receiver.hits("/am")
    body = req.json()
    alert = box.alerts()[0]
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "am"
    [one] = body["alerts"]
    assert one["labels"] == {"alertname": "quake", "rule_id": "quake", "severity": "high",
                             "team": "desk", "storywatch_fingerprint": alert.fingerprint}
    assert one["annotations"]["summary"] == "Earthquake reported (2)"
    assert one["annotations"]["idempotency_key"] == req.headers["idempotency-key"]
    assert one["endsAt"] == "0001-01-01T00:00:00Z" and one["status"] == "firing"
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver",
                         "groupLabels", "commonLabels", "commonAnnotations", "externalURL",
                         "alerts"}
