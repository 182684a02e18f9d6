"""The engine and its journal: order, confirmation, failure, crash, resume, rollback, lock, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resync.actions.types import Action, Check, Ref, Sql
from resync.model.errors import (
    Aborted,
    DatabaseError,
    GateRefused,
    JournalError,
    ResyncError,
    StepFailed,
    WaitTimeout,
)
from resync.model.runbook import load_runbook
from resync.model.secrets import MASK, EnvSecret, Secret
from resync.run.engine import Decision, Engine, check_journal_matches
from resync.run.executor import RunContext
from resync.run.journal import Journal, JournalLock, StepState, atomic_write
from resync.run.waiting import FakeClock, wait_until
from resync.steps.base import Step, StepContext
from resync.transport.mysql import ConnectionSpec

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
Log = list[tuple[str, str]]


# -- fakes ------------------------------------------------------------------------------------------


class FakeContext:
    """The minimum of EngineContext the engine and the fake steps use."""

    def __init__(self) -> None:
        self.values: dict[str, str | int | float | None] = {}
        self.clock = FakeClock()
        self.began: list[str | None] = []
        self.closed = 0

    @property
    def captured(self) -> dict[str, str | int | float | None]:
        return self.values

    def capture(self, key: str, value: str | int | float | None) -> None:
        self.values[key] = value

    def begin_step(self, key: str | None) -> None:
        self.began.append(key)

    def close(self) -> None:
        self.closed += 1

    def __getattr__(self, name: str) -> Any:  # sql, shell, session ...: fake steps never use them
        raise AssertionError(f"a fake step used ctx.{name}")


class FakeStep(Step):
    def __init__(self, key: str, log: Log, *, fail: BaseException | None = None,
                 already: bool = False, undoable: bool = True,
                 on_run: Callable[[StepContext], None] | None = None,
                 undo_fails: bool = False) -> None:
        self.key, self.title, self.hosts = key, f"step {key}", ("db1",)
        self.log, self.fail, self.already, self.undoable = log, fail, already, undoable
        self.on_run, self.undo_fails = on_run, undo_fails

    def observe(self, ctx: StepContext) -> bool:
        self.log.append(("observe", self.key))
        return self.already

    def run(self, ctx: StepContext) -> None:
        self.log.append(("run", self.key))
        if self.on_run:
            self.on_run(ctx)
        if self.fail is not None:
            raise self.fail

    def verify(self, ctx: StepContext) -> None:
        self.log.append(("verify", self.key))

    def undo_plan(self) -> tuple[Action, ...]:
        return (Check("db1", f"undo {self.key}"),) if self.undoable else ()

    def undo(self, ctx: StepContext) -> None:
        self.log.append(("undo", self.key))
        if self.undo_fails:
            raise ResyncError(f"cannot undo {self.key}")


class Crash(BaseException):
    """Stands in for the process dying mid-step (kill -9, power loss): nothing catches it."""


def make_journal(path: Path, steps: list[Step], sha: str = "sha-1") -> Journal:
    return Journal.create(path, run_id="r1", runbook_path="rb.yaml", runbook_sha256=sha,
                          steps=[(s.key, s.title) for s in steps])


def states(journal_path: Path) -> dict[str, str]:
    """Read the journal file from disk (not the in-memory object)."""
    return {s["key"]: s["state"] for s in json.loads(journal_path.read_text())["steps"]}


def runs(log: Log) -> list[str]:
    return [key for what, key in log if what == "run"]


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "run.json"


@pytest.fixture
def saves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every journal save, parsed back from the file on disk right after it was written."""
    seen: list[dict[str, Any]] = []
    original = Journal.save

    def save(self: Journal) -> None:
        original(self)
        seen.append(json.loads(self.path.read_text()))  # fails the test if the file is torn

    monkeypatch.setattr(Journal, "save", save)
    yield seen


# -- running ----------------------------------------------------------------------------------------


def test_steps_run_in_order(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep(k, log) for k in ("a", "b", "c")]
    journal = make_journal(jpath, steps)
    ctx = FakeContext()
    Engine(steps, journal, ctx).run()
    assert log == [("observe", "a"), ("run", "a"), ("verify", "a"),
                   ("observe", "b"), ("run", "b"), ("verify", "b"),
                   ("observe", "c"), ("run", "c"), ("verify", "c")]
    assert states(jpath) == {"a": "done", "b": "done", "c": "done"}
    loaded = Journal.load(jpath)
    assert loaded.data.outcome == "done"
    assert all(s.started_at and s.finished_at and s.finished_at >= s.started_at
               for s in loaded.data.steps)
    assert ctx.began == ["a", "b", "c", None]
    assert ctx.closed == 1


