"""The preflight step: every check, run as one composite before anything is changed."""

from __future__ import annotations

from collections.abc import Mapping

from resync.actions.dialect import ServerVersion
from resync.actions.types import Action
from resync.model.keys import StepId, StepKind
from resync.model.runbook import LoadedRunbook
from resync.steps.base import Step
from resync.steps.copy.commands import CopySpec
from resync.steps.preflight.checklist import build_checks
from resync.steps.preflight.checks import Checks


class Preflight(Step):
    why = "read-only: refuses the run (exit 3) before anything is changed; it cannot be skipped"

    def __init__(self, loaded: LoadedRunbook, spec: CopySpec, down: frozenset[str] = frozenset(),
                 versions: Mapping[str, ServerVersion] | None = None,
                 discard_errant: bool = False,
                 gtid_enabled: Mapping[str, bool] | None = None) -> None:
        self.loaded, self.spec, self.down = loaded, spec, down
        self.versions = dict(versions or {})
        self.discard_errant = discard_errant
        self.gtid_enabled = None if gtid_enabled is None else dict(gtid_enabled)
        rb = loaded.model
        self.id = StepId(StepKind.PREFLIGHT)
        self.title = "Preflight checks (read-only)"
        self.hosts = (rb.donor, rb.recipient)

    def plan(self) -> tuple[Action, ...]:
        return (Checks(self.loaded.model.recipient, build_checks(
            self.loaded, self.spec, self.down, self.versions,
            discard_errant=self.discard_errant, gtid_enabled=self.gtid_enabled)),)
