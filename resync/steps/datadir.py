"""Move the recipient's datadir aside (kept, never deleted) and give it a fresh, empty one."""

from __future__ import annotations

from resync.actions.quoting import q
from resync.actions.types import Action, Ref, Shell
from resync.model.keys import OLD_DATADIR, StepId, StepKind
from resync.steps.base import Step
from resync.steps.services import require_stopped


def old_datadir_path(datadir: str, run_id: str) -> str:
    return f"{datadir.rstrip('/')}.resync-{run_id}"


class MoveDatadirAside(Step):
    destructive = True
    why = "the copy needs an empty datadir; the old one is kept until cleanup is confirmed"

    def __init__(self, host: str, datadir: str, owner: str,
                 gate: tuple[Action, ...] = ()) -> None:
        self.host_name, self.datadir, self.owner = host, datadir.rstrip("/"), owner
        self.gate = gate  # the errant-transaction check, again, on the stopped recipient
        self.id = StepId(StepKind.MOVE_DATADIR, host)
        self.title = f"Move {host}'s datadir aside (kept) and create an empty one"
        self.hosts = (host,)
        user, _, group = owner.partition(":")
        self.user, self.group = user, group or user

    def plan(self) -> tuple[Action, ...]:
        d = q(self.datadir)
        old = Ref(OLD_DATADIR)
        # safe to repeat: a crash between the two halves is finished by running it again
        return (*require_stopped(self.host_name, self.datadir, "refusing to move its datadir"),
                *self.gate,
                Shell.line(self.host_name,
                           "set -e; if [ ! -e ", old, " ]; then mv -T ", d, " ", old, "; fi; "
                           f"[ -d {d} ] || install -d -o {q(self.user)} -g {q(self.group)} "
                           f"-m 0750 {d}", privileged=True))

    def undo_plan(self) -> tuple[Action, ...]:
        d = q(self.datadir)
        old = Ref(OLD_DATADIR)
        # the copied datadir is moved aside too (".rejected"), not deleted
        return (*require_stopped(self.host_name, self.datadir,
                                 "stop it before its old datadir is restored"),
                Shell.line(self.host_name,
                           "set -e; if [ -d ", old, " ]; then if [ -e ", d, " ]; then mv -T ", d,
                           " ", old, ".rejected; fi; mv -T ", old, " ", d, "; fi; test -d ", d,
                           privileged=True))
