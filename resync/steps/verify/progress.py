"""The verify's progress, kept as one captured JSON value: what a resumed verify continues from.

Per table: the key ranges still to checksum, the combined checksums of the chunks done on each
server, and the chunks found different (each narrowed down to the smallest differing ranges).
A chunk once equal stays done; a differing chunk is checked again by the next attempt (its
range goes back to the ranges to do), so a verify resumed after a fix re-reads only that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from resync.actions.types import Captured
from resync.model.keys import Key
from resync.steps.verify.chunks import Json, Sums, transactional

PROGRESS = Key("verify.progress")
# set while this verify keeps the replica's applier stopped: a resumed verify starts it again
PAUSED = Key("verify.applier_paused")
RESUMED = Key("verify.resumed_chunks")  # chunks found done when this attempt started
CHUNKS_READ = Key("verify.chunks_read")  # chunks this attempt checksummed (narrowing not counted)
REPLICA_TABLES = Key("verify.replica_tables")
FORMAT = 1

PENDING, DONE, GONE, UNVERIFIED = "pending", "done", "gone", "unverified"


@dataclass
class Differing:
    """A chunk whose checksums differ, and what narrowing it found."""

    lower: Json
    upper: Json
    primary: Sums
    replica: Sums
    found: list[dict[str, Any]] = field(default_factory=list)  # narrowed ranges (report items)

    def as_json(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": self.upper, "primary": self.primary.as_json(),
                "replica": self.replica.as_json(), "found": self.found}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Differing:
        return cls(raw["lower"], raw["upper"], Sums.from_json(raw["primary"]),
                   Sums.from_json(raw["replica"]), list(raw.get("found", [])))


@dataclass
class TableProgress:
    schema: str
    table: str
    engine: str
    estimated_rows: int = 0
    status: str = PENDING
    todo: list[list[Json]] = field(default_factory=lambda: [[None, None]])  # (lower, upper]
    primary: Sums = field(default_factory=Sums)
    replica: Sums = field(default_factory=Sums)
    chunks: int = 0
    chunk_rows: int | None = None  # the last chunk size: a resumed table starts there
    differing: list[Differing] = field(default_factory=list)
    note: str = ""
    # ranges of differing chunks still to halve, one lock each: [lower, upper, rows, differing #]
    narrowing: list[list[Json]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def transactional(self) -> bool:
        return transactional(self.engine)

    @property
    def open(self) -> bool:
        return self.status == PENDING

    def add(self, primary: Sums, replica: Sums) -> None:
        self.primary, self.replica = self.primary + primary, self.replica + replica
        self.chunks += 1

    def retry_differing(self) -> int:
        """Put the differing chunks back among the ranges to do (their sums out again)."""
        for d in self.differing:
            self.primary, self.replica = self.primary - d.primary, self.replica - d.replica
            self.chunks -= 1
            self.todo.insert(0, [d.lower, d.upper])
        count = len(self.differing)
        self.differing, self.narrowing = [], []
        if count or self.status == UNVERIFIED:  # an unverified table kept its ranges to do
            self.status, self.note = PENDING, ""
        return count

    def as_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.table, "engine": self.engine,
                "estimated_rows": self.estimated_rows, "status": self.status, "todo": self.todo,
                "primary": self.primary.as_json(), "replica": self.replica.as_json(),
                "chunks": self.chunks, "chunk_rows": self.chunk_rows,
                "differing": [d.as_json() for d in self.differing], "note": self.note,
                "narrowing": self.narrowing}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TableProgress:
        return cls(raw["schema"], raw["table"], raw["engine"], int(raw.get("estimated_rows", 0)),
                   raw["status"], [list(r) for r in raw["todo"]], Sums.from_json(raw["primary"]),
                   Sums.from_json(raw["replica"]), int(raw["chunks"]), raw.get("chunk_rows"),
                   [Differing.from_json(d) for d in raw.get("differing", [])],
                   raw.get("note", ""), [list(n) for n in raw.get("narrowing", [])])


@dataclass
class Progress:
    tables: dict[str, TableProgress] = field(default_factory=dict)
    syncs: int = 0  # positions both servers were brought to

    # -- persistence ----------------------------------------------------------------------------
    def dumps(self) -> str:
        return json.dumps({"format": FORMAT, "tables": [t.as_json() for t in self.tables.values()],
                           "syncs": self.syncs},
                          separators=(",", ":"))

    @classmethod
    def load(cls, captured: Captured) -> Progress:
        raw = captured.get(str(PROGRESS))
        if not raw:
            return cls()
        doc = json.loads(str(raw))
        if doc.get("format") != FORMAT:
            return cls()  # another resync's format: start over
        tables = [TableProgress.from_json(t) for t in doc["tables"]]
        return cls({t.name: t for t in tables}, int(doc.get("syncs", 0)))

    # -- a new attempt ----------------------------------------------------------------------------
    def reconcile(self, listed: list[tuple[str, str, str, int]]) -> int:
        """The tables listed now (schema, table, engine, estimated rows): new ones are added,
        those no longer there dropped, differing chunks put back to do. Returns the chunks kept."""
        now = {f"{s}.{t}": (s, t, e, n) for s, t, e, n in listed}
        kept = {}
        for name, (schema, table, engine, rows) in now.items():
            old = self.tables.get(name)
            if old is None or old.engine.lower() != engine.lower() or old.status == GONE:
                kept[name] = TableProgress(schema, table, engine, rows)
                continue
            old.estimated_rows = rows
            old.retry_differing()
            kept[name] = old
        self.tables = kept
        return sum(t.chunks for t in kept.values())

    # -- reading it ---------------------------------------------------------------------------------
    def open_tables(self, snapshot: bool) -> list[TableProgress]:
        return [t for t in self.tables.values() if t.open and t.transactional == snapshot]

    @property
    def chunks(self) -> int:
        return sum(t.chunks for t in self.tables.values())

    def estimated_total(self) -> int:
        return sum(max(t.estimated_rows, t.primary.n) for t in self.tables.values()
                   if t.status != GONE)

    def rows_done(self) -> int:
        return sum(t.primary.n if t.open else max(t.estimated_rows, t.primary.n)
                   for t in self.tables.values() if t.status != GONE)

    def differing(self) -> list[TableProgress]:
        return [t for t in self.tables.values() if t.differing]

    def unverified(self) -> list[TableProgress]:
        return [t for t in self.tables.values() if t.status in (UNVERIFIED, PENDING)]

    def report(self) -> list[dict[str, Any]]:
        """Every differing range found, as report items (table, range, rows and sums)."""
        return [item for t in self.differing() for d in t.differing for item in d.found]


def checksum_texts(progress: Progress) -> tuple[list[list[str]], list[list[str]]]:
    """[table, text] rows per server, as CHECKSUM TABLE listed them (the summary's table)."""
    primary, replica = [], []
    for t in progress.tables.values():
        if t.status == GONE:
            continue
        p, r = t.primary.text(), t.replica.text()
        if t.differing and p == r:  # sums that happen to agree must not read as a match
            r += " (a chunk differs)"
        if t.status != DONE and not t.differing:
            p, r = p + f" ({t.status})", r + f" ({t.status})"
        primary.append([t.name, p])
        replica.append([t.name, r])
    return primary, replica
