"""Message templates: Jinja2 in a sandbox with StrictUndefined.

Templates come from the settings file, so they are treated as untrusted: the
sandbox keeps them from reaching Python internals, and StrictUndefined makes
a typo (`{{ stroy.title }}`) an error instead of a silently empty message.
The context is the alert payload (docs/webhook.md) plus `mark`.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

MARKS = {"firing": "ALERT", "updated": "UPDATE", "resolved": "RESOLVED", "digest": "DIGEST"}


class RenderError(Exception):
    """A template that does not compile or does not render; the message says where."""


def mrkdwn(value: Any) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True,
                            lstrip_blocks=True, keep_trailing_newline=False)
_ENV.filters["mrkdwn"] = mrkdwn

CONSOLE = """\
[{{ mark }}] {{ rule.severity|upper }} {{ rule.title }}
{% if event == "digest" %}
  {{ story.title }}
{% for item in items %}
   - {{ item.story.title }} ({{ item.sources|length }} source(s)\
{% if item.event != "firing" %}, {{ item.event }}{% endif %}\
{% if item.changes > 1 %}, {{ item.changes }} changes{% endif %})
{% endfor %}
{% else %}
  story #{{ story.id }}: {{ story.title }}
  {{ story.source_count }} source(s), first seen {{ story.first_seen }}
{% for s in sources %}
   - {{ s.name }}: {{ s.title }}
{% endfor %}
{% endif %}"""

SLACK = """\
{% if event == "digest" %}
{% for item in items %}
{% set links = item.outlets|selectattr("url")|list %}
• {% if links %}<{{ links[0].url }}|{{ item.story.title|mrkdwn }}>\
{% else %}{{ item.story.title|mrkdwn }}{% endif %} ({{ item.sources|join(", ")|mrkdwn }}\
{% if item.event != "firing" %}; {{ item.event }}{% endif %})
{% endfor %}
{% else %}
{% if event == "updated" and new_sources %}
New source{{ "s" if new_sources|length > 1 else "" }}: {{ new_sources|join(", ")|mrkdwn }}
{% endif %}
{% for s in sources %}
• {% if s.url %}<{{ s.url }}|{{ s.name|mrkdwn }}>{% else %}{{ s.name|mrkdwn }}{% endif %}: \
{{ s.title|mrkdwn }}
{% endfor %}
{% endif %}"""

SUMMARY = "{{ summary }}"
"""Alertmanager's `summary` annotation."""


def compile_template(source: str, name: str) -> Template:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" line {line}" if line else ""
        raise RenderError(f"notifier {name!r}: template{where}: {exc.message}") from exc


def render(template: Template, payload: dict[str, Any]) -> str:
    try:
        text = template.render(**payload, mark=MARKS.get(payload["event"],
                                                         str(payload["event"]).upper()))
    except TemplateError as exc:
        raise RenderError(f"template: {exc.message or type(exc).__name__}") from exc
    return text.rstrip("\n")
