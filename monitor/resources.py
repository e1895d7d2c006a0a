"""Where the shipped migrations, rules and demo data live, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"none of {', '.join(map(str, candidates))} exists")


def migrations_dir() -> Path:
    """`alembic/` in a checkout (editable install), `monitor/migrations` in a wheel."""
    return _first_existing(_PKG.parent / "alembic", _PKG / "migrations")


def shipped_rules_dir() -> Path:
    """`rules/` in a checkout, `monitor/shipped_rules` in a wheel."""
    return _first_existing(_PKG.parent / "rules", _PKG / "shipped_rules")
