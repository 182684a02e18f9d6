"""The window gate and its recheck, as planned steps run by the executor with an injected clock:
inside and fitting, too short, before, after, no estimate; the recheck at the point of no
return refusing when the steps before it took the time; where both sit in every copy method's
plan; and the wait before the window."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from resync.model.errors import GateRefused, JournalError
from resync.model.keys import DONOR_BYTES, WINDOW_ENDS_AT, StepKind
from resync.model.runbook import LoadedRunbook, parse_runbook
from resync.plan.build import Plan, assumed_facts, build_plan
from resync.plan.document import plan_document
from resync.run.conformance import mismatches
from resync.run.engine import Engine
from resync.run.executor import Executor
from resync.run.journal import Journal, StepState
from resync.steps.copy.pipeline import PROBE_RATE
from resync.steps.window import WindowKeys, decide
from resync.testing.fakes import FakeWorld
from resync.window.figures import run_figures
from resync.window.fit import WindowRefused
from resync.window.lock import RunbookLock
from resync.window.wait import wait_for_window

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "runbooks" / "rebuild-replica-window.yaml"
# 10 GB at 100 MB/s: a 100 s copy; the whole run about 6.6 minutes, 8 with the 20% margin
MEASURED = {str(DONOR_BYTES): 10_000_000_000, str(PROBE_RATE): 100_000_000}
WINDOW_START = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)  # Sun 02:00 Europe/Berlin


@dataclass
class WallClock:
    """The executor's clock with a time of day: sleep() advances both at once."""

    wall: datetime
    t: float = 0.0
    slept: list[float] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        self.wall += timedelta(seconds=seconds)

    def utc_now(self) -> datetime:
        return self.wall


def loaded(edit: tuple[str, str] | None = None) -> LoadedRunbook:
    text = EXAMPLE.read_text()
    if edit is not None:
        assert text.count(edit[0]) == 1, edit
        text = text.replace(*edit)
    return parse_runbook(text, Path("runbooks/rebuild-replica-window.yaml"))


def plan_of(rb: LoadedRunbook) -> Plan:
    return build_plan(rb, assumed_facts(rb, {}))


def journal_for(plan: Plan, tmp_path: Path) -> Journal:
    doc = plan_document(plan)
    journal = Journal.create(tmp_path / "journal.json", run_id="t", runbook_path="r",
                             runbook_sha256=plan.loaded.sha256,
                             steps=[(s.key, s.title) for s in plan.steps], plan=doc,
                             plan_sha256=doc["plan_sha256"])
    journal.data.captured.update(MEASURED)
    return journal


def executor(journal: Journal, clock: WallClock) -> Executor:
    world = FakeWorld()
    return Executor(journal, hosts=world.host, connect=world.connect, clock=clock)


def run_steps(plan: Plan, journal: Journal, clock: WallClock, *kinds: StepKind) -> None:
    steps = [s for s in plan.steps if s.id.kind in kinds]
    Engine(steps, journal, executor(journal, clock)).run()


# -- the decision --------------------------------------------------------------------------------


def test_inside_and_fitting_passes_and_keeps_the_window_end() -> None:
    rb = loaded().model
    assert rb.window is not None
    got = decide("gate", rb, rb.window, MEASURED, WINDOW_START + timedelta(minutes=5))
    assert got.ok, got.detail
    keys = WindowKeys("gate")
    assert got.values[keys.left] == 3300
    figures = run_figures(MEASURED, rb)
    assert got.values[keys.needed] == round(figures.total * 1.2)
    assert 400 < got.values[keys.needed] < 600  # type: ignore[operator]
    assert got.values[WINDOW_ENDS_AT] == int((WINDOW_START + timedelta(hours=1)).timestamp())
    assert "inside the window Sun 2026-12-06 02:00 CET - 03:00 CET" in got.detail
    assert "fits: the run needs" in got.detail and "copy 1m40s (writes stopped)" in got.detail


def test_too_short_a_time_left_is_refused_with_the_figures() -> None:
    rb = loaded().model
    assert rb.window is not None
    got = decide("gate", rb, rb.window, MEASURED, WINDOW_START + timedelta(minutes=55))
    assert not got.ok
    assert got.values[WindowKeys("gate").decision] == "does not fit"
    assert WINDOW_ENDS_AT not in got.values
    assert "DOES NOT FIT: the run needs" in got.detail and "5m00s are available" in got.detail


