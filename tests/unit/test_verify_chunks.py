"""The chunked verify without servers: chunk SQL, key values in JSON, chunk sizes, sums, the
progress a resumed verify continues from, and the statements each server version gets."""

from __future__ import annotations

import datetime
import decimal
import json

import pytest

from resync.actions.dialect import ServerVersion, dialect_for
from resync.actions.types import leaves, views
from resync.steps.verify import VerifyData, compare_actions, describe
from resync.steps.verify.chunks import (
    MAX_CHUNK_ROWS,
    Column,
    Shape,
    Sizer,
    Sums,
    boundary_sql,
    checksum_sql,
    decode_key,
    encode_key,
    pick_key,
    range_where,
)
from resync.steps.verify.parts import verify_parts
from resync.steps.verify.progress import DONE, PENDING, Differing, Progress, TableProgress
from resync.steps.verify.step import AllCompared, ChunksMatch

COLS = (Column("id", False), Column("name", True), Column("qty", False))
ORDERS = Shape("app", "orders", "InnoDB", COLS, ("id",), "PRIMARY")
PAIR = Shape("app", "pairs", "MyISAM", COLS, ("id", "name"), "uq")


def dialect(text: str):  # type: ignore[no-untyped-def]
    return dialect_for(ServerVersion.parse(text))


# -- chunk SQL ---------------------------------------------------------------------------------------
def test_range_of_one_column() -> None:
    where, params = range_where(["`id`"], (10,), (20,))
    assert where == " WHERE ((`id` > %s)) AND ((`id` <= %s))"
    assert params == [10, 20]
    assert range_where(["`id`"], None, None) == ("", [])
    assert range_where(["`id`"], None, (5,)) == (" WHERE ((`id` <= %s))", [5])


def test_range_of_a_composite_key_is_spelled_out_for_the_range_optimizer() -> None:
    where, params = range_where(["`a`", "`b`"], (1, "x"), (3, "y"))
    assert where == (" WHERE ((`a` > %s) OR (`a` = %s AND `b` > %s))"
                     " AND ((`a` < %s) OR (`a` = %s AND `b` <= %s))")
    assert params == [1, 1, "x", 3, 3, "y"]


def test_checksum_sql() -> None:
    sql, params = checksum_sql(ORDERS, (100,), None)
    assert sql == (
        "SELECT COUNT(*) AS n, COALESCE(BIT_XOR(CRC32(CONCAT_WS('#', CAST(`id` AS BINARY), "
        "CAST(`name` AS BINARY), CAST(`qty` AS BINARY), CONCAT(ISNULL(`name`))))), 0) AS x, "
        "COALESCE(SUM(CRC32(CONCAT_WS('#', CAST(`id` AS BINARY), CAST(`name` AS BINARY), "
        "CAST(`qty` AS BINARY), CONCAT(ISNULL(`name`))))), 0) AS s "
        "FROM `app`.`orders` FORCE INDEX (`PRIMARY`) WHERE ((`id` > %s))")
    assert params == [100]
    whole = Shape("app", "log", "InnoDB", (Column("at", False),))
    assert checksum_sql(whole, None, None) == (
        "SELECT COUNT(*) AS n, COALESCE(BIT_XOR(CRC32(CONCAT_WS('#', CAST(`at` AS BINARY)))), 0) "
        "AS x, COALESCE(SUM(CRC32(CONCAT_WS('#', CAST(`at` AS BINARY)))), 0) AS s FROM `app`.`log`",
        [])


def test_boundary_sql_and_names_with_percent_signs() -> None:
    sql, params = boundary_sql(PAIR, (1, "a"), None, 999)
    assert sql == ("SELECT `id`, `name` FROM `app`.`pairs` FORCE INDEX (`uq`) WHERE ((`id` > %s) "
                   "OR (`id` = %s AND `name` > %s)) ORDER BY `id`, `name` LIMIT 1 OFFSET 999")
    assert params == [1, 1, "a"]
    odd = Shape("a%b", "t`x", "InnoDB", (Column("c%s", False),), ("c%s",), "PRIMARY")
    sql, params = boundary_sql(odd, (1,), None, 0)
    assert sql.startswith("SELECT `c%%s` FROM `a%%b`.`t``x` FORCE INDEX (`PRIMARY`)")
    assert sql % tuple("?" for _ in params)  # the driver's formatting leaves the names intact
    assert (sql % ("1",)).startswith("SELECT `c%s` FROM `a%b`.`t``x`")
    assert boundary_sql(odd, None, None, 0)[0].startswith("SELECT `c%s` FROM `a%b`")  # no formatting


