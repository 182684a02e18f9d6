"""The engine and its journal: order, confirmation, failure, crash, resume, rollback, lock, secrets.

Fake steps are real plans (Sql actions on host "h") run by a real Executor over a fake session,
so every test below goes through the same path as a run: engine -> executor -> journal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resync.actions.types import Action, HoldLock, ReleaseLock, Sql
from resync.model.errors import (
    Aborted,
    DatabaseError,
    GateRefused,
    JournalError,
    StepFailed,
)
from resync.model.keys import StepId, StepKind
from resync.model.secrets import MASK, EnvSecret, Secret
from resync.run.engine import Decision, Engine
from resync.run.executor import Executor
from resync.run.journal import CommandRecord, Journal, JournalLock, StepState, atomic_write
from resync.steps.base import Step
from resync.testing.fakes import FakeClock, FakeWorld

ROOT = Path(__file__).resolve().parents[2]

# -- fakes (the servers and hosts: FakeWorld) -----------------------------------------------------


def sid(name: str) -> StepId:
    return StepId(StepKind.VERIFY, name)


def key(name: str) -> str:
    return str(sid(name))


class FakeStep(Step):
    """Runs `do <name>`; undone by `undo <name>` (none when not undoable)."""

    def __init__(self, name: str, *, undoable: bool = True) -> None:
        self.id, self.title, self.hosts = sid(name), f"step {name}", ("h",)
        self.name, self.undoable = name, undoable

    def plan(self) -> tuple[Action, ...]:
        return (Sql("h", f"do {self.name}"),)

    def undo_plan(self) -> tuple[Action, ...]:
        return (Sql("h", f"undo {self.name}"),) if self.undoable else ()


class Crash(BaseException):
    """Stands in for the process dying mid-step (kill -9, power loss): nothing catches it."""


def make_journal(path: Path, steps: list[Step]) -> Journal:
    return Journal.create(path, run_id="r1", runbook_path="rb.yaml", runbook_sha256="sha-1",
                          steps=[(s.key, s.title) for s in steps])


def make_executor(journal: Journal, world: FakeWorld, secrets: list[Secret] | None = None) -> Executor:
    return Executor(journal, hosts=world.host, connect=world.connect, secrets=secrets or [],
                    clock=FakeClock())


def engine(steps: list[Step], journal: Journal, world: FakeWorld, **kw: Any) -> Engine:
    return Engine(steps, journal, make_executor(journal, world), **kw)


def states(journal_path: Path) -> list[str]:
    """Read the journal file from disk (not the in-memory object)."""
    return [s["state"] for s in json.loads(journal_path.read_text())["steps"]]


def runs(world: FakeWorld) -> list[str]:
    return [sql.removeprefix("do ") for sql in world.executed() if sql.startswith("do ")]


def undos(world: FakeWorld) -> list[str]:
    return [sql.removeprefix("undo ") for sql in world.executed() if sql.startswith("undo ")]


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
    world = FakeWorld()
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    journal = make_journal(jpath, steps)
    engine(steps, journal, world).run()
    assert world.executed() == ["do a", "do b", "do c"]
    assert states(jpath) == ["done", "done", "done"]
    loaded = Journal.load(jpath)
    assert loaded.data.outcome == "done"
    assert all(s.started_at and s.finished_at and s.finished_at >= s.started_at and s.attempts == 1
               for s in loaded.data.steps)
    # one record per leaf, under its step, with its id in the plan
    assert [(c.step, c.action, c.host, c.kind, c.text, c.ok) for c in loaded.data.commands] == [
        (key(k), "0", "h", "sql", f"do {k}", True) for k in ("a", "b", "c")]
    assert all(s.closed for s in world.sessions)  # the executor was closed at the end


def test_every_transition_is_persisted_as_valid_json(jpath: Path, saves: list[dict[str, Any]]) -> None:
    world = FakeWorld()
    seen_during_run: dict[str, list[str]] = {}
    world.on_execute = lambda sql: seen_during_run.__setitem__(sql, states(jpath))
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    journal = make_journal(jpath, steps)
    engine(steps, journal, world).run()
    # while a step runs, the file on disk already says it is running and the earlier ones done
    assert seen_during_run == {
        "do a": ["running", "pending", "pending"],
        "do b": ["done", "running", "pending"],
        "do c": ["done", "done", "running"],
    }
    # every save was parsed back; the distinct states in order: create, (running, done) per step,
    # finish (command records are saves too, in between)
    sequence: list[tuple[list[str], str | None]] = []
    for doc in saves:
        entry = ([s["state"] for s in doc["steps"]], doc["outcome"])
        if not sequence or sequence[-1] != entry:
            sequence.append(entry)
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
    assert len(saves) == 1 + 3 * 3 + 1  # create, (running, record, done) per step, finish


def test_crash_between_transitions_leaves_a_valid_journal(jpath: Path) -> None:
    world = FakeWorld(replies={"do b": Crash("killed")})
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    with pytest.raises(Crash):
        engine(steps, make_journal(jpath, steps), world).run()
    assert runs(world) == ["a", "b"]
    loaded = Journal.load(jpath)  # a fresh process reading the file after the crash
    assert [s.state for s in loaded.data.steps] == [StepState.DONE, StepState.RUNNING,
                                                    StepState.PENDING]
    assert loaded.data.outcome is None
    assert not [p for p in jpath.parent.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_marks_the_step_failed_and_aborts(jpath: Path) -> None:
    world = FakeWorld(replies={"do b": KeyboardInterrupt()})
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    with pytest.raises(Aborted, match=rf"aborted by the operator \(Ctrl-C\) during step '{key('b')}'"):
        engine(steps, make_journal(jpath, steps), world).run()
    loaded = Journal.load(jpath)
    assert loaded.step(key("b")).state is StepState.FAILED
    assert loaded.step(key("b")).error == "aborted by the operator (Ctrl-C)"
    assert loaded.step(key("c")).state is StepState.PENDING
    assert loaded.data.outcome == "aborted"
    assert runs(world) == ["a", "b"]


# -- confirmation -----------------------------------------------------------------------------------


def test_confirm_run_skip(jpath: Path) -> None:
    world = FakeWorld()
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    asked: list[str] = []

    def confirm(step: Step) -> Decision:
        asked.append(step.key)
        return Decision.SKIP if step.key == key("b") else Decision.RUN

    engine(steps, make_journal(jpath, steps), world, confirm=confirm).run()
    assert asked == [key("a"), key("b"), key("c")]
    assert runs(world) == ["a", "c"]
    loaded = Journal.load(jpath)
    assert loaded.step(key("b")).state is StepState.SKIPPED
    assert loaded.step(key("b")).note == "skipped by the operator"
    assert loaded.step(key("b")).attempts == 0
    assert not [c for c in loaded.data.commands if c.step == key("b")]
    assert loaded.data.outcome == "done"


def test_confirm_abort_stops_before_the_step(jpath: Path) -> None:
    world = FakeWorld()
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    asked: list[str] = []

    def confirm(step: Step) -> Decision:
        asked.append(step.key)
        return Decision.ABORT if step.key == key("b") else Decision.RUN

    with pytest.raises(Aborted, match=f"before step '{key('b')}'"):
        engine(steps, make_journal(jpath, steps), world, confirm=confirm).run()
    assert runs(world) == ["a"]
    assert asked == [key("a"), key("b")]
    assert states(jpath) == ["done", "pending", "pending"]
    assert Journal.load(jpath).data.outcome == "aborted"
    assert all(s.closed for s in world.sessions)


def test_a_step_that_must_run_cannot_be_skipped(jpath: Path) -> None:
    world = FakeWorld()
    steps: list[Step] = [FakeStep(k) for k in ("pre", "b")]

    with pytest.raises(Aborted, match="cannot be skipped"):
        engine(steps, make_journal(jpath, steps), world, confirm=lambda step: Decision.SKIP,
               must_run=lambda step: step.key == key("pre")).run()
    assert world.executed() == []
    loaded = Journal.load(jpath)
    assert loaded.step(key("pre")).state is StepState.PENDING  # not skipped
    assert loaded.step(key("pre")).note is None
    assert loaded.data.outcome == "aborted"


# -- failures ---------------------------------------------------------------------------------------


def test_failing_step_stops_the_run(jpath: Path) -> None:
    world = FakeWorld(replies={"do b": DatabaseError("[h] error 1021: disk full")})
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    with pytest.raises(StepFailed) as info:
        engine(steps, make_journal(jpath, steps), world).run()
    assert info.value.step == key("b")
    assert info.value.cause == "[h] error 1021: disk full"
    assert runs(world) == ["a", "b"]
    loaded = Journal.load(jpath)
    assert loaded.step(key("b")).state is StepState.FAILED
    assert loaded.step(key("b")).error == "[h] error 1021: disk full"
    assert loaded.step(key("c")).state is StepState.PENDING
    assert loaded.data.outcome == "failed"
    failed = loaded.data.commands[-1]
    assert (failed.step, failed.text, failed.ok, failed.detail) == (
        key("b"), "do b", False, "[h] error 1021: disk full")


def test_unexpected_exception_is_a_step_failure_naming_its_type(jpath: Path) -> None:
    world = FakeWorld(replies={"do a": ValueError("bad value")})
    steps: list[Step] = [FakeStep(k) for k in ("a", "b")]
    with pytest.raises(StepFailed, match="ValueError: bad value"):
        engine(steps, make_journal(jpath, steps), world).run()
    loaded = Journal.load(jpath)
    assert loaded.step(key("a")).error == "ValueError: bad value"
    assert loaded.data.outcome == "failed"
    assert runs(world) == ["a"]


def test_gate_refusal_is_not_a_step_failure(jpath: Path) -> None:
    world = FakeWorld(replies={"do pre": GateRefused("preflight failed")})
    steps: list[Step] = [FakeStep(k) for k in ("pre", "b")]
    with pytest.raises(GateRefused) as info:
        engine(steps, make_journal(jpath, steps), world).run()
    assert not isinstance(info.value, StepFailed)
    loaded = Journal.load(jpath)
    assert loaded.step(key("pre")).state is StepState.FAILED
    assert loaded.step(key("pre")).error == "preflight failed"
    assert loaded.data.outcome == "failed"
    assert runs(world) == ["pre"]


# -- resume -----------------------------------------------------------------------------------------


def test_resume_continues_at_the_first_step_not_done(jpath: Path) -> None:
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c", "d")]
    first = FakeWorld(replies={"do c": DatabaseError("flaky")})
    with pytest.raises(StepFailed):
        engine(steps, make_journal(jpath, steps), first).run()
    assert runs(first) == ["a", "b", "c"]

    second = FakeWorld()
    engine(steps, Journal.load(jpath), second).run()
    assert runs(second) == ["c", "d"]
    assert states(jpath) == ["done", "done", "done", "done"]
    loaded = Journal.load(jpath)
    assert loaded.data.outcome == "done"
    assert loaded.step(key("c")).error is None  # cleared when it ran again
    assert loaded.step(key("c")).attempts == 2
    # the second attempt's records say so
    assert [(c.text, c.ok, c.attempt) for c in loaded.data.commands if c.step == key("c")] == [
        ("do c", False, 1), ("do c", True, 2)]


def test_resume_after_crash_reruns_the_interrupted_step_from_its_start(jpath: Path) -> None:
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    with pytest.raises(Crash):
        engine(steps, make_journal(jpath, steps), FakeWorld(replies={"do b": Crash()})).run()
    assert Journal.load(jpath).step(key("b")).state is StepState.RUNNING

    second = FakeWorld()
    engine(steps, Journal.load(jpath), second).run()
    assert runs(second) == ["b", "c"]
    loaded = Journal.load(jpath)
    assert loaded.step(key("b")).attempts == 2
    assert loaded.step(key("a")).attempts == 1
    assert loaded.data.outcome == "done"


def test_resume_passes_over_skipped_steps(jpath: Path) -> None:
    world = FakeWorld()
    steps: list[Step] = [FakeStep(k) for k in ("a", "b")]
    journal = make_journal(jpath, steps)
    journal.transition(key("a"), StepState.SKIPPED, note="skipped by the operator")
    asked: list[str] = []

    def confirm(step: Step) -> Decision:
        asked.append(step.key)
        return Decision.RUN

    engine(steps, Journal.load(jpath), world, confirm=confirm).run()
    assert runs(world) == ["b"]
    assert asked == [key("b")]
    assert states(jpath) == ["skipped", "done"]


# -- a lock that lived in the previous process ----------------------------------------------------

LOCK_SQL = "FLUSH TABLES WITH READ LOCK"


class LockStep(Step):
    """Holds a read lock on a dedicated session until the `stop` step has run."""

    id = StepId(StepKind.READ_LOCK, "h")
    title = "read lock"
    holds_session = "lock"
    released_by = sid("stop")

    def plan(self) -> tuple[Action, ...]:
        return (HoldLock("h", "lock", (Sql("h", LOCK_SQL),)),)


class ReleasingStep(FakeStep):
    def plan(self) -> tuple[Action, ...]:
        return (*super().plan(), ReleaseLock("h", "lock"))


@pytest.mark.parametrize(("release_done", "expect_rerun"), [(False, True), (True, False)])
def test_resume_redoes_a_lock_that_died_with_the_previous_process(
        jpath: Path, release_done: bool, expect_rerun: bool) -> None:
    """Regression: a crash between the donor's read lock and its shutdown lost the lock, and
    resume went on to copy a donor that had taken writes after the captured coordinates."""
    steps: list[Step] = [LockStep(), FakeStep("stop"), FakeStep("copy")]
    journal = make_journal(jpath, steps)
    journal.transition(LockStep().key, StepState.RUNNING)
    journal.transition(LockStep().key, StepState.DONE)
    if release_done:
        journal.transition(key("stop"), StepState.DONE)

    world = FakeWorld()
    engine(steps, Journal.load(jpath), world).run()

    assert (LOCK_SQL in world.executed()) is expect_rerun
    assert runs(world)[-1] == "copy"
    loaded = Journal.load(jpath)
    assert loaded.step(LockStep().key).state is StepState.DONE
    assert loaded.step(LockStep().key).attempts == (2 if expect_rerun else 1)
    if expect_rerun:
        assert loaded.step(LockStep().key).note == "redone: its lock died with the previous process"


def test_a_lock_still_held_is_not_redone(jpath: Path) -> None:
    steps: list[Step] = [LockStep(), ReleasingStep("stop")]
    journal = make_journal(jpath, steps)
    world = FakeWorld()
    executor = make_executor(journal, world)
    # this very process took the lock (as a run that goes on after it would have)
    executor.run(LockStep().plan())
    journal.transition(LockStep().key, StepState.RUNNING)
    journal.transition(LockStep().key, StepState.DONE)
    assert executor.holds("lock")

    Engine(steps, journal, executor).run()
    assert world.executed() == [LOCK_SQL, "do stop", "UNLOCK TABLES"]
    # the lock and its release on the dedicated session, the step's own statement on the shared one
    assert [n for n, _, _ in world.sent] == [0, 1, 0]
    assert not executor.holds("lock")
    assert Journal.load(jpath).step(LockStep().key).attempts == 1


# -- rollback ---------------------------------------------------------------------------------------


def test_rollback_undoes_done_steps_in_reverse(jpath: Path) -> None:
    steps: list[Step] = [FakeStep("a"), FakeStep("b", undoable=False), FakeStep("c"),
                         FakeStep("d"), FakeStep("e")]
    with pytest.raises(StepFailed):
        engine(steps, make_journal(jpath, steps), FakeWorld(replies={"do d": DatabaseError("boom")})).run()
    world = FakeWorld()
    not_undoable = engine(steps, Journal.load(jpath), world).rollback()
    # d failed half-way: it is undone too; e never ran: left alone
    assert undos(world) == ["d", "c", "a"]
    assert not_undoable == [key("b")]
    assert states(jpath) == ["undone", "done", "undone", "undone", "pending"]
    loaded = Journal.load(jpath)
    assert loaded.data.outcome == "rolled back"
    assert loaded.step(key("a")).note == "rolled back"
    undo_records = [c for c in loaded.data.commands if c.phase == "undo"]
    assert [(c.step, c.text, c.ok) for c in undo_records] == [
        (key("d"), "undo d", True), (key("c"), "undo c", True), (key("a"), "undo a", True)]


def test_rollback_twice_undoes_nothing_again(jpath: Path) -> None:
    steps: list[Step] = [FakeStep(k) for k in ("a", "b")]
    engine(steps, make_journal(jpath, steps), FakeWorld()).run()
    engine(steps, Journal.load(jpath), FakeWorld()).rollback()
    world = FakeWorld()
    assert engine(steps, Journal.load(jpath), world).rollback() == []
    assert world.executed() == []
    assert states(jpath) == ["undone", "undone"]


def test_rollback_skip_and_abort(jpath: Path) -> None:
    steps: list[Step] = [FakeStep(k) for k in ("a", "b", "c")]
    engine(steps, make_journal(jpath, steps), FakeWorld()).run()
    world = FakeWorld()
    asked: list[str] = []

    def confirm(step: Step) -> Decision:
        asked.append(step.key)
        return {key("c"): Decision.SKIP, key("b"): Decision.ABORT}.get(step.key, Decision.RUN)

    with pytest.raises(Aborted, match=f"rollback aborted .* step '{key('b')}'"):
        engine(steps, Journal.load(jpath), world, confirm=confirm).rollback()
    assert asked == [key("c"), key("b")]
    assert world.executed() == []
    assert states(jpath) == ["done", "done", "done"]


def test_rollback_undo_failure_stops_and_is_journaled(jpath: Path) -> None:
    steps: list[Step] = [FakeStep(k) for k in ("a", "b")]
    engine(steps, make_journal(jpath, steps), FakeWorld()).run()
    world = FakeWorld(replies={"undo b": DatabaseError("cannot undo b")})
    with pytest.raises(StepFailed, match="undo failed: cannot undo b"):
        engine(steps, Journal.load(jpath), world).rollback()
    assert undos(world) == ["b"]  # a is not undone after b failed
    loaded = Journal.load(jpath)
    assert loaded.step(key("b")).state is StepState.DONE
    assert loaded.step(key("b")).error == "undo failed: cannot undo b"
    assert loaded.step(key("a")).state is StepState.DONE
    last = loaded.data.commands[-1]
    assert (last.step, last.phase, last.text, last.ok, last.detail) == (
        key("b"), "undo", "undo b", False, "cannot undo b")


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
    steps: list[Step] = [FakeStep("a")]
    make_journal(jpath, steps)
    with pytest.raises(JournalError, match="already exists"):
        make_journal(jpath, steps)


def test_journal_load_refuses_damage(tmp_path: Path) -> None:
    torn = tmp_path / "torn.json"
    torn.write_text('{"format": 2, "steps": [')
    with pytest.raises(JournalError, match="not valid JSON"):
        Journal.load(torn)
    other = tmp_path / "other.json"
    other.write_text('{"format": 99}')
    with pytest.raises(JournalError, match="format 99"):
        Journal.load(other)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": 2, "run_id": "r"}')
    with pytest.raises(JournalError, match="damaged"):
        Journal.load(broken)
    not_object = tmp_path / "list.json"
    not_object.write_text("[]")
    with pytest.raises(JournalError, match="format None"):
        Journal.load(not_object)
    with pytest.raises(JournalError, match="cannot read journal"):
        Journal.load(tmp_path / "missing.json")


def test_journal_of_format_1_gets_a_clear_message(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": 1, "run_id": "r", "runbook_path": "rb.yaml",
                               "runbook_sha256": "x", "created_at": 0, "steps": []}))
    with pytest.raises(JournalError) as info:
        Journal.load(old)
    assert "format 1" in str(info.value)
    assert "reads format 2" in str(info.value)
    assert "resync version that started it" in str(info.value)


def test_journal_round_trips_captured_values_and_commands(jpath: Path) -> None:
    journal = make_journal(jpath, [FakeStep("a")])
    journal.capture("source.pos", 1234)
    journal.capture("source.file", "db1-bin.000002")
    journal.capture("gone", None)
    command = CommandRecord(step=key("a"), action="2.then.0", host="h", kind="capture",
                            text="SELECT 1", ok=True, attempt=2, exit_code=None, seconds=0.25,
                            at=1.5, detail="d", result='{"x": 1}')
    index = journal.record(command)
    journal.update(index, ok=False, detail="changed")
    loaded = Journal.load(jpath)
    assert loaded.data.captured == {"source.pos": 1234, "source.file": "db1-bin.000002", "gone": None}
    assert loaded.data.run_id == "r1"
    assert loaded.data.format == 2
    assert loaded.data.commands == [command.model_copy(update={"ok": False, "detail": "changed"})]
    with pytest.raises(JournalError, match="no step 'zzz'"):
        loaded.step("zzz")


# -- lock -------------------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from resync.run.journal import JournalLock
lock = JournalLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(jpath: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that takes the journal's lock and keeps it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(jpath)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_lock_refuses_a_second_holder_in_the_same_process(jpath: Path) -> None:
    first = JournalLock(jpath)
    first.acquire()
    try:
        assert first.path.read_text().strip() == str(os.getpid())
        with pytest.raises(JournalError, match=f"in use by running process {os.getpid()}"):
            JournalLock(jpath).acquire()
        assert first.path.read_text().strip() == str(os.getpid())  # the refusal changed nothing
    finally:
        first.release()
    with JournalLock(jpath) as again:  # free again after release
        assert again.path.read_text().strip() == str(os.getpid())
    assert again.path.read_text() == ""  # released: no owner named


def test_lock_refuses_while_another_live_process_holds_it(jpath: Path,
                                                          holder: subprocess.Popen[str]) -> None:
    lock = JournalLock(jpath)
    with pytest.raises(JournalError, match=f"in use by running process {holder.pid}"):
        lock.acquire()
    assert lock.path.read_text().strip() == str(holder.pid)


def test_lock_of_a_process_that_died_is_free_again(jpath: Path,
                                                   holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)  # no chance to release: the kernel drops the flock
    holder.wait()
    lock = JournalLock(jpath)
    lock.acquire()
    try:
        assert lock.path.read_text().strip() == str(os.getpid())
    finally:
        lock.release()


# -- secrets never reach the journal ----------------------------------------------------------------

CONN_PW, REPL_PW, LITERAL_PW = "conn-pw-Zq1", "repl-pw-Xy7", "lit-pw-Wv3"


class PasswordStep(Step):
    id = StepId(StepKind.POINT_REPLICA, "h")
    title = "point the replica"

    def plan(self) -> tuple[Action, ...]:
        return (Sql("h", "CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s",
                    ("repl", EnvSecret("REPL_PASSWORD"))),
                Sql("h", "SET @x = %s", (Secret(LITERAL_PW),)))


@pytest.fixture
def repl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPL_PASSWORD", REPL_PW)


@pytest.mark.usefixtures("repl_env")
def test_secrets_never_in_the_journal(jpath: Path) -> None:
    world = FakeWorld()
    steps: list[Step] = [PasswordStep()]
    engine(steps, make_journal(jpath, steps), world).run()
    # the driver got the real values ...
    assert [(sql, params) for _, sql, params in world.sent] == [
        ("CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s", ("repl", REPL_PW)),
        ("SET @x = %s", (LITERAL_PW,)),
    ]
    # ... the journal only the masked text
    text = jpath.read_text()
    for secret in (REPL_PW, LITERAL_PW):
        assert secret not in text
    commands = Journal.load(jpath).data.commands
    assert [c.text for c in commands] == [
        f"CHANGE MASTER TO MASTER_USER='repl', MASTER_PASSWORD='{MASK}'",
        f"SET @x = '{MASK}'",
    ]
    assert all(c.step == PasswordStep().key and c.host == "h" and c.ok for c in commands)


@pytest.mark.usefixtures("repl_env")
def test_bound_secret_quoted_back_by_the_server_is_masked(jpath: Path) -> None:
    def echo(params: tuple[object, ...]) -> list[dict[str, Any]]:
        # pymysql interpolates client-side: a syntax error quotes the statement with the value
        raise DatabaseError(f"[h] error 1064: syntax error near '{params[1]}'", code=1064)

    world = FakeWorld(replies={"CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s": echo})
    steps: list[Step] = [PasswordStep()]
    with pytest.raises(StepFailed) as info:
        engine(steps, make_journal(jpath, steps), world).run()
    assert REPL_PW not in str(info.value)
    assert REPL_PW not in jpath.read_text()
    (command,) = Journal.load(jpath).data.commands
    assert command.ok is False
    assert command.detail == f"[h] error 1064: syntax error near '{MASK}'"
    assert Journal.load(jpath).step(PasswordStep().key).error == command.detail


def test_connection_password_is_masked_in_failed_command_detail(jpath: Path) -> None:
    world = FakeWorld(replies={"do a": DatabaseError(f"[h] error 1045: denied for password {CONN_PW}")})
    steps: list[Step] = [FakeStep("a")]
    journal = make_journal(jpath, steps)
    executor = make_executor(journal, world, secrets=[Secret(CONN_PW, source="$H_PASSWORD")])
    with pytest.raises(StepFailed) as info:
        Engine(steps, journal, executor).run()
    assert CONN_PW not in str(info.value)
    (command,) = Journal.load(jpath).data.commands
    assert command.detail == f"[h] error 1045: denied for password {MASK}"
    assert CONN_PW not in jpath.read_text()


def test_ctrl_c_between_steps_is_an_operator_abort_in_the_journal(jpath: Path) -> None:
    world = FakeWorld()
    steps: list[Step] = [FakeStep(k) for k in ("a", "b")]

    def confirm(step: Step) -> Decision:
        if step.key == key("b"):
            raise KeyboardInterrupt
        return Decision.RUN

    with pytest.raises(Aborted, match=r"aborted by the operator \(Ctrl-C\) between two steps"):
        engine(steps, make_journal(jpath, steps), world, confirm=confirm).run()
    loaded = Journal.load(jpath)
    assert loaded.data.outcome == "aborted"
    assert [s.state for s in loaded.data.steps] == [StepState.DONE, StepState.PENDING]