@pytest.mark.parametrize(("at", "says"), [
    (WINDOW_START - timedelta(minutes=1), "before the window Sun 2026-12-06 02:00 CET"),
    (WINDOW_START + timedelta(hours=1), "before the window Sun 2026-12-13 02:00 CET"),
])
def test_outside_is_refused(at: datetime, says: str) -> None:
    rb = loaded().model
    assert rb.window is not None
    got = decide("gate", rb, rb.window, MEASURED, at)
    assert not got.ok and got.detail.startswith("the run cannot start: " + says)
    assert got.values[WindowKeys("gate").decision] == "outside"


def test_after_a_one_off_window_is_refused() -> None:
    rb = loaded(("cron: \"0 2 * * SUN\"", "start: \"2026-12-06T02:00\"")).model
    assert rb.window is not None
    got = decide("gate", rb, rb.window, MEASURED, WINDOW_START + timedelta(hours=2))
    assert not got.ok and "after the window" in got.detail and "ended 1h00m ago" in got.detail


def test_without_the_preflight_figures_there_is_no_go() -> None:
    rb = loaded().model
    assert rb.window is not None
    got = decide("gate", rb, rb.window, {str(DONOR_BYTES): 10}, WINDOW_START)
    assert not got.ok and "the copy bandwidth was not measured" in got.detail


def test_a_declared_bandwidth_needs_no_probe() -> None:
    rb = loaded(("compress: none}", "compress: none, bandwidth_mb_per_s: 1}")).model
    figures = run_figures({str(DONOR_BYTES): 10_000_000}, rb)
    assert (figures.bandwidth, figures.bandwidth_source) == (1e6, "runbook")


def test_the_recheck_leaves_out_what_is_behind_it() -> None:
    rb = loaded().model
    whole, ahead = (run_figures(MEASURED, rb, at_point_of_no_return=p) for p in (False, True))
    assert "recipient_stop" in [p.name for p in whole.phases]
    assert "recipient_stop" not in [p.name for p in ahead.phases]
    assert ahead.total < whole.total and ahead.write_downtime == whole.write_downtime


# -- in the plan -----------------------------------------------------------------------------


def kinds(plan: Plan) -> list[StepKind]:
    return [s.id.kind for s in plan.steps]


def test_the_gate_follows_the_preflight_and_the_recheck_precedes_the_move() -> None:
    order = kinds(plan_of(loaded()))
    assert order[:3] == [StepKind.PREFLIGHT, StepKind.WINDOW_GATE, StepKind.STOP_SERVICE]
    assert order[order.index(StepKind.WINDOW_RECHECK) + 1] is StepKind.MOVE_DATADIR
    assert order.count(StepKind.WINDOW_GATE) == order.count(StepKind.WINDOW_RECHECK) == 1


def test_without_a_window_the_plan_is_unchanged() -> None:
    text = EXAMPLE.read_text()
    plain = parse_runbook(text[:text.index("\nwindow:\n")], Path("r.yaml"))
    assert StepKind.WINDOW_GATE not in kinds(plan_of(plain))
    assert StepKind.WINDOW_RECHECK not in kinds(plan_of(plain))


@pytest.mark.parametrize(("copy", "before"), [
    ("{method: ebs, ebs: {mode: copy}}", StepKind.MOVE_DATADIR),
    ("{method: ebs, ebs: {mode: swap}}", StepKind.ERRANT_RECHECK),  # before the donor's lock
    ("{method: mariabackup}", StepKind.MOVE_DATADIR),
    ("{method: ssh}", StepKind.MOVE_DATADIR),
])
def test_the_recheck_in_every_copy_method(copy: str, before: StepKind) -> None:
    order = kinds(plan_of(loaded(("{method: stream, port: 7878, compress: none}", copy))))
    assert order[1] is StepKind.WINDOW_GATE
    assert order[order.index(StepKind.WINDOW_RECHECK) + 1] is before
    assert StepKind.READ_LOCK not in order[:order.index(StepKind.WINDOW_RECHECK)]


def test_the_page_goes_on_after_the_gate() -> None:
    page = ("window:\n", "maintenance: {kind: flag_file, hosts: [db1], path: /var/www/flag, "
                         "probe: {url: 'http://db1.example.internal/'}}\nwindow:\n")
    order = kinds(plan_of(loaded(page)))
    assert order[1:3] == [StepKind.WINDOW_GATE, StepKind.MAINTENANCE_ON]


