"""Actions as data: what template()/render() show a reviewer, and what bind() hands the driver/shell.

Also the conditions (Assert, When) and leaves(): the ids a step's records are journaled under.
"""

from __future__ import annotations

import json
import shlex

import pytest

from resync.actions.conditions import (
    All,
    AtLeast,
    Equals,
    IsSet,
    NonEmptyList,
    Not,
    OneOf,
    Same,
    SameChecksums,
)
from resync.actions.quoting import argv, q, quote_ident, sql_literal, table_list
from resync.actions.types import (
    Assert,
    Capture,
    Composite,
    Fmt,
    HoldLock,
    Leaf,
    Ref,
    ReleaseLock,
    Shell,
    Slot,
    Sql,
    Tables,
    When,
    leaves,
    template_from_json,
    template_json,
    views,
)
from resync.model.errors import BadInputError, ResyncError
from resync.model.keys import Key
from resync.model.secrets import MASK, EnvSecret, Secret, mask

PASSWORD = "s3cr3t-Pa55"
FILE, POS, GTID, OLD, TABLES = (Key(n) for n in ("source.file", "source.pos", "source.gtid",
                                                 "old", "verify.tables"))


# -- Sql: literal parameters are rendered by pymysql's escaping ----------------------------------


def test_sql_literal_params_render_as_the_driver_sends_them() -> None:
    action = Sql("db2", "SET GLOBAL gtid_slave_pos = %s, x = %s, y = %s", ("0-2-9", 42, None))
    assert action.render() == "SET GLOBAL gtid_slave_pos = '0-2-9', x = 42, y = NULL"
    # literal values are already in the template: no slot, nothing to fill
    assert action.template() == ("SET GLOBAL gtid_slave_pos = '0-2-9', x = 42, y = NULL",)
    assert action.render({"anything": 1}) == action.render()


def test_sql_literals_escape_quotes_and_backslashes() -> None:
    action = Sql("h", "SELECT %s, %s, %s, %s", (True, 2.5, "it's", "a\\b"))
    # pymysql writes floats with an exponent: the plan shows exactly that
    assert action.render() == "SELECT 1, 2.5e0, 'it\\'s', 'a\\\\b'"
    assert sql_literal(7) == "7"
    assert sql_literal(None) == "NULL"
    assert sql_literal("0-2-9") == "'0-2-9'"


def test_sql_without_params_is_the_statement_and_percent_is_kept() -> None:
    assert Sql("h", "SHOW MASTER STATUS").render() == "SHOW MASTER STATUS"
    assert Sql("h", "SELECT 1 LIKE '%%x'").render() == "SELECT 1 LIKE '%%x'"  # no params: as is
    assert Sql("h", "SELECT %s LIKE '%%x'", ("a",)).render() == "SELECT 'a' LIKE '%x'"


def test_sql_placeholder_count_must_match() -> None:
    with pytest.raises(ValueError, match="1 parameters for 2 placeholders"):
        Sql("h", "SELECT %s, %s", (1,)).template()


def test_ref_param_shows_its_name_then_the_literal_once_captured() -> None:
    action = Sql("db2", "CHANGE MASTER TO MASTER_LOG_FILE=%s, MASTER_LOG_POS=%s",
                 (Ref(FILE), Ref(POS)))
    assert action.template() == ("CHANGE MASTER TO MASTER_LOG_FILE=", Slot(FILE, Fmt.SQL),
                                 ", MASTER_LOG_POS=", Slot(POS, Fmt.SQL))
    assert action.render() == \
        "CHANGE MASTER TO MASTER_LOG_FILE=<source.file>, MASTER_LOG_POS=<source.pos>"
    # partly captured: the captured one is filled in, the other stays a placeholder
    assert action.render({"source.file": "db1-bin.000007"}) == \
        "CHANGE MASTER TO MASTER_LOG_FILE='db1-bin.000007', MASTER_LOG_POS=<source.pos>"
    assert action.render({"source.file": "db1-bin.000007", "source.pos": 1234}) == \
        "CHANGE MASTER TO MASTER_LOG_FILE='db1-bin.000007', MASTER_LOG_POS=1234"
    assert str(Ref(FILE)) == "<source.file>"


def test_ref_captured_as_none_renders_null_and_binds_none() -> None:
    action = Sql("h", "SELECT %s", (Ref(GTID),))
    assert action.render({"source.gtid": None}) == "SELECT NULL"
    assert action.bind({"source.gtid": None}) == ("SELECT %s", (None,))


