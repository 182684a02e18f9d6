"""Replication steps: stop/reset, reset binlogs, point the replica, wait until it is healthy."""

from __future__ import annotations

from typing import Literal

from resync.actions.conditions import (
    All,
    ColumnStopped,
    Equals,
    IsSet,
    Not,
    OneOf,
    RowMatches,
    Same,
)
from resync.actions.dialect import Dialect, Statement
from resync.actions.types import Action, Assert, Capture, Poll, Ref, Sql, When
from resync.model.keys import Coordinates, Key, PreviousSource, StepId, StepKind
from resync.model.secrets import EnvSecret
from resync.steps.base import Step

Mode = Literal["gtid", "file_pos"]
NO_GTID = ("No", 0, "0")  # Using_Gtid / Auto_Position when the replica used a file position
REPLICA_GTID = Key("replica.gtid_executed")


def _sql(host: str, statement: Statement) -> Sql:
    return Sql(host, statement.sql, statement.params)


class StopReplication(Step):
    """STOP and RESET ALL replication on a host, so it cannot apply anything while it is copied.

    Where it replicated from is recorded first, so a rollback can point it back there.
    """

    def __init__(self, host: str, dialect: Dialect, role: str, *, user: str,
                 password_env: str) -> None:
        self.host_name, self.dialect = host, dialect
        self.user, self.password_env = user, password_env
        self.id = StepId(StepKind.STOP_REPLICATION, host)
        self.title = f"Stop and reset replication on {host} ({role})"
        self.hosts = (host,)
        self.previous = PreviousSource.of(host)
        self.why = ("the donor must not apply events from its old source during or after the copy; "
                    f"its source is recorded as {host}.previous_source.* for a rollback")

    def plan(self) -> tuple[Action, ...]:
        f, p, d = self.dialect.status_fields, self.previous, self.dialect
        record = Capture(self.host_name, d.replica_status().sql, columns=(
            (f.source_host, p.host), (f.source_port, p.port), (f.source_log_file, p.file),
            (f.exec_source_log_pos, p.pos), (f.using_gtid or f.io_running, p.using_gtid),
            (f.io_running, p.io_running), (f.sql_running, p.sql_running)))
        # recorded once: run again after the reset it would record "no source"
        return (When(Not(IsSet(p.host)), (record,),
                     otherwise_note="already recorded by an earlier attempt"),
                _sql(self.host_name, d.stop_replica()),
                _sql(self.host_name, d.reset_replica_all()))

    def _point_back(self) -> tuple[Action, ...]:
        d, p = self.dialect, self.previous
        password = EnvSecret(self.password_env)
        by_gtid = d.change_source_gtid(Ref(p.host), Ref(p.port), self.user, password)
        by_pos = d.change_source_file_pos(Ref(p.host), Ref(p.port), self.user, password,
                                          Ref(p.file), Ref(p.pos))
        return (When(OneOf(p.using_gtid, NO_GTID), (_sql(self.host_name, by_pos),),
                     (_sql(self.host_name, by_gtid),)),
                When(All((Equals(p.io_running, "Yes"), Equals(p.sql_running, "Yes"))),
                     (_sql(self.host_name, d.start_replica()),),
                     otherwise_note="it was not running before: left stopped"))

    def undo_plan(self) -> tuple[Action, ...]:
        d = self.dialect
        return (When(IsSet(self.previous.host),
                     (_sql(self.host_name, d.stop_replica()),
                      _sql(self.host_name, d.reset_replica_all()), *self._point_back()),
                     otherwise_note="it had no replication source before the run: nothing to "
                                    "restore"),)


class ResetBinlogs(Step):
    destructive = True
    why = ("the new primary starts a clean binary log history (its old binlogs went aside with "
           "the old datadir); with GTIDs it carries on the history of the copied data")

    def __init__(self, host: str, dialect: Dialect, gtid_from: Coordinates | None = None) -> None:
        self.host_name, self.dialect, self.gtid_from = host, dialect, gtid_from
        self.id = StepId(StepKind.RESET_BINLOGS, host)
        self.title = f"Reset binary logs on {host} (the new primary)"
        self.hosts = (host,)

    def plan(self) -> tuple[Action, ...]:
        # MariaDB's RESET MASTER waits until InnoDB confirms the binlog checkpoint, which its
        # background thread does once a second (measured here: 0.8-1.0 s inside the downtime);
        # the engine logs written first answer it at once (0.01 s). Harmless on MySQL.
        flush = _sql(self.host_name, self.dialect.flush_engine_logs())
        reset = _sql(self.host_name, self.dialect.reset_binlogs())
        if self.gtid_from is None:
            return (flush, reset)
        return (flush, reset, _sql(self.host_name,
                                   self.dialect.seed_primary_gtid(Ref(self.gtid_from.gtid))))


