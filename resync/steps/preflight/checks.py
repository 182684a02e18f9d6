"""The preflight's checks and the composite that runs them all (so one refusal lists every
problem), journaling each check's verdict as a record of its own."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from resync.actions.types import Captured, Composite, Leaf, Template
from resync.model.errors import PreflightFailed, ResyncError
from resync.model.keys import Key
from resync.run.executor import CompositeRun
from resync.steps.direction import NotCaptured

RESULTS = Key("preflight.results")  # JSON [[name, ok, detail], ...]

Judge = Callable[[Captured], str]  # the detail when it passes; raises when it does not


@dataclass(frozen=True)
class Verdict(Leaf):
    """The decision of one check over what its actions captured (a journal record of its own)."""

    name: str
    criterion: str
    host: str = "-"
    kind = "check"

    def template(self) -> Template:
        return (f"check {self.name}: {self.criterion}",)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Check:
    name: str
    criterion: str
    actions: tuple[Leaf | Composite, ...]
    judge: Judge
    only_if_all_passed: bool = False  # e.g. the bandwidth probe: it needs the copy port free

    def verdict(self) -> Verdict:
        return Verdict(self.name, self.criterion)

    def result(self, captured: Captured, failure: str | None) -> CheckResult:
        """Its result: `failure` when one of its actions failed, else its judge's word. A value
        that was not captured is "not checked", not a crash: the other checks still run."""
        if failure is not None:
            return CheckResult(self.name, False, failure)
        try:
            return CheckResult(self.name, True, self.judge(captured))
        except NotCaptured as exc:
            return CheckResult(self.name, False, f"not checked: {exc}")
        except (ResyncError, ValueError) as exc:
            return CheckResult(self.name, False, str(exc))


def leaves(action: Leaf | Composite) -> tuple[Leaf, ...]:
    """The journal records an action of a check makes: a composite's parts, or the leaf."""
    return action.parts() if isinstance(action, Composite) else (action,)


class Checks(Composite):
    def __init__(self, host: str, checks: tuple[Check, ...]) -> None:
        self.host, self.checks = host, checks
        self.title = f"{len(checks)} preflight checks (read-only)"

    def parts(self) -> tuple[Leaf, ...]:
        out: list[Leaf] = []
        for check in self.checks:
            for action in check.actions:
                out += leaves(action)
            out.append(check.verdict())
        return tuple(out)

    def execute(self, run: CompositeRun) -> None:
        results: list[CheckResult] = []
        index = 0  # of the next record in parts()
        for check in self.checks:
            started = time.monotonic()
            failure: str | None = None
            if check.only_if_all_passed and not all(r.ok for r in results):
                failure = "not run: an earlier check failed"
                index += sum(len(leaves(a)) for a in check.actions)
                results.append(CheckResult(check.name, False, failure))
                run.record(index, False, started, failure)
                index += 1
                continue
            for action in check.actions:
                if failure is None:  # after a failed action the check's other actions are skipped
                    try:
                        if isinstance(action, Composite):
                            action.execute(CompositeRun(run.executor, run.aid, action, index))
                        else:
                            run.do(index)
                    except ResyncError as exc:
                        failure = str(exc)
                index += len(leaves(action))
            result = check.result(run.captured, failure)
            results.append(result)
            run.record(index, result.ok, started, result.detail)
            index += 1
        run.capture(RESULTS, json.dumps([[r.name, r.ok, r.detail] for r in results]))
        failures = [f"{r.name}: {r.detail}" for r in results if not r.ok]
        if failures:
            raise PreflightFailed(failures)


def results_of(captured: Captured) -> list[CheckResult]:
    """The preflight's results as its run captured them (none when it did not run)."""
    raw = captured.get(str(RESULTS))
    return [CheckResult(str(n), bool(ok), str(d)) for n, ok, d in json.loads(str(raw))] if raw else []