# -- keys -----------------------------------------------------------------------------------------
def test_key_values_survive_json() -> None:
    values = (42, "naïve", b"\x00\xff", decimal.Decimal("12.500"), 1.25,
              datetime.datetime(2024, 2, 29, 23, 59, 1, 250), datetime.date(2024, 1, 2),
              datetime.timedelta(hours=-1, seconds=3))
    raw = json.loads(json.dumps(encode_key(values)))
    assert decode_key(raw) == values
    assert decode_key(None) is None


def test_key_choice() -> None:
    cols = (Column("id", False), Column("email", False), Column("nick", True),
            Column("kind", False), Column("code", False))
    types = {"id": "int", "email": "varchar", "nick": "varchar", "kind": "enum", "code": "varchar"}
    both = [("uq_email", True, "email", None), ("PRIMARY", True, "id", None)]
    assert pick_key(cols, both, types) == ("PRIMARY", ("id",))
    assert pick_key(cols, [("uq_email", True, "email", None)], types) == ("uq_email", ("email",))
    refused = [("uq_nick", True, "nick", None),  # NULLs repeat
               ("uq_kind", True, "kind", None),  # ENUM compares as text, orders by number
               ("uq_code", True, "code", 8),  # a prefix
               ("ix_email", False, "email", None)]  # not unique
    assert pick_key(cols, refused, types) == (None, ())


# -- sums and sizes -------------------------------------------------------------------------------
def test_sums_combine_and_come_apart() -> None:
    a, b = Sums(3, 0xF0F0, 2**64 - 1), Sums(2, 0x0FF0, 5)
    total = a + b
    assert total == Sums(5, 0xFF00, 4)
    assert total - b == a
    assert Sums.of_row({"n": 2, "x": None, "s": None}) == Sums(2, 0, 0)
    assert Sums.from_json(a.as_json()) == a


def test_sizer_aims_at_the_time_target() -> None:
    sizer = Sizer(0.5, 1000)
    sizer.observe(1000, 0.01)  # 100k rows/s: 50k rows would take 0.5s, but at most 4x a step
    assert sizer.rows == 4000
    for _ in range(20):
        sizer.observe(sizer.rows, sizer.rows / 100_000)
    assert 45_000 <= sizer.rows <= 50_000
    sizer.observe(50_000, 5.0)  # a slow chunk: the size comes down
    assert sizer.rows < 45_000
    sizer.too_slow()
    assert sizer.rows >= 1
    fast = Sizer(0.5, 1000)
    for _ in range(30):
        fast.observe(fast.rows, 0.0)
    assert fast.rows == MAX_CHUNK_ROWS
    tiny = Sizer(0.25, 1)
    tiny.too_slow()
    assert tiny.rows == 1


# -- progress -------------------------------------------------------------------------------------
def test_progress_survives_json_and_a_resume_redoes_only_differing_chunks() -> None:
    progress = Progress()
    progress.reconcile([("app", "orders", "InnoDB", 2000), ("app", "audit", "MyISAM", 500)])
    orders = progress.tables["app.orders"]
    orders.add(Sums(1000, 1, 1), Sums(1000, 1, 1))
    orders.add(Sums(1000, 2, 2), Sums(1000, 3, 3))
    orders.differing.append(Differing([1000], None, Sums(1000, 2, 2), Sums(1000, 3, 3), [
        {"table": "app.orders", "range": "id > 1000", "rows": "row id=1234", "note": "",
         "primary": [1, 5, 5], "replica": [1, 6, 6], "lower": [1233], "upper": [1234]}]))
    orders.todo, orders.status = [], DONE
    progress.tables["app.audit"].todo = [[[250], None]]
    again = Progress.load({"verify.progress": progress.dumps()})
    assert again.tables["app.orders"].as_json() == orders.as_json()
    assert not ChunksMatch().holds({"verify.progress": progress.dumps()})
    why = ChunksMatch().explain({"verify.progress": progress.dumps()})
    assert why.startswith("for: app.orders — app.orders row id=1234: primary 1 row(s) crc 00000005")
    assert not AllCompared().holds({"verify.progress": progress.dumps()})  # audit is pending

    kept = again.reconcile([("app", "orders", "InnoDB", 2000), ("app", "audit", "MyISAM", 500),
                            ("app", "new", "InnoDB", 0)])
    assert kept == 1  # the equal chunk; the differing one goes back to do
    orders = again.tables["app.orders"]
    assert orders.status == PENDING and orders.todo == [[[1000], None]]
    assert orders.primary == Sums(1000, 1, 1) == orders.replica and orders.differing == []
    assert again.tables["app.audit"].todo == [[[250], None]]
    assert again.tables["app.new"].todo == [[None, None]]
    gone = Progress.load({"verify.progress": again.dumps()})
    gone.reconcile([("app", "new", "InnoDB", 0)])
    assert list(gone.tables) == ["app.new"]


