"""Preflight: every check that must pass before anything is changed (`resync check` runs it alone).

Each check is a list of read-only leaf actions (queries, commands: journaled like any other)
and a verdict over what they captured. All checks run, so one refusal lists every problem.

The modules: `step` (the Preflight step), `checklist` (which checks a runbook gets), `checks`
(a check, and the composite that runs them all), `verdicts` and `layout` (the verdicts: pure
functions over captured values).
"""

from resync.steps.preflight.checklist import build_checks
from resync.steps.preflight.checks import Check, CheckResult, Checks, Verdict, results_of
from resync.steps.preflight.step import Preflight
from resync.steps.preflight.verdicts import Skip

__all__ = ["Check", "CheckResult", "Checks", "Preflight", "Skip", "Verdict", "build_checks",
           "results_of"]
