"""The undo of a read-only start: the server stopped and the one-start drop-in gone."""

from __future__ import annotations

from resync.actions.dialect import ServerVersion, dialect_for
from resync.actions.types import Shell
from resync.model.runbook import ServiceSettings
from resync.steps.services import Concurrently, ServerStart, StartService

DROPIN = "/etc/mysql/mariadb.conf.d/99-resync.cnf"


def _service(dropin: str | None) -> ServiceSettings:
    return ServiceSettings(start="systemctl start mariadb", stop="systemctl stop mariadb",
                           config_dropin=dropin)


def _server(host: str, dropin: str | None, role: str = "recipient") -> ServerStart:
    return ServerStart(host, _service(dropin), "/var/lib/mysql", role,
                       dialect_for(ServerVersion("mariadb", 10, 11, 6)))


def _shell_lines(actions: tuple[object, ...]) -> list[str]:
    return [a.bind({}) for a in actions if isinstance(a, Shell)]


def test_killed_start_rollback_removes_read_only_dropin() -> None:
    """Regression (CI, EBS fault matrix): a run killed inside start-service, after the drop-in
    was written and before it was removed, was rolled back to a server that came up with
    read_only=1 for good: the undo stopped the server but left the drop-in in place."""
    step = StartService(_server("db1", DROPIN))
    lines = _shell_lines(step.undo_plan())
    assert lines[0] == "systemctl stop mariadb"
    assert lines[-1] == f"rm -f {DROPIN}"


def test_start_without_dropin_undo_only_stops() -> None:
    step = StartService(_server("db1", None))
    assert not any("rm -f" in line for line in _shell_lines(step.undo_plan()))


def test_two_servers_start_together_and_both_undo_remove_their_dropins() -> None:
    step = StartService(_server("db2", DROPIN), _server("db1", DROPIN, "donor"))
    assert step.key == "start-service:db2+db1"
    together = [a for a in step.plan() if isinstance(a, Concurrently)]
    assert len(together) == 1
    assert [(c.host, c.bind({})) for c in together[0].parts()] == [
        ("db2", "systemctl start mariadb"), ("db1", "systemctl start mariadb")]
    undo = [a for a in step.undo_plan() if isinstance(a, Shell)]
    assert [(a.host, a.bind({})) for a in undo] == [
        ("db2", "systemctl stop mariadb"), ("db2", f"rm -f {DROPIN}"),
        ("db1", "systemctl stop mariadb"), ("db1", f"rm -f {DROPIN}")]
