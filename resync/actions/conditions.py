"""Conditions: on captured values (Assert, When) and on a probe's answer (Poll).

Each one renders itself for the plan and evaluates itself for the executor: the plan never
describes a decision the code makes some other way.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.types import Captured, Fmt, Slot, Template, Value, render
from resync.model.keys import Key


class Condition(ABC):
    @abstractmethod
    def template(self) -> Template: ...

    @abstractmethod
    def holds(self, captured: Captured) -> bool: ...

    def describe(self, captured: Captured | None = None) -> str:
        return render(self.template(), captured)

    def explain(self, captured: Captured) -> str:
        """Why it does not hold, in words ("" when the message says it all)."""
        return ""


@dataclass(frozen=True)
class IsSet(Condition):
    """The value was captured and is not NULL/None."""

    key: Key

    def template(self) -> Template:
        return (Slot(self.key, Fmt.SQL), " is set")

    def holds(self, captured: Captured) -> bool:
        return captured.get(str(self.key)) is not None


@dataclass(frozen=True)
class Equals(Condition):
    key: Key
    value: Value

    def template(self) -> Template:
        from resync.actions.quoting import sql_literal

        return (Slot(self.key, Fmt.SQL), f" = {sql_literal(self.value)}")

    def holds(self, captured: Captured) -> bool:
        return captured.get(str(self.key)) == self.value


@dataclass(frozen=True)
class Same(Condition):
    """Two captured values are equal and set."""

    first: Key
    second: Key

    def template(self) -> Template:
        return (Slot(self.first, Fmt.SQL), " = ", Slot(self.second, Fmt.SQL))

    def holds(self, captured: Captured) -> bool:
        a = captured.get(str(self.first))
        return a is not None and a == captured.get(str(self.second))

    def explain(self, captured: Captured) -> str:
        return (f"({self.first} {captured.get(str(self.first))!r}, "
                f"{self.second} {captured.get(str(self.second))!r})")


@dataclass(frozen=True)
class OneOf(Condition):
    key: Key
    values: tuple[Value, ...]

    def template(self) -> Template:
        from resync.actions.quoting import sql_literal

        return (Slot(self.key, Fmt.SQL), f" in ({', '.join(sql_literal(v) for v in self.values)})")

    def holds(self, captured: Captured) -> bool:
        return captured.get(str(self.key)) in self.values


@dataclass(frozen=True)
class AtLeast(Condition):
    """A captured number is at least `minimum` (NULL fails)."""

    key: Key
    minimum: int

    def template(self) -> Template:
        return (Slot(self.key, Fmt.SQL), f" >= {self.minimum}")

    def holds(self, captured: Captured) -> bool:
        value = captured.get(str(self.key))
        try:
            return value is not None and int(str(value)) >= self.minimum
        except ValueError:
            return False


@dataclass(frozen=True)
class NonEmptyList(Condition):
    """A captured JSON list has at least one item."""

    key: Key

    def template(self) -> Template:
        return (f"{self.key} lists at least one row",)

    def holds(self, captured: Captured) -> bool:
        raw = captured.get(str(self.key))
        return bool(raw) and bool(json.loads(str(raw)))


@dataclass(frozen=True)
class Not(Condition):
    inner: Condition

    def template(self) -> Template:
        return ("not (", *self.inner.template(), ")")

    def holds(self, captured: Captured) -> bool:
        return not self.inner.holds(captured)


@dataclass(frozen=True)
class All(Condition):
    parts: tuple[Condition, ...]

    def template(self) -> Template:
        out: list[str | Slot] = []
        for i, part in enumerate(self.parts):
            out += ([" and "] if i else []) + list(part.template())
        return tuple(out)

    def holds(self, captured: Captured) -> bool:
        return all(p.holds(captured) for p in self.parts)


@dataclass(frozen=True)
class SameChecksums(Condition):
    """Two captured CHECKSUM TABLE results (JSON rows of [table, checksum]) are equal."""

    first: Key
    second: Key

    def template(self) -> Template:
        return (f"every checksum in {self.first} equals its table's in {self.second}",)

    def differing(self, captured: Captured) -> list[str]:
        a, b = (_checksums(captured.get(str(k))) for k in (self.first, self.second))
        return [t for t in dict.fromkeys([*a, *b]) if a.get(t) != b.get(t)]

    def holds(self, captured: Captured) -> bool:
        return not self.differing(captured)

    def explain(self, captured: Captured) -> str:
        return "for: " + ", ".join(self.differing(captured))


def _checksums(raw: Value) -> dict[str, str | None]:
    return {str(row[0]): row[1] for row in json.loads(str(raw))} if raw else {}


# -- probe conditions (Poll) ---------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeAnswer:
    """What one poll saw: the first row of a query, a command's exit and output, or an error."""

    row: Mapping[str, Any] | None = None
    error: str | None = None
    exit_code: int | None = None
    output: str = ""
    unreachable: bool = False  # the server did not answer at all (refused, gone)

    def describe(self, fields: tuple[str, ...] = ()) -> str:
        if self.error is not None:
            return self.error
        if self.row is not None and fields:
            return ", ".join(f"{f}={self.row.get(f)}" for f in fields)
        if self.row is not None:
            return ", ".join(f"{k}={v}" for k, v in self.row.items())
        if self.exit_code is not None:
            return f"exit {self.exit_code}" + (f": {self.output.strip()[-200:]}"
                                               if self.output.strip() else "")
        return "no row"