def test_template_json_round_trips() -> None:
    action = Sql("db2", "SET GLOBAL gtid_slave_pos = %s", (Ref(GTID),))
    raw = template_json(action.template())
    assert raw == ["SET GLOBAL gtid_slave_pos = ", {"ref": "source.gtid", "as": "sql"}]
    assert template_from_json(raw) == action.template()


# -- secrets ---------------------------------------------------------------------------------------


def test_secret_param_is_masked_in_template_and_render() -> None:
    action = Sql("db1", "CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s",
                 ("repl", Secret(PASSWORD, source="$REPL_PASSWORD")))
    shown = action.render()
    assert shown == f"CHANGE MASTER TO MASTER_USER='repl', MASTER_PASSWORD='{MASK}'"
    assert MASK == "********"
    assert PASSWORD not in shown
    assert PASSWORD not in action.render({"x": 1})
    assert PASSWORD not in json.dumps(template_json(action.template()))
    assert PASSWORD not in repr(action)


def test_env_secret_is_masked_without_reading_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPL_PASSWORD", PASSWORD)
    action = Sql("db1", "SET PASSWORD = %s", (EnvSecret("REPL_PASSWORD"),))
    assert action.render() == f"SET PASSWORD = '{MASK}'"
    assert PASSWORD not in action.render({"REPL_PASSWORD": PASSWORD})
    assert PASSWORD not in json.dumps(views([action])[0].as_json())
    # an unset variable must not break a plan made before the run
    monkeypatch.delenv("REPL_PASSWORD")
    assert action.render() == f"SET PASSWORD = '{MASK}'"
    assert sql_literal(EnvSecret("REPL_PASSWORD")) == f"'{MASK}'"


def test_secret_repr_and_str_never_show_the_value() -> None:
    secret = Secret(PASSWORD, source="$X")
    assert PASSWORD not in str(secret)
    assert PASSWORD not in repr(secret)
    assert str(EnvSecret("X")) == MASK


def test_bind_hands_the_secret_to_the_driver_only() -> None:
    action = Sql("db1", "CHANGE MASTER TO MASTER_PASSWORD=%s, MASTER_LOG_POS=%s",
                 (Secret(PASSWORD), Ref(POS)))
    sql, params = action.bind({"source.pos": 42})
    assert sql == "CHANGE MASTER TO MASTER_PASSWORD=%s, MASTER_LOG_POS=%s"
    assert isinstance(params[0], Secret) and params[0].reveal() == PASSWORD  # revealed at the driver
    assert params[1] == 42
    assert PASSWORD not in action.render({"source.pos": 42})


def test_bind_reads_env_secret_at_bind_time(monkeypatch: pytest.MonkeyPatch) -> None:
    action = Sql("db1", "SELECT %s", (EnvSecret("RESYNC_TEST_PW"),))
    monkeypatch.setenv("RESYNC_TEST_PW", "first")
    (first,) = action.bind({})[1]
    monkeypatch.setenv("RESYNC_TEST_PW", "second")
    (second,) = action.bind({})[1]
    assert isinstance(first, Secret) and isinstance(second, Secret)
    assert (first.reveal(), second.reveal()) == ("first", "second")


def test_bind_env_secret_unset_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESYNC_TEST_PW", raising=False)
    with pytest.raises(BadInputError, match="RESYNC_TEST_PW is not set"):
        Sql("db1", "SELECT %s", (EnvSecret("RESYNC_TEST_PW"),)).bind({})


def test_bind_missing_capture_raises() -> None:
    action = Sql("db2", "SET GLOBAL gtid_slave_pos = %s", (Ref(GTID),))
    with pytest.raises(ResyncError, match=r"'source\.gtid' has not been captured"):
        action.bind({"source.file": "x"})


def test_mask_replaces_every_secret() -> None:
    text = f"error near '{PASSWORD}' and again {PASSWORD}"
    assert mask(text, [Secret(PASSWORD), Secret("")]) == f"error near '{MASK}' and again {MASK}"


# -- Tables: identifiers spliced into the text -------------------------------------------------------

TABLE_ROWS = json.dumps([["shop", "orders"], ["we`ird", "t%1"]])


def test_tables_render_a_placeholder_then_backquoted_identifiers() -> None:
    action = Sql("db1", "CHECKSUM TABLE %s EXTENDED", (Tables(Ref(TABLES)),))
    assert action.template() == ("CHECKSUM TABLE ", Slot(TABLES, Fmt.TABLES), " EXTENDED")
    assert action.render() == "CHECKSUM TABLE <verify.tables> EXTENDED"
    assert action.render({"verify.tables": TABLE_ROWS}) == \
        "CHECKSUM TABLE `shop`.`orders`, `we``ird`.`t%1` EXTENDED"


