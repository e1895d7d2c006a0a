"""Pure parts of delivery: retry decisions, templates, notifier config, preview."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.alerts import render
from monitor.alerts.notify.base import Outcome
from monitor.alerts.notify.webhook import sign, verify
from monitor.alerts.preview import Fixture, payload_for, preview
from monitor.alerts.retry import DEAD, DELIVERED, RETRY, RetryPolicy
from monitor.cli import main
from monitor.config import ConfigErrors, DeliveryConfig, load_settings
from tests.alerting import NOTIFIERS, RULE

POLICY = RetryPolicy(max_attempts=5, max_age=3600, backoff_initial=2, backoff_max=60)
TRANSIENT = Outcome(ok=False, retryable=True, error="HTTP 503")


def test_retry_decisions() -> None:
    assert POLICY.decide(Outcome(ok=True), 1, 0) == DELIVERED
    assert POLICY.decide(TRANSIENT, 4, 10) == RETRY
    assert POLICY.decide(TRANSIENT, 5, 10) == DEAD, "out of attempts"
    assert POLICY.decide(TRANSIENT, 1, 3600) == DEAD, "too old"
    assert POLICY.decide(Outcome(ok=False, retryable=False), 1, 0) == DEAD, "permanent"


def test_backoff_is_jittered_exponential_capped_and_honours_retry_after() -> None:
    rng = random.Random(7)
    for attempts, cap in ((1, 2), (2, 4), (3, 8), (6, 60), (30, 60)):
        delays = [POLICY.backoff(attempts, None, rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 100, "jittered"
    assert POLICY.backoff(1, 120.0, rng) == 120.0, "Retry-After beyond the cap still wins"


def test_policy_falls_back_to_delivery_defaults() -> None:
    configs = NOTIFIERS.validate_python({
        "a": {"type": "console", "max_attempts": 2, "backoff_max": "1m"},
        "b": {"type": "console"}})
    defaults = DeliveryConfig(max_attempts=9, max_age="2h", backoff_initial=3)
    assert RetryPolicy.of(defaults, configs["a"]) == RetryPolicy(2, 7200, 3, 60)
    assert RetryPolicy.of(defaults, configs["b"]) == RetryPolicy(9, 7200, 3, 3600)


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    header = sign("k", 1700000000, b'{"a":1}')
    mac = hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={mac}"
    assert verify("k", header, b'{"a":1}', 1700000100)
    assert not verify("k", header, b'{"a":1}', 1700000400), "replayed too late"
    assert not verify("k", "garbage", b'{"a":1}', 1700000000)


def test_templates_are_sandboxed_and_strict() -> None:
    msg = payload_for(RULE, Fixture(), datetime.now(UTC))
    ok = render.compile_template("{{ rule.title }} / {{ sources|length }}", "t")
    assert render.render(ok, msg.payload) == "Earthquake reported / 3"
    with pytest.raises(render.RenderError, match="'nope' is undefined"):
        render.render(render.compile_template("{{ nope }}", "t"), msg.payload)
    with pytest.raises(render.RenderError, match=r"unsafe|not safely|access"):
        render.render(render.compile_template(
            "{{ ''.__class__.__mro__[1].__subclasses__() }}", "t"), msg.payload)
    with pytest.raises(render.RenderError, match=r"notifier 'x': template line 1"):
        render.compile_template("{% if %}", "x")


def test_slack_config_needs_exactly_one_mode() -> None:
    with pytest.raises(ValidationError, match="either webhook_url"):
        NOTIFIERS.validate_python({"s": {"type": "slack"}})
    with pytest.raises(ValidationError, match="needs a channel"):
        NOTIFIERS.validate_python({"s": {"type": "slack", "token": "x"}})
    with pytest.raises(ValidationError, match="either webhook_url"):
        NOTIFIERS.validate_python({"s": {"type": "slack", "token": "x", "channel": "c",
                                         "webhook_url": "http://x"}})


def test_secrets_and_templates_come_from_files(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("xoxb-secret\n")
    (tmp_path / "slack.j2").write_text("{{ summary }}\n")
    monkeypatch.setenv("AM_URL", "http://127.0.0.1:9093")
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(f"""
notifiers:
  slack: {{type: slack, token_file: {tmp_path / 'token'}, channel: C1,
           template_file: {tmp_path / 'slack.j2'}}}
  am: {{type: alertmanager, url: "${{AM_URL}}"}}
delivery: {{dead_letter_notifier: slack}}
""")
    settings = load_settings(cfg)
    slack = settings.notifiers["slack"]
    assert slack.type == "slack" and slack.token == "xoxb-secret"
    assert slack.template == "{{ summary }}"
    assert settings.notifiers["am"].type == "alertmanager"


def test_unknown_dead_letter_notifier_is_a_located_error(tmp_path: Path) -> None:
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text("notifiers: {a: {type: console}}\ndelivery: {dead_letter_notifier: b}\n")
    with pytest.raises(ConfigErrors, match="unknown notifier 'b'"):
        load_settings(cfg)


def test_preview_renders_every_notifier() -> None:
    notifiers = NOTIFIERS.validate_python({
        "con": {"type": "console"},
        "hook": {"type": "webhook", "url": "http://127.0.0.1:1/"},
        "slack": {"type": "slack", "webhook_url": "http://127.0.0.1:1/"},
        "am": {"type": "alertmanager", "url": "http://127.0.0.1:1"}})
    out = preview(RULE, notifiers, Fixture(event="updated"))
    assert [(name, kind) for name, kind, _ in out] == [
        ("con", "console"), ("hook", "webhook"), ("slack", "slack"),
        ("am", "alertmanager")]
    text = dict((n, t) for n, _, t in out)
    assert text["con"].startswith("[UPDATE] HIGH Earthquake reported")
    assert '"new_sources": [\n    "Valley Courier"\n  ]' in text["hook"]
    assert "New source: Valley Courier" in text["slack"]
    assert '"alertname": "quake"' in text["am"]


def test_preview_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "q.yaml").write_text("id: quake\ntitle: Quake\nnotify: [con]\n"
                                  "resolve_after: 2h\n")
    (tmp_path / "fixture.yaml").write_text(
        "title: Big quake\nevent: resolved\nsources: [{name: Wire, title: Quake!}]\n")
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(f"rules_dir: {rules}\nnotifiers:\n  con: {{type: console}}\n"
                   "  other: {type: console, template: '{{ nope }}'}\n")
    assert main(["-c", str(cfg), "alerts", "preview", "quake",
                 "--fixture", str(tmp_path / "fixture.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- con (console) ---\n[RESOLVED] MEDIUM Quake\n"
                          "  story #1: Big quake\n")
    assert main(["-c", str(cfg), "alerts", "preview", "nope"]) == 1
    assert "no rule 'nope' (known: quake)" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("sources: []\n")
    assert main(["-c", str(cfg), "alerts", "preview", "quake",
                 "--fixture", str(tmp_path / "bad.yaml")]) == 1
    assert "not a usable fixture" in capsys.readouterr().err


def test_check_reports_broken_templates(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rules").mkdir()
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(f"rules_dir: {tmp_path / 'rules'}\n"
                   "notifiers: {con: {type: console, template: '{% for %}'}}\n")
    assert main(["-c", str(cfg), "check"]) == 1
    assert "notifier 'con': template line 1" in capsys.readouterr().err
