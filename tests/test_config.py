"""Settings file: defaults, secrets indirection, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigErrors, load_settings, parse_duration
from monitor.yamlpos import SourceError


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("72h", 259200), ("2d", 172800), ("1w", 604800), (90, 90),
    ("1.5s", 1.5), ("250ms", 0.25), ("45", 45),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-5s", "5 parsecs", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_defaults_use_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    settings = load_settings(None)
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'storywatch.db'}"
    assert settings.metrics.listen.startswith("127.0.0.1:")


def test_without_state_directory_uses_cwd(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_settings(None).resolved_database_url() == f"sqlite:///{tmp_path}/storywatch.db"


def test_secrets_never_need_to_be_in_the_file(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cret\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hook-url").write_text("https://hooks.example/abc\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("HOOK_TOKEN", "tok")
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(
        "notifiers:\n"
        "  a:\n    type: webhook\n    url_credential: hook-url\n"
        "    secret_file: secret.txt\n    headers: {Authorization: 'Bearer ${HOOK_TOKEN}'}\n"
        "rules_dir: myrules\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(cfg)
    hook = settings.notifiers["a"]
    assert hook.type == "webhook"
    assert hook.url == "https://hooks.example/abc"
    assert hook.secret == "s3cret"
    assert hook.headers == {"Authorization": "Bearer tok"}
    assert settings.resolved_rules_dir() == tmp_path / "myrules"


def test_missing_env_var_is_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("database_url: x\nnotifiers:\n  a: {type: webhook, url: '${NOPE_NOT_SET}'}\n")
    with pytest.raises(SourceError) as err:
        load_settings(cfg)
    assert str(err.value).startswith(f"{cfg}:3:")
    assert "NOPE_NOT_SET" in str(err.value)


def test_schema_errors_name_file_line_col_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("feeds:\n  - url: http://a.example/feed\n    intervall: 5m\n"
                   "polling:\n  timeout: forever\n")
    with pytest.raises(ConfigErrors) as err:
        load_settings(cfg)
    messages = [str(e) for e in err.value.errors]
    assert f"{cfg}:3:5: feeds.0.intervall: unknown key" in messages
    assert any(m.startswith(f"{cfg}:5:12: polling.timeout:") for m in messages)


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("feeds:\n  - url: [unclosed\n")
    with pytest.raises(SourceError) as err:
        load_settings(cfg)
    assert str(err.value).startswith(f"{cfg}:3:")


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("rules_dir: a\nrules_dir: b\n")
    with pytest.raises(SourceError, match=r"s\.yaml:2:1: duplicate key 'rules_dir'"):
        load_settings(cfg)
