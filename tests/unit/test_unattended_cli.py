"""Unattended runs through the real command line: `run/resume/rollback --yes` never read
standard input, print plain lines when stdout is no terminal, append `--log-json` with every
secret masked, and notify (a loopback receiver and a command) with the run's outcome.

The plan is three small steps (a preflight, a copy with progress, a last step that can be made
to fail) run by the real engine and executor over fake servers (resync.testing.fakes).
"""

from __future__ import annotations

import builtins
import inspect
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console
from rich.prompt import Prompt
from test_notify_delivery import Receiver

from resync.actions.types import Action, Composite, Leaf, Sql
from resync.cli.commands import main
from resync.cli.ui import TerminalUI
from resync.model.errors import DatabaseError, PreflightFailed
from resync.model.keys import StepId, StepKind
from resync.model.runbook import LoadedRunbook
from resync.model.secrets import EnvSecret
from resync.plan.build import Plan, assumed_facts
from resync.run.engine import Decision
from resync.run.events import EventName, RunEvent
from resync.run.executor import CompositeRun, Executor
from resync.run.journal import Journal
from resync.steps.base import Step
from resync.testing.fakes import FakeClock, FakeWorld

REPLICA = Path(__file__).resolve().parents[2] / "runbooks" / "rebuild-replica.yaml"
REAL_ASK, REAL_INPUT = inspect.getattr_static(Prompt, "ask"), builtins.input
PASSWORDS = {"DB1_PASSWORD": "pw-db1-Zq8", "DB2_PASSWORD": "pw-db2-Xk3",
             "REPL_PASSWORD": "pw-repl-Wm5"}


@dataclass(frozen=True)
class CopyWithProgress(Composite):
    host: str = "db1"
    title: str = "copy, counting bytes"

    def parts(self) -> tuple[Leaf, ...]:
        return (Sql("db1", "SELECT 'copy'"),)

    def execute(self, run: CompositeRun) -> None:
        run.do(0)
        for done in (0, 5_000_000, 10_000_000):
            run.progress(done, 10_000_000, "copy")


class Simple(Step):
    def __init__(self, kind: StepKind, *actions: Action) -> None:
        self.id, self.title, self.hosts, self.actions = StepId(kind), f"the {kind} step", ("db1",), actions

    def plan(self) -> tuple[Action, ...]:
        return self.actions

    def undo_plan(self) -> tuple[Action, ...]:
        return (Sql("db1", f"UNDO {self.id.kind}"),)


def fake_plan(loaded: LoadedRunbook, *args: Any, **kwargs: Any) -> Plan:
    steps = (Simple(StepKind.PREFLIGHT, Sql("db1", "SELECT 'preflight'")),
             Simple(StepKind.COPY, CopyWithProgress(),
                    Sql("db1", "SET @p = %s", (EnvSecret("REPL_PASSWORD"),))),
             Simple(StepKind.VERIFY, Sql("db1", "SELECT 'verify'")))
    return Plan(loaded, assumed_facts(loaded, {}), "gtid", steps)


