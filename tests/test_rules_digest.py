"""Digests: a period's alert changes as one notification, durable across restarts."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from monitor.alerts import outbox
from monitor.db import queries
from monitor.db.models import Alert, AlertEvent, Suppression
from monitor.rules.digest import period
from monitor.rules.engine import Hit, RuleSet
from monitor.rules.lifecycle import Policy, fingerprint, handle, send_due_digests
from monitor.rules.replay import Replay, events_for_test
from monitor.rules.schema import Digest, LoadedRule, Rule, RuleErrors, TestStep, load_rules
from tests.alerting import RULE, Outbox
from tests.helpers import wait_until
from tests.servers import Reply, Server
from tests.test_delivery_alertmanager import alertmanager, free_port  # noqa: F401

T0 = datetime(2026, 3, 19, 10, 0, tzinfo=UTC)
HOURLY = Rule.model_validate({**RULE.model_dump(), "severity": "low",
                              "digest": {"every": "1h", "max_items": 3}})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- periods and the language ------------------------------------------------------
@pytest.mark.parametrize(("spec", "now", "start", "end"), [
    ({"every": "1h"}, "2026-03-19T10:59:59Z", "2026-03-19T10:00:00Z", "2026-03-19T11:00:00Z"),
    ({"every": "1h"}, "2026-03-19T11:00:00Z", "2026-03-19T11:00:00Z", "2026-03-19T12:00:00Z"),
    ({"every": "1d", "offset": "8h", "timezone": "Europe/Berlin"}, "2026-03-19T06:59:00Z",
     "2026-03-18T07:00:00Z", "2026-03-19T07:00:00Z"),
    ({"every": "7d"}, "2026-03-19T10:00:00Z", "2026-03-16T00:00:00Z", "2026-03-23T00:00:00Z"),
    # Europe/Berlin skips 02:00-03:00 on 29 March: that hour's digest is the next one.
    ({"every": "1h", "timezone": "Europe/Berlin"}, "2026-03-29T01:30:00Z",
     "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"),
])
def test_periods_follow_the_local_wall_clock(spec: dict[str, Any], now: str, start: str,
                                             end: str) -> None:
    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    assert period(Digest.model_validate(spec), parse(now)) == (parse(start), parse(end))


@pytest.mark.parametrize(("digest", "expected"), [
    ("{every: 7m}", r"r\.yaml:3:17: digest\.every: .*every must divide a day"),
    ("{every: 1h, colour: red}", r"r\.yaml:3:\d+: digest\.colour: unknown key"),
    ("{every: 1h, offset: 2h}", r"r\.yaml:3:9: digest: .*offset must be shorter"),
])
def test_digest_errors_are_located(tmp_path: Path, digest: str, expected: str) -> None:
    (tmp_path / "r.yaml").write_text(f"id: r\ntitle: t\ndigest: {digest}\n")
    with pytest.raises(RuleErrors) as err:
        load_rules(tmp_path)
    assert any(re.search(expected, str(e)) for e in err.value.errors), \
        [str(e) for e in err.value.errors]


def test_json_schema_knows_digest() -> None:
    from monitor.rules.schema import rule_json_schema

    text = json.dumps(rule_json_schema())
    assert '"max_items"' in text and '"every"' in text


def replay(rule: Rule, steps: list[TestStep], until: datetime) -> Replay:
    run = Replay(RuleSet.compile([LoadedRule(rule, "t.yaml")]))
    run.run(events_for_test(steps), until)
    return run


def step(minutes: float, story: int, source: str) -> TestStep:
    return TestStep(at=at(minutes).isoformat(), story=story, title="Quake hits valley",
                    source=source)


KEYWORD = Rule.model_validate(yaml.safe_load("""
id: quake
title: Earthquake
where: {any: [{contains: quake}]}
digest: {every: 1h}
"""))
SMALL = KEYWORD.model_copy(update={"digest": Digest(every=3600, max_items=2)})


def test_replay_lists_a_period_in_one_digest_and_records_each_hit_as_digested() -> None:
    steps = [step(5, 1, "A"), step(20, 1, "B"), step(30, 2, "A")]
    open_run = replay(KEYWORD, steps, at(59))
    assert open_run.book.changes == []
    assert [s["reason"] for s in open_run.book.suppressed] == ["digested"] * 3
    [state] = open_run.book.digests.values()
    assert [(i["changes"], i["sources"]) for i in state["items"]] == [(2, ["A", "B"]), (1, ["A"])]
    [digest] = replay(KEYWORD, steps, at(60)).book.changes
    assert (digest["change"], digest["at"], digest["items"]) == ("digest", at(60), 2)
    assert sorted(digest["stories"]) == [1, 2] and sorted(digest["sources"]) == ["A", "B"]


def test_max_items_sends_early_and_the_period_continues_in_a_second_part() -> None:
    steps = [step(5, 1, "A"), step(10, 2, "A"), step(15, 3, "A"), step(70, 4, "A")]
    changes = replay(SMALL, steps, at(125)).book.changes
    assert [(c["at"], c["items"], c["part"], c["stories"]) for c in changes] == [
        (at(10), 2, 1, [1, 2]), (at(60), 1, 2, [3]), (at(120), 1, 1, [4])]


# -- live: the database, the outbox and real receivers -----------------------------------
@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    b = Outbox(tmp_path)
    yield b
    b.close()


def hit(box: Outbox, story_id: int, now: datetime, rule: Rule = HOURLY,
        notifiers: tuple[str, ...] = ("hook",)) -> str:
    """A rule match on the story, in a transaction of its own, as ingest makes it."""
    with box.sessions.begin() as session:
        sources = tuple(dict.fromkeys(m.member.source
                                      for m in queries.story_members(session, story_id)))
        h = Hit(rule, f"story:{story_id}", {}, "firing", now, (story_id,), sources)
        return handle(outbox.DbBook(session, list(notifiers)), Policy(), h, now).action


def tick(box: Outbox, now: datetime, rule: Rule = HOURLY,
         notifiers: tuple[str, ...] = ("hook",)) -> None:
    with box.sessions.begin() as session:
        send_due_digests(outbox.DbBook(session, list(notifiers)), {rule.id: rule}, now)


def digest_events(box: Outbox) -> list[AlertEvent]:
    with box.sessions() as session:
        return list(session.scalars(select(AlertEvent).where(AlertEvent.kind == "digest")
                                    .order_by(AlertEvent.id)))


def expected_key(rule: Rule, start: datetime, part: int = 1) -> str:
    fp = fingerprint(rule.id, "digest:")
    return hashlib.sha256(f"{fp}:digest:{start.isoformat()}:{part}".encode()).hexdigest()[:40]


def test_a_period_of_alerts_reaches_the_webhook_as_one_post(box: Outbox,
                                                           receiver: Server) -> None:
    receiver.routes["/hook"] = Reply(200, b"ok")
    quake = box.story("Quake hits valley", ["Wire A"])
    flood = box.story("Flood closes port", ["Ledger B"])
    assert hit(box, quake, at(5)) == "fire"
    assert hit(box, flood, at(20)) == "fire"
    with box.sessions.begin() as session:
        box._member(session, session.get(outbox.Story, quake), "Courier C")
    assert hit(box, quake, at(40)) == "update"
    tick(box, at(59))
    assert box.deliveries() == [], "nothing is sent before the period ends"
    tick(box, at(60))
    tick(box, at(61))
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook")}})
    [req] = receiver.hits("/hook")
    body = req.json()
    assert req.headers["idempotency-key"] == body["idempotency_key"] == expected_key(HOURLY, T0)
    assert (body["event"], body["status"], body["seq"]) == ("digest", "digest", 1)
    assert body["digest"] == {"period_start": "2026-03-19T10:00:00Z",
                              "period_end": "2026-03-19T11:00:00Z", "part": 1, "items": 2,
                              "complete": True}
    assert [(i["event"], i["changes"], i["story"]["title"], i["sources"])
            for i in body["items"]] == [
        ("firing", 2, "Quake hits valley", ["Wire A", "Courier C"]),
        ("firing", 1, "Flood closes port", ["Ledger B"])]
    assert body["summary"] == ("Earthquake reported: 2 alerts from 2026-03-19T10:00:00Z to "
                               "2026-03-19T11:00:00Z")
    with box.sessions() as session:
        reasons = list(session.scalars(select(Suppression.reason)))
        states = {a.group_key: a.state for a in session.scalars(select(Alert))}
    assert reasons == ["digested"] * 3
    assert states == {f"story:{quake}": "firing", f"story:{flood}": "firing",
                      "digest:": "digest"}


def test_restart_and_a_crash_while_sending_neither_lose_nor_double_a_digest(
        tmp_path: Path, receiver: Server) -> None:
    receiver.routes["/hook"] = Reply(200, b"ok")
    first = Outbox(tmp_path, "d.db")
    quake = first.story("Quake hits valley", ["Wire A"])
    flood = first.story("Flood closes port", ["Ledger B"])
    hit(first, quake, at(5))
    first.close()                                   # the process stops mid-period
    second = Outbox(tmp_path, "d.db")
    hit(second, flood, at(30))
    with pytest.raises(RuntimeError), second.sessions.begin() as session:
        send_due_digests(outbox.DbBook(session, ["hook"]), {HOURLY.id: HOURLY}, at(60))
        raise RuntimeError("killed before the commit")
    assert digest_events(second) == []
    tick(second, at(60))
    tick(second, at(62))
    [event] = digest_events(second)
    assert event.payload["idempotency_key"] == expected_key(HOURLY, T0)
    second.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook")}})
    [req] = receiver.hits("/hook")
    assert [i["story"]["title"] for i in req.json()["items"]] == ["Quake hits valley",
                                                                  "Flood closes port"]
    second.close()


def test_a_full_digest_is_sent_at_once_with_its_own_key(box: Outbox, receiver: Server) -> None:
    receiver.routes["/hook"] = Reply(200, b"ok")
    stories = [box.story(f"Story {n}", ["Wire A"]) for n in range(4)]
    for n, story in enumerate(stories):
        hit(box, story, at(10 + n))
    assert len(digest_events(box)) == 1, "the third alert filled the digest"
    tick(box, at(60))
    box.deliver({"hook": {"type": "webhook", "url": receiver.url("/hook")}})
    bodies = [r.json() for r in receiver.hits("/hook")]
    assert [(b["digest"]["part"], b["digest"]["items"], b["digest"]["complete"])
            for b in bodies] == [(1, 3, False), (2, 1, True)]
    assert [b["idempotency_key"] for b in bodies] == [expected_key(HOURLY, T0, 1),
                                                      expected_key(HOURLY, T0, 2)]


def test_slack_gets_one_message_listing_the_items(box: Outbox, receiver: Server) -> None:
    receiver.routes["/slack"] = Reply(200, b"ok")
    for n in range(2):
        hit(box, box.story(f"Quake {n} hits valley", ["Wire A"]), at(5 + n),
            notifiers=("slack",))
    tick(box, at(60), notifiers=("slack",))
    box.deliver({"slack": {"type": "slack", "webhook_url": receiver.url("/slack")}})
    [req] = receiver.hits("/slack")
    message = req.json()
    assert message["text"].startswith(":newspaper: Earthquake reported: 2 alerts")
    header, section, body, _ = message["blocks"]
    assert header["text"]["text"] == "DIGEST Earthquake reported"
    assert [f["text"].split("\n")[0] for f in section["fields"]] == [
        "*Severity*", "*Alerts*", "*From*", "*To*"]
    lines = body["text"]["text"].splitlines()
    assert len(lines) == 2 and "Quake 0 hits valley" in lines[0] and "(Wire A)" in lines[0]


def test_alertmanager_gets_the_digest_as_one_alert(box: Outbox, alertmanager: str,  # noqa: F811
                                                   receiver: Server) -> None:
    for n in range(2):
        hit(box, box.story(f"Quake {n} hits valley", ["Wire A"]), at(5 + n), notifiers=("am",))
    tick(box, at(60), notifiers=("am",))
    box.deliver({"am": {"type": "alertmanager", "url": alertmanager}})
    [alert] = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert alert["labels"]["alertname"] == "quake"
    assert alert["labels"]["storywatch_digest"] == "2026-03-19T10:00:00Z#1"
    assert alert["annotations"]["items"] == "2"
    assert alert["annotations"]["stories"].splitlines() == [
        "Quake 0 hits valley (Wire A)", "Quake 1 hits valley (Wire A)"]
    wait_until(lambda: bool(receiver.hits("/am-out")), timeout=15)