class ProbeCondition(ABC):
    fields: tuple[str, ...] = ()  # the columns worth showing in the journal

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def holds(self, answer: ProbeAnswer) -> bool: ...


@dataclass(frozen=True)
class Answers(ProbeCondition):
    def describe(self) -> str:
        return "the server answers"

    def holds(self, answer: ProbeAnswer) -> bool:
        return answer.error is None


@dataclass(frozen=True)
class NoAnswer(ProbeCondition):
    def describe(self) -> str:
        return "the server no longer answers"

    def holds(self, answer: ProbeAnswer) -> bool:
        return answer.unreachable


@dataclass(frozen=True)
class EmptyOutput(ProbeCondition):
    what: str = "it prints nothing"

    def describe(self) -> str:
        return self.what

    def holds(self, answer: ProbeAnswer) -> bool:
        # the exit status is not the answer: grep finding nothing exits 1
        return answer.error is None and answer.exit_code is not None and not answer.output.strip()


@dataclass(frozen=True)
class RowMatches(ProbeCondition):
    """Every listed column has one of its accepted values."""

    expect: tuple[tuple[str, tuple[object, ...]], ...]
    shown: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.shown or tuple(c for c, _ in self.expect)

    def describe(self) -> str:
        return " and ".join(f"{c}={'/'.join(dict.fromkeys(str(v) for v in vs))}"
                            for c, vs in self.expect)

    def holds(self, answer: ProbeAnswer) -> bool:
        row = answer.row
        return row is not None and all(row.get(c) in vs for c, vs in self.expect)


@dataclass(frozen=True)
class ColumnAtMost(ProbeCondition):
    """A numeric column of the answer's row is at most `limit`."""

    column: str
    limit: int
    what: str = ""

    @property
    def fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.column,)

    def describe(self) -> str:
        return f"{self.what or self.column} <= {self.limit}"

    def holds(self, answer: ProbeAnswer) -> bool:
        value = answer.row.get(self.column) if answer.row is not None else None
        try:
            return value is not None and int(str(value)) <= self.limit
        except ValueError:
            return False


@dataclass(frozen=True)
class ColumnStopped(ProbeCondition):
    """A thread column says No and its error column holds an error (replication broke)."""

    running: str
    error: str
    missing_is_failure: bool = True  # no row at all: replication is not configured

    def describe(self) -> str:
        return f"{self.running}=No with {self.error} set, or no replication configured"

    def holds(self, answer: ProbeAnswer) -> bool:
        if answer.error is not None:
            return False
        row = answer.row
        if row is None:
            return self.missing_is_failure
        return row.get(self.running) == "No" and bool(row.get(self.error))
