"""The command line: commands listed, exit codes, messages on stderr, light imports for plan/--help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support import import_probe

from resync.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]
OLD_PRIMARY = ROOT / "runbooks" / "rebuild-old-primary.yaml"
REPLICA = ROOT / "runbooks" / "rebuild-replica.yaml"
COMMANDS = ("plan", "check", "run", "resume", "rollback", "status", "verify", "cleanup", "demo")


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def bad_runbook(tmp_path: Path) -> tuple[Path, int]:
    text = OLD_PRIMARY.read_text().replace('      port: 3306                    # host',
                                           '      port: "abc"                   # host')
    lines = [i for i, line in enumerate(text.splitlines(), 1) if 'port: "abc"' in line]
    assert len(lines) == 1
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path, lines[0]


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test here may reach a server: fail loudly if the CLI tries to detect versions."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the CLI tried to connect to a server")

    monkeypatch.setattr("resync.plan.detect.detect_facts", refuse)
    monkeypatch.chdir(tmp_path)  # a journal written by mistake lands in tmp_path, not the repo


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.stdout, f"{command} missing from --help"


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert "0.1.0" in result.stdout


def test_plan_text() -> None:
    result = invoke("plan", str(OLD_PRIMARY), env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "rebuild-db1-from-db2" in result.stdout
    assert "ASSUMED" in result.stdout
    assert "FLUSH TABLES WITH READ LOCK" in result.stdout


def test_plan_json_parses() -> None:
    result = invoke("plan", str(REPLICA), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["runbook"]["name"] == "rebuild-db2-from-db1"
    assert doc["steps"][0]["key"] == "preflight"
    assert result.stderr == ""


def test_plan_out_writes_the_json_plan_with_its_hash(tmp_path: Path) -> None:
    out = tmp_path / "reviewed.json"
    result = invoke("plan", str(REPLICA), "--format", "markdown", "--out", str(out))
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["plan_sha256"] in result.stdout  # the markdown header names the same hash
    again = json.loads(invoke("plan", str(REPLICA), "--format", "json").stdout)
    assert again == written


def test_plan_detect_goes_through_detect_facts() -> None:
    # the autouse fixture replaces detection: --detect must reach it (and so fail here)
    env: dict[str, str | None] = {"DB1_PASSWORD": "x", "DB2_PASSWORD": "y", "REPL_PASSWORD": "z"}
    result = invoke("plan", str(REPLICA), "--detect", env=env)
    assert result.exit_code != 0
    assert isinstance(result.exception, AssertionError), result.output
    assert "the CLI tried to connect to a server" in str(result.exception)


def test_plan_markdown_with_server_version() -> None:
    result = invoke("plan", str(OLD_PRIMARY), "--format", "markdown",
                    "--server-version", "donor=mysql-8.4.3,recipient=mysql-8.4.3")
    assert result.exit_code == 0, result.output
    assert "CHANGE REPLICATION SOURCE TO" in result.stdout
    assert "RESET BINARY LOGS AND GTIDS" in result.stdout
    assert "given with --server-version" in result.stdout


def test_plan_bad_runbook_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path, line = bad_runbook(tmp_path)
    result = invoke("plan", str(path))
    assert result.exit_code == 2
    assert f"{path}:{line}: hosts.db1.mysql.port" in result.stderr
    assert result.stdout == ""


def test_plan_missing_runbook_exits_2(tmp_path: Path) -> None:
    result = invoke("plan", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml" in result.stderr


@pytest.mark.parametrize("value", ["nonsense", "donor=oracle-19", "db7=mysql-8.4.3",
                                   "donor=mysql-4.1.0"])
def test_plan_bad_server_version_exits_2(value: str) -> None:
    result = invoke("plan", str(OLD_PRIMARY), "--server-version", value)
    assert result.exit_code == 2, result.output
    assert "--server-version" in result.stderr
    assert result.stdout == ""


def test_run_with_missing_password_env_exits_2_naming_it() -> None:
    text = OLD_PRIMARY.read_text()
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "password_env: REPL_PASSWORD" in s)
    result = invoke("run", str(OLD_PRIMARY), "--yes",
                    env={"DB1_PASSWORD": "x", "DB2_PASSWORD": "y", "REPL_PASSWORD": None})
    assert result.exit_code == 2, result.output
    assert "REPL_PASSWORD is not set" in result.stderr
    assert f"{OLD_PRIMARY}:{line}: replication.password_env" in result.stderr


def test_run_with_missing_host_password_exits_2_naming_it() -> None:
    result = invoke("run", str(OLD_PRIMARY), "--yes",
                    env={"DB1_PASSWORD": None, "DB2_PASSWORD": "y", "REPL_PASSWORD": "z"})
    assert result.exit_code == 2, result.output
    assert "DB1_PASSWORD is not set" in result.stderr
    assert "hosts.db1.mysql.password_env" in result.stderr


def test_resume_refuses_a_damaged_journal(tmp_path: Path) -> None:
    journal = tmp_path / "j.json"
    journal.write_text("{not json")
    result = invoke("resume", str(journal), "--yes")
    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr


# -- the real entry point, in a separate interpreter -------------------------------------------------


def test_console_script_plan_bad_runbook(tmp_path: Path) -> None:
    path, line = bad_runbook(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "resync", "plan", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{path}:{line}:" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["--help"], ["plan", str(OLD_PRIMARY)],
                                  ["plan", str(REPLICA), "--format", "json"]])
def test_help_and_plan_do_not_import_heavy_modules(args: list[str], tmp_path: Path) -> None:
    proc = import_probe(args, ("boto3", "paramiko"), cwd=tmp_path)
    result = proc.stdout.strip().splitlines()[-1]
    assert result == "RESULT 0 False False", (result, proc.stderr)


def test_a_file_that_cannot_be_written_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    """Regression: an OSError (here: `plan --out` into a directory that does not exist) ended in
    a Python traceback."""
    out = tmp_path / "no-such-dir" / "plan.json"
    result = invoke("plan", str(REPLICA), "--format", "json", "--out", str(out))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    err = " ".join(result.stderr.split())
    assert "resync: cannot use" in err and "no-such-dir" in err and "No such file" in err, err
