"""The action types: everything a step does, as data.

`plan` renders these objects and the executor runs the very same objects, so what a reviewer
reads is what runs. A value captured while the run goes (binlog coordinates, the old datadir's
path) appears as a `Ref`: `<name>` in a plan made before the run, the value itself once it is
known. Every action renders to a `Template`, text with typed slots for those values, so that a
plan filled with a journal's values reads exactly as the journal's records.

Leaf actions (one journal record each): Sql, Capture, CaptureRows, Shell, Poll, ReleaseLock,
Assert. Containers: HoldLock (its statements, on a session that stays open), When (a branch on a
captured value; its decision is a record too) and Composite (a pipeline of leaves that cannot be
flat, such as the copy: it still lists every leaf it will run).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from resync.actions.quoting import SQL_MASK, q, sql_literal, table_list
from resync.model.keys import Key
from resync.model.secrets import EnvSecret, Secret

if TYPE_CHECKING:
    from resync.actions.conditions import Condition, ProbeCondition
    from resync.run.executor import CompositeRun

Value = str | int | float | None
ROWS = Key("rows")
Captured = Mapping[str, Value]


class Fmt(StrEnum):
    """How a captured value is written into an action's text."""

    SQL = "sql"  # a SQL literal, as the driver sends it
    SHELL = "shell"  # one shell word
    TABLES = "tables"  # a JSON list of [schema, table] -> `schema`.`table`, ...
    TEXT = "text"  # as is (in words, not commands)


@dataclass(frozen=True)
class Ref:
    """A value captured by an earlier action (or fixed when the run starts, like the run id)."""

    key: Key

    def __str__(self) -> str:
        return f"<{self.key}>"


@dataclass(frozen=True)
class Slot:
    key: Key
    fmt: Fmt


@dataclass(frozen=True)
class Tables:
    """A captured list of tables spliced into a statement as identifiers (they cannot be bound)."""

    ref: Ref


Template = tuple[str | Slot, ...]
Param = str | int | float | bool | None | Ref | Tables | Secret | EnvSecret


def fill(value: Value, fmt: Fmt) -> str:
    if fmt is Fmt.SQL:
        return sql_literal(value)
    if fmt is Fmt.SHELL:
        return q(str(value))
    if fmt is Fmt.TABLES:
        return table_list(value)
    return str(value)


def render(template: Template, captured: Captured | None = None) -> str:
    """The text of a template; slots whose value is not captured (yet) show as <name>."""
    out: list[str] = []
    for part in template:
        if isinstance(part, Slot):
            name = str(part.key)
            out.append(fill(captured[name], part.fmt) if captured is not None and name in captured
                       else f"<{name}>")
        else:
            out.append(part)
    return "".join(out)


def template_json(template: Template) -> list[str | dict[str, str]]:
    return [p if isinstance(p, str) else {"ref": str(p.key), "as": p.fmt.value} for p in template]


def template_from_json(raw: Sequence[str | Mapping[str, str]]) -> Template:
    return tuple(p if isinstance(p, str) else Slot(Key(p["ref"]), Fmt(p["as"])) for p in raw)


def resolve(value: Param, captured: Captured) -> object:
    """A parameter's value for execution (secrets stay wrapped: reveal them at the driver)."""
    if isinstance(value, Ref):
        name = str(value.key)
        if name not in captured:
            from resync.model.errors import ResyncError

            raise ResyncError(f"value '{name}' has not been captured yet (run the earlier steps)")
        return captured[name]
    if isinstance(value, EnvSecret):
        return value.resolve()
    return value


def _sql_template(sql: str, params: tuple[Param, ...]) -> Template:
    if not params:
        return (sql,)
    pieces = sql.split("%s")
    if len(pieces) != len(params) + 1:
        raise ValueError(f"{len(params)} parameters for {len(pieces) - 1} placeholders: {sql}")
    out: list[str | Slot] = [pieces[0].replace("%%", "%")]
    for param, piece in zip(params, pieces[1:], strict=True):
        if isinstance(param, Ref):
            out.append(Slot(param.key, Fmt.SQL))
        elif isinstance(param, Tables):
            out.append(Slot(param.ref.key, Fmt.TABLES))
        elif isinstance(param, Secret | EnvSecret):
            out.append(SQL_MASK)
        else:
            out.append(sql_literal(param))
        out.append(piece.replace("%%", "%"))
    return _merge(out)


def _merge(parts: Sequence[str | Slot]) -> Template:
    """Adjacent strings joined: two templates of the same text compare equal."""
    out: list[str | Slot] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        elif part != "":
            out.append(part)
    return tuple(out)


class Leaf(ABC):
    """An action that is one journal record."""

    kind: str
    host: str

    @abstractmethod
    def template(self) -> Template: ...

    def render(self, captured: Captured | None = None) -> str:
        return render(self.template(), captured)

    def outputs(self) -> tuple[Key, ...]:
        """The values this action captures."""
        return ()