def test_the_plan_text_shows_window_margin_and_criterion() -> None:
    plan = plan_of(loaded())
    gate = plan.step(StepKind.WINDOW_GATE)
    assert gate is not None
    (check,) = gate.plan()
    text = check.parts()[0].render()  # type: ignore[union-attr]
    assert text.startswith("check now inside the window every `0 2 * * SUN` (Europe/Berlin) for "
                           "1h00m, margin 20%, and the estimated write-downtime and whole run")
    assert text.endswith("needs <window.gate.needed_seconds> s, <window.gate.seconds_left> s left")
    assert plan_document(plan) == plan_document(plan_of(loaded())), "the same plan every build"


# -- run by the executor -----------------------------------------------------------------------


def test_the_gate_runs_in_the_executor_with_the_injected_clock(tmp_path: Path) -> None:
    plan = plan_of(loaded())
    journal = journal_for(plan, tmp_path)
    run_steps(plan, journal, WallClock(WINDOW_START + timedelta(minutes=2)), StepKind.WINDOW_GATE)
    assert journal.step("window-gate").state is StepState.DONE
    captured = journal.data.captured
    assert captured[str(WINDOW_ENDS_AT)] == int((WINDOW_START + timedelta(hours=1)).timestamp())
    assert captured["window.gate.seconds_left"] == 3480
    assert captured["window.gate.decision"] == "fits"
    (record,) = [r for r in journal.data.commands if r.step == "window-gate"]
    assert record.kind == "window" and record.ok and "3480 s left" in record.text
    assert mismatches(journal.data) == []


def test_a_gate_refusal_is_exit_3_and_leaves_the_next_steps_pending(tmp_path: Path) -> None:
    plan = plan_of(loaded())
    journal = journal_for(plan, tmp_path)
    with pytest.raises(WindowRefused) as info:
        run_steps(plan, journal, WallClock(WINDOW_START + timedelta(minutes=58)),
                  StepKind.WINDOW_GATE, StepKind.STOP_SERVICE)
    assert info.value.exit_code == 3 and isinstance(info.value, GateRefused)
    assert "DOES NOT FIT" in str(info.value)
    assert journal.step("window-gate").state is StepState.FAILED
    assert journal.step("stop-service:db2").state is StepState.PENDING
    assert str(WINDOW_ENDS_AT) not in journal.data.captured


def test_the_recheck_refuses_when_the_steps_before_it_took_the_time(tmp_path: Path) -> None:
    plan = plan_of(loaded())
    journal = journal_for(plan, tmp_path)
    clock = WallClock(WINDOW_START + timedelta(minutes=10))
    run_steps(plan, journal, clock, StepKind.WINDOW_GATE)
    assert journal.step("window-gate").state is StepState.DONE
    clock.sleep(45 * 60)  # a load balancer's drain, a slow stop: 5 minutes are left
    with pytest.raises(WindowRefused) as info:
        run_steps(plan, journal, clock, StepKind.WINDOW_RECHECK, StepKind.MOVE_DATADIR)
    assert "DOES NOT FIT" in str(info.value) and "left at the point of no return" in str(info.value)
    assert journal.step("window-recheck").state is StepState.FAILED
    assert journal.step("move-datadir-aside:db2").state is StepState.PENDING
    assert journal.data.captured["window.recheck.seconds_left"] == 300


def test_the_recheck_passes_with_time_enough_and_then_nothing_checks_time(tmp_path: Path) -> None:
    plan = plan_of(loaded())
    journal = journal_for(plan, tmp_path)
    clock = WallClock(WINDOW_START + timedelta(minutes=10))
    run_steps(plan, journal, clock, StepKind.WINDOW_GATE, StepKind.WINDOW_RECHECK)
    assert journal.data.captured["window.recheck.decision"] == "fits"
    assert mismatches(journal.data) == []
    after = kinds(plan)[kinds(plan).index(StepKind.WINDOW_RECHECK) + 1:]
    assert StepKind.WINDOW_GATE not in after and StepKind.WINDOW_RECHECK not in after


