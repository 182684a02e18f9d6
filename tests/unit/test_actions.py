"""Actions as data: what render() shows a reviewer, and what bind() hands to the driver/shell."""

from __future__ import annotations

import shlex

import pytest

from resync.actions.types import Check, Ref, Shell, Sql, q, sql_literal
from resync.model.errors import BadInputError, ResyncError
from resync.model.secrets import MASK, EnvSecret, Secret, mask

PASSWORD = "s3cr3t-Pa55"


# -- Sql.render -------------------------------------------------------------------------------------


def test_render_masks_secret_param() -> None:
    action = Sql("db1", "CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s",
                 ("repl", Secret(PASSWORD, source="$REPL_PASSWORD")))
    shown = action.render()
    assert shown == f"CHANGE MASTER TO MASTER_USER='repl', MASTER_PASSWORD='{MASK}'"
    assert PASSWORD not in shown
    assert PASSWORD not in action.render({"x": 1})


def test_render_masks_env_secret_without_reading_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPL_PASSWORD", PASSWORD)
    action = Sql("db1", "SET PASSWORD = %s", (EnvSecret("REPL_PASSWORD"),))
    assert action.render() == f"SET PASSWORD = '{MASK}'"
    assert PASSWORD not in action.render({})
    # an unset variable must not break a plan made before the run
    monkeypatch.delenv("REPL_PASSWORD")
    assert action.render() == f"SET PASSWORD = '{MASK}'"


def test_secret_repr_and_str_never_show_the_value() -> None:
    secret = Secret(PASSWORD, source="$X")
    assert PASSWORD not in str(secret)
    assert PASSWORD not in repr(secret)
    assert PASSWORD not in repr(Sql("db1", "SELECT %s", (secret,)))
    assert str(EnvSecret("X")) == MASK


def test_render_ref_before_and_after_capture() -> None:
    action = Sql("db2", "CHANGE MASTER TO MASTER_LOG_FILE=%s, MASTER_LOG_POS=%s",
                 (Ref("source.file"), Ref("source.pos")))
    assert action.render() == "CHANGE MASTER TO MASTER_LOG_FILE=<source.file>, MASTER_LOG_POS=<source.pos>"
    # partly captured: the captured one is filled in, the other stays a placeholder
    assert action.render({"source.file": "db1-bin.000007"}) == \
        "CHANGE MASTER TO MASTER_LOG_FILE='db1-bin.000007', MASTER_LOG_POS=<source.pos>"
    assert action.render({"source.file": "db1-bin.000007", "source.pos": 1234}) == \
        "CHANGE MASTER TO MASTER_LOG_FILE='db1-bin.000007', MASTER_LOG_POS=1234"


def test_render_literals() -> None:
    action = Sql("h", "SELECT %s, %s, %s, %s, %s", (None, True, 2.5, "it's", "a\\b"))
    assert action.render() == "SELECT NULL, 1, 2.5, 'it\\'s', 'a\\\\b'"
    assert sql_literal(7) == "7"


def test_render_without_params_is_the_statement() -> None:
    assert Sql("h", "SHOW MASTER STATUS").render() == "SHOW MASTER STATUS"


# -- Sql.bind ---------------------------------------------------------------------------------------


def test_bind_reveals_secret_to_the_driver_only() -> None:
    action = Sql("db1", "CHANGE MASTER TO MASTER_PASSWORD=%s, MASTER_LOG_POS=%s",
                 (Secret(PASSWORD), Ref("source.pos")))
    sql, params = action.bind({"source.pos": 42})
    assert sql == "CHANGE MASTER TO MASTER_PASSWORD=%s, MASTER_LOG_POS=%s"
    assert params == (PASSWORD, 42)
    assert all(not isinstance(p, Secret) for p in params)
    # rendering the same action afterwards still masks it
    assert PASSWORD not in action.render({"source.pos": 42})


def test_bind_reads_env_secret_at_bind_time(monkeypatch: pytest.MonkeyPatch) -> None:
    action = Sql("db1", "SELECT %s", (EnvSecret("RESYNC_TEST_PW"),))
    monkeypatch.setenv("RESYNC_TEST_PW", "first")
    assert action.bind({}) == ("SELECT %s", ("first",))
    monkeypatch.setenv("RESYNC_TEST_PW", "second")
    assert action.bind({}) == ("SELECT %s", ("second",))


def test_bind_env_secret_unset_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESYNC_TEST_PW", raising=False)
    with pytest.raises(BadInputError, match="RESYNC_TEST_PW is not set"):
        Sql("db1", "SELECT %s", (EnvSecret("RESYNC_TEST_PW"),)).bind({})


def test_bind_missing_capture_raises() -> None:
    action = Sql("db2", "SET GLOBAL gtid_slave_pos = %s", (Ref("source.gtid"),))
    with pytest.raises(ResyncError, match=r"'source\.gtid' has not been captured"):
        action.bind({"source.file": "x"})


def test_bind_captured_none_is_passed_as_null() -> None:
    assert Sql("h", "SELECT %s", (Ref("k"),)).bind({"k": None}) == ("SELECT %s", (None,))


# -- Shell ------------------------------------------------------------------------------------------

NASTY = "/var/lib/my sql's \"old\" $(rm -rf /)"


def test_shell_render_ref_before_and_after_capture() -> None:
    action = Shell.line("db1", "mv -T /var/lib/mysql ", Ref("old"), privileged=True)
    assert action.render() == "mv -T /var/lib/mysql <old>"
    assert action.render({}) == "mv -T /var/lib/mysql <old>"
    assert action.render({"old": "/var/lib/mysql.resync-1"}) == "mv -T /var/lib/mysql /var/lib/mysql.resync-1"
    assert action.privileged is True


def test_shell_render_quotes_ref_values() -> None:
    action = Shell.line("db1", "test -d ", Ref("old"), " && echo ok")
    shown = action.render({"old": NASTY})
    words = shlex.split(shown)
    assert words == ["test", "-d", NASTY, "&&", "echo", "ok"]


def test_shell_bind_quotes_ref_values_as_one_word() -> None:
    action = Shell.line("db1", "ls -ld ", Ref("old"), " ", Ref("n"))
    command = action.bind({"old": NASTY, "n": 3})
    assert shlex.split(command) == ["ls", "-ld", NASTY, "3"]
    assert "$(rm" in command and command.count("'") >= 2  # quoted, not interpreted
    assert action.bind({"old": "plain", "n": 3}) == "ls -ld plain 3"


def test_shell_fixed_parts_are_not_quoted() -> None:
    # fixed parts are the step author's shell code: pipes and redirections stay intact
    action = Shell.line("db1", "du -sb /x | cut -f1 > ", Ref("out"))
    assert action.bind({"out": "/tmp/a b"}) == "du -sb /x | cut -f1 > '/tmp/a b'"


def test_shell_bind_missing_capture_raises() -> None:
    with pytest.raises(ResyncError, match="'old' has not been captured"):
        Shell.line("db1", "test -d ", Ref("old")).bind({"other": 1})


def test_q_quotes_fixed_strings() -> None:
    assert shlex.split(f"rm {q('a b')}") == ["rm", "a b"]


def test_check_renders_its_text() -> None:
    assert Check("db1", "wait until the server accepts connections").render({"x": 1}) == \
        "wait until the server accepts connections"


def test_mask_replaces_every_secret() -> None:
    text = f"error near '{PASSWORD}' and again {PASSWORD}"
    assert mask(text, [Secret(PASSWORD), Secret("")]) == f"error near '{MASK}' and again {MASK}"
