"""The runbook loader: both examples load; every bad input names the file, the line and the field."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from support import line_no, runbook_error

from resync.model.errors import RunbookError
from resync.model.runbook import LoadedRunbook, load_runbook, parse_runbook
from resync.model.secrets import MASK

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
OLD_PRIMARY = RUNBOOKS / "rebuild-old-primary.yaml"
REPLICA = RUNBOOKS / "rebuild-replica.yaml"


def example() -> str:
    return OLD_PRIMARY.read_text(encoding="utf-8")


def edit(text: str, old: str, new: str) -> str:
    """Replace exactly one occurrence (so a changed example runbook fails loudly, not silently)."""
    assert text.count(old) == 1, f"expected exactly one {old!r} in the example runbook"
    return text.replace(old, new)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad-runbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> tuple[Path, RunbookError]:
    path = write(tmp_path, text)
    return path, runbook_error(path)


def assert_names(err: RunbookError, path: Path, line: int, field: str) -> None:
    """The message names the file with the line (path:LINE:) and then the dotted field."""
    message = str(err)
    assert f"{path}:{line}: {field}" in message, message


# -- the examples ---------------------------------------------------------------------------------


def test_old_primary_example_loads() -> None:
    loaded = load_runbook(OLD_PRIMARY)
    rb = loaded.model
    assert rb.name == "rebuild-db1-from-db2"
    assert sorted(rb.hosts) == ["db1", "db2"]
    assert (rb.donor, rb.recipient, rb.primary_after, rb.replica_after) == ("db2", "db1", "db1", "db2")
    assert rb.hosts["db1"].mysql.password_env == "DB1_PASSWORD"
    assert rb.hosts["db2"].mysql.password_env == "DB2_PASSWORD"
    assert rb.replication.password_env == "REPL_PASSWORD"
    assert rb.copy_.port == 7878
    assert rb.locks.lock_wait_timeout == 10
    assert loaded.sha256 == hashlib.sha256(OLD_PRIMARY.read_bytes()).hexdigest()
    text = OLD_PRIMARY.read_text()
    assert loaded.line_of("donor") == line_no(text, "donor: db2")
    assert loaded.line_of("hosts", "db1", "mysql", "password_env") == line_no(text, "DB1_PASSWORD")


def test_replica_example_loads() -> None:
    loaded = load_runbook(REPLICA)
    rb = loaded.model
    assert rb.name == "rebuild-db2-from-db1"
    assert (rb.donor, rb.recipient, rb.primary_after, rb.replica_after) == ("db1", "db2", "db1", "db2")
    assert rb.replication.mode == "auto"
    assert rb.hosts["db2"].datadir == "/var/lib/mysql"
    assert rb.locks.lock_wait_timeout == 10  # default when the section is left out
    assert loaded.sha256 == hashlib.sha256(REPLICA.read_bytes()).hexdigest()


def test_sha256_changes_with_the_text(tmp_path: Path) -> None:
    a = load_runbook(write(tmp_path, example()))
    b = parse_runbook(example() + "# a comment\n", tmp_path / "other.yaml")
    assert a.sha256 != b.sha256
    assert a.model == b.model


# -- unknown keys -----------------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = example() + "colour: blue\n"
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "colour: blue"), "colour")
    assert "unknown field" in str(err)


def test_unknown_nested_key(tmp_path: Path) -> None:
    text = edit(example(), "      user: resync                  # needs",
                "      foo: 1\n      user: resync                  # needs")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "foo: 1"), "hosts.db1.mysql.foo")
    assert "unknown field" in str(err)


def test_unknown_key_in_flow_mapping(tmp_path: Path) -> None:
    text = edit(example(), "mysql: {port: 3306, user: resync, password_env: DB2_PASSWORD}",
                "mysql: {port: 3306, user: resync, password_env: DB2_PASSWORD, prot: 1}")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "prot: 1"), "hosts.db2.mysql.prot")


# -- wrong types and values -------------------------------------------------------------------------


def test_port_wrong_type(tmp_path: Path) -> None:
    text = edit(example(), "      port: 3306                    # host defaults",
                '      port: "abc"                   # host defaults')
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, 'port: "abc"'), "hosts.db1.mysql.port")
    assert "integer" in str(err)


def test_port_out_of_range(tmp_path: Path) -> None:
    text = edit(example(), "  port: 7878  ", "  port: 70000  ")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "port: 70000"), "copy.port")


def test_bad_literal_choice(tmp_path: Path) -> None:
    text = edit(example(), "  mode: auto  ", "  mode: sometimes  ")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "mode: sometimes"), "replication.mode")


def test_relative_datadir_is_refused(tmp_path: Path) -> None:
    text = edit(example(), "    datadir: /var/lib/mysql         # must equal",
                "    datadir: var/lib/mysql          # must equal")
    path, err = load_error(tmp_path, text)
    assert "hosts.db1" in str(err)
    assert "datadir must be an absolute path" in str(err)
    assert re.search(rf"{re.escape(str(path))}:\d+: hosts\.db1", str(err))


# -- cross checks -----------------------------------------------------------------------------------


def test_donor_equals_recipient(tmp_path: Path) -> None:
    text = edit(example(), "recipient: db1 ", "recipient: db2 ")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "recipient: db2"), "recipient")
    assert "donor and recipient are the same host" in str(err)


def test_primary_after_not_donor_or_recipient(tmp_path: Path) -> None:
    text = edit(example(), "  db2:                              # the replica",
                "  db3:\n    address: db3.example.internal\n    local: true\n"
                "    service: {start: 'true', stop: 'true'}\n"
                "  db2:                              # the replica")
    text = edit(text, "primary_after: db1", "primary_after: db3")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "primary_after: db3"), "primary_after")
    assert "must be the donor (db2) or the recipient (db1)" in str(err)
    assert "is not one of the hosts" not in str(err)  # db3 is a host: only the role is wrong


def test_primary_after_unknown_host(tmp_path: Path) -> None:
    text = edit(example(), "primary_after: db1", "primary_after: db9")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "primary_after: db9"), "primary_after")
    assert "'db9' is not one of the hosts (db1, db2)" in str(err)


def test_donor_names_unknown_host(tmp_path: Path) -> None:
    text = edit(example(), "donor: db2 ", "donor: db9 ")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "donor: db9"), "donor")
    assert "'db9' is not one of the hosts (db1, db2)" in str(err)


def test_same_server_twice(tmp_path: Path) -> None:
    text = edit(example(), "    address: db2.example.internal\n", "    address: db1.example.internal\n")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "recipient: db1"), "recipient")
    assert "point at the same server" in str(err)


# -- literal passwords ------------------------------------------------------------------------------


def test_literal_password_under_mysql(tmp_path: Path) -> None:
    text = edit(example(), "      password_env: DB1_PASSWORD", "      password: hunter2")
    path, err = load_error(tmp_path, text)
    message = str(err)
    assert re.search(rf"{re.escape(str(path))}:\d+: hosts\.db1\.mysql", message), message
    assert "password_env" in message
    assert "hunter2" not in message


def test_literal_password_under_mysql_flow_mapping(tmp_path: Path) -> None:
    text = edit(example(), "password_env: DB2_PASSWORD}", "password: hunter2}")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "password: hunter2"), "hosts.db2.mysql")
    assert "password_env" in str(err)
    assert "hunter2" not in str(err)


def test_literal_password_under_replication(tmp_path: Path) -> None:
    text = edit(example(), "  password_env: REPL_PASSWORD", "  password: hunter2")
    path, err = load_error(tmp_path, text)
    message = str(err)
    assert re.search(rf"{re.escape(str(path))}:\d+: replication", message), message
    assert "password_env" in message
    assert "hunter2" not in message


def test_literal_password_error_points_at_the_password_line(tmp_path: Path) -> None:
    text = edit(example(), "      password_env: DB1_PASSWORD", "      password: hunter2")
    path, err = load_error(tmp_path, text)
    assert f"{path}:{line_no(text, 'password: hunter2')}:" in str(err)


# -- YAML-level problems ----------------------------------------------------------------------------


def test_duplicate_key(tmp_path: Path) -> None:
    text = edit(example(), "recipient: db1 ", "recipient: db1\nrecipient: db1 ")
    path, err = load_error(tmp_path, text)
    second = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith("recipient:")][1]
    assert_names(err, path, second, "recipient")
    assert "duplicate key" in str(err)


def test_duplicate_nested_key(tmp_path: Path) -> None:
    text = edit(example(), "  mode: auto  ", "  mode: auto\n  mode: gtid  ")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "mode: gtid"), "replication.mode")
    assert "duplicate key" in str(err)


def test_invalid_yaml(tmp_path: Path) -> None:
    text = edit(example(), "name: rebuild-db1-from-db2", "name: [rebuild-db1-from-db2")
    path, err = load_error(tmp_path, text)
    assert re.search(rf"{re.escape(str(path))}:\d+: not valid YAML", str(err)), str(err)


def test_invalid_yaml_line_number(tmp_path: Path) -> None:
    text = edit(example(), "  compress: none  ", "  compress: none\n\tbad: tab  ")
    path, err = load_error(tmp_path, text)
    assert f"{path}:{line_no(text, 'bad: tab')}: not valid YAML" in str(err)


def test_not_a_mapping(tmp_path: Path) -> None:
    path, err = load_error(tmp_path, "- just\n- a list\n")
    assert "a runbook is a YAML mapping" in str(err)
    assert str(path) in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match="cannot read"):
        load_runbook(tmp_path / "nope.yaml")


# -- missing fields ---------------------------------------------------------------------------------


def test_missing_nested_required_field(tmp_path: Path) -> None:
    text = edit(example(), "  user: repl                        # must exist",
                "  # user: repl                      # must exist")
    path, err = load_error(tmp_path, text)
    message = str(err)
    assert re.search(rf"{re.escape(str(path))}:\d+: replication\.user: required field is missing",
                     message), message


def test_missing_service_command(tmp_path: Path) -> None:
    text = edit(example(), "service: {start: systemctl start mariadb, stop: systemctl stop mariadb,",
                "service: {start: systemctl start mariadb,")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "service: {start: systemctl start mariadb,"),
                 "hosts.db2.service.stop")
    assert "required field is missing" in str(err)


def test_missing_top_level_field(tmp_path: Path) -> None:
    text = edit(example(), "donor: db2 ", "# donor: db2 ")
    path, err = load_error(tmp_path, text)
    assert f"{path}" in str(err)
    assert "donor: required field is missing" in str(err)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = edit(example(), "  port: 7878  ", "  port: 70000  ")
    text = edit(text, "  mode: auto  ", "  mode: sometimes  ")
    _, err = load_error(tmp_path, text)
    fields = " ".join(err.problems)
    assert len(err.problems) == 2
    assert "copy.port" in fields and "replication.mode" in fields


# -- secrets at run time ----------------------------------------------------------------------------


def test_secret_with_unset_env_var_names_the_line(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPL_PASSWORD", raising=False)
    loaded = load_runbook(OLD_PRIMARY)
    with pytest.raises(RunbookError) as info:
        loaded.secret("REPL_PASSWORD", "replication", "password_env")
    message = str(info.value)
    line = line_no(OLD_PRIMARY.read_text(), "password_env: REPL_PASSWORD")
    assert f"{OLD_PRIMARY}:{line}: replication.password_env" in message
    assert "REPL_PASSWORD is not set" in message
    assert info.value.exit_code == 2


def test_secret_from_set_env_var_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB1_PASSWORD", "pa55-word")
    loaded: LoadedRunbook = load_runbook(OLD_PRIMARY)
    secret = loaded.secret("DB1_PASSWORD", "hosts", "db1", "mysql", "password_env")
    assert secret.reveal() == "pa55-word"
    assert str(secret) == MASK
    assert "pa55-word" not in repr(secret)
    assert "pa55-word" not in f"{secret}"


def test_keep_system_schema_is_refused_with_the_reason(tmp_path: Path) -> None:
    text = (RUNBOOKS / "rebuild-replica.yaml").read_text().replace(
        "copy: {method: stream, port: 7878, compress: none}",
        "copy: {method: stream, port: 7878, compress: none, keep_system_schema: true}")
    with pytest.raises(RunbookError) as err:
        parse_runbook(text, tmp_path / "rb.yaml")
    assert "keep_system_schema is refused" in str(err.value)
    assert "gtid_slave_pos" in str(err.value)


# -- host addresses ---------------------------------------------------------------------------------


def test_address_with_shell_metacharacters_is_refused(tmp_path: Path) -> None:
    text = edit(example(), "    address: db1.example.internal   #", '    address: "db1; rm -rf /"   #')
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "db1; rm -rf /"), "hosts.db1.address")
    assert "neither an IP address nor a hostname" in str(err)


@pytest.mark.parametrize("bad", ["db1 example", "db1.example.internal.$(id)", "-db1", "db1-.example",
                                 "db_1", "a" * 64, ".".join(["a" * 63] * 4) + ".com", "10.0.0.256",
                                 '""', "db1..example", '"db1\\n"'])
def test_invalid_addresses_are_refused(tmp_path: Path, bad: str) -> None:
    text = edit(example(), "    address: db2.example.internal\n", f"    address: {bad}\n")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, f"address: {bad}"), "hosts.db2.address")


@pytest.mark.parametrize("good", ["db1.example.internal", "db1.example.internal.", "localhost", "DB-1",
                                  "10.0.0.11", "'2001:db8::11'", "'::1'", "'fe80::1%eth0'", "3com.example"])
def test_hostnames_and_ip_addresses_are_accepted(tmp_path: Path, good: str) -> None:
    text = edit(example(), "    address: db1.example.internal   #", f"    address: {good}   #")
    loaded = load_runbook(write(tmp_path, text))
    assert loaded.model.hosts["db1"].address == good.strip("'")


def test_ipv6_address_is_accepted(tmp_path: Path) -> None:
    text = edit(example(), "    address: db2.example.internal\n", '    address: "2001:db8::12"\n')
    assert load_runbook(write(tmp_path, text)).model.hosts["db2"].mysql_host == "2001:db8::12"


def test_mysql_host_is_validated_like_the_address(tmp_path: Path) -> None:
    text = edit(example(), "      port: 3306                    # host defaults",
                "      host: 'db1 && reboot'\n      port: 3306                    # host defaults")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "db1 && reboot"), "hosts.db1.mysql.host")
    text = edit(example(), "      port: 3306                    # host defaults",
                "      host: 192.0.2.11\n      port: 3306                    # host defaults")
    assert load_runbook(write(tmp_path, text)).model.hosts["db1"].mysql_host == "192.0.2.11"


def test_the_donor_needs_service_commands_a_web_host_does_not(tmp_path: Path) -> None:
    text = example()
    start = text.index("    service: {start: systemctl start mariadb, stop: systemctl stop mariadb,")
    end = text.index("}", start) + 1
    no_service = text[:start] + text[end + 1:]
    path, err = load_error(tmp_path, no_service)
    assert f"{path}:" in str(err) and "hosts.db2.service: the donor needs service:" in str(err)
    web = text.replace("hosts:\n", "hosts:\n  web1: {address: web1.example.internal}\n", 1)
    (tmp_path / "web.yaml").write_text(web)
    assert load_runbook(tmp_path / "web.yaml").model.hosts["web1"].service is None


def test_a_title_is_free_text_and_the_name_its_slug_when_left_out(tmp_path: Path) -> None:
    text = edit(example(), "name: rebuild-db1-from-db2", "# no name: derived from the title")
    text = edit(text, "title: Rebuild the old primary db1 from db2",
                "title: \"Nightly rebuild of db1 — from db2 (change #4711)\"")
    rb = load_runbook(write(tmp_path, text)).model
    assert rb.title == "Nightly rebuild of db1 — from db2 (change #4711)"
    assert rb.name == "nightly-rebuild-of-db1-from-db2-change-4711"
    assert rb.label == f"{rb.title} ({rb.name})"


def test_a_free_text_name_is_refused_with_the_way_out(tmp_path: Path) -> None:
    text = edit(example(), "name: rebuild-db1-from-db2", "name: nightly rebuild of db1")
    path, err = load_error(tmp_path, text)
    assert_names(err, path, line_no(text, "name: nightly rebuild of db1"), "name")
    assert "put free text in `title:`" in str(err)


def test_neither_title_nor_name_is_refused(tmp_path: Path) -> None:
    text = edit(example(), "name: rebuild-db1-from-db2", "")
    text = edit(text, "title: Rebuild the old primary db1 from db2", "")
    _, err = load_error(tmp_path, text)
    assert "needs a `title:` (free text) or a `name:`" in str(err)


def test_outputs_lead_with_the_title() -> None:
    from resync.cli.render import render_markdown
    from resync.plan.build import assumed_facts, build_plan

    loaded = load_runbook(OLD_PRIMARY)
    markdown = render_markdown(build_plan(loaded, assumed_facts(loaded, {})))
    assert markdown.startswith("# resync plan: Rebuild the old primary db1 from db2 "
                               "(rebuild-db1-from-db2)")