def test_tables_are_spliced_into_the_sql_at_bind_other_params_stay_bound() -> None:
    action = Sql("db1", "SELECT %s FROM x WHERE t IN (%s) AND y = %s",
                 ("a", Tables(Ref(TABLES)), Ref(POS)))
    sql, params = action.bind({"verify.tables": TABLE_ROWS, "source.pos": 7})
    # the identifiers are text (a % in a name is doubled for the driver's interpolation)
    assert sql == "SELECT %s FROM x WHERE t IN (`shop`.`orders`, `we``ird`.`t%%1`) AND y = %s"
    assert params == ("a", 7)
    assert sql % tuple(sql_literal(p) for p in params) == action.render(
        {"verify.tables": TABLE_ROWS, "source.pos": 7})


def test_table_list_and_quote_ident() -> None:
    assert quote_ident("a`b") == "`a``b`"
    assert table_list(json.dumps([["s", "t"]])) == "`s`.`t`"
    assert table_list(None) == ""


# -- Shell --------------------------------------------------------------------------------------------

NASTY = "/var/lib/my sql's \"old\" $(rm -rf /)"


def test_shell_render_ref_before_and_after_capture() -> None:
    action = Shell.line("db1", "mv -T /var/lib/mysql ", Ref(OLD), privileged=True)
    assert action.template() == ("mv -T /var/lib/mysql ", Slot(OLD, Fmt.SHELL))
    assert action.render() == "mv -T /var/lib/mysql <old>"
    assert action.render({}) == "mv -T /var/lib/mysql <old>"
    assert action.render({"old": "/var/lib/mysql.resync-1"}) == \
        "mv -T /var/lib/mysql /var/lib/mysql.resync-1"
    assert action.privileged is True


def test_shell_refs_are_shell_quoted_when_filled() -> None:
    action = Shell.line("db1", "test -d ", Ref(OLD), " && echo ok")
    shown = action.render({"old": NASTY})
    assert shlex.split(shown) == ["test", "-d", NASTY, "&&", "echo", "ok"]
    assert shown == action.bind({"old": NASTY})  # what is shown is what runs


def test_shell_bind_quotes_ref_values_as_one_word() -> None:
    action = Shell.line("db1", "ls -ld ", Ref(OLD), " ", Ref(POS))
    command = action.bind({"old": NASTY, "source.pos": 3})
    assert shlex.split(command) == ["ls", "-ld", NASTY, "3"]
    assert "$(rm" in command and command.count("'") >= 2  # quoted, not interpreted
    assert action.bind({"old": "plain", "source.pos": 3}) == "ls -ld plain 3"


def test_shell_fixed_parts_are_not_quoted() -> None:
    # fixed parts are the step author's shell code: pipes and redirections stay intact
    action = Shell.line("db1", "du -sb /x | cut -f1 > ", Ref(OLD))
    assert action.bind({"old": "/tmp/a b"}) == "du -sb /x | cut -f1 > '/tmp/a b'"


def test_shell_bind_missing_capture_raises() -> None:
    with pytest.raises(ResyncError, match="'old' has not been captured"):
        Shell.line("db1", "test -d ", Ref(OLD)).bind({"other": 1})


def test_shell_into_is_its_output() -> None:
    assert Shell.line("db1", "hostname", into=OLD).outputs() == (OLD,)
    assert Shell.line("db1", "hostname").outputs() == ()


def test_q_and_argv_quote_words() -> None:
    assert shlex.split(f"rm {q('a b')}") == ["rm", "a b"]
    assert argv("ls", "a b", "c") == "ls 'a b' c"


# -- containers and leaves() ids ----------------------------------------------------------------------


class TwoParts(Composite):
    host, title = "db1", "two parts"

    def parts(self) -> tuple[Leaf, ...]:
        return (Shell.line("db1", "true"), Shell.line("db2", "false"))

    def execute(self, run: object) -> None:
        raise AssertionError("not run here")


def test_leaves_ids_for_holdlock_when_and_composite() -> None:
    lock = HoldLock("db1", "lock", (Sql("db1", "FLUSH TABLES WITH READ LOCK", session="lock"),
                                    Capture("db1", "SHOW MASTER STATUS", session="lock",
                                            columns=(("File", FILE),))))
    when = When(IsSet(GTID), (Sql("db2", "A"), Sql("db2", "B")), (Sql("db2", "C"),))
    actions = (Sql("db1", "SELECT 1"), lock, when, TwoParts(), ReleaseLock("db1", "lock"))
    planned = leaves(actions)
    assert [p.id for p in planned] == ["0", "1.0", "1.1", "2", "2.then.0", "2.then.1",
                                       "2.else.0", "3.0", "3.1", "4"]
    assert planned[3].action is when  # the decision is a record of its own
    assert [p.action.render() for p in planned if p.id.startswith("2.")] == ["A", "B", "C"]
    assert leaves([When(IsSet(GTID), (when,))])[2].id == "0.then.0.then.0"  # nested


