"""Replication steps: stop/reset, reset binlogs, point the replica, wait until it is healthy."""

from __future__ import annotations

from typing import Any, Literal

from resync.actions.dialect import Dialect, Statement
from resync.actions.types import Action, Check, Ref, Sql
from resync.model.errors import ResyncError
from resync.model.secrets import EnvSecret
from resync.run.waiting import wait_until
from resync.steps.base import Step, StepContext

Mode = Literal["gtid", "file_pos"]


def _sql(host: str, statement: Statement) -> Sql:
    return Sql(host, statement.sql, statement.params)


def replica_status(ctx: StepContext, host: str, dialect: Dialect) -> dict[str, Any] | None:
    rows = ctx.query(host, dialect.replica_status().sql)
    return rows[0] if rows else None


class StopReplication(Step):
    """STOP and RESET ALL replication on a host, so it cannot apply anything while it is copied.

    Where it replicated from is recorded first, so a rollback can point it back there.
    """

    def __init__(self, host: str, dialect: Dialect, role: str, *, user: str,
                 password_env: str) -> None:
        self.host_name, self.dialect = host, dialect
        self.user, self.password_env = user, password_env
        self.key = f"stop-replication:{host}"
        self.title = f"Stop and reset replication on {host} ({role})"
        self.hosts = (host,)
        self.prefix = f"{host}.previous_source"
        self.why = ("the donor must not apply events from its old source during or after the copy; "
                    f"its source is recorded as {self.prefix}.* for a rollback")

    def plan(self) -> tuple[Action, ...]:
        return (Sql(self.host_name, self.dialect.replica_status().sql),
                _sql(self.host_name, self.dialect.stop_replica()),
                _sql(self.host_name, self.dialect.reset_replica_all()))

    def observe(self, ctx: StepContext) -> bool:
        return replica_status(ctx, self.host_name, self.dialect) is None

    def run(self, ctx: StepContext) -> None:
        status = replica_status(ctx, self.host_name, self.dialect)
        if status is not None:
            f = self.dialect.status_fields
            using_gtid = str(status.get(f.using_gtid or "") or "No") not in ("No", "0")
            running = status.get(f.io_running) == "Yes" and status.get(f.sql_running) == "Yes"
            for name, value in (("host", status.get(f.source_host)),
                                ("port", int(str(status.get(f.source_port) or 3306))),
                                ("file", status.get(f.source_log_file)),
                                ("pos", int(str(status.get(f.exec_source_log_pos) or 0))),
                                ("mode", "gtid" if using_gtid else "file_pos"),
                                ("running", int(running))):
                ctx.capture(f"{self.prefix}.{name}", value if value is None or isinstance(
                    value, int) else str(value))
        for statement in (self.dialect.stop_replica(), self.dialect.reset_replica_all()):
            ctx.sql(_sql(self.host_name, statement))

    def _point_back(self, mode: str) -> tuple[Sql, ...]:
        d, p = self.dialect, self.prefix
        host, port, password = Ref(f"{p}.host"), Ref(f"{p}.port"), EnvSecret(self.password_env)
        change = (d.change_source_gtid(host, port, self.user, password)
                  if mode == "gtid" else
                  d.change_source_file_pos(host, port, self.user, password,
                                           Ref(f"{p}.file"), Ref(f"{p}.pos")))
        return (_sql(self.host_name, change),)

    def undo_plan(self) -> tuple[Action, ...]:
        # a finished run left it replicating from the new primary: that goes first
        reset = (_sql(self.host_name, self.dialect.stop_replica()),
                 _sql(self.host_name, self.dialect.reset_replica_all()))
        return (*reset,
                Check(self.host_name, f"point it back where it replicated from ({self.prefix}.*), "
                      f"by GTID or by file/position as before:"),
                *self._point_back("gtid"), *self._point_back("file_pos"),
                Check(self.host_name, "start replication only if it was running before:"),
                _sql(self.host_name, self.dialect.start_replica()))

    def undo(self, ctx: StepContext) -> None:
        mode = ctx.captured.get(f"{self.prefix}.mode")
        if mode is None:
            return  # it was not replicating: nothing to restore
        if replica_status(ctx, self.host_name, self.dialect) is not None:
            for statement in (self.dialect.stop_replica(), self.dialect.reset_replica_all()):
                ctx.sql(_sql(self.host_name, statement))
        for action in self._point_back(str(mode)):
            ctx.sql(action)
        if ctx.captured.get(f"{self.prefix}.running"):
            ctx.sql(_sql(self.host_name, self.dialect.start_replica()))