def test_every_transition_is_persisted_as_valid_json(jpath: Path, saves: list[dict[str, Any]]) -> None:
    log: Log = []
    seen_during_run: dict[str, dict[str, str]] = {}

    def snapshot(ctx: StepContext) -> None:
        key = runs(log)[-1]
        seen_during_run[key] = states(jpath)

    steps: list[Step] = [FakeStep(k, log, on_run=snapshot) for k in ("a", "b", "c")]
    journal = make_journal(jpath, steps)
    Engine(steps, journal, FakeContext()).run()
    # while a step runs, the file on disk already says it is running and the earlier ones done
    assert seen_during_run == {
        "a": {"a": "running", "b": "pending", "c": "pending"},
        "b": {"a": "done", "b": "running", "c": "pending"},
        "c": {"a": "done", "b": "done", "c": "running"},
    }
    # create + (running, done) per step + finish: each one written and parsed back
    sequence = [([s["state"] for s in doc["steps"]], doc["outcome"]) for doc in saves]
    assert sequence == [
        (["pending", "pending", "pending"], None),
        (["running", "pending", "pending"], None),
        (["done", "pending", "pending"], None),
        (["done", "running", "pending"], None),
        (["done", "done", "pending"], None),
        (["done", "done", "running"], None),
        (["done", "done", "done"], None),
        (["done", "done", "done"], "done"),
    ]


