"""Chunks of a table by its primary (or unique NOT NULL) key: the SQL that bounds and checksums
them, the key values kept in JSON, and the chunk size that meets a time target. Pure: no I/O.

A chunk is the key range (lower, upper]: `lower` None is the table's start, `upper` None its
end. Its checksum is COUNT(*) and BIT_XOR of CRC32 over each row's image
(CONCAT_WS('#', every column, CONCAT(ISNULL(each nullable column)))), as pt-table-checksum
computes it; the same statement runs on both servers at the same binlog position.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resync.actions.quoting import quote_ident

CHUNK_SECONDS = 0.5  # the time target of one chunk on the slower server
LOCKED_CHUNK_SECONDS = 0.25  # under a table lock (MyISAM, Aria ...): writers to it wait this long
# caps of the statements run under a table lock; the lock's budget (LOCK_BUDGET) caps all together
LOCK_BUDGET = 0.75  # seconds a table lock may be held: a write to it waits no longer
LOCKED_BOUNDARY_CAP = LOCKED_CHUNK_SECONDS
LOCKED_CHECKSUM_CAP = 2 * LOCKED_CHUNK_SECONDS
ROUND_SECONDS = 30.0  # one snapshot pair serves this long: the primary's undo history stays short
FIRST_CHUNK_ROWS = 1000
MIN_CHUNK_ROWS = 1
MAX_CHUNK_ROWS = 2_000_000
# key columns whose comparisons follow the index order (ENUM/SET compare as strings, floats round)
KEY_TYPES = frozenset({
    "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
    "char", "varchar", "binary", "varbinary", "date", "datetime", "timestamp", "time", "year"})
SNAPSHOT_ENGINES = frozenset({"innodb", "xtradb", "rocksdb", "tokudb"})

KeyValues = tuple[Any, ...]
Json = Any


@dataclass(frozen=True)
class Column:
    name: str
    nullable: bool


@dataclass(frozen=True)
class Shape:
    """What a table's chunks are built from: its columns and the key that orders them."""

    schema: str
    table: str
    engine: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # empty: not chunkable, checksummed whole
    index: str | None = None

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def sql_name(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"

    @property
    def transactional(self) -> bool:
        """Read inside a consistent snapshot; otherwise under a short table lock."""
        return self.engine.lower() in SNAPSHOT_ENGINES

    @property
    def chunked(self) -> bool:
        return bool(self.key)


def transactional(engine: str | None) -> bool:
    return (engine or "").lower() in SNAPSHOT_ENGINES


def pick_key(columns: Sequence[Column], indexes: Sequence[tuple[str, bool, str, int | None]],
             types: dict[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """The index to chunk by: PRIMARY, else the first unique index over NOT NULL columns; only
    whole columns (no prefix) of types whose comparisons follow the index's order.
    `indexes`: (index name, unique, column, sub_part) rows in SEQ_IN_INDEX order."""
    nullable = {c.name: c.nullable for c in columns}
    found: dict[str, list[str]] = {}
    usable: dict[str, bool] = {}
    for index, unique, column, sub_part in indexes:
        found.setdefault(index, []).append(column)
        ok = (unique and sub_part is None and not nullable.get(column, True)
              and types.get(column, "").lower() in KEY_TYPES)
        usable[index] = usable.get(index, True) and ok
    order = sorted(found, key=lambda name: (name != "PRIMARY", list(found).index(name)))
    for index in order:
        if usable[index]:
            return index, tuple(found[index])
    return None, ()


# -- key values as JSON (kept in the journal: resume continues from them) -------------------------
def encode_value(value: Any) -> Json:
    if value is None or isinstance(value, bool):
        raise ValueError(f"not a key value: {value!r}")
    if isinstance(value, int | str | float):
        return value
    if isinstance(value, bytes | bytearray):
        return {"hex": bytes(value).hex()}
    if isinstance(value, decimal.Decimal):
        return {"dec": str(value)}
    if isinstance(value, datetime.datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"date": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"td": [value.days, value.seconds, value.microseconds]}
    raise ValueError(f"cannot keep a key value of type {type(value).__name__}: {value!r}")


def decode_value(raw: Json) -> Any:
    if not isinstance(raw, dict):
        return raw
    if "hex" in raw:
        return bytes.fromhex(raw["hex"])
    if "dec" in raw:
        return decimal.Decimal(raw["dec"])
    if "dt" in raw:
        return datetime.datetime.fromisoformat(raw["dt"])
    if "date" in raw:
        return datetime.date.fromisoformat(raw["date"])
    if "td" in raw:
        days, seconds, micro = raw["td"]
        return datetime.timedelta(days=days, seconds=seconds, microseconds=micro)
    raise ValueError(f"unknown key value {raw!r}")


def encode_key(values: KeyValues | None) -> Json:
    return None if values is None else [encode_value(v) for v in values]


def decode_key(raw: Json) -> KeyValues | None:
    return None if raw is None else tuple(decode_value(v) for v in raw)


def show_key(values: KeyValues | None, columns: Sequence[str], op: str = "=") -> str:
    """A key for people: id=42, or (a, b)=(1, 'x'); `op` another comparison."""
    if values is None:
        return "-"

    def one(v: Any) -> str:
        if isinstance(v, bytes):
            return "0x" + v.hex()
        return repr(v) if isinstance(v, str) else str(v)

    if len(values) == 1:
        return f"{columns[0] if columns else 'key'}{op}{one(values[0])}"
    return f"({', '.join(columns)}){op}({', '.join(one(v) for v in values)})"


# -- SQL ----------------------------------------------------------------------------------------
def _after(key: Sequence[str], inclusive: bool) -> str:
    """(k1, k2) > (%s, %s) spelled out so that every server uses the index's range scan:
    (k1 > %s) OR (k1 = %s AND k2 > %s); `inclusive`: the last comparison is >=."""
    terms = []
    for i in range(len(key)):
        eq = [f"{k} = %s" for k in key[:i]]
        op = ">=" if inclusive and i == len(key) - 1 else ">"
        terms.append("(" + " AND ".join([*eq, f"{key[i]} {op} %s"]) + ")")
    return "(" + " OR ".join(terms) + ")"


def _upto(key: Sequence[str]) -> str:
    """(k1, k2) <= (%s, %s): (k1 < %s) OR (k1 = %s AND k2 <= %s)."""
    terms = []
    for i in range(len(key)):
        eq = [f"{k} = %s" for k in key[:i]]
        op = "<=" if i == len(key) - 1 else "<"
        terms.append("(" + " AND ".join([*eq, f"{key[i]} {op} %s"]) + ")")
    return "(" + " OR ".join(terms) + ")"


def _expanded(values: KeyValues) -> list[Any]:
    """The parameters of _after/_upto: for term i, values[0..i]."""
    out: list[Any] = []
    for i in range(len(values)):
        out += list(values[: i + 1])
    return out


def range_where(key: Sequence[str], lower: KeyValues | None,
                upper: KeyValues | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of (lower, upper] over quoted key columns."""
    parts, params = [], []
    if lower is not None:
        parts.append(_after(key, inclusive=False))
        params += _expanded(lower)
    if upper is not None:
        parts.append(_upto(key))
        params += _expanded(upper)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


def ident(name: str, formatted: bool) -> str:
    """A quoted name; in a statement with parameters the driver formats the text, so a % in
    the name is doubled then."""
    quoted = quote_ident(name)
    return quoted.replace("%", "%%") if formatted else quoted


def row_image(columns: Sequence[Column], formatted: bool = False) -> str:
    """One row as one string: every column (as bytes: no collation to mix) and, as the last
    field, which nullable columns are NULL (CONCAT_WS skips NULLs: 'a',NULL and NULL,'a' differ)."""
    fields = [f"CAST({ident(c.name, formatted)} AS BINARY)" for c in columns]
    nulls = [f"ISNULL({ident(c.name, formatted)})" for c in columns if c.nullable]
    if nulls:
        fields.append(f"CONCAT({', '.join(nulls)})")
    return f"CONCAT_WS('#', {', '.join(fields)})"


def checksum_select(table: str, image: str, index: str | None, where: str) -> str:
    """COUNT(*) and the XOR of every row's CRC32 (0 for no rows); SUM as well: with no unique key
    two equal rows would cancel out of the XOR, not out of the sum."""
    force = f" FORCE INDEX ({index})" if index else ""
    crc = f"CRC32({image})"
    return (f"SELECT COUNT(*) AS n, COALESCE(BIT_XOR({crc}), 0) AS x, COALESCE(SUM({crc}), 0) AS s "
            f"FROM {table}{force}{where}")


def _names(shape: Shape, formatted: bool) -> tuple[str, list[str], str | None]:
    table = f"{ident(shape.schema, formatted)}.{ident(shape.table, formatted)}"
    index = ident(shape.index, formatted) if shape.index else None
    return table, [ident(k, formatted) for k in shape.key], index


def checksum_sql(shape: Shape, lower: KeyValues | None,
                 upper: KeyValues | None) -> tuple[str, list[Any]]:
    formatted = lower is not None or upper is not None
    table, key, index = _names(shape, formatted)
    where, params = range_where(key, lower, upper)
    return checksum_select(table, row_image(shape.columns, formatted), index, where), params


def boundary_select(table: str, key: Sequence[str], index: str, where: str, offset: str) -> str:
    cols = ", ".join(key)
    return (f"SELECT {cols} FROM {table} FORCE INDEX ({index}){where} ORDER BY {cols} "
            f"LIMIT 1 OFFSET {offset}")


def boundary_sql(shape: Shape, lower: KeyValues | None, upper: KeyValues | None,
                 offset: int) -> tuple[str, list[Any]]:
    """The key of the row `offset` rows into (lower, upper] (none: fewer rows than that)."""
    if not shape.index:
        raise ValueError(f"{shape.name} has no key to chunk by")
    table, key, index = _names(shape, lower is not None or upper is not None)
    where, params = range_where(key, lower, upper)
    assert index is not None
    return boundary_select(table, key, index, where, str(max(0, int(offset)))), params


# the statements as the plan shows them (the same builders, with placeholders for names)
PLAN_IMAGE = "CONCAT_WS('#', CAST(<column> AS BINARY), ..., CONCAT(ISNULL(<nullable column>), ...))"
PLAN_WHERE = " WHERE <key> > <lower> AND <key> <= <upper>"
PLAN_CHECKSUM = checksum_select("<table>", PLAN_IMAGE, "<key index>", PLAN_WHERE)
PLAN_BOUNDARY = boundary_select("<table>", ["<key columns>"], "<key index>",
                                " WHERE <key> > <lower> AND <key> <= <upper>",
                                "<chunk rows - 1>")


# -- sums ---------------------------------------------------------------------------------------
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Sums:
    """COUNT, BIT_XOR and SUM (mod 2^64) of row CRCs: chunks combine into their table's."""

    n: int = 0
    x: int = 0
    s: int = 0

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Sums:
        return cls(int(row["n"] or 0), int(row["x"] or 0), int(row["s"] or 0) & MASK64)

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.n + other.n, self.x ^ other.x, (self.s + other.s) & MASK64)

    def __sub__(self, other: Sums) -> Sums:
        return Sums(self.n - other.n, self.x ^ other.x, (self.s - other.s) & MASK64)

    def as_json(self) -> list[int]:
        return [self.n, self.x, self.s]

    @classmethod
    def from_json(cls, raw: Json) -> Sums:
        return cls(*(int(v) for v in raw)) if raw else cls()

    def text(self) -> str:
        return f"{self.n} rows, crc {self.x:08x}/{self.s:x}"


# -- chunk size ---------------------------------------------------------------------------------
@dataclass
class Sizer:
    """Rows per chunk that take about `target` seconds on the slower server (pt-table-checksum's
    --chunk-time): a weighted average of the rate seen, at most 4x larger than the last chunk."""

    target: float = CHUNK_SECONDS
    rows: int = FIRST_CHUNK_ROWS
    rate: float | None = None  # rows per second

    def observe(self, rows: int, seconds: float) -> None:
        if rows <= 0:
            return
        rate = rows / max(seconds, 0.001)
        self.rate = rate if self.rate is None else 0.75 * self.rate + 0.25 * rate
        wanted = int(self.rate * self.target)
        self.rows = max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, wanted, max(rows, self.rows) * 4))

    def too_slow(self) -> None:
        """The last chunk ran out of its time: halve."""
        self.rows = max(MIN_CHUNK_ROWS, self.rows // 2)
        if self.rate is not None:
            self.rate /= 2
