"""Replication steps: stop/reset, reset binlogs, point the replica, wait until it is healthy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
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
from resync.actions.dialect import PLAINTEXT, Dialect, ReplicationTLS, Statement
from resync.actions.types import Action, Assert, Capture, Poll, Ref, Sql, When
from resync.model.keys import Coordinates, Key, PreviousSource, StepId, StepKind
from resync.model.runbook import ReplicationSettings
from resync.model.secrets import EnvSecret
from resync.steps.base import Step

Mode = Literal["gtid", "file_pos"]
NO_GTID = ("No", 0, "0")  # Using_Gtid / Auto_Position when the replica used a file position
REPLICA_GTID = Key("replica.gtid_executed")


def _sql(host: str, statement: Statement) -> Sql:
    return Sql(host, statement.sql, statement.params)


def fact_tls(host: str) -> Key:
    """Whether host's server offered TLS at detection (1/0; not set: not detected)."""
    return Key(f"facts.tls.{host}")


@dataclass(frozen=True)
class TLSDecision:
    """The runbook's replication.tls decided for one source: what the replica is told, and why."""

    tls: ReplicationTLS
    reason: str
    required: bool = False

    def describe(self) -> str:
        t = self.tls
        if not t.enabled:
            return f"PLAINTEXT — {self.reason}"
        client = f"; client certificate {t.cert}" if t.cert else ""
        check = (f"the source's certificate and host name verified with the CA {t.ca}" if t.ca
                 else "the source's certificate NOT verified (give replication.ca to verify it)")
        return f"TLS, {check}{client} — {self.reason}"


def decide_tls(settings: ReplicationSettings, offered: bool | None) -> TLSDecision:
    """`offered`: the source's server offers TLS, as detected (None: not detected, or it was
    down). With `preferred` and nothing detected, a CA given says the source has certificates."""
    on = ReplicationTLS(True, settings.ca, settings.cert, settings.key)
    off = ReplicationTLS(False, rsa_key_exchange=settings.allow_rsa_key_exchange)
    if settings.tls == "off":
        return TLSDecision(off, "replication.tls: off")
    if settings.tls == "required":
        return TLSDecision(on, "replication.tls: required", required=True)
    if offered:
        return TLSDecision(on, "tls: preferred, and the source offers TLS (detected)")
    if offered is False:
        return TLSDecision(off, "tls: preferred, but the source offers no TLS (detected)")
    if settings.ca:
        return TLSDecision(on, "tls: preferred, not detected: taken as offered since a CA is given")
    return TLSDecision(off, "tls: preferred, not detected: plaintext assumed (plan --detect asks "
                            "the source)")


def rsa_warning(decision: TLSDecision, dialect: Dialect) -> str | None:
    """The plan's WARNING where the replication password could reach a man in the middle."""
    option = dialect.rsa_key_exchange_option(decision.tls)
    return (f"{option} (replication.allow_rsa_key_exchange): without TLS the replica takes the "
            "source's RSA public key unauthenticated; a man in the middle can obtain the "
            "replication password") if option else None


def tls_notes(decision: TLSDecision, dialect: Dialect) -> tuple[str, ...]:
    """The plan's lines on how the replica connects to its source."""
    warning = rsa_warning(decision, dialect)
    rsa_possible = dialect.rsa_key_exchange_option(replace(decision.tls, rsa_key_exchange=True))
    caveat = ("without TLS a caching_sha2_password replication user logs in only while the "
              "source holds its password in cache (after one TLS login); else the IO thread "
              "fails to authenticate") if rsa_possible and not warning else None
    return (f"replication connection: {decision.describe()}",
            *([f"WARNING: {warning}"] if warning else []), *([caveat] if caveat else []))


def tls_header(steps: Sequence[Step]) -> list[tuple[str, str]]:
    """The plan header's lines on the replication that stays (the last replica pointed)."""
    points = [s for s in steps if isinstance(s, PointReplica)]
    if not points:
        return []
    last = points[-1]
    warning = rsa_warning(last.tls, last.dialect)
    return [("replication TLS", last.tls.describe()), *([("WARNING", warning)] if warning else [])]


class StopReplication(Step):
    """STOP and RESET ALL replication on a host, so it cannot apply anything while it is copied.

    Where it replicated from is recorded first, so a rollback can point it back there: over the
    runbook's replication TLS (`tls`, decided for the recipient, the old primary it replicated
    from), since its own TLS options are not recorded.
    """

    def __init__(self, host: str, dialect: Dialect, role: str, *, user: str,
                 password_env: str, tls: ReplicationTLS = PLAINTEXT) -> None:
        self.host_name, self.dialect = host, dialect
        self.user, self.password_env, self.tls = user, password_env, tls
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
        by_gtid = d.change_source_gtid(Ref(p.host), Ref(p.port), self.user, password, self.tls)
        by_pos = d.change_source_file_pos(Ref(p.host), Ref(p.port), self.user, password,
                                          Ref(p.file), Ref(p.pos), self.tls)
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
                 user: str, password_env: str, mode: Mode, tls: TLSDecision,
                 start_at: Coordinates, requires: tuple[Action, ...] = (),
                 has_good_data: bool = False,
                 source: tuple[str, Dialect] | None = None) -> None:
        self.replica, self.dialect, self.mode = replica, dialect, mode
        self.requires = requires  # checked first (the new primary's lock still holds)
        # the replica is the server that held the good data: nothing may erase its binary logs
        self.has_good_data = has_good_data
        self.source_address, self.source_port = source_address, source_port
        self.user, self.password_env, self.tls, self.start_at = user, password_env, tls, start_at
        self.source = source  # (host, its dialect): asked whether it offers TLS right before
        self.id = StepId(StepKind.POINT_REPLICA, replica)
        self.title = (f"Point {replica} at {source_address}:{source_port} "
                      f"({'GTID' if mode == 'gtid' else 'file/position'}) and start replication")
        self.hosts = (replica,)
        self.why = ("replication resumes from the coordinates captured as "
                    f"{start_at.file} / {start_at.pos} / {start_at.gtid}")
        self.notes = tls_notes(tls, dialect)

    def _tls_guard(self) -> tuple[Action, ...]:
        """The source offers TLS now (it may have been down at preflight): a replica told to use
        TLS would otherwise fail later (MySQL) or, unverified, fall back to plaintext (MariaDB)."""
        if not self.tls.tls.enabled or self.source is None:
            return ()
        host, dialect = self.source
        key = Key(f"{self.replica}.source_tls")
        return (Capture(host, dialect.tls_offered().sql, columns=(("tls", key),)),
                Assert(Equals(key, "YES"), f"{host} does not offer TLS (have_ssl / its TLS "
                       f"channel): {self.replica} cannot replicate over TLS from it; start its "
                       "server with ssl_cert and ssl_key, or set replication.tls", host))

    def plan(self) -> tuple[Action, ...]:
        d, host, at = self.dialect, self.replica, self.start_at
        password = EnvSecret(self.password_env)
        actions: list[Action] = [*self.requires, *self._tls_guard(), _sql(host, d.stop_replica()),
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
                                          password, self.tls.tls)
        else:
            change = d.change_source_file_pos(self.source_address, self.source_port, self.user,
                                              password, Ref(at.file), Ref(at.pos), self.tls.tls)
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