class ResetBinlogs(Step):
    destructive = True
    why = ("the new primary starts a clean binary log history (its old binlogs went aside with "
           "the old datadir); with GTIDs it carries on the history of the copied data")

    def __init__(self, host: str, dialect: Dialect, gtid_from: str | None = None) -> None:
        self.host_name, self.dialect, self.gtid_from = host, dialect, gtid_from
        self.key = f"reset-binlogs:{host}"
        self.title = f"Reset binary logs on {host} (the new primary)"
        self.hosts = (host,)

    def plan(self) -> tuple[Action, ...]:
        reset = _sql(self.host_name, self.dialect.reset_binlogs())
        if self.gtid_from is None:
            return (reset,)
        return (reset, _sql(self.host_name, self.dialect.seed_primary_gtid(Ref(self.gtid_from))))


class PointReplica(Step):
    def __init__(self, replica: str, dialect: Dialect, *, source_address: str, source_port: int,
                 user: str, password_env: str, mode: Mode, ssl: bool, prefix: str) -> None:
        self.replica, self.dialect, self.mode = replica, dialect, mode
        self.source_address, self.source_port = source_address, source_port
        self.user, self.password_env, self.ssl, self.prefix = user, password_env, ssl, prefix
        self.key = f"point-replica:{replica}"
        self.title = (f"Point {replica} at {source_address}:{source_port} "
                      f"({'GTID' if mode == 'gtid' else 'file/position'}) and start replication")
        self.hosts = (replica,)
        self.why = f"replication resumes from the coordinates captured as {prefix}.*"

    def plan(self) -> tuple[Action, ...]:
        d, host = self.dialect, self.replica
        password = EnvSecret(self.password_env)
        actions: list[Action] = [_sql(host, d.stop_replica()), _sql(host, d.reset_replica_all())]
        if self.mode == "gtid":
            actions += [_sql(host, s) for s in d.seed_gtid(Ref(f"{self.prefix}.gtid"))]
            change = d.change_source_gtid(self.source_address, self.source_port, self.user,
                                          password, self.ssl)
        else:
            change = d.change_source_file_pos(
                self.source_address, self.source_port, self.user, password,
                Ref(f"{self.prefix}.file"), Ref(f"{self.prefix}.pos"), self.ssl)
        actions += [_sql(host, change), _sql(host, d.start_replica())]
        return tuple(actions)


class WaitReplicaHealthy(Step):
    def __init__(self, replica: str, dialect: Dialect, timeout: float) -> None:
        self.replica, self.dialect, self.timeout = replica, dialect, timeout
        self.key = f"wait-replica:{replica}"
        self.title = f"Wait until {replica} replicates and has caught up"
        self.hosts = (replica,)

    def plan(self) -> tuple[Action, ...]:
        f = self.dialect.status_fields
        return (Check(self.replica, f"poll `{self.dialect.replica_status().sql}` until "
                      f"{f.io_running}=Yes, {f.sql_running}=Yes and {f.seconds_behind}=0 "
                      f"(timeout {self.timeout:g}s; the last error is shown on failure)"),)

    def run(self, ctx: StepContext) -> None:
        f = self.dialect.status_fields
        last: dict[str, Any] = {}

        def healthy() -> bool:
            status = replica_status(ctx, self.replica, self.dialect)
            if status is None:
                raise ResyncError(f"{self.replica} has no replication configured")
            last.clear()
            last.update(status)
            if status.get(f.last_sql_error) and status.get(f.sql_running) == "No":
                raise ResyncError(f"replication SQL thread stopped on {self.replica}: "
                                  f"{status.get(f.last_sql_error)}")
            return (status.get(f.io_running) == "Yes" and status.get(f.sql_running) == "Yes"
                    and status.get(f.seconds_behind) in (0, "0"))

        def describe() -> str:
            return (f"{f.io_running}={last.get(f.io_running)}, "
                    f"{f.sql_running}={last.get(f.sql_running)}, "
                    f"{f.seconds_behind}={last.get(f.seconds_behind)}, "
                    f"last IO error: {last.get(f.last_io_error) or '-'}, "
                    f"last SQL error: {last.get(f.last_sql_error) or '-'}")

        wait_until(healthy, what=f"replication on {self.replica} to be healthy",
                   timeout=self.timeout, interval=0.5, clock=ctx.clock, describe_failure=describe)

