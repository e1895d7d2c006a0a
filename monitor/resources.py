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
    """`monitor/migrations` in a wheel, `alembic/` in a checkout (editable install).

    The wheel's own copy is looked for first: beside an installed package is
    site-packages, whose `alembic/` is the Alembic library.
    """
    return _first_existing(_PKG / "migrations", _PKG.parent / "alembic")


def shipped_rules_dir() -> Path:
    """`monitor/shipped_rules` in a wheel, `rules/` in a checkout."""
    return _first_existing(_PKG / "shipped_rules", _PKG.parent / "rules")
