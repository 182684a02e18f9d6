"""The executor: one journal record per leaf, captured values, held sessions, branches, polls,
and a journal that conforms to the plan it ran."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resync.actions.conditions import Equals, IsSet, RowMatches
from resync.actions.types import (
    Action,
    Assert,
    Capture,
    CaptureRows,
    HoldLock,
    Poll,
    Ref,
    ReleaseLock,
    Shell,
    Sql,
    When,
    render,
)
from resync.model.errors import DatabaseError, HostError, LockTimeout, ResyncError, WaitTimeout
from resync.model.keys import SOURCE, Key, StepId, StepKind
from resync.plan.document import step_view
from resync.run.conformance import mismatches
from resync.run.engine import Engine
from resync.run.executor import LOCK_WAIT_TIMEOUT, Executor
from resync.run.journal import CommandRecord, Journal, MemoryJournal
from resync.steps.base import Step
from resync.testing.fakes import FakeClock, FakeWorld, Rows
from resync.transport.local import CommandResult

# -- fakes (the servers and hosts: FakeWorld) -----------------------------------------------------


def in_turn(*answers: Rows) -> Callable[[tuple[object, ...]], Rows]:
    """Replies given one after the other; the last one repeats."""
    seen = iter(answers)
    last: list[Rows] = [answers[-1]]

    def reply(params: tuple[object, ...]) -> Rows:
        return next(seen, last[0])

    return reply


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def executor(world: FakeWorld, clock: FakeClock) -> Iterator[Executor]:
    ex = Executor(MemoryJournal(), hosts=world.host, connect=world.connect, clock=clock)
    ex.begin("step-1")
    yield ex
    ex.close()


def records(ex: Executor) -> list[CommandRecord]:
    return ex.journal.data.commands


# -- poll -------------------------------------------------------------------------------------------

STATUS = "SHOW SLAVE STATUS"
RUNNING = RowMatches((("Slave_IO_Running", ("Yes",)), ("Slave_SQL_Running", ("Yes",))))


def status(io: str, sql: str = "Yes") -> Rows:
    return [{"Slave_IO_Running": io, "Slave_SQL_Running": sql, "Seconds_Behind_Master": 0}]


def test_poll_is_one_record_with_the_count_of_looks(world: FakeWorld, executor: Executor,
                                                    clock: FakeClock) -> None:
    world.replies[STATUS] = in_turn(status("Connecting"), status("Connecting"), status("Yes"))
    poll = Poll(Sql("h", STATUS), RUNNING, timeout=60, interval=2)
    answer = executor.run_one(poll, "0")
    assert answer.row["Slave_IO_Running"] == "Yes"
    assert len(world.sent) == 3
    assert clock.now() == 4  # slept twice, on the fake clock
    (record,) = records(executor)
    assert (record.action, record.kind, record.host, record.ok) == ("0", "poll", "h", True)
    assert record.text == poll.render() == (
        "poll SHOW SLAVE STATUS until Slave_IO_Running=Yes and Slave_SQL_Running=Yes "
        "(every 2s, at most 60s)")
    assert record.detail is not None
    assert record.detail.startswith("3 look(s) in ")
    assert record.detail.endswith("last: Slave_IO_Running=Yes, Slave_SQL_Running=Yes")


def test_poll_times_out_without_sleeping(world: FakeWorld, executor: Executor, clock: FakeClock) -> None:
    world.replies[STATUS] = status("Connecting")
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"timed out after 3600s waiting until "
                                          r"Slave_IO_Running=Yes.*last: Slave_IO_Running=Connecting"):
        executor.run_one(Poll(Sql("h", STATUS), RUNNING, timeout=3600, interval=0.5), "0")
    assert time.monotonic() - started < 5.0  # an hour of fake time, no real sleeping
    assert clock.now() == 3600
    assert len(world.sent) == 7201  # one look per interval, plus one at the deadline
    (record,) = records(executor)
    assert record.ok is False
    assert record.detail is not None and record.detail.startswith("7201 look(s)")


def test_poll_stops_at_once_when_waiting_cannot_help(world: FakeWorld, executor: Executor,
                                                     clock: FakeClock) -> None:
    world.replies[STATUS] = status("No", "No")
    broken = RowMatches((("Slave_SQL_Running", ("No",)),))
    with pytest.raises(ResyncError, match="Slave_SQL_Running=No"):
        executor.run_one(Poll(Sql("h", STATUS), RUNNING, timeout=60, fail_when=broken), "0")
    assert clock.now() == 0
    (record,) = records(executor)
    assert record.ok is False and record.detail is not None and record.detail.startswith("1 look(s)")


def test_poll_with_a_custom_failure_message(world: FakeWorld, executor: Executor) -> None:
    world.replies[STATUS] = []
    with pytest.raises(ResyncError, match=r"^\[h\] the replica never caught up \(no row\)$"):
        executor.run_one(Poll(Sql("h", STATUS), RUNNING, timeout=1, interval=1,
                              failure="the replica never caught up"), "0")


# -- when -------------------------------------------------------------------------------------------

MODE = Key("mode")


def branching() -> tuple[Action, ...]:
    return (Capture("h", "SELECT @@mode AS m", columns=(("m", MODE),)),
            When(Equals(MODE, "gtid"),
                 then=(Sql("h", "SET gtid"), Sql("h", "START gtid")),
                 otherwise=(Sql("h", "SET file"),), otherwise_note="file and position"))


@pytest.mark.parametrize(("mode", "taken", "ran"), [
    ("gtid", "then", ["SET gtid", "START gtid"]),
    ("file", "else", ["SET file"]),
])
def test_when_journals_its_decision_and_runs_only_that_branch(
        world: FakeWorld, executor: Executor, mode: str, taken: str, ran: list[str]) -> None:
    world.replies["SELECT @@mode AS m"] = [{"m": mode}]
    executor.run(branching())
    assert [sql for _, sql, _ in world.sent] == ["SELECT @@mode AS m", *ran]
    decision = records(executor)[1]
    assert (decision.action, decision.kind, decision.result, decision.ok) == ("1", "when", taken, True)
    assert decision.text == "when <mode> = 'gtid'"  # the plan's words ...
    assert decision.detail == f"'{mode}' = 'gtid'"  # ... and the values it was decided on
    assert [r.action for r in records(executor)[2:]] == [f"1.{taken}.{i}" for i in range(len(ran))]


# -- held sessions ----------------------------------------------------------------------------------

FTWRL = "FLUSH TABLES WITH READ LOCK"


def test_hold_lock_keeps_a_dedicated_session_until_release(world: FakeWorld, executor: Executor) -> None:
    executor.run((Sql("h", "SELECT 1"),
                  HoldLock("h", "lock", (Sql("h", FTWRL), Sql("h", "SHOW MASTER STATUS"))),
                  Sql("h", "SELECT 2"),
                  Sql("h", "SELECT @@gtid_current_pos", session="lock")))
    assert len(world.sessions) == 2  # the shared one and the lock's own
    assert [(n, sql) for n, sql, _ in world.sent] == [
        (0, "SELECT 1"), (1, FTWRL), (1, "SHOW MASTER STATUS"), (0, "SELECT 2"),
        (1, "SELECT @@gtid_current_pos")]
    assert executor.holds("lock")
    assert not world.sessions[1].closed
    assert [r.action for r in records(executor)] == ["0", "1.0", "1.1", "2", "3"]

    executor.run_one(ReleaseLock("h", "lock"), "4")
    assert world.sent[-1] == (1, "UNLOCK TABLES", ())
    assert world.sessions[1].closed
    assert not executor.holds("lock")
    last = records(executor)[-1]
    assert (last.action, last.text, last.ok) == ("4", "UNLOCK TABLES", True)
    with pytest.raises(ResyncError, match="session 'lock' on h is not open in this process"):
        executor.run_one(Sql("h", "SELECT 3", session="lock"), "5")


def test_a_held_session_that_died_is_not_held(world: FakeWorld, executor: Executor) -> None:
    executor.run_one(HoldLock("h", "lock", (Sql("h", FTWRL),)), "0")
    world.sessions[0].closed = True  # the server killed the connection
    assert not executor.holds("lock")
    with pytest.raises(ResyncError, match="had died before it was released"):
        executor.run_one(ReleaseLock("h", "lock"), "1")
    assert records(executor)[-1].ok is False


def test_release_of_a_session_not_held_here_is_ok_and_says_why(world: FakeWorld,
                                                              executor: Executor) -> None:
    executor.run_one(ReleaseLock("h", "lock"), "0")
    assert world.sent == []
    (record,) = records(executor)
    assert (record.kind, record.text, record.ok) == ("release", "UNLOCK TABLES", True)
    assert record.detail is not None
    assert "session 'lock' is not open in this process" in record.detail


def test_a_lock_wait_timeout_is_diagnosed_and_the_session_closed(world: FakeWorld,
                                                                 executor: Executor) -> None:
    world.replies[FTWRL] = DatabaseError("[h] error 1205: Lock wait timeout exceeded",
                                         code=LOCK_WAIT_TIMEOUT)
    world.replies["SELECT blockers"] = [{"id": 7, "state": "Waiting"}]
    hold = HoldLock("h", "lock", (Sql("h", FTWRL),), diagnose=CaptureRows("h", "SELECT blockers"))
    with pytest.raises(LockTimeout, match="Blocking: id=7, state=Waiting"):
        executor.run_one(hold, "2")
    assert world.sessions[0].closed  # the lock's session is not left open
    assert not executor.holds("lock")
    assert [(r.action, r.ok) for r in records(executor)] == [("2.0", False), ("2.diagnose", True)]


# -- captures ---------------------------------------------------------------------------------------


def test_capture_keeps_named_columns(world: FakeWorld, executor: Executor) -> None:
    world.replies["SHOW MASTER STATUS"] = [{"File": "db1-bin.000002", "Position": 1234,
                                            "Executed_Gtid_Set": "0-1-5,\n0-2-7"}]
    executor.run_one(Capture("h", "SHOW MASTER STATUS",
                             columns=(("File", SOURCE.file), ("Position", SOURCE.pos),
                                      ("Executed_Gtid_Set", SOURCE.gtid))), "0")
    expected = {"source.file": "db1-bin.000002", "source.pos": 1234, "source.gtid": "0-1-5,0-2-7"}
    assert executor.captured == expected
    (record,) = records(executor)
    assert record.kind == "capture" and record.ok is True
    assert json.loads(record.result or "") == expected


def test_capture_missing_row(world: FakeWorld, executor: Executor) -> None:
    with pytest.raises(ResyncError, match=r"\[h\] binary logging is off"):
        executor.run_one(Capture("h", "SHOW MASTER STATUS", columns=(("File", SOURCE.file),),
                                 missing="binary logging is off"), "0")
    assert "source.file" not in executor.captured
    (record,) = records(executor)
    assert (record.ok, record.detail) == (False, "binary logging is off")
    # missing=None: no row captures every value as None
    executor.run_one(Capture("h", "SHOW MASTER STATUS", columns=(("File", SOURCE.file),)), "1")
    assert executor.captured == {"source.file": None}
    assert records(executor)[-1].ok is True


def test_capture_rows_keeps_a_json_list(world: FakeWorld, executor: Executor) -> None:
    world.replies["SHOW TABLES"] = [{"s": "db", "t": "a"}, {"s": "db", "t": None}]
    executor.run_one(CaptureRows("h", "SHOW TABLES", into=Key("tables")), "0")
    assert json.loads(str(executor.captured["tables"])) == [["db", "a"], ["db", None]]


def test_shell_into_captures_stripped_stdout(world: FakeWorld, executor: Executor) -> None:
    world.outputs["readlink -f /var/lib/mysql"] = CommandResult(
        "h", "readlink -f /var/lib/mysql", 0, "  /data/mysql\n", "")
    executor.run_one(Shell.line("h", "readlink -f /var/lib/mysql", into=Key("datadir")), "0")
    assert executor.captured == {"datadir": "/data/mysql"}
    (record,) = records(executor)
    assert (record.kind, record.ok, record.exit_code) == ("shell", True, 0)
    assert json.loads(record.result or "") == {"datadir": "/data/mysql"}
    # the captured value is one shell word when used again
    executor.run_one(Shell.line("h", "du -sb ", Ref(Key("datadir"))), "1")
    assert world.commands[-1] == "du -sb /data/mysql"


def test_shell_failure_is_journaled_and_nothing_captured(world: FakeWorld, executor: Executor) -> None:
    world.outputs["false"] = CommandResult("h", "false", 3, "", "boom\n")
    with pytest.raises(HostError, match="exited 3"):
        executor.run_one(Shell.line("h", "false", into=Key("x")), "0")
    assert "x" not in executor.captured
    (record,) = records(executor)
    assert (record.ok, record.exit_code, record.detail) == (False, 3, "boom\n")


def test_assert_fails_the_step_with_its_message(executor: Executor) -> None:
    executor.capture("a", 1)
    executor.run_one(Assert(IsSet(Key("a")), "a must be set"), "0")
    with pytest.raises(ResyncError, match=r"^b must be set$"):
        executor.run_one(Assert(IsSet(Key("b")), "b must be set"), "1")
    assert [(r.kind, r.text, r.ok) for r in records(executor)] == [
        ("assert", "assert 1 is set", True), ("assert", "assert <b> is set", False)]


# -- the journal reads as the plan ------------------------------------------------------------------

CHANGE = "CHANGE MASTER TO MASTER_LOG_FILE=%s, MASTER_LOG_POS=%s"


def test_recorded_text_is_the_template_filled_with_captured_values(world: FakeWorld,
                                                                   executor: Executor) -> None:
    executor.capture("source.file", "db1-bin.000002")
    executor.capture("source.pos", 4)
    action = Sql("h", CHANGE, (Ref(SOURCE.file), Ref(SOURCE.pos)))
    executor.run_one(action, "0")
    assert world.sent == [(0, CHANGE, ("db1-bin.000002", 4))]  # bound, not spliced
    (record,) = records(executor)
    assert record.text == render(action.template(), executor.captured) == (
        "CHANGE MASTER TO MASTER_LOG_FILE='db1-bin.000002', MASTER_LOG_POS=4")
    assert render(action.template()) == (  # what the plan shows before the run
        "CHANGE MASTER TO MASTER_LOG_FILE=<source.file>, MASTER_LOG_POS=<source.pos>")


def test_a_value_not_captured_yet_is_an_error(executor: Executor) -> None:
    with pytest.raises(ResyncError, match=r"'source\.pos' has not been captured yet"):
        executor.run_one(Sql("h", "SELECT %s", (Ref(SOURCE.pos),)), "0")


class CaptureStep(Step):
    id = StepId(StepKind.READ_LOCK, "db1", "source")
    title = "lock and capture"
    hosts = ("h",)

    def plan(self) -> tuple[Action, ...]:
        return (HoldLock("h", "lock", (Sql("h", FTWRL),)),
                Capture("h", "SHOW MASTER STATUS",
                        columns=(("File", SOURCE.file), ("Position", SOURCE.pos)),
                        missing="binary logging is off"),
                Shell.line("h", "readlink -f /var/lib/mysql", into=Key("datadir")),
                *branching())


class PointStep(Step):
    id = StepId(StepKind.POINT_REPLICA, "db2")
    title = "point the replica"
    hosts = ("h",)

    def plan(self) -> tuple[Action, ...]:
        return (Sql("h", CHANGE, (Ref(SOURCE.file), Ref(SOURCE.pos))),
                Shell.line("h", "ls ", Ref(Key("datadir"))),
                Poll(Sql("h", STATUS), RUNNING, timeout=30, interval=1),
                ReleaseLock("h", "lock"))

    def undo_plan(self) -> tuple[Action, ...]:
        return (Sql("h", "RESET SLAVE ALL"),)


def run_with_plan(path: Path, world: FakeWorld) -> Journal:
    steps: list[Step] = [CaptureStep(), PointStep()]
    plan = {"steps": [step_view(i, s).as_json() for i, s in enumerate(steps, 1)]}
    journal = Journal.create(path, run_id="r1", runbook_path="rb.yaml", runbook_sha256="x",
                             steps=[(s.key, s.title) for s in steps], plan=plan)
    executor = Executor(journal, hosts=world.host, connect=world.connect, clock=FakeClock())
    Engine(steps, journal, executor).run()
    return journal


def conforming_world() -> FakeWorld:
    world = FakeWorld(replies={"SHOW MASTER STATUS": [{"File": "db1-bin.000002", "Position": 4}],
                           "SELECT @@mode AS m": [{"m": "file"}],
                           STATUS: in_turn(status("Connecting"), status("Yes"))})
    world.outputs["readlink -f /var/lib/mysql"] = CommandResult("h", "", 0, "/data/my sql\n", "")
    return world


def test_a_run_conforms_to_its_plan(tmp_path: Path) -> None:
    journal = run_with_plan(tmp_path / "run.json", conforming_world())
    data = Journal.load(journal.path).data
    assert data.outcome == "done"
    assert mismatches(data) == []
    assert [r.action for r in data.commands] == ["0.0", "1", "2", "3", "4", "4.else.0",
                                                 "0", "1", "2", "3"]
    texts = [r.text for r in data.commands]
    assert "CHANGE MASTER TO MASTER_LOG_FILE='db1-bin.000002', MASTER_LOG_POS=4" in texts
    assert "ls '/data/my sql'" in texts


def test_conformance_finds_a_record_that_differs_from_the_plan(tmp_path: Path) -> None:
    journal = run_with_plan(tmp_path / "run.json", conforming_world())
    data = journal.data.model_copy(deep=True)
    change = next(r for r in data.commands if r.text.startswith("CHANGE MASTER"))
    change.text = change.text.replace("MASTER_LOG_POS=4", "MASTER_LOG_POS=5")
    (problem,) = mismatches(data)
    assert "MASTER_LOG_POS=4" in problem and "MASTER_LOG_POS=5" in problem
    data.commands.pop()  # the release was not journaled
    assert any("was not journaled: UNLOCK TABLES" in p for p in mismatches(data))
    data.plan = None
    assert mismatches(data) == ["the journal holds no plan"]
