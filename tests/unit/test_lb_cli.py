"""`resync lb status|register|deregister`: options, exit codes, messages; light imports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support import import_probe

from resync.cli.commands import main

IID = "i-0abc1234567890def"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["lb", *args], env={"COLUMNS": "400"})


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing here may reach AWS or IMDS: no endpoint answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RESYNC_IMDS_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)


def lb_yaml(tmp_path: Path, text: str = "version: 1\nmembers: [{kind: elb, name: web-elb}]\n") -> str:
    path = tmp_path / "lb.yaml"
    path.write_text(text)
    return str(path)


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("status", "register", "deregister"):
        assert f"  {command} " in result.stdout
    result = invoke("deregister", "--help")
    for option in ("--config", "--self", "--instance", "--address", "--complete-lifecycle",
                   "--asg"):
        assert option in result.stdout


def test_a_bad_file_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path = lb_yaml(tmp_path, "version: 1\nmembers:\n  - {kind: elb, name: 'web elb'}\n")
    result = invoke("status", "--config", path, "--instance", IID)
    assert result.exit_code == 2, result.output
    assert f"{path}:3: members.0.name" in result.stderr


@pytest.mark.parametrize("args", [["--self", "--instance", IID], [], ["--self", "--address",
                                                                     "10.0.0.5"]])
def test_who_is_one_of_self_or_instance(tmp_path: Path, args: list[str]) -> None:
    result = invoke("register", "--config", lb_yaml(tmp_path), *args)
    assert result.exit_code == 2, result.output
    assert "--self or --instance" in result.stderr or "--address goes with" in result.stderr


def test_lifecycle_options_belong_to_deregister(tmp_path: Path) -> None:
    result = invoke("register", "--config", lb_yaml(tmp_path), "--self",
                    "--complete-lifecycle", "drain")
    assert result.exit_code == 2
    result = invoke("deregister", "--config", lb_yaml(tmp_path), "--instance", IID,
                    "--asg", "web-asg")
    assert result.exit_code == 2 and "--asg goes with --complete-lifecycle" in result.stderr


def test_self_without_imds_exits_2_and_shows_what_ran(tmp_path: Path) -> None:
    result = invoke("deregister", "--config", lb_yaml(tmp_path), "--self")
    assert result.exit_code == 2, result.output
    assert "did not answer" in result.stderr and "--instance ID" in result.stderr
    assert "IMDSv2 http://127.0.0.1:" in result.stdout and "FAILED" in result.stdout


@pytest.mark.parametrize("args", [["lb", "--help"], ["lb", "register", "--help"],
                                  ["lb", "status", "--config", "missing.yaml", "--self"]])
def test_lb_commands_import_boto3_only_to_call_aws(args: list[str], tmp_path: Path) -> None:
    proc = import_probe(args, ("boto3", "botocore"), cwd=tmp_path)
    code = 2 if "missing.yaml" in args else 0
    assert proc.stdout.strip().splitlines()[-1] == f"RESULT {code} False False", proc.stderr
