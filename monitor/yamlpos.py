"""YAML loading that remembers where every value came from.

Config and rule errors must point at `file:line:col`, so we compose the YAML
node tree ourselves and keep a map from each value's path to its position.
Duplicate keys are rejected: PyYAML silently keeps the last one, which hides
typos in hand-written rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a named file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SourceError(Exception):
    """An error in a user-written file, located at `file:line:col`."""

    def __init__(self, position: Position, message: str) -> None:
        super().__init__(f"{position}: {message}")
        self.position = position
        self.message = message


@dataclass
class Located:
    """A loaded YAML document plus the position of every path inside it."""

    value: Any
    file: str
    positions: dict[Path_, Position] = field(default_factory=dict)
    key_positions: dict[Path_, Position] = field(default_factory=dict)
    """Where the mapping key of a path stands (for "unknown key" errors)."""

    def position(self, path: Sequence[str | int], at_key: bool = False) -> Position:
        """Position of the deepest known prefix of `path` (a pydantic `loc`)."""
        key = tuple(path)
        if at_key and key in self.key_positions:
            return self.key_positions[key]
        while key:
            if key in self.positions:
                return self.positions[key]
            key = key[:-1]
        return self.positions.get((), Position(self.file, 1, 1))


def _mark(file: str, node: yaml.Node) -> Position:
    return Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path_, Position] = {}
        self.key_positions: dict[Path_, Position] = {}
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.positions[path] = _mark(self.file, node)
        if isinstance(node, yaml.MappingNode):
            self._constructor.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise SourceError(_mark(self.file, key_node), "mapping keys must be scalars")
                if key in out:
                    raise SourceError(_mark(self.file, key_node), f"duplicate key {key!r}")
                child: Path_ = (*path, str(key) if not isinstance(key, int) else key)
                self.key_positions[child] = _mark(self.file, key_node)
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)


def load_documents(text: str, file: str) -> list[Located]:
    """Parse every YAML document in `text`; raise SourceError on syntax errors."""
    try:
        nodes: Iterable[yaml.Node] = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 1, 1)
        raise SourceError(pos, f"YAML syntax error: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise SourceError(Position(file, 1, 1), f"YAML error: {exc}") from exc
    docs = []
    for node in nodes:
        if node is None:
            continue
        builder = _Builder(file)
        value = builder.build(node, ())
        docs.append(Located(value, file, builder.positions, builder.key_positions))
    return docs


def load_file(path: Path) -> list[Located]:
    """Read and parse a YAML file, reporting unreadable files as SourceError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(Position(str(path), 1, 1), f"cannot read file: {exc}") from exc
    return load_documents(text, str(path))


def pydantic_errors(located: Located, errors: Iterable[Mapping[str, Any]],
                    prefix: Sequence[str | int] = ()) -> list[SourceError]:
    """Turn pydantic `ValidationError.errors()` into located, readable errors."""
    out = []
    for err in errors:
        loc = [part for part in err.get("loc", ()) if not _is_union_tag(part)]
        full = (*prefix, *loc)
        field_path = ".".join(str(p) for p in full) or "(document)"
        msg = err.get("msg", "invalid value")
        unknown = err.get("type") == "extra_forbidden"
        if unknown:
            msg = "unknown key"
        out.append(SourceError(located.position(full, at_key=unknown), f"{field_path}: {msg}"))
    return out


def _is_union_tag(part: object) -> bool:
    """pydantic inserts the chosen union member's tag into `loc`; hide it."""
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)