def test_views_nest_children_and_carry_the_otherwise_note() -> None:
    when = When(Not(IsSet(OLD)), (Capture("db2", "SHOW SLAVE STATUS",
                                          columns=(("Master_Host", OLD),)),),
                otherwise_note="already recorded")
    (v,) = views([when], "5.")
    doc = v.as_json()
    assert doc["id"] == "5." + "0" and doc["kind"] == "when"
    assert doc["text"] == "when not (<old> is set)"
    assert doc["note"] == "already recorded"
    assert doc["then"][0]["id"] == "5.0.then.0" and doc["then"][0]["into"] == ["old"]
    assert "else" not in doc


# -- conditions ----------------------------------------------------------------------------------------


def test_isset_and_equals() -> None:
    assert IsSet(GTID).describe() == "<source.gtid> is set"
    assert IsSet(GTID).describe({"source.gtid": "0-1-5"}) == "'0-1-5' is set"
    assert IsSet(GTID).holds({"source.gtid": "0-1-5"})
    assert not IsSet(GTID).holds({"source.gtid": None}) and not IsSet(GTID).holds({})
    eq = Equals(Key("io"), "Yes")
    assert eq.describe() == "<io> = 'Yes'"
    assert eq.holds({"io": "Yes"}) and not eq.holds({"io": "No"}) and not eq.holds({})


def test_one_of_all_not_at_least() -> None:
    one = OneOf(Key("g"), ("No", 0, "0"))
    assert one.describe() == "<g> in ('No', 0, '0')"
    assert one.holds({"g": 0}) and one.holds({"g": "No"}) and not one.holds({"g": "Slave_Pos"})
    both = All((Equals(Key("io"), "Yes"), Equals(Key("sql"), "Yes")))
    assert both.describe() == "<io> = 'Yes' and <sql> = 'Yes'"
    assert both.holds({"io": "Yes", "sql": "Yes"}) and not both.holds({"io": "Yes", "sql": "No"})
    assert Not(both).describe({"io": "Yes", "sql": "No"}) == "not ('Yes' = 'Yes' and 'No' = 'Yes')"
    assert Not(both).holds({"io": "Yes", "sql": "No"})
    least = AtLeast(Key("n"), 1)
    assert least.describe() == "<n> >= 1"
    assert least.holds({"n": 3}) and least.holds({"n": "1"})
    assert not least.holds({"n": 0}) and not least.holds({"n": None})
    assert not least.holds({"n": "abc"}) and not least.holds({})


def test_same_and_non_empty_list() -> None:
    same = Same(Key("a"), Key("b"))
    assert same.holds({"a": "x", "b": "x"}) and not same.holds({"a": None, "b": None})
    assert "a 'x'" in same.explain({"a": "x", "b": "y"})
    assert "b 'y'" in same.explain({"a": "x", "b": "y"})
    assert NonEmptyList(TABLES).holds({"verify.tables": '[["a", "b"]]'})
    assert not NonEmptyList(TABLES).holds({"verify.tables": "[]"})
    assert not NonEmptyList(TABLES).holds({})


def test_same_checksums_names_the_differing_tables() -> None:
    cond = SameChecksums(Key("p"), Key("r"))
    p = json.dumps([["shop.orders", "11"], ["shop.items", "22"], ["shop.only_p", "3"]])
    r = json.dumps([["shop.orders", "11"], ["shop.items", "99"]])
    assert cond.holds({"p": p, "r": p})
    assert not cond.holds({"p": p, "r": r})
    assert cond.differing({"p": p, "r": r}) == ["shop.items", "shop.only_p"]
    # the explanation names every differing table (and only those)
    assert "shop.items, shop.only_p" in cond.explain({"p": p, "r": r})
    assert "shop.orders" not in cond.explain({"p": p, "r": r})
    assert cond.describe() == "every checksum in p equals its table's in r"


def test_assert_and_when_render_their_condition() -> None:
    check = Assert(AtLeast(Key("n"), 1), "no tables to compare")
    assert check.render() == "assert <n> >= 1"
    assert check.render({"n": 4}) == "assert 4 >= 1"
    assert When(IsSet(OLD), ()).render() == "when <old> is set"
