"""Run events: the phase of each step, the lock window, progress every N seconds, overrun,
masking, the one-line text, a broken listener left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from resync.model.keys import WINDOW_ENDS_AT, StepKind
from resync.model.runbook import load_runbook
from resync.model.secrets import MASK, Secret
from resync.plan.build import Plan, assumed_facts, build_plan
from resync.run.events import (
    PHASE_OF,
    EventName,
    Phase,
    PhaseClock,
    RunEvent,
    RunEvents,
)
from resync.run.journal import CommandRecord, Journal, StepState

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.closed = False

    def handle(self, event: RunEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def named(self, name: EventName) -> list[RunEvent]:
        return [e for e in self.events if e.name is name]


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def plan_of(runbook: str) -> Plan:
    loaded = load_runbook(ROOT / "runbooks" / runbook)
    return build_plan(loaded, assumed_facts(loaded, {}))


def journal_for(tmp_path: Path, plan: Plan) -> Journal:
    return Journal.create(tmp_path / "j.json", run_id="r-1", runbook_path="rb.yaml",
                          runbook_sha256="x", steps=[(s.key, s.title) for s in plan.steps])


def walk(plan: Plan, tmp_path: Path, *, fail_at: str | None = None
         ) -> tuple[Recorder, RunEvents, Clock]:
    """Every step of `plan` started and finished, 5 s each, through the events (as the engine
    tells them), up to the step `fail_at` that fails."""
    recorder, clock = Recorder(), Clock()
    events = RunEvents(plan.loaded.model.name, [recorder], clock=clock)
    rb = plan.loaded.model
    journal = events.attach(journal_for(tmp_path, plan),
                            PhaseClock.of(plan.steps, rb.donor, rb.primary_after), "run started")
    for step in plan.steps:
        journal.transition(step.key, StepState.RUNNING)
        events.step_started(step)
        clock.t += 5
        state = StepState.FAILED if step.key == fail_at else StepState.DONE
        journal.transition(step.key, state)
        events.step_finished(step, state, None)
        if state is StepState.FAILED:
            break
    return recorder, events, clock


def phases(recorder: Recorder) -> list[tuple[str, str, float | None]]:
    return [(str(e.phase), str(e.state), e.seconds) for e in recorder.named(EventName.PHASE)]


def test_every_step_kind_has_a_phase() -> None:
    assert set(PHASE_OF) == set(StepKind)


def test_phases_of_a_cold_copy_begin_and_end_with_their_seconds(tmp_path: Path) -> None:
    plan = plan_of("rebuild-replica.yaml")
    recorder, events, _ = walk(plan, tmp_path)
    events.finished(EventName.SUCCESS, "done")

    # preflight (1 step) | copy (7 steps: stop db2 .. start db2+db1) | replication (3) |
    # verify (1); the lock window: read-lock:db1 started -> make-writable:db1 done (7 steps, 35 s)
    assert phases(recorder) == [
        ("preflight", "begin", None), ("preflight", "end", 5.0),
        ("copy", "begin", None), ("lock window", "begin", None),
        ("copy", "end", 35.0), ("replication", "begin", None),
        ("lock window", "end", 35.0),
        ("replication", "end", 15.0), ("verify", "begin", None),
        ("verify", "end", 5.0)]
    names = [e.name for e in recorder.events]
    assert names[0] is EventName.START and names[-2:] == [EventName.SUCCESS, EventName.SUMMARY]
    assert all(e.run_id == "r-1" for e in recorder.events)


def test_the_lock_window_of_a_snapshot_ends_when_the_snapshot_started(tmp_path: Path) -> None:
    plan = plan_of("rebuild-replica-ebs.yaml")
    rb = plan.loaded.model
    clock = PhaseClock.of(plan.steps, rb.donor, rb.primary_after)
    assert (clock.lock_opens, clock.lock_closes) == ("read-lock:db1:source", "ebs-snapshot:db1")


def test_a_hot_copy_has_no_lock_window(tmp_path: Path) -> None:
    plan = plan_of("rebuild-replica-hot.yaml")
    recorder, _, _ = walk(plan, tmp_path)
    assert "lock window" not in {p for p, _, _ in phases(recorder)}
    assert ("copy", "begin", None) in phases(recorder)


def test_the_rebuilt_primary_is_locked_until_it_takes_writes(tmp_path: Path) -> None:
    plan = plan_of("rebuild-old-primary.yaml")
    rb = plan.loaded.model
    clock = PhaseClock.of(plan.steps, rb.donor, rb.primary_after)
    assert (clock.lock_opens, clock.lock_closes) == ("read-lock:db2:donor", "make-writable:db1")


def test_a_failure_in_the_lock_window_says_how_long_writes_are_stopped(tmp_path: Path) -> None:
    plan = plan_of("rebuild-replica.yaml")
    recorder, events, clock = walk(plan, tmp_path, fail_at="copy-datadir:db1->db2")
    clock.t += 2
    events.finished(EventName.FAILURE, "step 'copy-datadir:db1->db2' failed: boom",
                    next_command="resync resume j.json", undo_command="resync rollback j.json")

    failure = recorder.named(EventName.FAILURE)[0]
    # read-lock, stop db1, copy: 3 steps of 5 s, and 2 s since
    assert failure.figures["lock_window_open_seconds"] == 17.0
    assert failure.journal == str((tmp_path / "j.json").resolve())
    assert phases(recorder)[-1] == ("copy", "end", 32.0)  # 6 steps of it and 2 s
    text = failure.text()
    assert "FAILED: step 'copy-datadir:db1->db2' failed: boom" in text
    assert "next: resync resume j.json (or undo: resync rollback j.json)" in text


def test_overrun_is_told_when_the_run_ends_after_its_window(tmp_path: Path) -> None:
    plan = plan_of("rebuild-replica.yaml")
    recorder, events, clock = walk(plan, tmp_path)
    assert events.journal is not None
    events.journal.capture(str(WINDOW_ENDS_AT), clock.t - 90)
    events.finished(EventName.SUCCESS, "done")

    names = [e.name for e in recorder.events[-4:]]
    assert names == [EventName.PHASE, EventName.OVERRUN, EventName.SUCCESS, EventName.SUMMARY]
    overrun = recorder.named(EventName.OVERRUN)[0]
    assert overrun.seconds == 90.0
    assert overrun.figures == {"window.ends_at": clock.t - 90}


def test_no_overrun_inside_the_window(tmp_path: Path) -> None:
    plan = plan_of("rebuild-replica.yaml")
    recorder, events, clock = walk(plan, tmp_path)
    assert events.journal is not None
    events.journal.capture(str(WINDOW_ENDS_AT), clock.t + 1)
    events.finished(EventName.SUCCESS, "done")
    assert recorder.named(EventName.OVERRUN) == []
    assert recorder.named(EventName.SUCCESS)[0].figures["window.ends_at"] == clock.t + 1


def test_the_outcome_is_told_once(tmp_path: Path) -> None:
    recorder, clock = Recorder(), Clock()
    events = RunEvents("rb", [recorder], clock=clock)
    events.finished(EventName.REFUSED, "preflight failed")
    events.finished(EventName.FAILURE, "something after")
    assert [e.name for e in recorder.events] == [EventName.REFUSED]
    assert recorder.events[0].run_id is None, "refused before the run existed"


def test_progress_is_an_event_every_n_seconds_with_rate_and_eta(tmp_path: Path) -> None:
    recorder, clock = Recorder(), Clock()
    live: list[int] = []
    events = RunEvents("rb", [recorder], clock=clock, progress_every=10.0,
                       live_progress=lambda done, total, label: live.append(done))
    for second in range(36):
        events.progress(second * 1_000_000, 40_000_000, "copy")
        clock.t += 1
    events.progress(40_000_000, 40_000_000, "copy")
    events.progress(40_000_000, 40_000_000, "copy")  # told once

    ticks = recorder.named(EventName.PROGRESS)
    assert [e.figures["done"] for e in ticks] == [0, 10_000_000, 20_000_000, 30_000_000,
                                                 40_000_000]
    assert ticks[1].figures["rate_per_second"] == 1_000_000.0
    assert ticks[1].figures["eta_seconds"] == 30.0
    assert ticks[1].figures["unit"] == "bytes" and ticks[1].message == "copy"
    assert len(live) == 38, "a terminal's bar gets every update"


def test_every_secret_is_masked_in_every_field() -> None:
    secret = Secret("s3cr3t-pw")
    event = RunEvent(EventName.FAILURE, "rb", 1.0, run_id="r", step="x s3cr3t-pw",
                     message="denied for s3cr3t-pw\nand again s3cr3t-pw",
                     figures={"k": "s3cr3t-pw", "n": 3}, next_command="cmd s3cr3t-pw")
    masked = event.masked([secret])
    assert "s3cr3t-pw" not in repr(masked.as_dict()) and "s3cr3t-pw" not in masked.text()
    assert masked.message == f"denied for {MASK}\nand again {MASK}"
    assert masked.figures == {"k": MASK, "n": 3}


def test_events_are_masked_before_any_listener_sees_them(tmp_path: Path) -> None:
    recorder = Recorder()
    learned: list[Secret] = []
    events = RunEvents("rb", [recorder], secrets=[Secret("first-pw")])
    events.watch_secrets(learned)  # the executor learns secrets while the run goes
    learned.append(Secret("later-pw"))
    events.finished(EventName.FAILURE, "first-pw then later-pw")
    assert recorder.events[0].message == f"{MASK} then {MASK}"


def test_actions_become_events_with_their_first_line(tmp_path: Path) -> None:
    plan = plan_of("rebuild-replica.yaml")
    recorder = Recorder()
    events = RunEvents("rb", [recorder], secrets=[Secret("pw-1")])
    journal = events.attach(journal_for(tmp_path, plan), None, "run started")
    index = journal.record(CommandRecord(step="copy", action="0", host="db1", kind="shell",
                                         text="install x <<EOF\nbody pw-1\nEOF", ok=None))
    journal.update(index, ok=True, seconds=1.5)
    journal.update(index, detail="more")  # no new state: no event

    actions = recorder.named(EventName.ACTION)
    assert [(a.state, a.message, a.host, a.kind) for a in actions] == [
        ("running", "install x <<EOF", "db1", "shell"), ("ok", "install x <<EOF", "db1", "shell")]
    assert actions[1].seconds == 1.5
    assert len(journal.data.commands) == 1, "the journal keeps the record once"


class Broken(Recorder):
    def handle(self, event: RunEvent) -> None:
        raise OSError("disk full")


def test_a_broken_listener_is_left_out_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    good, bad = Recorder(), Broken()
    events = RunEvents("rb", [bad, good])
    events.emit(EventName.START, message="one")
    events.emit(EventName.START, message="two")
    assert [e.message for e in good.events] == ["one", "two"]
    assert events.listeners == [good]
    assert "Broken stopped receiving events: disk full" in caplog.text
    events.close()
    assert good.closed


def test_text_is_one_line_for_a_chat() -> None:
    event = RunEvent(EventName.REFUSED, "rb", 1.0, message="preflight failed:\n  - a\n  - b")
    assert event.text() == "resync rb: REFUSED: preflight failed: - a - b"
    phase = RunEvent(EventName.PHASE, "rb", 1.0, run_id="r", phase=Phase.COPY, state="end",
                     seconds=61.2)
    assert phase.text() == "resync rb (r): phase copy ended after 61 s"
    success = RunEvent(EventName.SUCCESS, "rb", 1.0, message="done",
                       figures={"figures.write_downtime_seconds": 12.345}, journal="/j.json")
    assert success.text() == "resync rb: done; write downtime 12.3 s; journal /j.json"
