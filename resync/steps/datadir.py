"""Move the recipient's datadir aside (kept, never deleted) and give it a fresh, empty one.

Its binary and relay logs go aside with it when they live outside the datadir (a log_bin under
/var/log/mysql is common): the copied server would otherwise find the old index there, and
RESET MASTER on it would delete the only record of the old primary's transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

from resync.actions.conditions import Condition
from resync.actions.quoting import q
from resync.actions.types import Action, Captured, Fmt, Ref, Shell, Slot, Template, When
from resync.model.keys import OLD_DATADIR, Key, StepId, StepKind, preflight_value
from resync.steps.base import Step
from resync.steps.services import require_stopped

LOGS = (("log_bin_basename", "binlogs"), ("relay_log_basename", "relaylogs"))


def old_datadir_path(datadir: str, run_id: str) -> str:
    return f"{datadir.rstrip('/')}.resync-{run_id}"


@dataclass(frozen=True)
class OutsideDir(Condition):
    """A captured path is set and not under `directory`."""

    key: Key
    directory: str

    def template(self) -> Template:
        return (Slot(self.key, Fmt.SQL), f" is outside {self.directory}")

    def holds(self, captured: Captured) -> bool:
        value = captured.get(str(self.key))
        return bool(value) and not str(value).startswith(self.directory.rstrip("/") + "/")


def logs_aside(host: str, datadir: str, *, undo: bool) -> tuple[Action, ...]:
    """Logs outside the datadir, moved into <old datadir>.<kind>/ (and back)."""
    out: list[Action] = []
    old = Ref(OLD_DATADIR)
    for variable, kind in LOGS:
        base = preflight_value(host, variable)
        # the rebuilt server's own logs there go aside too (".rejected"), never deleted
        move = (Shell.line(host, "set -e; d=\"$(dirname ", Ref(base), ")\"; "
                           "if [ -d ", old, f".{kind} ]; then mkdir -p ", old,
                           f".rejected.{kind}; for f in ", Ref(base), ".*; do [ -e \"$f\" ] "
                           "&& mv -n -- \"$f\" ", old, f".rejected.{kind}/; done; for f in ",
                           old, f".{kind}/*; do [ -e \"$f\" ] && mv -n -- \"$f\" \"$d\"/; "
                           "done; rmdir ", old, f".{kind}; fi", privileged=True)
                if undo else
                Shell.line(host, "set -e; mkdir -p ", old, f".{kind}; for f in ",
                           Ref(base), ".*; do [ -e \"$f\" ] && mv -n -- \"$f\" ", old,
                           f".{kind}/; done; true", privileged=True))
        out.append(When(OutsideDir(base, datadir), (move,),
                        otherwise_note="in the datadir (or off, or unknown: the server was "
                                       "down at preflight): nothing else to move"))
    return tuple(out)


class MoveDatadirAside(Step):
    destructive = True
    why = ("the copy needs an empty datadir; the old one (and its logs kept elsewhere) is kept "
           "until cleanup is confirmed")

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
        # safe to repeat: a crash between the halves is finished by running it again
        return (*require_stopped(self.host_name, self.datadir, "refusing to move its datadir"),
                *self.gate,
                Shell.line(self.host_name,
                           "set -e; if [ ! -e ", old, " ]; then mv -T ", d, " ", old, "; fi; "
                           f"[ -d {d} ] || install -d -o {q(self.user)} -g {q(self.group)} "
                           f"-m 0750 {d}", privileged=True),
                *logs_aside(self.host_name, self.datadir, undo=False))

    def undo_plan(self) -> tuple[Action, ...]:
        d = q(self.datadir)
        old = Ref(OLD_DATADIR)
        # the copied datadir is moved aside too (".rejected"), not deleted
        return (*require_stopped(self.host_name, self.datadir,
                                 "stop it before its old datadir is restored"),
                Shell.line(self.host_name,
                           "set -e; if [ -d ", old, " ]; then if [ -e ", d, " ]; then mv -T ", d,
                           " ", old, ".rejected; fi; mv -T ", old, " ", d, "; fi; test -d ", d,
                           privileged=True),
                *logs_aside(self.host_name, self.datadir, undo=True))
