"""The undo of a read-only start: the server stopped and the one-start drop-in gone."""

from __future__ import annotations

from resync.actions.dialect import ServerVersion, dialect_for
from resync.actions.types import Shell
from resync.model.runbook import ServiceSettings
from resync.steps.services import StartService

DROPIN = "/etc/mysql/mariadb.conf.d/99-resync.cnf"


def _service(dropin: str | None) -> ServiceSettings:
    return ServiceSettings(start="systemctl start mariadb", stop="systemctl stop mariadb",
                           config_dropin=dropin)


def _shell_lines(actions: tuple[object, ...]) -> list[str]:
    return [a.bind({}) for a in actions if isinstance(a, Shell)]


def test_killed_start_rollback_removes_read_only_dropin() -> None:
    """Regression (CI, EBS fault matrix): a run killed inside start-service, after the drop-in
    was written and before it was removed, was rolled back to a server that came up with
    read_only=1 for good: the undo stopped the server but left the drop-in in place."""
    step = StartService("db1", _service(DROPIN), "/var/lib/mysql", "recipient",
                        dialect_for(ServerVersion("mariadb", 10, 11, 6)))
    lines = _shell_lines(step.undo_plan())
    assert lines[0] == "systemctl stop mariadb"
    assert lines[-1] == f"rm -f {DROPIN}"


def test_start_without_dropin_undo_only_stops() -> None:
    step = StartService("db1", _service(None), "/var/lib/mysql", "recipient",
                        dialect_for(ServerVersion("mariadb", 10, 11, 6)))
    assert not any("rm -f" in line for line in _shell_lines(step.undo_plan()))
