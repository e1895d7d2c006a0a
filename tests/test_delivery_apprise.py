"""Apprise (the optional extra) through our outbox, to a real local JSON endpoint."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerting import Outbox
from tests.conftest import need
from tests.servers import Reply, Request, Server


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    need(importlib.util.find_spec("apprise") is not None,
         "apprise is not installed (pip install '.[test]')")
    b = Outbox(tmp_path)
    yield b
    b.close()


def test_apprise_json_endpoint_with_retry(box: Outbox, receiver: Server) -> None:
    answers = [Reply(500, b"no"), Reply(200)]

    def respond(req: Request) -> Reply:
        return answers.pop(0) if answers else Reply(200)

    receiver.routes["/apprise"] = respond
    box.fire(box.story("Quake hits valley", ["Wire A", "Ledger B"]), ["ap"])
    port = receiver.httpd.server_address[1]
    template = "{{ summary }} [{{ sources|map(attribute='name')|join(', ') }}]"
    box.deliver({"ap": {"type": "apprise", "urls": [f"json://127.0.0.1:{port}/apprise"],
                        "template": template}})
    first, second = (r.json() for r in receiver.hits("/apprise"))
    assert first == second
    assert second["title"] == "[ALERT] Earthquake reported"
    assert second["message"] == ("Earthquake reported: Quake hits valley (2 sources) "
                                 "[Wire A, Ledger B]")
    assert second["type"] == "failure", "high severity"
    [(row, _)] = box.deliveries()
    assert (row.status, row.attempts) == ("delivered", 2)


def test_unusable_apprise_url_is_a_clear_error(box: Outbox) -> None:
    from monitor.alerts.notify import setup_errors
    from tests.alerting import NOTIFIERS

    configs = NOTIFIERS.validate_python({"ap": {"type": "apprise", "urls": ["nonsense://x"]}})
    assert setup_errors(configs) == ["notifier 'ap': Apprise does not accept the URL nonsense://…"]