def test_a_recheck_resumed_in_a_later_window_keeps_that_window_end(tmp_path: Path) -> None:
    plan = plan_of(loaded())
    journal = journal_for(plan, tmp_path)
    clock = WallClock(WINDOW_START + timedelta(minutes=1))
    run_steps(plan, journal, clock, StepKind.WINDOW_GATE)
    clock.sleep(7 * 86400)  # the run died; resumed in next Sunday's window
    run_steps(plan, journal, clock, StepKind.WINDOW_RECHECK)
    next_end = WINDOW_START + timedelta(days=7, hours=1)
    assert journal.data.captured[str(WINDOW_ENDS_AT)] == int(next_end.timestamp())


# -- waiting for the window (before the journal exists) -----------------------------------------


class FakeTime:
    def __init__(self, at: datetime) -> None:
        self.at = at
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += timedelta(seconds=seconds)


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False), out


def test_inside_the_window_the_run_goes_on_at_once() -> None:
    settings = loaded().model.window
    t = FakeTime(WINDOW_START + timedelta(minutes=1))
    con, out = console()
    wait_for_window(settings, con, no_wait=False, now=t.now, sleep=t.sleep)
    assert t.slept == [] and "inside the window" in out.getvalue()


def test_before_the_window_it_counts_down_in_plain_lines_then_goes_on() -> None:
    settings = loaded().model.window
    t = FakeTime(WINDOW_START - timedelta(minutes=2, seconds=30))
    con, out = console()
    wait_for_window(settings, con, no_wait=False, now=t.now, sleep=t.sleep)
    assert t.slept == [60, 60, 30] and t.at == WINDOW_START
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("waiting for the maintenance window: before the window")
    assert lines[1:3] == ["waiting for the maintenance window: it starts in 1m30s",
                          "waiting for the maintenance window: it starts in 30s"]
    assert lines[-1].startswith("maintenance window: inside the window")


def test_no_wait_before_the_window_refuses_at_once() -> None:
    settings = loaded().model.window
    t = FakeTime(WINDOW_START - timedelta(minutes=5))
    with pytest.raises(WindowRefused, match="--no-wait: not waiting") as info:
        wait_for_window(settings, console()[0], no_wait=True, now=t.now, sleep=t.sleep)
    assert info.value.exit_code == 3 and t.slept == []


def test_more_than_a_day_ahead_is_not_waited_for() -> None:
    settings = loaded().model.window
    t = FakeTime(WINDOW_START - timedelta(days=3))
    with pytest.raises(WindowRefused, match="more than 1d00h away"):
        wait_for_window(settings, console()[0], no_wait=False, now=t.now, sleep=t.sleep)
    assert t.slept == []


def test_after_a_one_off_window_the_run_is_refused() -> None:
    settings = loaded(("cron: \"0 2 * * SUN\"", "start: \"2026-12-06T02:00\"")).model.window
    t = FakeTime(WINDOW_START + timedelta(hours=3))
    with pytest.raises(WindowRefused, match="outside the maintenance window: after the window"):
        wait_for_window(settings, console()[0], no_wait=False, now=t.now, sleep=t.sleep)


def test_no_window_no_wait() -> None:
    con, out = console()
    wait_for_window(None, con, no_wait=True)
    assert out.getvalue() == ""


def test_a_second_run_of_the_runbook_cannot_start_while_one_runs(tmp_path: Path) -> None:
    runbook, other = tmp_path / "db2.yaml", tmp_path / "other.yaml"
    runbook.write_text("x")
    other.write_text("y")
    with RunbookLock(runbook, "db2-window"):
        with pytest.raises(JournalError, match="another run of runbook db2-window is in progress"):
            RunbookLock(runbook, "db2-window").acquire()
        with RunbookLock(other, "other"):  # another runbook: its own lock
            pass
    with RunbookLock(runbook, "db2-window"):
        pass  # released with the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db2.yaml", "other.yaml"], "no files"


def test_the_countdown_on_a_terminal_is_one_live_line() -> None:
    settings = loaded().model.window
    t = FakeTime(WINDOW_START - timedelta(seconds=3))
    out = io.StringIO()
    con = Console(file=out, width=200, force_terminal=True)
    wait_for_window(settings, con, no_wait=False, now=t.now, sleep=t.sleep)
    assert t.slept == [1, 1, 1] and t.at == WINDOW_START
    assert "starts in 3s" in out.getvalue() and "inside the window" in out.getvalue()
