"""The settings file (`storywatch.yaml`), validated, with secrets kept out of it.

Strings may contain `${ENV_VAR}`; any key `foo_file: PATH` is replaced by
`foo: <file contents>` and `foo_credential: NAME` by the systemd credential
`$CREDENTIALS_DIRECTORY/NAME`, so tokens never need to be written into the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from monitor.yamlpos import Located, Position, SourceError, load_file, pydantic_errors

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(value: Any) -> float:
    """`"15m"`, `"72h"`, `"1.5s"`, `90` (seconds) → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 72h or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 30s, 15m, 72h or 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Model):
    url: str
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    interval: Duration | None = None
    enabled: bool = True


def _network(value: str) -> str:
    ipaddress.ip_network(value, strict=False)  # raises ValueError with a clear message
    return value


class PollingConfig(_Model):
    default_interval: Duration = 900.0
    min_interval: Duration = 900.0
    max_interval: Duration = 86400.0
    timeout: Duration = 30.0
    max_body_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    """Cap on a body after decompression."""
    max_download_bytes: int | None = Field(default=None, gt=0)
    """Cap on bytes read from the network (default: max_body_bytes)."""
    max_redirects: int = Field(default=5, ge=0)
    concurrency: int = Field(default=20, gt=0)
    dispatch_interval: Duration = 1.0
    lease: Duration = 300.0
    contact: str = "https://github.com/storywatch/storywatch"
    """Where site operators can reach you; part of the User-Agent."""
    user_agent: str = "Storywatch/{version} (+{contact})"
    retry_failed_after: Duration = 300.0
    max_backoff: Duration = 86400.0
    host_concurrency: int = Field(default=2, gt=0)
    host_spacing: Duration = 1.0
    """Minimum seconds between two request starts to one host."""
    allowed_networks: list[Annotated[str, AfterValidator(_network)]] = Field(
        default_factory=list)
    """Private/loopback/link-local networks feeds may resolve to (refused by default)."""
    parse_workers: int = Field(default=0, ge=0)
    """Parser processes (0: one per CPU)."""
    parse_timeout: Duration = 30.0
    suspend_after_failures: int = Field(default=10, gt=0)
    suspend_after: Duration = 7 * 86400.0
    suspended_retry: Duration = 7 * 86400.0


class StoriesConfig(_Model):
    window: Duration = 72 * 3600.0
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    """0 means "use the clusterer's own default"."""
    snapshot: bool = True
    """Save the story index in `state_dir` and load it at start instead of rebuilding."""
    snapshot_interval: Duration = Field(default=600.0, gt=0)
    """How often the index is saved while it changes (and once more at a clean stop)."""
    offload: bool | None = None
    """Analyse entries' texts in a second process, ahead of placing them (docs/stories.md);
    unset: when the machine has more than one CPU."""


class _NotifierBase(_Model):
    """What every notifier shares: its retry policy (unset fields use `delivery:`) and template."""

    max_attempts: int | None = Field(default=None, gt=0)
    max_age: Duration | None = None
    backoff_initial: Duration | None = None
    backoff_max: Duration | None = None
    concurrency: int = Field(default=10, gt=0)
    """At most this many deliveries in flight to this notifier."""
    template: str | None = None
    """Jinja2 (sandboxed) message template; `template_file:` reads it from a file."""


class WebhookNotifier(_NotifierBase):
    type: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = None
    timeout: Duration = 10.0
    shape: Literal["storywatch", "alertmanager"] = "storywatch"
    """`storywatch`: the versioned payload of docs/webhook.md; `alertmanager`: webhook v4."""


class ConsoleNotifier(_NotifierBase):
    type: Literal["console"]
    stream: Literal["stdout", "stderr"] = "stdout"


class SlackNotifier(_NotifierBase):
    """Incoming-webhook mode (`webhook_url`) or bot mode (`token` + `channel`, threads)."""

    type: Literal["slack"]
    webhook_url: str | None = None
    token: str | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api"
    timeout: Duration = 10.0
    concurrency: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _one_mode(self) -> SlackNotifier:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("give either webhook_url (incoming webhook) or token (bot)")
        if self.token is not None and not self.channel:
            raise ValueError("bot mode (token) needs a channel")
        return self


class AlertmanagerNotifier(_NotifierBase):
    type: Literal["alertmanager"]
    url: str
    """Alertmanager's base URL, e.g. http://127.0.0.1:9093 (alerts go to /api/v2/alerts)."""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0
    resend_interval: Duration = 60.0
    """Firing alerts are re-sent this often; keep it below Alertmanager's resolve_timeout."""


class AppriseNotifier(_NotifierBase):
    """Any service Apprise reaches (needs the `apprise` extra)."""

    type: Literal["apprise"]
    urls: list[str] = Field(min_length=1)


NotifierConfig = Annotated[
    WebhookNotifier | ConsoleNotifier | SlackNotifier | AlertmanagerNotifier | AppriseNotifier,
    Field(discriminator="type")]


