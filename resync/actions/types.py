"""Actions: the exact SQL statements and shell commands a step executes, as data.

`plan` renders these objects and `run` executes the very same objects, so what a reviewer
reads is what runs. Values captured by earlier steps (binlog coordinates, the backup path)
appear as `Ref`s: shown as <name> in a plan made before the run, filled in at run time.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from resync.model.errors import ResyncError
from resync.model.secrets import MASK, EnvSecret, Secret

Captured = Mapping[str, "str | int | float | None"]


@dataclass(frozen=True)
class Ref:
    """A value captured by an earlier step (or fixed when the run starts, like the run id)."""

    key: str

    def __str__(self) -> str:
        return f"<{self.key}>"


Param = object  # str, int, Secret, EnvSecret, Ref, None ...


def resolve(value: Param, captured: Captured) -> object:
    if isinstance(value, Ref):
        if value.key not in captured:
            raise ResyncError(f"value '{value.key}' has not been captured yet (run the earlier steps)")
        return captured[value.key]
    if isinstance(value, EnvSecret):
        return value.resolve()
    return value


def sql_literal(value: object) -> str:
    """Render a value as a SQL literal for display (execution always binds parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, Secret | EnvSecret):
        return f"'{MASK}'"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


@dataclass(frozen=True)
class Sql:
    """One SQL statement with %s placeholders and its parameters, on one host."""

    host: str
    sql: str
    params: tuple[Param, ...] = ()

    def render(self, captured: Captured | None = None) -> str:
        shown: list[str] = []
        for p in self.params:
            if isinstance(p, Ref) and (captured is None or p.key not in captured):
                shown.append(str(p))
            elif isinstance(p, EnvSecret):
                shown.append(sql_literal(p))
            else:
                shown.append(sql_literal(resolve(p, captured or {})))
        return self.sql % tuple(shown) if shown else self.sql

    def bind(self, captured: Captured) -> tuple[str, tuple[object, ...]]:
        values = tuple(resolve(p, captured) for p in self.params)
        return self.sql, tuple(v.reveal() if isinstance(v, Secret) else v for v in values)


@dataclass(frozen=True)
class Shell:
    """One shell command line on one host. Refs are shell-quoted when filled in."""

    host: str
    parts: tuple[str | Ref, ...]
    privileged: bool = False  # needs root on the host (sudo over SSH)
    timeout: float | None = None

    @classmethod
    def line(cls, host: str, *parts: str | Ref, privileged: bool = False,
             timeout: float | None = None) -> Shell:
        return cls(host, parts, privileged, timeout)

    def render(self, captured: Captured | None = None) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, Ref):
                out.append(shlex.quote(str(captured[p.key])) if captured and p.key in captured
                           else str(p))
            else:
                out.append(p)
        return "".join(out)

    def bind(self, captured: Captured) -> str:
        return "".join(shlex.quote(str(resolve(p, captured))) if isinstance(p, Ref) else p
                       for p in self.parts)


@dataclass(frozen=True)
class Check:
    """A read-only check or wait, described in words (the queries it polls are listed with it)."""

    host: str
    text: str

    def render(self, captured: Captured | None = None) -> str:
        return self.text


Action = Sql | Shell | Check


def q(value: str) -> str:
    """Shell-quote a fixed string for a command line."""
    return shlex.quote(value)
