"""Typed names: the id of every step and the name of every value a run captures.

Step ids and value names are built here and compared as objects; nothing splits a string to
find out what it names. Their `str()` is what the journal and the plan show.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StepKind(StrEnum):
    PREFLIGHT = "preflight"
    WINDOW_GATE = "window-gate"  # the maintenance window: fits the estimate, or refused
    WINDOW_RECHECK = "window-recheck"  # the window again, at the point of no return
    STOP_REPLICATION = "stop-replication"
    ERRANT_RECHECK = "errant-recheck"
    PREFLUSH = "preflush"
    READ_LOCK = "read-lock"
    STOP_SERVICE = "stop-service"
    MOVE_DATADIR = "move-datadir-aside"
    COPY = "copy-datadir"
    EBS_SNAPSHOT = "ebs-snapshot"
    EBS_VOLUME = "ebs-volume"
    EBS_SWAP = "ebs-swap"
    EBS_PREWARM = "ebs-prewarm"
    EBS_RELEASE = "ebs-release"
    START_SERVICE = "start-service"
    RESET_BINLOGS = "reset-binlogs"
    POINT_REPLICA = "point-replica"
    WAIT_REPLICA = "wait-replica"
    UNLOCK = "unlock"
    MAKE_WRITABLE = "make-writable"
    VERIFY = "verify-data"
    LB_DRAIN = "lb-drain"
    LB_RESTORE = "lb-restore"
    MAINTENANCE_ON = "maintenance-on"
    MAINTENANCE_OFF = "maintenance-off"


@dataclass(frozen=True)
class StepId:
    """`kind:subject:detail`, e.g. read-lock:db2:source, copy-datadir:db2->db1."""

    kind: StepKind
    subject: str = ""
    detail: str = ""

    def __str__(self) -> str:
        return ":".join(p for p in (self.kind.value, self.subject, self.detail) if p)


@dataclass(frozen=True, order=True)
class Key:
    """The name of a captured value (journal `captured`, plan `<placeholders>`)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Coordinates:
    """Where a server's binary log stood when it was captured."""

    file: Key
    pos: Key
    gtid: Key

    @classmethod
    def named(cls, prefix: str) -> Coordinates:
        return cls(Key(f"{prefix}.file"), Key(f"{prefix}.pos"), Key(f"{prefix}.gtid"))


@dataclass(frozen=True)
class PreviousSource:
    """A server's replication source before the run (for an exact rollback)."""

    host: Key
    port: Key
    file: Key
    pos: Key
    using_gtid: Key  # MariaDB Using_Gtid (No/Slave_Pos/Current_Pos), MySQL Auto_Position (0/1)
    io_running: Key
    sql_running: Key

    @classmethod
    def of(cls, server: str) -> PreviousSource:
        p = f"{server}.previous_source"
        return cls(*(Key(f"{p}.{n}") for n in ("host", "port", "file", "pos", "using_gtid",
                                                 "io_running", "sql_running")))


RUN_ID = Key("run_id")
OLD_DATADIR = Key("recipient.old_datadir")
# the coordinates the replica starts from (captured under the read lock of its future source)
SOURCE = Coordinates.named("source")
DONOR = Coordinates.named("donor")
DONOR_BYTES = Key("donor.datadir_bytes")
PROBE_RATE = Key("probe.bytes_per_second")  # the copy transport, measured by preflight
COPY_BYTES = Key("copy.bytes")
COPY_SECONDS = Key("copy.seconds")
COPY_RATE = Key("copy.bytes_per_second")
VERIFY_TABLES = Key("verify.tables")
VERIFY_REPORT = Key("verify.report")
VERIFY_POSITION = Key("verify.position")
VERIFY_WAIT = Key("verify.wait_result")
VERIFY_PRIMARY_SUMS = Key("verify.primary_checksums")
VERIFY_REPLICA_SUMS = Key("verify.replica_checksums")
WRITE_DOWNTIME = Key("figures.write_downtime_seconds")
DOWNTIME_MINUS_COPY = Key("figures.downtime_minus_copy_seconds")
CLEANUP_REMOVED = Key("cleanup.removed")
WINDOW_ENDS_AT = Key("window.ends_at")  # epoch seconds (UTC) the run's maintenance window ends
DISCARD_ERRANT = Key("options.discard_errant")  # the operator chose to discard errant transactions


def fact_version(host: str) -> Key:
    return Key(f"facts.version.{host}")


def fact_gtid(host: str) -> Key:
    return Key(f"facts.gtid.{host}")


def fact_tools(host: str) -> Key:
    return Key(f"facts.tools.{host}")


def fact_down(host: str) -> Key:
    return Key(f"facts.down.{host}")


def server_up(host: str) -> Key:
    """Whether the server answered when the step looked (1/0)."""
    return Key(f"{host}.server_up")


def preflight_value(host: str, name: str) -> Key:
    return Key(f"preflight.{host}.{name}")
