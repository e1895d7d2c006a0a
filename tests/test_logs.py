"""Logs for journald: one structured record per line, levels included, secrets masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from monitor import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    logs.setup("info", fmt)
    log = logging.getLogger("storywatch.test")
    log.debug("hidden below the level")
    log.warning("delivery failed", extra={"notifier": "ops hook", "webhook_secret": "s3cr3t",
                                          "auth_token": "abc", "attempt": 2})
    return capsys.readouterr().err


def test_logfmt(capsys: pytest.CaptureFixture[str]) -> None:
    out = record("logfmt", capsys)
    assert out.count("\n") == 1 and "hidden" not in out
    assert "level=warning" in out and 'msg="delivery failed"' in out
    assert 'notifier="ops hook"' in out and "attempt=2" in out
    assert "s3cr3t" not in out and "abc" not in out and "webhook_secret=***" in out


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(record("json", capsys))
    assert doc["level"] == "warning" and doc["msg"] == "delivery failed"
    assert doc["webhook_secret"] == "***" and doc["auth_token"] == "***"
    assert doc["attempt"] == 2 and doc["ts"].endswith("+00:00")