def test_crash_between_transitions_leaves_a_valid_journal(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("a", log), FakeStep("b", log, fail=Crash("killed")),
                         FakeStep("c", log)]
    journal = make_journal(jpath, steps)
    with pytest.raises(Crash):
        Engine(steps, journal, FakeContext()).run()
    assert runs(log) == ["a", "b"]
    loaded = Journal.load(jpath)  # a fresh process reading the file after the crash
    assert {s.key: s.state for s in loaded.data.steps} == {
        "a": StepState.DONE, "b": StepState.RUNNING, "c": StepState.PENDING}
    assert loaded.data.outcome is None
    assert not [p for p in jpath.parent.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_marks_the_step_failed_and_aborts(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("a", log), FakeStep("b", log, fail=KeyboardInterrupt()),
                         FakeStep("c", log)]
    journal = make_journal(jpath, steps)
    with pytest.raises(Aborted, match="interrupted during step 'b'"):
        Engine(steps, journal, FakeContext()).run()
    loaded = Journal.load(jpath)
    assert loaded.step("b").state is StepState.FAILED
    assert loaded.step("b").error == "interrupted (Ctrl-C)"
    assert loaded.step("c").state is StepState.PENDING
    assert loaded.data.outcome == "aborted"
    assert runs(log) == ["a", "b"]


# -- confirmation -----------------------------------------------------------------------------------


def test_confirm_run_skip(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep(k, log) for k in ("a", "b", "c")]
    journal = make_journal(jpath, steps)
    asked: list[str] = []

    def confirm(step: Step) -> Decision:
        asked.append(step.key)
        return Decision.SKIP if step.key == "b" else Decision.RUN

    Engine(steps, journal, FakeContext(), confirm=confirm).run()
    assert asked == ["a", "b", "c"]
    assert runs(log) == ["a", "c"]
    loaded = Journal.load(jpath)
    assert loaded.step("b").state is StepState.SKIPPED
    assert loaded.step("b").note == "skipped by the operator"
    assert loaded.data.outcome == "done"


def test_confirm_abort_stops_before_the_step(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep(k, log) for k in ("a", "b", "c")]
    journal = make_journal(jpath, steps)
    ctx = FakeContext()

    def confirm(step: Step) -> Decision:
        return Decision.ABORT if step.key == "b" else Decision.RUN

    with pytest.raises(Aborted, match="before step 'b'"):
        Engine(steps, journal, ctx, confirm=confirm).run()
    assert runs(log) == ["a"]
    assert ("observe", "c") not in log
    assert states(jpath) == {"a": "done", "b": "pending", "c": "pending"}
    assert Journal.load(jpath).data.outcome == "aborted"
    assert ctx.closed == 1


# -- failures ---------------------------------------------------------------------------------------


def test_failing_step_stops_the_run(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("a", log), FakeStep("b", log, fail=ResyncError("disk full")),
                         FakeStep("c", log)]
    journal = make_journal(jpath, steps)
    with pytest.raises(StepFailed) as info:
        Engine(steps, journal, FakeContext()).run()
    assert info.value.step == "b"
    assert info.value.cause == "disk full"
    assert runs(log) == ["a", "b"]
    assert ("verify", "b") not in log
    loaded = Journal.load(jpath)
    assert loaded.step("b").state is StepState.FAILED
    assert loaded.step("b").error == "disk full"
    assert loaded.step("c").state is StepState.PENDING
    assert loaded.data.outcome == "failed"


def test_unexpected_exception_is_a_step_failure_naming_its_type(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("a", log, fail=ValueError("bad value")), FakeStep("b", log)]
    journal = make_journal(jpath, steps)
    with pytest.raises(StepFailed, match="ValueError: bad value"):
        Engine(steps, journal, FakeContext()).run()
    assert Journal.load(jpath).step("a").error == "ValueError: bad value"
    assert runs(log) == ["a"]


def test_gate_refusal_is_not_a_step_failure(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("pre", log, fail=GateRefused("preflight failed")),
                         FakeStep("b", log)]
    journal = make_journal(jpath, steps)
    with pytest.raises(GateRefused) as info:
        Engine(steps, journal, FakeContext()).run()
    assert not isinstance(info.value, StepFailed)
    loaded = Journal.load(jpath)
    assert loaded.step("pre").state is StepState.FAILED
    assert loaded.step("pre").error == "preflight failed"
    assert loaded.data.outcome == "failed"
    assert runs(log) == ["pre"]


def test_observe_error_fails_the_step(jpath: Path) -> None:
    class BadObserve(FakeStep):
        def observe(self, ctx: StepContext) -> bool:
            raise ResyncError("server unreachable")

    log: Log = []
    steps: list[Step] = [BadObserve("a", log), FakeStep("b", log)]
    journal = make_journal(jpath, steps)
    with pytest.raises(StepFailed, match="observing: server unreachable"):
        Engine(steps, journal, FakeContext()).run()
    assert Journal.load(jpath).step("a").error == "observing: server unreachable"
    assert log == []


def test_observed_step_is_done_without_running(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("a", log), FakeStep("b", log, already=True), FakeStep("c", log)]
    journal = make_journal(jpath, steps)
    asked: list[str] = []

    def confirm(step: Step) -> Decision:
        asked.append(step.key)
        return Decision.RUN

    Engine(steps, journal, FakeContext(), confirm=confirm).run()
    assert runs(log) == ["a", "c"]
    assert asked == ["a", "c"]  # nothing to confirm for a step already in place
    loaded = Journal.load(jpath)
    assert loaded.step("b").state is StepState.DONE
    assert loaded.step("b").note == "already in place"


# -- resume -----------------------------------------------------------------------------------------


def test_resume_continues_at_the_first_step_not_done(jpath: Path) -> None:
    first: Log = []
    steps1: list[Step] = [FakeStep("a", first), FakeStep("b", first),
                          FakeStep("c", first, fail=ResyncError("flaky")), FakeStep("d", first)]
    journal = make_journal(jpath, steps1)
    with pytest.raises(StepFailed):
        Engine(steps1, journal, FakeContext()).run()
    assert runs(first) == ["a", "b", "c"]

    second: Log = []
    steps2: list[Step] = [FakeStep(k, second) for k in ("a", "b", "c", "d")]
    resumed = Journal.load(jpath)
    check_journal_matches(resumed, steps2, "sha-1")
    Engine(steps2, resumed, FakeContext()).run()
    assert runs(second) == ["c", "d"]
    assert ("observe", "a") not in second and ("observe", "b") not in second
    assert states(jpath) == {"a": "done", "b": "done", "c": "done", "d": "done"}
    loaded = Journal.load(jpath)
    assert loaded.data.outcome == "done"
    assert loaded.step("c").error is None  # cleared when it ran again


def test_resume_after_crash_reobserves_the_interrupted_step(jpath: Path) -> None:
    first: Log = []
    steps1: list[Step] = [FakeStep("a", first), FakeStep("b", first, fail=Crash()),
                          FakeStep("c", first)]
    with pytest.raises(Crash):
        Engine(steps1, make_journal(jpath, steps1), FakeContext()).run()

    second: Log = []
    # the crashed step's effect turns out to be in place: it is marked done, not run again
    steps2: list[Step] = [FakeStep("a", second), FakeStep("b", second, already=True),
                          FakeStep("c", second)]
    Engine(steps2, Journal.load(jpath), FakeContext()).run()
    assert second == [("observe", "b"), ("observe", "c"), ("run", "c"), ("verify", "c")]
    assert Journal.load(jpath).step("b").note == "already in place"


def test_resume_passes_over_skipped_steps(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep(k, log) for k in ("a", "b")]
    journal = make_journal(jpath, steps)
    journal.transition("a", StepState.SKIPPED, note="skipped by the operator")
    Engine(steps, Journal.load(jpath), FakeContext()).run()
    assert runs(log) == ["b"]


# -- rollback ---------------------------------------------------------------------------------------


def test_rollback_undoes_done_steps_in_reverse(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("a", log), FakeStep("b", log, undoable=False), FakeStep("c", log),
                         FakeStep("d", log, fail=ResyncError("boom")), FakeStep("e", log)]
    journal = make_journal(jpath, steps)
    with pytest.raises(StepFailed):
        Engine(steps, journal, FakeContext()).run()
    log.clear()
    not_undoable = Engine(steps, Journal.load(jpath), FakeContext()).rollback()
    # d failed half-way: it is undone too; e never ran: left alone
    assert [k for what, k in log if what == "undo"] == ["d", "c", "a"]
    assert not_undoable == ["b"]
    assert states(jpath) == {"a": "undone", "b": "done", "c": "undone", "d": "undone",
                             "e": "pending"}
    loaded = Journal.load(jpath)
    assert loaded.data.outcome == "rolled back"
    assert loaded.step("a").note == "rolled back"


def test_rollback_twice_undoes_nothing_again(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep(k, log) for k in ("a", "b")]
    Engine(steps, make_journal(jpath, steps), FakeContext()).run()
    Engine(steps, Journal.load(jpath), FakeContext()).rollback()
    log.clear()
    Engine(steps, Journal.load(jpath), FakeContext()).rollback()
    assert log == []


def test_rollback_skip_and_abort(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep(k, log) for k in ("a", "b", "c")]
    Engine(steps, make_journal(jpath, steps), FakeContext()).run()
    log.clear()

    def confirm(step: Step) -> Decision:
        return {"c": Decision.SKIP, "b": Decision.ABORT}.get(step.key, Decision.RUN)

    with pytest.raises(Aborted, match=r"rollback aborted .* step 'b'"):
        Engine(steps, Journal.load(jpath), FakeContext(), confirm=confirm).rollback()
    assert log == []
    assert states(jpath) == {"a": "done", "b": "done", "c": "done"}


def test_rollback_undo_failure_stops_and_is_journaled(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [FakeStep("a", log), FakeStep("b", log, undo_fails=True)]
    Engine(steps, make_journal(jpath, steps), FakeContext()).run()
    log.clear()
    with pytest.raises(StepFailed, match="undo failed: cannot undo b"):
        Engine(steps, Journal.load(jpath), FakeContext()).rollback()
    assert [k for what, k in log if what == "undo"] == ["b"]  # a is not undone after b failed
    loaded = Journal.load(jpath)
    assert loaded.step("b").state is StepState.DONE
    assert loaded.step("b").error == "undo failed: cannot undo b"


# -- journal file -----------------------------------------------------------------------------------


def test_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "j.json"
    atomic_write(target, "one\n")
    atomic_write(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.json"]


def test_atomic_write_failure_leaves_no_temp_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "j.json"
    atomic_write(target, "old\n")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        atomic_write(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.json"]


def test_journal_create_refuses_an_existing_file(jpath: Path) -> None:
    steps: list[Step] = [FakeStep("a", [])]
    make_journal(jpath, steps)
    with pytest.raises(JournalError, match="already exists"):
        make_journal(jpath, steps)


def test_journal_load_refuses_damage(tmp_path: Path) -> None:
    torn = tmp_path / "torn.json"
    torn.write_text('{"format": 1, "steps": [')
    with pytest.raises(JournalError, match="not valid JSON"):
        Journal.load(torn)
    other = tmp_path / "other.json"
    other.write_text('{"format": 99}')
    with pytest.raises(JournalError, match="format 99"):
        Journal.load(other)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": 1, "run_id": "r"}')
    with pytest.raises(JournalError, match="damaged"):
        Journal.load(broken)


def test_journal_round_trips_captured_values_and_commands(jpath: Path) -> None:
    journal = make_journal(jpath, [FakeStep("a", [])])
    journal.capture("source.pos", 1234)
    journal.capture("source.file", "db1-bin.000002")
    loaded = Journal.load(jpath)
    assert loaded.data.captured == {"source.pos": 1234, "source.file": "db1-bin.000002"}
    assert loaded.data.run_id == "r1"
    with pytest.raises(JournalError, match="no step 'zzz'"):
        loaded.step("zzz")


def test_check_journal_matches(jpath: Path) -> None:
    steps: list[Step] = [FakeStep(k, []) for k in ("a", "b")]
    journal = make_journal(jpath, steps, sha="sha-1")
    check_journal_matches(journal, steps, "sha-1")  # no error
    with pytest.raises(ResyncError, match="changed since this run started"):
        check_journal_matches(journal, steps, "sha-2")
    with pytest.raises(ResyncError, match="plan built now differs"):
        check_journal_matches(journal, [FakeStep("a", []), FakeStep("x", [])], "sha-1")


# -- lock -------------------------------------------------------------------------------------------


def test_lock_refuses_a_second_holder_in_the_same_process(jpath: Path) -> None:
    first = JournalLock(jpath)
    first.acquire()
    try:
        assert first.path.read_text().strip() == str(os.getpid())
        with pytest.raises(JournalError, match=f"locked by running process {os.getpid()}"):
            JournalLock(jpath).acquire()
        assert first.path.exists()  # the refused attempt did not remove the holder's lock
    finally:
        first.release()
    assert not first.path.exists()
    with JournalLock(jpath) as again:  # free again after release
        assert again.path.exists()
    assert not again.path.exists()


def test_lock_refuses_while_another_live_process_holds_it(jpath: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = JournalLock(jpath)
        lock.path.parent.mkdir(parents=True, exist_ok=True)
        lock.path.write_text(f"{proc.pid}\n")
        with pytest.raises(JournalError, match=f"locked by running process {proc.pid}"):
            lock.acquire()
        assert lock.path.read_text().strip() == str(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_lock_takes_over_a_stale_lock(jpath: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its PID is now dead
    lock = JournalLock(jpath)
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    lock.path.write_text(f"{proc.pid}\n")
    lock.acquire()
    try:
        assert lock.path.read_text().strip() == str(os.getpid())
    finally:
        lock.release()


# -- secrets never reach the journal ----------------------------------------------------------------

CONN_PW, REPL_PW, LITERAL_PW = "conn-pw-Zq1", "repl-pw-Xy7", "lit-pw-Wv3"


class FakeSession:
    """Stands in for resync.mysql.Session: records what the driver would receive."""

    sent: list[tuple[str, tuple[object, ...]]] = []
    specs: list[ConnectionSpec] = []

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        FakeSession.specs.append(spec)

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        FakeSession.sent.append((sql, params))
        return []

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


class PasswordStep(Step):
    key, title, hosts = "point-replica:db2", "point the replica", ("db2",)

    def plan(self) -> tuple[Action, ...]:
        return (Sql("db2", "CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s, MASTER_LOG_POS=%s",
                    ("repl", EnvSecret("REPL_PASSWORD"), Ref("source.pos"))),
                Sql("db2", "SET @x = %s", (Secret(LITERAL_PW),)))


@pytest.fixture
def run_context(jpath: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunContext]:
    for var, value in (("DB1_PASSWORD", CONN_PW), ("DB2_PASSWORD", CONN_PW),
                       ("REPL_PASSWORD", REPL_PW)):
        monkeypatch.setenv(var, value)
    FakeSession.sent, FakeSession.specs = [], []
    loaded = load_runbook(RUNBOOKS / "rebuild-old-primary.yaml")
    journal = Journal.create(jpath, run_id="r1", runbook_path=str(loaded.path),
                             runbook_sha256=loaded.sha256, steps=[(PasswordStep.key, "x")])
    journal.capture("source.pos", 4)
    yield RunContext(loaded, journal, clock=FakeClock(), connector=FakeSession)


def test_secrets_never_in_the_journal(jpath: Path, run_context: RunContext) -> None:
    Engine([PasswordStep()], run_context.journal, run_context).run()
    # the driver got the real values ...
    assert FakeSession.sent == [
        ("CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s, MASTER_LOG_POS=%s", ("repl", REPL_PW, 4)),
        ("SET @x = %s", (LITERAL_PW,)),
    ]
    assert FakeSession.specs[0].password is not None
    assert FakeSession.specs[0].password.reveal() == CONN_PW
    # ... the journal only the masked text
    text = jpath.read_text()
    for secret in (CONN_PW, REPL_PW, LITERAL_PW):
        assert secret not in text
    commands = Journal.load(jpath).data.commands
    assert [c.text for c in commands] == [
        f"CHANGE MASTER TO MASTER_USER='repl', MASTER_PASSWORD='{MASK}', MASTER_LOG_POS=4",
        f"SET @x = '{MASK}'",
    ]
    assert all(c.step == "point-replica:db2" and c.host == "db2" and c.ok for c in commands)


def test_connection_password_is_masked_in_failed_command_detail(jpath: Path,
                                                                run_context: RunContext) -> None:
    class Failing(FakeSession):
        def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
            raise DatabaseError(f"[db2] error 1045: denied for password {CONN_PW}")

    run_context._connector = Failing
    with pytest.raises(DatabaseError):
        run_context.sql(PasswordStep().plan()[0])
    (command,) = Journal.load(jpath).data.commands
    assert command.ok is False
    assert command.detail == f"[db2] error 1045: denied for password {MASK}"
    assert CONN_PW not in jpath.read_text()


def test_bound_secret_is_masked_in_failed_command_detail(jpath: Path, run_context: RunContext) -> None:
    class Echoing(FakeSession):
        def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
            # pymysql interpolates client-side: a syntax error quotes the statement with the value
            raise DatabaseError(f"[db2] error 1064: syntax error near '{params[1]}'")

    run_context._connector = Echoing
    with pytest.raises(StepFailed) as info:
        Engine([PasswordStep()], run_context.journal, run_context).run()
    assert REPL_PW not in str(info.value)
    assert REPL_PW not in jpath.read_text()


# -- waiting ----------------------------------------------------------------------------------------


def test_wait_until_times_out_without_sleeping() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def probe() -> bool:
        calls.append(clock.now())
        return False

    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        wait_until(probe, what="replication on db2 to be healthy", timeout=3600, interval=0.5,
                   clock=clock, describe_failure=lambda: "Slave_IO_Running=No")
    assert time.monotonic() - started < 2.0  # an hour of fake time, no real sleeping
    assert str(info.value) == ("timed out after 3600s waiting for replication on db2 to be healthy: "
                               "Slave_IO_Running=No")
    assert clock.now() == 3600
    assert len(calls) == 7201  # one probe per interval, plus one at the deadline


def test_wait_until_returns_the_first_truthy_result() -> None:
    clock = FakeClock()
    answers = iter([None, False, None, "ready"])
    assert wait_until(lambda: next(answers), what="x", timeout=10, interval=1, clock=clock) == "ready"
    assert clock.now() == 3


class LockStep(FakeStep):
    """Holds something in the process (like FLUSH TABLES WITH READ LOCK) until `released_by`."""

    def __init__(self, key: str, log: Log, released_by: str, held: bool) -> None:
        super().__init__(key, log)
        self.released_by, self.held = released_by, held

    def in_effect(self, ctx: StepContext) -> bool:
        return self.held


@pytest.mark.parametrize(("release_done", "expect_rerun"), [(False, True), (True, False)])
def test_resume_redoes_a_lock_that_died_with_the_previous_process(
        jpath: Path, release_done: bool, expect_rerun: bool) -> None:
    """Regression: a crash between the donor's read lock and its shutdown lost the lock, and
    resume went on to copy a donor that had taken writes after the captured coordinates."""
    log: Log = []
    steps: list[Step] = [LockStep("lock", log, released_by="stop", held=False),
                         FakeStep("stop", log), FakeStep("copy", log)]
    journal = make_journal(jpath, steps)
    journal.transition("lock", StepState.DONE)
    if release_done:
        journal.transition("stop", StepState.DONE)

    Engine(steps, Journal.load(jpath), FakeContext()).run()

    assert ("run", "lock") in log if expect_rerun else ("run", "lock") not in log
    assert runs(log)[-1] == "copy"
    assert states(jpath)["lock"] == "done"


def test_a_lock_still_held_is_not_redone(jpath: Path) -> None:
    log: Log = []
    steps: list[Step] = [LockStep("lock", log, released_by="stop", held=True), FakeStep("stop", log)]
    journal = make_journal(jpath, steps)
    journal.transition("lock", StepState.DONE)
    Engine(steps, journal, FakeContext()).run()
    assert runs(log) == ["stop"]
