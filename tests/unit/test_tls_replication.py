"""Replication over TLS in plans (issue 14): replication.tls decided from what detection found,
the replica's CHANGE MASTER in the plan, the source asked again before it, the header's lines (the
replication, the RSA warning, the control connections), the facts carried by the journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from resync.actions.dialect import ServerVersion
from resync.actions.types import Assert, Capture, Sql, When
from resync.cli.render import header
from resync.model.runbook import LoadedRunbook, ReplicationSettings, parse_runbook
from resync.plan.build import Plan, PlanFacts, build_plan, journaled_facts
from resync.run.connect import describe_control_connections
from resync.steps.replication import PointReplica, StopReplication, decide_tls, fact_tls

ROOT = Path(__file__).resolve().parents[2]
REPLICATION = ("  tls: preferred                    # required | preferred | off (see "
               "rebuild-old-primary.yaml)\n")
MARIADB = ServerVersion("mariadb", 10, 11, 19)
MYSQL = ServerVersion("mysql", 8, 4, 3)


def loaded(tmp_path: Path, replication: str = REPLICATION, name: str = "rebuild-replica",
           edit: tuple[str, str] | None = None) -> LoadedRunbook:
    text = (ROOT / "runbooks" / f"{name}.yaml").read_text(encoding="utf-8")
    anchor = REPLICATION if REPLICATION in text else (
        "  tls: preferred                    # required | preferred | off: TLS when the source "
        "offers it (the plan says)\n")
    assert text.count(anchor) == 1
    text = text.replace(anchor, replication)
    if edit:
        assert text.count(edit[0]) == 1, edit
        text = text.replace(*edit)
    return parse_runbook(text, tmp_path / "rb.yaml")


def plan(rb: LoadedRunbook, tls: dict[str, bool], version: ServerVersion = MARIADB) -> Plan:
    m = rb.model
    versions = {m.donor: version, m.recipient: version}
    return build_plan(rb, PlanFacts(versions, "detected", {h: True for h in versions}, tls=tls))


def point(p: Plan) -> PointReplica:
    (step,) = [s for s in p.steps if isinstance(s, PointReplica)]
    return step


def change(p: Plan) -> Sql:
    (sql,) = [a for a in point(p).plan() if isinstance(a, Sql) and "CHANGE" in a.sql]
    return sql


# --- the decision -----------------------------------------------------------------------------

@pytest.mark.parametrize(("tls", "ca", "offered", "enabled", "words"), [
    ("off", None, True, False, "replication.tls: off"),
    ("required", None, False, True, "required"),
    ("preferred", None, True, True, "the source offers TLS (detected)"),
    ("preferred", None, False, False, "the source offers no TLS (detected)"),
    ("preferred", None, None, False, "plaintext assumed"),
    ("preferred", "/etc/ca.pem", None, True, "taken as offered since a CA is given"),
    ("preferred", "/etc/ca.pem", False, False, "offers no TLS"),
])
def test_decide_tls(tls: str, ca: str | None, offered: bool | None, enabled: bool,
                    words: str) -> None:
    settings = ReplicationSettings(user="repl", password_env="P", tls=tls, ca=ca)  # type: ignore[arg-type]
    decision = decide_tls(settings, offered)
    assert decision.tls.enabled is enabled and words in decision.reason
    assert decision.tls.verified is (enabled and ca is not None)
    assert decision.describe().startswith("TLS" if enabled else "PLAINTEXT")
    assert decision.required is (tls == "required")


def test_a_detected_source_with_tls_gets_ssl_and_a_verified_certificate(tmp_path: Path) -> None:
    rb = loaded(tmp_path, "  tls: preferred\n  ca: /etc/mysql/ca.pem\n")
    p = plan(rb, {"db1": True, "db2": False})  # db1 is the source afterwards
    sql = change(p)
    assert "MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_VERIFY_SERVER_CERT=1" in sql.sql
    assert sql.params[-1] == "/etc/mysql/ca.pem"
    assert point(p).notes[0].startswith("replication connection: TLS, the source's certificate "
                                        "and host name verified with the CA /etc/mysql/ca.pem")


def test_the_source_is_asked_again_right_before_the_replica_is_pointed(tmp_path: Path) -> None:
    actions = point(plan(loaded(tmp_path, "  tls: required\n"), {})).plan()
    capture, check = actions[0], actions[1]
    assert isinstance(capture, Capture) and capture.host == "db1"
    assert capture.sql == "SELECT @@GLOBAL.have_ssl AS tls"
    assert isinstance(check, Assert) and "db1 does not offer TLS" in check.message
    assert [a.sql for a in actions[2:4] if isinstance(a, Sql)] == ["STOP SLAVE", "RESET SLAVE ALL"]


def test_plaintext_has_no_tls_option_and_no_guard(tmp_path: Path) -> None:
    p = plan(loaded(tmp_path), {"db1": False, "db2": True})
    assert "SSL" not in change(p).sql
    assert not any(isinstance(a, Capture) and "have_ssl" in a.sql for a in point(p).plan())
    assert dict(header(p))["replication TLS"].startswith("PLAINTEXT — tls: preferred, but the "
                                                         "source offers no TLS (detected)")


def test_rsa_key_exchange_is_a_warning_in_the_header_and_the_step(tmp_path: Path) -> None:
    rb = loaded(tmp_path, "  tls: off\n  allow_rsa_key_exchange: true\n")
    p = plan(rb, {}, MYSQL)
    assert change(p).sql.endswith("GET_SOURCE_PUBLIC_KEY=1")
    warning = dict(header(p))["WARNING"]
    assert warning.startswith("GET_SOURCE_PUBLIC_KEY=1 (replication.allow_rsa_key_exchange)")
    assert "a man in the middle can obtain the replication password" in warning
    assert any(n.startswith("WARNING: GET_SOURCE_PUBLIC_KEY=1") for n in point(p).notes)


def test_mysql_without_tls_nor_rsa_says_what_can_fail(tmp_path: Path) -> None:
    p = plan(loaded(tmp_path, "  tls: off\n"), {}, MYSQL)
    assert "PUBLIC_KEY" not in change(p).sql and "WARNING" not in dict(header(p))
    assert any("caching_sha2_password" in n for n in point(p).notes)


def test_no_rsa_warning_on_mariadb(tmp_path: Path) -> None:
    p = plan(loaded(tmp_path, "  tls: off\n  allow_rsa_key_exchange: true\n"), {})
    assert "PUBLIC_KEY" not in change(p).sql and "WARNING" not in dict(header(p))


def test_the_hot_copy_catch_up_uses_the_donor_s_tls(tmp_path: Path) -> None:
    rb = loaded(tmp_path, "  tls: preferred\n", name="rebuild-replica-hot",
                edit=("\nprimary_after: db1", "\nprimary_after: db2"))
    p = plan(rb, {"db1": True, "db2": False})
    points = [s for s in p.steps if isinstance(s, PointReplica)]
    assert [s.tls.tls.enabled for s in points] == [True, False]  # from db1; then from db2


# --- the journal keeps the facts: resume builds the same plan ---------------------------------

def test_detected_tls_goes_into_the_journal_and_comes_back(tmp_path: Path) -> None:
    p = plan(loaded(tmp_path), {"db1": True, "db2": False})
    values = p.initial_values("run-1")
    assert (values[str(fact_tls("db1"))], values[str(fact_tls("db2"))]) == (1, 0)
    again = journaled_facts(p.loaded, values)
    assert again.tls == {"db1": True, "db2": False}
    assert change(build_plan(p.loaded, again)).sql == change(p).sql


# --- the control connections in the header ----------------------------------------------------

def test_control_connections_as_configured_and_as_detected(tmp_path: Path) -> None:
    mysql = "    mysql: {port: 3306, user: resync, password_env: DB1_PASSWORD}"
    rb = loaded(tmp_path, edit=(mysql, mysql[:-1] + (
        ", tls: {ca: /etc/ssl/ca.pem, verify_identity: true}}")))
    assert describe_control_connections(rb, {}) == (
        "db1 TLS (CA verified, host name checked), db2 TLS if offered (unverified)")
    assert describe_control_connections(rb, {"db1": False, "db2": False}) == (
        "db1 TLS (CA verified, host name checked), db2 PLAINTEXT (the server offers no TLS)")
    assert describe_control_connections(rb, {"db2": True}).endswith("db2 TLS (unverified)")
    p = plan(rb, {"db2": True})
    assert dict(header(p))["control connections"] == describe_control_connections(rb, {"db2": True})


def test_control_connection_off_and_socket(tmp_path: Path) -> None:
    mysql = "    mysql: {port: 3306, user: resync, password_env: DB1_PASSWORD}"
    rb = loaded(tmp_path, edit=(mysql, mysql[:-1] + ", socket: /run/mysqld/mysqld.sock}"))
    assert describe_control_connections(rb, {}).startswith("db1 local socket /run/mysqld/")
    rb = loaded(tmp_path, edit=(mysql, mysql[:-1] + ", tls: {mode: off}}"))
    assert describe_control_connections(rb, {"db1": True}).startswith(
        "db1 PLAINTEXT (tls mode off)")


def test_a_rollback_points_the_donor_back_over_the_runbook_s_tls(tmp_path: Path) -> None:
    rb = loaded(tmp_path, "  tls: preferred\n  ca: /etc/mysql/ca.pem\n", name="rebuild-old-primary")
    p = plan(rb, {"db1": True, "db2": True})  # db1, the recipient, was db2's source
    (stop,) = [s for s in p.steps if isinstance(s, StopReplication)]
    point_back = stop.undo_plan()[0]
    assert isinstance(point_back, When)
    changes = [a.sql for w in point_back.then if isinstance(w, When)
               for a in (*w.then, *w.otherwise) if isinstance(a, Sql) and "CHANGE" in a.sql]
    assert len(changes) == 2
    assert all("MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_VERIFY_SERVER_CERT=1" in c
               for c in changes)
