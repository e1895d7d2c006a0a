"""Notifiers: one small module per integration, one interface (`Notifier`)."""

from __future__ import annotations

import httpx

from monitor.alerts.notify.alertmanager import AlertmanagerNotifier
from monitor.alerts.notify.apprise import AppriseNotifier, NotifierUnavailable
from monitor.alerts.notify.base import Message, Notifier, Outcome, Thread
from monitor.alerts.notify.console import ConsoleNotifier
from monitor.alerts.notify.slack import SlackNotifier
from monitor.alerts.notify.webhook import WebhookNotifier
from monitor.alerts.render import RenderError
from monitor.config import AlertmanagerNotifier as AlertmanagerConfig
from monitor.config import AppriseNotifier as AppriseConfig
from monitor.config import ConsoleNotifier as ConsoleConfig
from monitor.config import NotifierConfig
from monitor.config import SlackNotifier as SlackConfig
from monitor.config import WebhookNotifier as WebhookConfig

__all__ = ["Message", "Notifier", "NotifierUnavailable", "Outcome", "Thread", "build_notifier",
           "build_notifiers", "setup_errors"]


def build_notifier(name: str, cfg: NotifierConfig, client: httpx.AsyncClient) -> Notifier:
    """One notifier from its config.

    Raises RenderError for a broken template, NotifierUnavailable for a missing extra.
    """
    if isinstance(cfg, WebhookConfig):
        return WebhookNotifier(name, cfg, client)
    if isinstance(cfg, SlackConfig):
        return SlackNotifier(name, cfg, client)
    if isinstance(cfg, AlertmanagerConfig):
        return AlertmanagerNotifier(name, cfg, client)
    if isinstance(cfg, AppriseConfig):
        return AppriseNotifier(name, cfg)
    assert isinstance(cfg, ConsoleConfig)
    return ConsoleNotifier(name, cfg)


def build_notifiers(configs: dict[str, NotifierConfig],
                    client: httpx.AsyncClient) -> dict[str, Notifier]:
    """Instantiate the configured notifiers, sharing one HTTP client."""
    return {name: build_notifier(name, cfg, client) for name, cfg in configs.items()}


def setup_errors(configs: dict[str, NotifierConfig]) -> list[str]:
    """Every notifier that cannot be built (template, missing extra), for `storywatch check`."""
    client = httpx.AsyncClient()  # never used: building a notifier compiles its template
    errors = []
    for name, cfg in configs.items():
        try:
            build_notifier(name, cfg, client)
        except (RenderError, NotifierUnavailable) as exc:
            errors.append(str(exc))
    return errors