class PointReplica(Step):
    def __init__(self, replica: str, dialect: Dialect, *, source_address: str, source_port: int,
                 user: str, password_env: str, mode: Mode, ssl: bool,
                 start_at: Coordinates, requires: tuple[Action, ...] = (),
                 has_good_data: bool = False) -> None:
        self.replica, self.dialect, self.mode = replica, dialect, mode
        self.requires = requires  # checked first (the new primary's lock still holds)
        # the replica is the server that held the good data: nothing may erase its binary logs
        self.has_good_data = has_good_data
        self.source_address, self.source_port = source_address, source_port
        self.user, self.password_env, self.ssl, self.start_at = user, password_env, ssl, start_at
        self.id = StepId(StepKind.POINT_REPLICA, replica)
        self.title = (f"Point {replica} at {source_address}:{source_port} "
                      f"({'GTID' if mode == 'gtid' else 'file/position'}) and start replication")
        self.hosts = (replica,)
        self.why = ("replication resumes from the coordinates captured as "
                    f"{start_at.file} / {start_at.pos} / {start_at.gtid}")

    def plan(self) -> tuple[Action, ...]:
        d, host, at = self.dialect, self.replica, self.start_at
        password = EnvSecret(self.password_env)
        actions: list[Action] = [*self.requires, _sql(host, d.stop_replica()),
                                 _sql(host, d.reset_replica_all())]
        if self.mode == "gtid" and self.has_good_data and d.seed_resets_binlogs:
            # MySQL would have to RESET its binary logs to set gtid_purged: instead prove that
            # it already executed exactly what the new primary holds
            gtid = d.gtid_position()
            actions += [Capture(host, gtid.sql, columns=(("gtid", REPLICA_GTID),)),
                        Assert(Same(REPLICA_GTID, at.gtid),
                               f"{host} has not executed exactly the new primary's GTID set: "
                               "refusing to reset the binary logs of the server with the good "
                               "data", host)]
        elif self.mode == "gtid":
            actions += [_sql(host, s) for s in d.seed_gtid(Ref(at.gtid))]
        if self.mode == "gtid":
            change = d.change_source_gtid(self.source_address, self.source_port, self.user,
                                          password, self.ssl)
        else:
            change = d.change_source_file_pos(self.source_address, self.source_port, self.user,
                                              password, Ref(at.file), Ref(at.pos), self.ssl)
        actions += [_sql(host, change), _sql(host, d.start_replica())]
        return tuple(actions)

    def undo_plan(self) -> tuple[Action, ...]:
        # it must not go on replicating from a server whose old datadir comes back
        d = self.dialect
        return (_sql(self.replica, d.stop_replica()), _sql(self.replica, d.reset_replica_all()))


class WaitReplicaHealthy(Step):
    def __init__(self, replica: str, dialect: Dialect, timeout: float) -> None:
        self.replica, self.dialect, self.timeout = replica, dialect, timeout
        self.id = StepId(StepKind.WAIT_REPLICA, replica)
        self.title = f"Wait until {replica} replicates and has caught up"
        self.hosts = (replica,)

    def plan(self) -> tuple[Action, ...]:
        f = self.dialect.status_fields
        shown = (f.io_running, f.sql_running, f.seconds_behind, f.last_io_error, f.last_sql_error)
        return (Poll(_sql(self.replica, self.dialect.replica_status()),
                     RowMatches(((f.io_running, ("Yes",)), (f.sql_running, ("Yes",)),
                                 (f.seconds_behind, (0, "0"))), shown),
                     self.timeout, 0.5, fail_when=ColumnStopped(f.sql_running, f.last_sql_error)),)