@dataclass(frozen=True)
class Sql(Leaf):
    """One statement with %s placeholders and its bound parameters."""

    host: str
    sql: str
    params: tuple[Param, ...] = ()
    session: str | None = None  # a session held by HoldLock instead of the host's shared one
    kind = "sql"

    def template(self) -> Template:
        return _sql_template(self.sql, self.params)

    def bind(self, captured: Captured) -> tuple[str, tuple[object, ...]]:
        if not any(isinstance(p, Tables) for p in self.params):
            return self.sql, tuple(resolve(p, captured) for p in self.params)
        # identifiers go into the text; the other values stay bound parameters
        pieces = self.sql.split("%s")
        bound = [resolve(p, captured) for p in self.params if not isinstance(p, Tables)]
        # the driver formats the text only when parameters remain: only then is % doubled
        escape = "%%" if bound else "%"
        sql = pieces[0] if bound else pieces[0].replace("%%", "%")
        for param, piece in zip(self.params, pieces[1:], strict=True):
            piece = piece if bound else piece.replace("%%", "%")
            if isinstance(param, Tables):
                sql += table_list(resolve(param.ref, captured)).replace("%", escape) + piece
            else:
                sql += "%s" + piece
        return sql, tuple(bound)


@dataclass(frozen=True)
class Capture(Sql):
    """A query whose first row's columns become captured values.

    No row: `missing` is the error message, or (missing=None) every value is captured as None.
    """

    columns: tuple[tuple[str, Key], ...] = ()
    missing: str | None = None
    kind = "capture"

    def outputs(self) -> tuple[Key, ...]:
        return tuple(k for _, k in self.columns)


@dataclass(frozen=True)
class CaptureRows(Sql):
    """A query whose rows are captured as one JSON list of value lists."""

    into: Key = ROWS
    kind = "capture"

    def outputs(self) -> tuple[Key, ...]:
        return (self.into,)


@dataclass(frozen=True)
class Shell(Leaf):
    """One command line (run by bash -o pipefail) on one host. Refs are shell-quoted."""

    host: str
    parts: tuple[str | Ref, ...]
    privileged: bool = False  # needs root on the host (sudo -n over SSH)
    timeout: float | None = None
    check: bool = True  # a non-zero exit fails the step
    into: Key | None = None  # the stripped stdout is captured under this name
    kind = "shell"

    @classmethod
    def line(cls, host: str, *parts: str | Ref, privileged: bool = False,
             timeout: float | None = None, check: bool = True, into: Key | None = None) -> Shell:
        return cls(host, parts, privileged, timeout, check, into)

    def template(self) -> Template:
        return _merge([Slot(p.key, Fmt.SHELL) if isinstance(p, Ref) else p for p in self.parts])

    def bind(self, captured: Captured) -> str:
        return "".join(q(str(resolve(p, captured))) if isinstance(p, Ref) else p for p in self.parts)

    def outputs(self) -> tuple[Key, ...]:
        return (self.into,) if self.into else ()


@dataclass(frozen=True)
class Poll(Leaf):
    """Run a probe until a condition holds: one journal record with the count and last result."""

    probe: Sql | Shell
    until: ProbeCondition
    timeout: float
    interval: float = 0.5
    fail_when: ProbeCondition | None = None  # stop at once: waiting longer cannot help
    failure: str = ""  # the error when time runs out (default: what was awaited, last answer)
    # an optimisation's wait: when time runs out the step goes on (the record says so)
    timeout_ok: bool = False
    kind = "poll"

    @property
    def host(self) -> str:  # type: ignore[override]
        return self.probe.host

    def template(self) -> Template:
        fail = f"; fails at once when {self.fail_when.describe()}" if self.fail_when else ""
        if self.timeout <= 0:  # a check, not a wait
            return _merge(["check once ", *self.probe.template(), f": {self.until.describe()}"])
        then = "; then goes on regardless" if self.timeout_ok else ""
        return _merge(["poll ", *self.probe.template(),
                       f" until {self.until.describe()} (every {self.interval:g}s, at most "
                       f"{self.timeout:g}s{fail}{then})"])


@dataclass(frozen=True)
class Probe(Leaf):
    """Look once: whether the probe's answer meets the condition is captured as 1 or 0."""

    probe: Sql | Shell
    condition: ProbeCondition
    into: Key
    kind = "probe"

    @property
    def host(self) -> str:  # type: ignore[override]
        return self.probe.host

    def template(self) -> Template:
        return _merge(["probe ", *self.probe.template(), f": {self.condition.describe()}?"])

    def outputs(self) -> tuple[Key, ...]:
        return (self.into,)


@dataclass(frozen=True)
class Login(Leaf):
    """Log in to the host's server as another user (same address, socket and TLS), then leave."""

    host: str
    user: str
    password_env: str
    kind = "login"

    def template(self) -> Template:
        return (f"log in as '{self.user}' (password from ${self.password_env})",)


@dataclass(frozen=True)
class LockAlive(Leaf):
    """The session a HoldLock kept open is still alive (its lock still holds)."""

    host: str
    session: str
    kind = "lock-alive"

    def template(self) -> Template:
        return (f"the lock on session '{self.session}' still holds",)