class Route(_Model):
    """Send alerts whose labels match to these notifiers (first match wins unless
    `continue: true`); rules with their own `notify` bypass routes."""

    match: dict[str, str] = Field(default_factory=dict)
    notify: list[str]
    continue_: bool = Field(default=False, alias="continue")


class DeliveryConfig(_Model):
    interval: Duration = 1.0
    batch: int = Field(default=50, gt=0)
    max_attempts: int = Field(default=12, gt=0)
    backoff_initial: Duration = 5.0
    backoff_max: Duration = 3600.0
    lease: Duration = 60.0
    max_age: Duration = 86400.0
    dead_letter_notifier: str | None = None
    """Notifier that receives a meta-alert whenever a delivery is dead-lettered."""


class MetricsConfig(_Model):
    listen: str = "127.0.0.1:9810"
    enabled: bool = True


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


class RetentionConfig(_Model):
    """How long each kind of data is kept; none is pruned inside the clustering window."""

    enabled: bool = True
    entry_bodies: Duration = 90 * 86400.0
    """Entry summary and text; title and URL stay while the entry does."""
    entries: Duration = 90 * 86400.0
    """Entries of closed stories become tombstones: only their dedup key is kept."""
    stories: Duration = 90 * 86400.0
    """Stories with no change for this long are closed and removed."""
    alerts: Duration = 90 * 86400.0
    """Alerts (with their events and finished deliveries) unchanged for this long."""
    tombstones: Duration = 30 * 86400.0
    """Grace before a tombstone goes, counted from when its feed was last seen serving it."""
    interval: Duration = 3600.0
    """How often pruning, VACUUM and ANALYZE run."""
    batch: int = Field(default=5000, gt=0)
    """Rows per transaction, so ingest is never blocked for long."""


class Settings(_Model):
    database_url: str | None = None
    state_dir: str | None = None
    rules_dir: str = "rules"
    migrate_on_start: bool = True
    feeds: list[FeedConfig] = Field(default_factory=list)
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    polling: PollingConfig = PollingConfig()
    stories: StoriesConfig = StoriesConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    retention: RetentionConfig = RetentionConfig()
    base_dir: str = "."
    """Directory relative paths are resolved against (the config file's folder)."""

    @model_validator(mode="after")
    def _known_dead_letter_notifier(self) -> Settings:
        name = self.delivery.dead_letter_notifier
        if name is not None and name not in self.notifiers:
            raise ValueError(f"delivery.dead_letter_notifier: unknown notifier {name!r}")
        return self

    def resolved_state_dir(self) -> Path:
        if self.state_dir:
            return self.resolve(self.state_dir)
        if os.environ.get("STATE_DIRECTORY"):
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        return Path.cwd()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_state_dir() / 'storywatch.db'}"

    def resolved_rules_dir(self) -> Path:
        return self.resolve(self.rules_dir)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


def _expand(value: Any, located: Located, path: tuple[str | int, ...]) -> Any:
    """Apply `${ENV}`, `*_file` and `*_credential` indirection recursively."""
    if isinstance(value, str):
        def env(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise SourceError(located.position(path), f"environment variable {name} is not set")
            return os.environ[name]
        return _ENV_REF.sub(env, value)
    if isinstance(value, list):
        return [_expand(v, located, (*path, i)) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, raw in value.items():
        sub = (*path, key)
        item = _expand(raw, located, sub)
        if isinstance(key, str) and key.endswith("_file") and isinstance(item, str):
            out[key[: -len("_file")]] = _read_secret(Path(item), located.position(sub))
        elif isinstance(key, str) and key.endswith("_credential") and isinstance(item, str):
            cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
            if not cred_dir:
                raise SourceError(located.position(sub),
                                  f"{key}: $CREDENTIALS_DIRECTORY is not set (use LoadCredential=)")
            out[key[: -len("_credential")]] = _read_secret(Path(cred_dir) / item,
                                                           located.position(sub))
        else:
            out[key] = item
    return out


def _read_secret(path: Path, pos: Position) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SourceError(pos, f"cannot read secret file {path}: {exc.strerror}") from exc


def load_settings(path: Path | None) -> Settings:
    """Load and validate a settings file; `None` gives the built-in defaults."""
    if path is None:
        return Settings()
    docs = load_file(path)
    if len(docs) > 1:
        raise SourceError(docs[1].positions[()], "the settings file must hold one YAML document")
    located = docs[0] if docs else Located({}, str(path))
    if not isinstance(located.value, dict):
        raise SourceError(located.position(()), "the settings file must be a mapping")
    data = _expand(located.value, located, ())
    data.setdefault("base_dir", str(path.resolve().parent))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors = pydantic_errors(located, exc.errors())
        raise ConfigErrors(errors) from exc


class ConfigErrors(Exception):
    """Several located errors at once, so users fix them in one pass."""

    def __init__(self, errors: list[SourceError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def config_path(cli_value: str | None) -> Path | None:
    """`-c` wins, then `$STORYWATCH_CONFIG`, then `./storywatch.yaml` if present."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get("STORYWATCH_CONFIG"):
        return Path(os.environ["STORYWATCH_CONFIG"])
    default = Path("storywatch.yaml")
    return default if default.exists() else None
