"""A YAML file validated into a pydantic model, with errors naming file, line and field.

The runbook and lb.yaml are read the same way: the YAML is composed (for the line of every key
and for duplicate keys), loaded, then validated; each pydantic error becomes a problem
`file:line: field: message`. This module imports no schema, so that every schema can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]
Lines = dict[Loc, int]
M = TypeVar("M", bound=BaseModel)


def line_map(node: yaml.Node, path: Loc, out: Lines, problems: list[str], filename: str) -> None:
    """The line of every key and item below `node` into `out`; duplicate keys into `problems`."""
    out.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.append(f"{filename}:{key_node.start_mark.line + 1}: "
                                f"{'.'.join(map(str, (*path, key)))}: duplicate key")
            seen.add(key)
            out[(*path, key)] = key_node.start_mark.line + 1
            line_map(value_node, (*path, key), out, problems, filename)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            line_map(item, (*path, i), out, problems, filename)


def line_of(lines: Lines, loc: Loc) -> int | None:
    """The line of `loc`, else of the nearest enclosing field that has one."""
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def where(path: Path | str, lines: Lines, loc: Loc) -> str:
    """`file:line: field` (`file: field` when no line is known)."""
    line = line_of(lines, loc)
    field = ".".join(str(p) for p in loc)
    return f"{path}:{line}: {field}" if line else f"{path}: {field}"


class Located:
    """`line_of` and `where` for a loaded file's dataclass (with `path` and `lines` fields)."""

    path: Path
    lines: Lines

    def line_of(self, *loc: str | int) -> int | None:
        return line_of(self.lines, loc)

    def where(self, *loc: str | int) -> str:
        return where(self.path, self.lines, loc)


def read_text(path: Path, error: Callable[[str, list[str]], Exception]) -> str:
    """The file's text; `error(filename, problems)` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(str(path), [f"{path}: cannot read: {exc.strerror}"]) from None


def parse_yaml_model(
    text: str,
    path: Path,
    model: type[M],
    *,
    error: Callable[[str, list[str]], Exception],
    not_a_mapping: str,
    problem: Callable[[ErrorDetails, list[ErrorDetails]], tuple[Loc, str] | None],
) -> tuple[M, Lines]:
    """`text` (read from `path`) validated into `model`, with the line of every field.

    Raises `error(filename, problems)`: for YAML that does not parse or is not a mapping (then
    `not_a_mapping` says what it should be), for duplicate keys, and for validation errors, each
    turned by `problem(err, all_errors)` into the field it is about and a message (None: left
    out, e.g. when other errors already say it)."""
    filename = str(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise error(filename, [f"{filename}{line}: not valid YAML: "
                               f"{getattr(exc, 'problem', exc)}"]) from None
    if node is None or not isinstance(data, dict):
        raise error(filename, [f"{filename}: {not_a_mapping}"])
    lines: Lines = {}
    problems: list[str] = []
    line_map(node, (), lines, problems, filename)
    if problems:
        raise error(filename, problems)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        errors = exc.errors()
        for err in errors:
            found = problem(err, errors)
            if found is not None:
                loc, msg = found
                problems.append(f"{where(path, lines, loc)}: {msg}")
        raise error(filename, problems or [f"{filename}: {exc}"]) from None