@dataclass(frozen=True)
class ReleaseLock(Leaf):
    """UNLOCK TABLES on the session a HoldLock kept open, then close it."""

    host: str
    session: str
    into: Key | None = None  # how long the lock was held, in seconds (a write-lock figure)
    kind = "release"

    def template(self) -> Template:
        return ("UNLOCK TABLES",)

    def outputs(self) -> tuple[Key, ...]:
        return (self.into,) if self.into else ()


@dataclass(frozen=True)
class Assert(Leaf):
    """A condition on captured values; false fails the step with the message."""

    condition: Condition
    message: str
    host: str = "-"
    kind = "assert"

    def template(self) -> Template:
        return _merge(["assert ", *self.condition.template()])


@dataclass(frozen=True)
class HoldLock:
    """Open a dedicated session, run the statements on it, keep it open: the lock they take
    lives as long as the session. `diagnose` runs (on another session) if a statement times out."""

    host: str
    session: str
    statements: tuple[Sql, ...]
    diagnose: CaptureRows | None = None
    what: str = "the lock"  # for the error when it times out: "FLUSH TABLES WITH READ LOCK ..."
    kind = "hold"


@dataclass(frozen=True)
class When:
    """Actions that depend on a captured value; `otherwise_note` says what happens if not."""

    condition: Condition
    then: tuple[Action, ...]
    otherwise: tuple[Action, ...] = ()
    otherwise_note: str = ""
    host: str = "-"
    kind = "when"

    def template(self) -> Template:
        return _merge(["when ", *self.condition.template()])

    def render(self, captured: Captured | None = None) -> str:
        return render(self.template(), captured)


class Composite(ABC):
    """A pipeline of leaves run by its own code (background ends, progress), listed up front."""

    kind = "composite"
    host: str
    title: str

    @abstractmethod
    def parts(self) -> tuple[Leaf, ...]:
        """Every leaf it runs, in the order they are journaled."""

    @abstractmethod
    def execute(self, run: CompositeRun) -> None: ...


Action = Leaf | HoldLock | When | Composite


@dataclass(frozen=True)
class Planned:
    """A leaf with its place in the step: `3`, `2.1` (in a HoldLock), `4.then.0` (in a When)."""

    id: str
    action: Leaf | When


def leaves(actions: Sequence[Action], prefix: str = "") -> list[Planned]:
    """The records a step's actions journal, in order, both branches of every When included."""
    out: list[Planned] = []
    for i, action in enumerate(actions):
        aid = f"{prefix}{i}"
        if isinstance(action, HoldLock):
            out += [Planned(f"{aid}.{j}", s) for j, s in enumerate(action.statements)]
        elif isinstance(action, When):
            out.append(Planned(aid, action))
            out += leaves(action.then, f"{aid}.then.")
            out += leaves(action.otherwise, f"{aid}.else.")
        elif isinstance(action, Composite):
            out += [Planned(f"{aid}.{j}", p) for j, p in enumerate(action.parts())]
        else:
            out.append(Planned(aid, action))
    return out


@dataclass(frozen=True)
class ActionView:
    """An action as the plan shows it (and as JSON)."""

    id: str
    host: str
    kind: str
    text: str
    template: list[str | dict[str, str]]
    session: str | None = None
    into: list[str] = field(default_factory=list)
    children: list[ActionView] = field(default_factory=list)
    otherwise: list[ActionView] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "host": self.host, "kind": self.kind,
                               "text": self.text, "template": self.template}
        for name in ("session", "note"):
            if getattr(self, name):
                doc[name] = getattr(self, name)
        if self.into:
            doc["into"] = self.into
        if self.children:
            doc["then" if self.kind == "when" else "actions"] = [c.as_json() for c in self.children]
        if self.otherwise:
            doc["else"] = [c.as_json() for c in self.otherwise]
        return doc


def view(action: Action, aid: str) -> ActionView:
    if isinstance(action, HoldLock):
        return ActionView(aid, action.host, "hold", f"hold a dedicated session '{action.session}'",
                          [], action.session,
                          children=[view(s, f"{aid}.{j}") for j, s in enumerate(action.statements)])
    if isinstance(action, When):
        return ActionView(aid, action.host, "when", action.render(),
                          template_json(action.template()),
                          children=views(action.then, f"{aid}.then."),
                          otherwise=views(action.otherwise, f"{aid}.else."),
                          note=action.otherwise_note)
    if isinstance(action, Composite):
        return ActionView(aid, action.host, "composite", action.title, [],
                          children=[view(p, f"{aid}.{j}") for j, p in enumerate(action.parts())])
    session = action.session if isinstance(action, Sql | ReleaseLock) else None
    return ActionView(aid, action.host, action.kind, action.render(),
                      template_json(action.template()), session,
                      [str(k) for k in action.outputs()])


def views(actions: Sequence[Action], prefix: str = "") -> list[ActionView]:
    return [view(a, f"{prefix}{i}") for i, a in enumerate(actions)]


def rows_json(rows: Sequence[Mapping[str, object]]) -> str:
    return json.dumps([[None if v is None else str(v) for v in r.values()] for r in rows])
