"""One chunk at a time: checksummed on both servers (at once, inside their snapshots; or under
a short lock on the primary, then on the replica at that lock's position), a differing chunk
narrowed down to the smallest key ranges that differ."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from resync.model.errors import DatabaseError
from resync.steps.verify.chunks import (
    CHUNK_SECONDS,
    FIRST_CHUNK_ROWS,
    LOCKED_BOUNDARY_CAP,
    LOCKED_CHECKSUM_CAP,
    LOCKED_CHUNK_SECONDS,
    Column,
    KeyValues,
    Shape,
    Sizer,
    Sums,
    boundary_sql,
    checksum_sql,
    decode_key,
    encode_key,
    pick_key,
    show_key,
)
from resync.steps.verify.parts import COLUMNS, INDEXES
from resync.steps.verify.progress import DONE, GONE, UNVERIFIED, Differing, TableProgress
from resync.steps.verify.sync import Server, Syncer, TooSlow

NO_TABLE = 1146
DEFINITION_CHANGED = 1412  # a table created or altered after the snapshot began
TIMED_OUT = (1969, 3024)  # max_statement_time (MariaDB), MAX_EXECUTION_TIME (MySQL)
MAX_FOUND = 20  # differing ranges reported per table; beyond, the chunks as they are
T = TypeVar("T")


class Missing:
    """The table does not exist on that server."""


Result = Sums | Missing
Halves = list[tuple[KeyValues | None, KeyValues | None, Result]]


class NextRound(Exception):
    """This table cannot be read in the current snapshots (its definition changed): later."""


class Scanner:
    def __init__(self, primary: Server, replica: Server, pool: ThreadPoolExecutor) -> None:
        self.primary, self.replica, self.pool = primary, replica, pool
        self.shapes: dict[str, Shape | None] = {}
        self.sizers: dict[str, Sizer] = {}
        self.chunks_read = 0

    # -- what a table looks like ------------------------------------------------------------------
    def shape(self, t: TableProgress) -> Shape | None:
        """Columns and chunking key, from the primary (the replica for a table only there)."""
        if t.name not in self.shapes:
            shape = self._shape(t, self.primary) or self._shape(t, self.replica)
            self.shapes[t.name] = shape
        return self.shapes[t.name]

    def _shape(self, t: TableProgress, server: Server) -> Shape | None:
        rows = server.sql("columns", "meta", COLUMNS, (t.schema, t.table))
        if not rows:
            return None
        columns = tuple(Column(str(r["c"]), r["n"] == "YES") for r in rows)
        types = {str(r["c"]): str(r["t"]) for r in rows}
        indexes = [(str(r["i"]), int(r["nu"]) == 0, str(r["c"]),
                    None if r["p"] is None else int(r["p"]))
                   for r in server.sql("indexes", "meta", INDEXES, (t.schema, t.table))]
        index, key = pick_key(columns, indexes, types)
        return Shape(t.schema, t.table, t.engine, columns, key, index)

    def sizer(self, t: TableProgress, target: float) -> Sizer:
        if t.name not in self.sizers:
            self.sizers[t.name] = Sizer(target, t.chunk_rows or FIRST_CHUNK_ROWS)
        return self.sizers[t.name]

    # -- statements -------------------------------------------------------------------------------
    def _checksum(self, server: Server, part: str, session: str, shape: Shape,
                  lower: KeyValues | None, upper: KeyValues | None,
                  limit: Callable[[str], str] | None = None) -> Result:
        sql, params = checksum_sql(shape, lower, upper)
        try:
            rows = server.sql(part, session, limit(sql) if limit else sql, params)
        except DatabaseError as exc:
            if exc.code == NO_TABLE:
                return Missing()
            if exc.code == DEFINITION_CHANGED:
                raise NextRound() from None
            if exc.code in TIMED_OUT:
                raise TooSlow(str(exc)) from None
            raise
        return Sums.of_row(rows[0])

    def _boundary(self, server: Server, part: str, session: str, shape: Shape,
                  lower: KeyValues | None, upper: KeyValues | None, offset: int,
                  limit: Callable[[str], str] | None = None) -> KeyValues | None:
        sql, params = boundary_sql(shape, lower, upper, offset)
        try:
            rows = server.sql(part, session, limit(sql) if limit else sql, params)
        except DatabaseError as exc:
            if exc.code in TIMED_OUT:
                raise TooSlow(str(exc)) from None
            if exc.code == DEFINITION_CHANGED:
                raise NextRound() from None
            if exc.code == NO_TABLE:  # the checksums say where it is missing
                return None
            raise
        return tuple(rows[0][k] for k in shape.key) if rows else None

    def _both(self, on_primary: Callable[[], T], on_replica: Callable[[], T]) -> tuple[T, T]:
        """Both servers at once (each on its own session)."""
        theirs: Future[T] = self.pool.submit(on_replica)
        try:
            mine = on_primary()
        finally:
            done = theirs.result()
        return mine, done

    # -- transactional tables: inside the round's snapshots ---------------------------------------
    def snapshot_chunk(self, t: TableProgress) -> None:
        shape = self.shape(t)
        if shape is None:  # on neither server any more
            t.status, t.todo = GONE, []
            return
        raw_lower, raw_upper = t.todo[0]
        lower, upper = decode_key(raw_lower), decode_key(raw_upper)
        end, found = upper, None
        sizer = self.sizer(t, CHUNK_SECONDS)
        if shape.chunked:
            found = self._boundary(self.primary, "boundary", "snap", shape, lower, upper,
                                   sizer.rows - 1)
            end = found if found is not None else upper
        started = time.monotonic()
        p, r = self._both(
            lambda: self._checksum(self.primary, "checksum_p", "snap", shape, lower, end),
            lambda: self._checksum(self.replica, "checksum_r", "snap", shape, lower, end))
        self.chunks_read += 1
        if isinstance(p, Missing) or isinstance(r, Missing):
            self._missing(t, p, r)
            return
        sizer.observe(max(p.n, r.n), time.monotonic() - started)
        t.chunk_rows = sizer.rows
        if found is not None and found != upper:
            t.todo[0] = [encode_key(found), raw_upper]
        else:
            t.todo.pop(0)
        t.add(p, r)
        if p != r:  # kept as it is first: narrowing may be cut short (next round, a kill)
            d = Differing(encode_key(lower), encode_key(end), p, r,
                          [self._item(shape, lower, end, p, r, note="not narrowed")])
            t.differing.append(d)
            d.found = self._narrow(shape, lower, end, p, r, budget=MAX_FOUND - self._found(t))
        if not t.todo:
            t.status = DONE

    def _found(self, t: TableProgress) -> int:
        return sum(len(d.found) for d in t.differing)

    def _missing(self, t: TableProgress, p: Result, r: Result) -> None:
        if isinstance(p, Missing) and isinstance(r, Missing):
            t.status, t.todo = GONE, []  # dropped on both since it was listed
            return
        side = "replica" if isinstance(r, Missing) else "primary"
        sums = p if isinstance(p, Sums) else r
        assert isinstance(sums, Sums)
        d = Differing(None, None, sums if side == "replica" else Sums(),
                      sums if side == "primary" else Sums())
        d.found = [{"table": t.name, "lower": None, "upper": None, "range": "the table",
                    "note": f"the table does not exist on the {side}",
                    "primary": d.primary.as_json(), "replica": d.replica.as_json()}]
        t.add(d.primary, d.replica)
        t.differing.append(d)
        t.status, t.todo = DONE, []

    def _narrow(self, shape: Shape, lower: KeyValues | None, upper: KeyValues | None, p: Sums,
                r: Sums, budget: int, depth: int = 0) -> list[dict[str, Any]]:
        """Bisect a differing range inside the snapshots: by the middle row of the server with
        more rows in it, until a range holds at most one row on each side."""
        if budget <= 0 or not shape.chunked or (p.n <= 1 and r.n <= 1) or depth > 64:
            return [self._item(shape, lower, upper, p, r, single=budget > 0)]
        server, part = (self.primary, "split_p") if p.n >= r.n else (self.replica, "split_r")
        middle = self._boundary(server, part, "snap", shape, lower, upper, max(p.n, r.n) // 2 - 1)
        if middle is None or middle == upper:
            return [self._item(shape, lower, upper, p, r)]
        out: list[dict[str, Any]] = []
        for a, b in ((lower, middle), (middle, upper)):
            hp, hr = self._both(self._half(self.primary, "half_p", shape, a, b),
                                self._half(self.replica, "half_r", shape, a, b))
            assert isinstance(hp, Sums) and isinstance(hr, Sums)
            if hp != hr:
                out += self._narrow(shape, a, b, hp, hr, budget - len(out), depth + 1)
        return out or [self._item(shape, lower, upper, p, r, note="its halves were equal")]

    def _half(self, server: Server, part: str, shape: Shape, lower: KeyValues | None,
              upper: KeyValues | None) -> Callable[[], Result]:
        return lambda: self._checksum(server, part, "snap", shape, lower, upper)

    def _item(self, shape: Shape, lower: KeyValues | None, upper: KeyValues | None, p: Sums,
              r: Sums, *, single: bool = False, note: str = "") -> dict[str, Any]:
        """A differing range as the report shows it; a single row by its key."""
        rows = ""
        if single and shape.chunked and p.n <= 1 and r.n <= 1:
            keys = [self._boundary(s, part, "snap", shape, lower, upper, 0) if n else None
                    for s, part, n in ((self.primary, "split_p", p.n),
                                       (self.replica, "split_r", r.n))]
            shown = {show_key(k, shape.key) for k in keys if k is not None}
            rows = "row " + " / ".join(sorted(shown)) if shown else ""
        return {"table": shape.name, "lower": encode_key(lower), "upper": encode_key(upper),
                "range": key_range(shape, lower, upper), "rows": rows, "note": note,
                "primary": p.as_json(), "replica": r.as_json()}

    # -- non-transactional tables: one chunk (or one split) per short lock ------------------------
    def locked_chunk(self, t: TableProgress, syncer: Syncer) -> None:
        shape = self.shape(t)
        if shape is None:
            t.status, t.todo = GONE, []
            return
        try:
            if t.narrowing:
                self._locked_split(t, shape, syncer)
            elif t.todo:
                self._locked_scan(t, shape, syncer)
        except DatabaseError as exc:
            if exc.code != NO_TABLE:
                raise
            # on one server only (LOCK TABLES refused it): no position makes them equal
            self._missing(t, *(Missing() if not s.sql("columns", "meta", COLUMNS,
                                                      (t.schema, t.table)) else Sums()
                               for s in (self.primary, self.replica)))
        if not t.todo and not t.narrowing and t.status != UNVERIFIED:
            t.status = DONE

    def _limit(self, deadline: float, cap: float) -> Callable[[str], str]:
        """Under a lock: capped at `cap` seconds, or less when the lock's budget is nearly up."""
        def limit(sql: str) -> str:
            left = deadline - time.monotonic()
            if left < 0.02:
                raise TooSlow("the lock's time is up")
            return self.primary.dialect.time_limited(sql, min(cap, round(left, 3)))
        return limit

    def _locked_scan(self, t: TableProgress, shape: Shape, syncer: Syncer) -> None:
        raw_lower, raw_upper = t.todo[0]
        lower, upper = decode_key(raw_lower), decode_key(raw_upper)
        sizer = self.sizer(t, LOCKED_CHUNK_SECONDS)

        def on_primary(deadline: float) -> tuple[KeyValues | None, KeyValues | None, Result, float]:
            started = time.monotonic()
            found = (self._boundary(self.primary, "locked_boundary", "lock", shape, lower, upper,
                                    sizer.rows - 1, self._limit(deadline, LOCKED_BOUNDARY_CAP))
                     if shape.chunked else None)
            end = found if found is not None else upper
            p = self._checksum(self.primary, "locked_checksum", "lock", shape, lower, end,
                               self._limit(deadline, LOCKED_CHECKSUM_CAP))
            return found, end, p, time.monotonic() - started

        def on_replica(mine: tuple[KeyValues | None, KeyValues | None, Result, float]) -> Result:
            return self._checksum(self.replica, "locked_checksum_r", "snap", shape, lower, mine[1])

        try:
            (found, end, p, seconds), r = syncer.locked(shape.sql_name, on_primary, on_replica)
        except TooSlow:
            if sizer.rows <= 1 or not shape.chunked:
                what = "one row" if shape.chunked else "the whole table (no primary/unique key)"
                t.status = UNVERIFIED  # its ranges to do are kept: a later attempt retries
                t.note = (f"{what} takes longer to checksum than a lock may be held "
                          f"({syncer.lock_budget:g}s)")
            sizer.too_slow()
            t.chunk_rows = sizer.rows
            return
        self.chunks_read += 1
        if isinstance(p, Missing) or isinstance(r, Missing):
            self._missing(t, p, r)
            return
        sizer.observe(max(p.n, 1), seconds)
        t.chunk_rows = sizer.rows
        if found is not None and found != upper:
            t.todo[0] = [encode_key(found), raw_upper]
        else:
            t.todo.pop(0)
        t.add(p, r)
        if p != r:
            d = Differing(encode_key(lower), encode_key(end), p, r)
            t.differing.append(d)
            if shape.chunked and p.n > 1:  # halved in later locks; until then, as it is
                d.found.append(self._locked_item(shape, lower, end, p, r, "not narrowed yet"))
                t.narrowing.append([encode_key(lower), encode_key(end), p.n,
                                    len(t.differing) - 1])
            else:
                d.found.append(self._locked_item(shape, lower, end, p, r))

    def _locked_split(self, t: TableProgress, shape: Shape, syncer: Syncer) -> None:
        """Halve a differing range of a locked table: the halves' checksums under one lock."""
        raw_lower, raw_upper, rows, at = t.narrowing.pop(0)
        lower, upper = decode_key(raw_lower), decode_key(raw_upper)
        d = t.differing[int(at)]

        def on_primary(deadline: float) -> Halves:
            middle = self._boundary(self.primary, "locked_boundary", "lock", shape, lower, upper,
                                    int(rows) // 2 - 1, self._limit(deadline, LOCKED_BOUNDARY_CAP))
            if middle is None or middle == upper:
                return []
            limit = self._limit(deadline, LOCKED_CHECKSUM_CAP)
            return [(a, b, self._checksum(self.primary, "locked_checksum", "lock", shape, a, b,
                                          limit)) for a, b in ((lower, middle), (middle, upper))]

        def on_replica(halves: Halves) -> list[Result]:
            return [self._checksum(self.replica, "locked_checksum_r", "snap", shape, a, b)
                    for a, b, _ in halves]

        try:
            halves, theirs = syncer.locked(shape.sql_name, on_primary, on_replica)
        except TooSlow:
            halves, theirs = [], []
        differing = [(a, b, p, r) for (a, b, p), r in zip(halves, theirs, strict=True)
                     if isinstance(p, Sums) and isinstance(r, Sums) and p != r]
        if not differing:  # could not split, or the difference moved on since
            d.found.append(self._locked_item(shape, lower, upper, d.primary, d.replica,
                                             "" if halves else "not narrowed further"))
        for a, b, p, r in differing:
            if (p.n <= 1 and r.n <= 1) or self._found(t) + len(t.narrowing) >= MAX_FOUND:
                d.found.append(self._locked_item(shape, a, b, p, r))
            else:
                t.narrowing.append([encode_key(a), encode_key(b), p.n, at])
        narrowed = [f for f in d.found if f.get("note") != "not narrowed yet"]
        if narrowed and not any(n[3] == at for n in t.narrowing):
            d.found = narrowed  # the chunk's own line goes once its ranges are all found

    def _locked_item(self, shape: Shape, lower: KeyValues | None, upper: KeyValues | None,
                     p: Sums, r: Sums, note: str = "") -> dict[str, Any]:
        return {"table": shape.name, "lower": encode_key(lower), "upper": encode_key(upper),
                "range": key_range(shape, lower, upper), "rows": "", "note": note,
                "primary": p.as_json(), "replica": r.as_json()}


def key_range(shape: Shape, lower: KeyValues | None, upper: KeyValues | None) -> str:
    if not shape.chunked:
        return "the whole table (no primary or unique key)"
    if lower is None and upper is None:
        return "every row"
    parts = []
    if lower is not None:
        parts.append(show_key(lower, shape.key, " > "))
    if upper is not None:
        parts.append(show_key(upper, shape.key, " <= "))
    return " and ".join(parts)
