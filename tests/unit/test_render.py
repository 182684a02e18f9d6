"""`plan` output: golden files for both example runbooks, version-specific SQL, no secrets.

Regenerate the golden files after an intended change with
    RESYNC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py
and read the diff before committing it.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from resync.actions.types import ActionView
from resync.cli.render import render_json, render_markdown, render_text
from resync.model.runbook import parse_runbook
from resync.model.secrets import MASK
from resync.plan.build import Plan, assumed_facts, build_plan, parse_version_overrides
from resync.plan.document import differences, plan_document, step_views

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = ("rebuild-old-primary", "rebuild-replica", "rebuild-replica-ebs", "rebuild-replica-hot")
UPDATE = os.environ.get("RESYNC_UPDATE_GOLDEN") == "1"


def make_plan(name: str, versions: str | None = None, edit: tuple[str, str] | None = None) -> Plan:
    # a fixed, relative path label keeps the golden files independent of the checkout location
    label = Path("runbooks") / f"{name}.yaml"
    text = (ROOT / label).read_text(encoding="utf-8")
    if edit is not None:
        assert text.count(edit[0]) == 1, edit
        text = text.replace(*edit)
    loaded = parse_runbook(text, label)
    return build_plan(loaded, assumed_facts(loaded, parse_version_overrides(versions, loaded)))


def flat(actions: list[ActionView]) -> list[ActionView]:
    """Every action, those inside holds, branches and composites included."""
    out: list[ActionView] = []
    for a in actions:
        out += [a, *flat(a.children), *flat(a.otherwise)]
    return out


def all_actions(plan: Plan, kinds: tuple[str, ...]) -> list[str]:
    return [a.text for v in step_views(plan) for a in flat(v.actions) + flat(v.undo)
            if a.kind in kinds]


def rendered(name: str, fmt: str, versions: str | None = None) -> str:
    plan = make_plan(name, versions)
    return render_markdown(plan) if fmt == "md" else render_json(plan)


def as_text(plan: Plan) -> str:
    out = io.StringIO()
    render_text(plan, Console(file=out, width=240, color_system=None, highlight=False))
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["md", "json"])
@pytest.mark.parametrize("name", EXAMPLES)
def test_golden(name: str, fmt: str) -> None:
    golden = GOLDEN / f"{name}.{fmt}"
    actual = rendered(name, fmt)
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"{golden} is missing: run with RESYNC_UPDATE_GOLDEN=1 to create it"
    assert actual == golden.read_text(encoding="utf-8"), (
        f"plan output changed for {name} ({fmt}); if intended, regenerate with "
        "RESYNC_UPDATE_GOLDEN=1 and review the diff")


# -- what the golden files must contain (checked on the rendered plan, not on the files) -----------


def test_old_primary_plan_structure() -> None:
    doc = json.loads(rendered("rebuild-old-primary", "json"))
    assert (doc["donor"], doc["recipient"], doc["primary_after"]) == ("db2", "db1", "db1")
    assert doc["versions_source"] == "assumed"
    assert doc["replication_mode"] == "gtid"  # MariaDB assumed: GTIDs always on
    keys = [s["key"] for s in doc["steps"]]
    assert keys == [
        # only the donor inside the lock window: the recipient stops and goes aside first
        "preflight", "stop-service:db1", "move-datadir-aside:db1", "stop-replication:db2",
        "preflush:db2", "read-lock:db2:donor", "stop-service:db2",
        "copy-datadir:db2->db1", "start-service:db1+db2",
        "reset-binlogs:db1", "read-lock:db1:source", "point-replica:db2", "wait-replica:db2",
        "unlock:db1", "make-writable:db1", "verify-data:db1=db2",
    ]
    assert [s["number"] for s in doc["steps"]] == list(range(1, len(keys) + 1))
    destructive = {s["key"] for s in doc["steps"] if s["destructive"]}
    assert destructive == {"move-datadir-aside:db1", "copy-datadir:db2->db1", "reset-binlogs:db1"}
    by_key = {s["key"]: s for s in doc["steps"]}
    assert by_key["move-datadir-aside:db1"]["undo"], "moving the datadir aside must be undoable"
    assert by_key["reset-binlogs:db1"]["undo"] == []
    assert by_key["stop-service:db1"]["undo"][0]["text"] == "systemctl start mariadb"
    point = [a["text"] for a in by_key["point-replica:db2"]["actions"]]
    assert point == [
        "the lock on session 'read-lock:db1:source' still holds",
        "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL gtid_slave_pos = <source.gtid>",
        "CHANGE MASTER TO MASTER_HOST='db1.example.internal', MASTER_PORT=3306, MASTER_USER='repl', "
        f"MASTER_PASSWORD='{MASK}', MASTER_USE_GTID=slave_pos",
        "START SLAVE",
    ]
    hosts = {a["host"] for s in doc["steps"] for a in s["actions"]}
    assert hosts == {"db1", "db2", "-"}
    # "-": decisions over captured values, which run on no host
    assert {a["kind"] for s in doc["steps"] for a in s["actions"] if a["host"] == "-"} == {"when"}


def test_replica_plan_structure() -> None:
    doc = json.loads(rendered("rebuild-replica", "json"))
    keys = [s["key"] for s in doc["steps"]]
    assert keys == [
        "preflight", "stop-service:db2", "move-datadir-aside:db2", "preflush:db1",
        "read-lock:db1:source", "stop-service:db1",
        "copy-datadir:db1->db2", "start-service:db2+db1",
        "point-replica:db2", "wait-replica:db2", "make-writable:db1", "verify-data:db1=db2",
    ]
    assert not any(k.startswith(("reset-binlogs", "stop-replication", "unlock")) for k in keys)


def test_markdown_flags_destructive_steps_and_missing_undo() -> None:
    md = rendered("rebuild-old-primary", "md")
    assert md.startswith("# resync plan: Rebuild the old primary db1 from db2 (rebuild-db1-from-db2)\n")
    assert "## 3. Move db1's datadir aside (kept) and create an empty one — **DESTRUCTIVE**" in md
    assert md.count("— **DESTRUCTIVE**") == 3
    assert md.count("Undo: none") == 2  # the copy and the binlog reset
    for step in step_views(make_plan("rebuild-old-primary")):
        assert f"## {step.number}. {step.title}" in md
        for action in step.actions:
            assert action.text in md


def test_mysql_84_renders_the_new_keywords() -> None:
    versions = "donor=mysql-8.4.3,recipient=mysql-8.4.3"
    plan = make_plan("rebuild-old-primary", versions)
    assert plan.facts.source == "given"
    sql = all_actions(plan, ("sql", "capture", "poll"))
    # REPLICATION SLAVE is the privilege's name on every version (the preflight check names it;
    # its column is Repl_slave_priv)
    checks = [t.replace("REPLICATION SLAVE", "REPLICATION_PRIV")
              for t in all_actions(plan, ("check", "login"))]
    joined = "\n".join(sql)
    assert any(s.startswith("CHANGE REPLICATION SOURCE TO SOURCE_HOST='db1.example.internal'")
               for s in sql), joined
    assert "SHOW BINARY LOG STATUS" in sql
    assert "RESET BINARY LOGS AND GTIDS" in sql
    assert "STOP REPLICA" in sql and "START REPLICA" in sql
    assert "SELECT @@GLOBAL.gtid_executed AS gtid" in sql
    assert any("SHOW REPLICA STATUS until Replica_IO_Running=Yes" in s for s in sql), joined
    assert not [s for s in sql + checks if re.search(r"\bMASTER|MASTER_|SLAVE\b", s)], joined
    md = render_markdown(plan)
    assert "given with --server-version" in md
    assert "ASSUMED" not in md
    # the replica scenario on 8.4 too (no binlog reset there, but the new names everywhere)
    replica_sql = all_actions(make_plan("rebuild-replica", versions), ("sql", "capture"))
    assert "SHOW BINARY LOG STATUS" in replica_sql
    assert not [s for s in replica_sql if "MASTER" in s]


def test_mariadb_renders_its_own_gtid_statements() -> None:
    sql = all_actions(make_plan("rebuild-old-primary"), ("sql", "capture"))
    assert "SELECT @@GLOBAL.gtid_binlog_pos AS gtid" in sql
    assert "SET GLOBAL gtid_binlog_state = <donor.gtid>" in sql
    assert not [s for s in sql if "REPLICA" in s or "gtid_executed" in s]
    # verify: the snapshot names its binlog position, the replica's applier stops exactly there
    each = all_actions(make_plan("rebuild-old-primary"), ("each",))
    assert "each round: SHOW SESSION STATUS LIKE 'binlog_snapshot_%'" in each
    assert ("each position it is not at yet: START SLAVE SQL_THREAD UNTIL "
            "MASTER_LOG_FILE = <verify.at.file>, MASTER_LOG_POS = <verify.at.pos>") in each
    assert not [s for s in each if "REPLICA" in s or "FLUSH TABLES" in s]


def test_preflight_lists_every_check_and_its_leaves() -> None:
    (composite,) = step_views(make_plan("rebuild-old-primary"))[0].actions
    assert composite.kind == "composite"
    kinds = [a.kind for a in composite.children]
    assert kinds.count("check") == 22
    assert "login" in kinds  # the replication user logs in for real
    assert [a.id for a in composite.children] == [f"0.{i}" for i in range(len(kinds))]


def test_undo_and_otherwise_notes_are_rendered() -> None:
    md = rendered("rebuild-old-primary", "md")
    assert "- otherwise: already recorded by an earlier attempt" in md
    assert "- otherwise: it had no replication source before the run: nothing to restore" in md
    assert "- otherwise: the replica's applier was not left stopped" in md
    text = as_text(make_plan("rebuild-old-primary"))
    assert "otherwise: already stopped: no stop command" in text
    assert "undo:" in text


def test_text_format_warns_when_versions_are_assumed() -> None:
    assumed = as_text(make_plan("rebuild-old-primary"))
    assert "ASSUMED" in assumed
    assert "check before the window" in assumed
    assert "DESTRUCTIVE" in assumed
    given = as_text(make_plan("rebuild-old-primary", "donor=mariadb-10.11,recipient=mariadb-10.11"))
    assert "ASSUMED" not in given
    assert "given with --server-version" in given


def test_password_never_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"DB1_PASSWORD": "pw-db1-Qq9", "DB2_PASSWORD": "pw-db2-Rr8", "REPL_PASSWORD": "pw-repl-Ss7"}
    for var, value in secrets.items():
        monkeypatch.setenv(var, value)
    for name in EXAMPLES:
        for versions in (None, "donor=mysql-8.4.3,recipient=mysql-8.4.3",
                         "donor=mysql-5.7.44,recipient=mysql-5.7.44"):
            plan = make_plan(name, versions)
            outputs = [render_markdown(plan), render_json(plan), as_text(plan)]
            for out in outputs:
                assert MASK in out
                for value in secrets.values():
                    assert value not in out


def test_mysql_copy_excludes_its_identity_and_default_binlogs() -> None:
    from resync.steps.copy.commands import excludes_for

    mysql, mariadb = excludes_for("mysql"), excludes_for("mariadb")
    for pattern in ("./auto.cnf", "./binlog.[0-9]*", "./binlog.index", "./*relay-bin.*"):
        assert pattern in mysql
    assert "./auto.cnf" not in mariadb and "./*-bin.state" in mariadb


# -- the plan document: its hash binds a run to the reviewed plan -----------------------------------


def test_plan_sha256_is_stable_and_changes_with_an_action() -> None:
    first = plan_document(make_plan("rebuild-old-primary"))
    again = plan_document(make_plan("rebuild-old-primary"))
    assert first["plan_sha256"] == again["plan_sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", first["plan_sha256"])
    assert json.loads(rendered("rebuild-old-primary", "json"))["plan_sha256"] == first["plan_sha256"]
    other_port = plan_document(make_plan("rebuild-old-primary", edit=("port: 7878", "port: 7879")))
    assert other_port["plan_sha256"] != first["plan_sha256"]
    # the header is not hashed: only the steps and their actions are
    assert first["runbook"]["sha256"] != other_port["runbook"]["sha256"]


def test_differences_name_the_action_that_changed() -> None:
    reviewed = plan_document(make_plan("rebuild-old-primary"))["steps"]
    assert differences(reviewed, reviewed) == []
    now = plan_document(make_plan("rebuild-old-primary", edit=("port: 7878", "port: 7879")))["steps"]
    diff = differences(reviewed, now)
    assert diff, "a different copy port must show up"
    assert all(d.startswith(("step preflight ", "step copy-datadir:db2->db1 ")) for d in diff), diff
    port_check = [d for d in diff if "ss -Hltn 'sport = :7878'" in d]
    assert port_check and "ss -Hltn 'sport = :7879'" in port_check[0]
    assert "reviewed:" in port_check[0] and "now:" in port_check[0]
    # a step that is gone is named as such
    missing = differences(reviewed, [s for s in reviewed if s["key"] != "unlock:db1"])
    assert missing == ["step unlock:db1: in the reviewed plan, not in this run's"]


# -- no reset on the server with the good data (issue 8): golden plans for MySQL ------------------
MYSQL_CASES = {
    # the seed scenario on MySQL 8.4 with GTIDs: db2 (good data) becomes the replica
    "rebuild-old-primary-mysql84-gtid": ("rebuild-old-primary", "donor=mysql-8.4.3,recipient=mysql-8.4.3",
                                         ("mode: auto", "mode: gtid")),
    # MySQL 5.7, file/position
    "rebuild-old-primary-mysql57-filepos": ("rebuild-old-primary",
                                            "donor=mysql-5.7.44,recipient=mysql-5.7.44",
                                            ("mode: auto", "mode: file_pos")),
}


@pytest.mark.parametrize("case", sorted(MYSQL_CASES))
def test_golden_mysql_plans_never_reset_the_good_server(case: str) -> None:
    name, versions, edit = MYSQL_CASES[case]
    plan = make_plan(name, versions, edit)
    golden = GOLDEN / f"{case}.md"
    actual = render_markdown(plan)
    if UPDATE:
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8"), f"{case}: regenerate and review"
    donor = plan.loaded.model.donor
    resets = [(v.key, a.host, a.text) for v in step_views(plan) for a in flat(v.actions)
              if "RESET" in a.text and ("MASTER" in a.text or "BINARY LOGS" in a.text)]
    assert resets and all(host != donor for _, host, _ in resets), resets
    purged = [(a.host, a.text) for v in step_views(plan) for a in flat(v.actions)
              if "gtid_purged" in a.text]
    assert all(host != donor for host, _ in purged), purged


def test_the_copy_checksum_option_picks_the_relays_digest() -> None:
    edit = ("copy: {method: stream, port: 7878, compress: none}",
            "copy: {method: stream, port: 7878, compress: none, checksum: sha256}")
    def ends(plan: Plan) -> list[str]:  # the relay's command lines: python3 PATH ROLE HOST PORT DIGEST
        return [line for t in all_actions(plan, ("shell",))
                for line in re.findall(r"python3 /tmp/resync-relay-\w+\.py \w+ \S+ \d+ \w+", t)]

    chosen, default = ends(make_plan("rebuild-replica", edit=edit)), ends(make_plan("rebuild-replica"))
    assert len(chosen) >= 4 and all(line.endswith(" sha256") for line in chosen)
    assert len(default) >= 4 and all(line.endswith(" crc32") for line in default)


def test_the_relay_program_is_printed_once_per_plan() -> None:
    plan = make_plan("rebuild-replica")
    program = "# resync copy relay, protocol"  # the program's first line
    installs = [t for t in all_actions(plan, ("shell",)) if program in t]
    assert len(installs) >= 3, "probe and copy install it on both hosts"
    assert as_text(plan).count(program) == 1
    markdown = render_markdown(plan)
    assert markdown.count(program) == 1
    assert "(the same text as in step" in markdown


def test_the_copy_step_leads_with_a_summary_and_its_exclusions_with_reasons() -> None:
    plan = make_plan("rebuild-old-primary")
    copy = next(v for v in step_views(plan) if v.key.startswith("copy-datadir:"))
    assert copy.summary.startswith("stream: db2:/var/lib/mysql → db1:/var/lib/mysql over a TCP "
                                   "stream (port 7878")
    assert "CRC-32 compared on both ends" in copy.summary
    assert any("*relay-bin.*" in n and "the recipient starts its own" in n for n in copy.notes)
    assert any("*.pid" in n and "recreated at start" in n for n in copy.notes)
    text = as_text(plan)
    panel = text[text.index("Copy the datadir db2 -> db1"):]
    assert panel.index(copy.summary[:40]) < panel.index("not copied:") < panel.index("$ ")


def test_mysql_exclusions_name_the_identity_file() -> None:
    plan = make_plan("rebuild-old-primary", "donor=mysql-8.4,recipient=mysql-8.4")
    copy = next(v for v in step_views(plan) if v.key.startswith("copy-datadir:"))
    assert any("auto.cnf" in n and "server_uuid must stay unique" in n for n in copy.notes)


def test_brief_prints_one_line_per_step_with_destructive_markers() -> None:
    plan = make_plan("rebuild-old-primary")
    out = io.StringIO()
    render_text(plan, Console(file=out, width=400, color_system=None, highlight=False), brief=True)
    lines = [line for line in out.getvalue().splitlines() if re.match(r"\s*\d+\. ", line)]
    views = step_views(plan)
    assert len(lines) == len(views)
    assert sum("— DESTRUCTIVE" in line for line in lines) == sum(v.destructive for v in views)
    assert "sql>" not in out.getvalue() and "$ " not in out.getvalue()


def test_markdown_folds_long_scripts_under_their_first_line_and_keeps_them_whole() -> None:
    plan = make_plan("rebuild-old-primary")
    md = render_markdown(plan)
    assert md.count("<details><summary>") == md.count("</details>") > 0
    shown: set[str] = set()
    for v in step_views(plan):
        for a in flat(v.actions):
            if a.kind == "shell" and a.text not in shown:
                shown.add(a.text)
                assert a.text in md, "every exact action stays in the ticket"
    assert "(107 lines" not in md or "<details>" in md