def test_table_progress_counts_rows_for_the_eta() -> None:
    progress = Progress()
    progress.reconcile([("a", "t", "InnoDB", 100), ("a", "u", "InnoDB", 50)])
    t: TableProgress = progress.tables["a.t"]
    t.add(Sums(40, 0, 0), Sums(40, 0, 0))
    assert (progress.rows_done(), progress.estimated_total()) == (40, 150)
    t.status = DONE
    assert progress.rows_done() == 100


def test_describe_a_differing_range() -> None:
    item = {"table": "app.big_m", "range": "id > 12344 and id <= 12345", "rows": "", "note": "",
            "primary": [1, 255, 255], "replica": [0, 0, 0]}
    assert describe(item) == ("app.big_m id > 12344 and id <= 12345: primary 1 row(s) crc 000000ff, "
                              "replica 0 row(s) crc 00000000")


# -- the plan ---------------------------------------------------------------------------------------
def _texts(version: str, mode: str = "gtid") -> list[str]:
    d = dialect(version)
    parts = verify_parts("db1", "db2", d, d, mode)  # type: ignore[arg-type]
    return [leaf.render() for leaf in parts.leaves]


def test_mariadb_takes_its_snapshot_position_without_a_lock() -> None:
    texts = "\n".join(_texts("mariadb-10.11"))
    assert "SHOW SESSION STATUS LIKE 'binlog_snapshot_%'" in texts
    assert "FLUSH TABLES WITH READ LOCK" not in texts
    assert "STOP SLAVE SQL_THREAD" in texts
    assert ("START SLAVE SQL_THREAD UNTIL MASTER_LOG_FILE = <verify.at.file>, "
            "MASTER_LOG_POS = <verify.at.pos>") in texts
    assert "LOCK TABLES <table> READ NOWAIT" in texts
    assert "SET STATEMENT max_statement_time = 0.5 FOR SELECT COUNT(*)" in texts


def test_mysql_84_holds_ftwrl_for_milliseconds_and_stops_by_gtid() -> None:
    texts = _texts("mysql-8.4.3")
    joined = "\n".join(texts)
    assert "each round (held for milliseconds): FLUSH TABLES WITH READ LOCK" in joined
    assert "each round: SET SESSION lock_wait_timeout = 1" in joined
    assert "each round, under that lock: SELECT @@GLOBAL.gtid_executed AS gtid" in joined
    assert "START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS = <verify.at.gtid>" in joined
    assert "SELECT GTID_SUBSET(<verify.at.gtid>, @@GLOBAL.gtid_executed) AS reached" in joined
    assert "STOP REPLICA SQL_THREAD" in joined and "SHOW REPLICA STATUS" in joined
    assert "SELECT /*+ MAX_EXECUTION_TIME(500) */ COUNT(*)" in joined
    assert not [t for t in texts if "MASTER" in t or "SLAVE" in t], joined
    filepos = "\n".join(_texts("mysql-8.4.3", "file_pos"))
    assert ("START REPLICA SQL_THREAD UNTIL SOURCE_LOG_FILE = <verify.at.file>, "
            "SOURCE_LOG_POS = <verify.at.pos>") in filepos
    assert "each round, under that lock: SHOW BINARY LOG STATUS" in filepos


def test_mysql_57_words() -> None:
    joined = "\n".join(_texts("mysql-5.7.40"))
    assert "START SLAVE SQL_THREAD UNTIL SQL_AFTER_GTIDS = <verify.at.gtid>" in joined
    assert "LOCK TABLES <table> READ\n" in joined + "\n" and "NOWAIT" not in joined


@pytest.mark.parametrize("version", ["mariadb-10.11", "mysql-8.4.3"])
def test_the_step_lists_every_leaf_and_keeps_no_long_lock(version: str) -> None:
    d = dialect(version)
    step = VerifyData("db1", "db2", d, d, "gtid", 10)
    assert "maintenance" not in step.why and "no long lock" in step.title
    assert "the application may write throughout" in step.why
    actions = step.plan()
    assert [v.as_json() for v in views(actions)] == [
        v.as_json() for v in views(compare_actions("db1", "db2", d, d, "gtid", 10))]
    planned = leaves(actions)
    composite = views(actions)[0]
    assert composite.kind == "composite"
    assert [p.id for p in planned[: len(composite.children)]] == [c.id for c in composite.children]
    assert [p.action.kind for p in planned][-2:] == ["assert", "assert"]
    assert not any("FLUSH TABLES WITH READ LOCK" in c.text and "each" not in c.text
                   for c in composite.children)
    assert [a.text for a in views(step.undo_plan())] == [
        "when <verify.applier_paused> = 1"]