class NoStdin(io.BufferedIOBase):
    """Standard input that fails the test on any read."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:  # click's probe: is it a binary stream?
            return b""
        raise AssertionError("standard input was read")

    read1 = read

    def readline(self, size: int | None = -1) -> bytes:
        raise AssertionError("standard input was read")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeWorld]:
    world = FakeWorld()
    from resync.run import runner

    def executor_for(loaded: LoadedRunbook, journal: Journal, **kw: Any) -> Executor:
        exe = Executor(journal, hosts=world.host, connect=world.connect,
                       secrets=runner.runbook_secrets(loaded), clock=FakeClock())
        if kw.get("progress") is not None:
            exe.progress = kw["progress"]
        return exe

    monkeypatch.setattr(runner, "detected_plan", fake_plan)
    monkeypatch.setattr(runner, "build_plan", fake_plan)
    monkeypatch.setattr(runner, "executor_for", executor_for)
    for prompt in ("rich.prompt.Prompt.ask", "rich.prompt.Confirm.ask", "click.confirm",
                   "click.prompt", "builtins.input"):
        monkeypatch.setattr(prompt, _never_asked(prompt))
    for name, value in PASSWORDS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)
    yield world


def _never_asked(name: str) -> Any:
    def ask(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} was called in an unattended run")

    return ask


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([])
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def runbook(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHAT_WEBHOOK_URL", receiver.url)
    path = tmp_path / "runbook.yaml"
    path.write_text(REPLICA.read_text() + (
        "notify:\n"
        "  webhooks: [{url_env: CHAT_WEBHOOK_URL}]\n"
        f"  command: cat >> {tmp_path / 'command.jsonl'}; echo >> {tmp_path / 'command.jsonl'}\n"
        "  events: [start, refused, phase, success, failure]\n"))
    return path


def cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), input=NoStdin(), env={"COLUMNS": "200"})
    assert not isinstance(result.exception, AssertionError), result.exception
    return result


def log_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line parses


def no_secret_in(*texts: str) -> None:
    for text in texts:
        for value in [*PASSWORDS.values(), "token-123"]:
            assert value not in text


def test_run_yes_reads_no_stdin_prints_plain_lines_and_logs_every_event(
        world: FakeWorld, runbook: Path, tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "run.jsonl"
    result = cli("run", "--yes", str(runbook), "--log-json", str(log))

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b[" not in out and "╭" not in out, "no colours, no panels without a terminal"
    assert re.search(r"^\d\d:\d\d:\d\d step 2/3 copy-datadir started: the copy-datadir step$",
                     out, re.M)
    assert re.search(r"^\d\d:\d\d:\d\d step 2/3 copy-datadir done \(\d+\.\d s\)$", out, re.M)
    assert re.search(r"copy: 0 B of 10\.0 MB \(0%\)$", out, re.M)
    assert re.search(r"copy: 10\.0 MB of 10\.0 MB \(100%\), [\d.]+ [kMGT]?B/s, ETA 0 s$", out, re.M)
    assert "phase copy begins" in out and "phase copy ended after" in out

    events = log_lines(log)
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-2:] == ["success", "summary"]
    run_id = events[0]["run_id"]
    assert all(e["run_id"] == run_id for e in events)
    assert events[0]["plan_sha256"] and events[0]["runbook"] == "rebuild-db2-from-db1"
    assert {"step-started", "step-finished", "action", "progress", "phase"} <= set(names)
    finished = [e for e in events if e["event"] == "step-finished"]
    assert [(e["step"], e["state"]) for e in finished] == [
        ("preflight", "done"), ("copy-datadir", "done"), ("verify-data", "done")]
    assert all(isinstance(e["seconds"], float) for e in finished)
    actions = [e["message"] for e in events if e["event"] == "action"]
    assert "SET @p = '********'" in actions
    assert [(e["phase"], e["state"]) for e in events if e["event"] == "phase"] == [
        ("preflight", "begin"), ("preflight", "end"), ("copy", "begin"), ("copy", "end"),
        ("verify", "begin"), ("verify", "end")]
    no_secret_in(log.read_text(), result.output)

    # the notifications went out before the command returned
    delivered = [b["event"] for b in receiver.bodies]
    assert delivered == ["start", *["phase"] * 6, "success"]
    assert all(b["run_id"] == run_id for b in receiver.bodies)
    assert receiver.bodies[-1]["journal"].endswith(".json")
    commanded = [json.loads(line)["event"] for line in
                 (tmp_path / "command.jsonl").read_text().splitlines()]
    assert commanded == delivered


def test_a_failed_run_is_resumed_and_rolled_back_without_a_question(
        world: FakeWorld, runbook: Path, tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "run.jsonl"
    world.replies["SELECT 'verify'"] = DatabaseError(
        f"access denied (password {PASSWORDS['DB1_PASSWORD']})")
    failed = cli("run", "--yes", str(runbook), "--log-json", str(log))
    assert failed.exit_code == 1, failed.output

    [failure] = [e for e in log_lines(log) if e["event"] == "failure"]
    journal = Path(failure["journal"])
    assert journal.is_absolute() and journal.exists()
    assert failure["next_command"] == f"resync resume {journal}"
    assert failure["undo_command"] == f"resync rollback {journal}"
    assert "step 'verify-data' failed: access denied (password ********)" in failure["message"]
    assert receiver.bodies[-1]["event"] == "failure"
    assert f"next: resync resume {journal}" in receiver.bodies[-1]["text"]

    del world.replies["SELECT 'verify'"]
    resumed = cli("resume", "--yes", str(journal), "--log-json", str(log))
    assert resumed.exit_code == 0, resumed.output
    undone = cli("rollback", "--yes", "--force", str(journal), "--log-json", str(log))
    assert undone.exit_code == 0, undone.output

    events = log_lines(log)  # appended: the three commands in one file
    assert [e["message"] for e in events if e["event"] == "start"] == [
        "run started", "resumed", "rollback started"]
    assert [e["message"] for e in events if e["event"] == "success"] == ["done", "rolled back"]
    assert [e["event"] for e in receiver.bodies][-2:] == ["start", "success"]
    no_secret_in(log.read_text(), failed.output, resumed.output, undone.output)


def test_a_run_refused_before_its_journal_is_logged_and_notified(
        world: FakeWorld, runbook: Path, tmp_path: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Plan:
        raise PreflightFailed(["cannot connect to db1 (nothing was changed)"])

    from resync.run import runner

    monkeypatch.setattr(runner, "detected_plan", unreachable)
    log = tmp_path / "run.jsonl"
    result = cli("run", "--yes", str(runbook), "--log-json", str(log))

    assert result.exit_code == 3, result.output
    [refused] = log_lines(log)
    assert refused["event"] == "refused" and "run_id" not in refused
    assert "cannot connect to db1" in refused["message"]
    assert [b["event"] for b in receiver.bodies] == ["refused"]
    assert list(tmp_path.glob("resync-journal/*.json")) == [], "no run, no journal"


def test_an_unwritable_log_is_bad_input_before_anything_runs(world: FakeWorld, runbook: Path,
                                                             tmp_path: Path) -> None:
    result = cli("run", "--yes", str(runbook), "--log-json", str(tmp_path / "no" / "x.jsonl"))
    assert result.exit_code == 2
    assert "cannot open the JSON log" in result.stderr
    assert world.sent == []


# -- the terminal: rich on a terminal, plain lines otherwise ----------------------------------------
def terminal(*, tty: bool) -> tuple[TerminalUI, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=tty, width=120, highlight=False)
    ui = TerminalUI(console, interactive=False)
    ui.number_steps([Simple(StepKind.PREFLIGHT), Simple(StepKind.COPY)])
    return ui, out


def test_on_a_terminal_each_step_is_a_panel_and_progress_a_bar() -> None:
    ui, out = terminal(tty=True)
    assert ui.live
    assert ui.confirm(Simple(StepKind.COPY, Sql("db1", "SELECT 1"))) is Decision.RUN
    ui.handle(RunEvent(EventName.STEP_STARTED, "rb", 1.0, step="copy-datadir"))
    ui.handle(RunEvent(EventName.PROGRESS, "rb", 1.0, message="copy",
                       figures={"done": 1, "total": 2, "unit": "bytes"}))
    text = out.getvalue()
    assert "╭" in text and "SELECT 1" in text, "the step's panel with its commands"
    assert "… copy-datadir" in text
    assert "copy: 1 B" not in text, "progress is the bar's on a terminal"


def test_without_a_terminal_no_panel_and_progress_lines() -> None:
    ui, out = terminal(tty=False)
    assert not ui.live
    ui.confirm(Simple(StepKind.COPY, Sql("db1", "SELECT 1")))
    ui.progress(1, 2, "copy")  # the bar: not without a terminal
    ui.handle(RunEvent(EventName.PROGRESS, "rb", 1.0, message="verify",
                       figures={"done": 1200, "total": 4800, "unit": "rows",
                                "rate_per_second": 100.0, "eta_seconds": 36.0}))
    ui.handle(RunEvent(EventName.PROGRESS, "rb", 1.0, message="drain: 20s left",
                       figures={"done": 10, "total": 30, "unit": "seconds",
                                "rate_per_second": 1.0, "eta_seconds": 20.0}))
    ui.handle(RunEvent(EventName.STEP_FINISHED, "rb", 1.0, step="copy-datadir", state="failed",
                       seconds=2.25, message="boom"))
    ui.handle(RunEvent(EventName.OVERRUN, "rb", 1.0, message="ended 60 s after its window"))
    lines = [line[9:] for line in out.getvalue().splitlines()]  # after the time
    assert lines == ["verify: 1,200 rows of 4,800 rows (25%), 100 rows/s, ETA 36 s",
                     "drain: 20s left: 10 seconds of 30 seconds (33%), ETA 20 s",
                     "step 2/2 copy-datadir FAILED (2.2 s) — boom",
                     "OVERRUN: ended 60 s after its window"]


def test_without_yes_a_closed_stdin_aborts_before_the_step(
        world: FakeWorld, runbook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Prompt, "ask", REAL_ASK)  # this run may ask: it is not unattended
    monkeypatch.setattr(builtins, "input", REAL_INPUT)
    result = CliRunner().invoke(main, ["run", str(runbook)], input="")
    assert result.exit_code == 130, result.output
    assert "standard input is closed (an unattended run needs --yes)" in result.stderr
    assert world.sent == [], "nothing ran"
