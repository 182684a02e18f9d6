"""The hot copy (`copy.method: mariabackup` / `xtrabackup`): the donor serves throughout.

The donor's backup tool streams its datadir host to host into the recipient's fresh datadir,
which is prepared there and started read-only (`hot_commands` has the commands). The donor is
never stopped and never read-locked by resync for the copy: the tool blocks commits only while it
reads the binary log position (MariaDB BACKUP STAGE BLOCK_COMMIT; measured from the tool's own
log into `hot.write_lock_seconds`, and writes to non-transactional tables, which wait longer,
into `hot.nontransactional_lock_seconds`). The backup's binlog coordinates (file, position, GTID)
are checked against the donor's binary log before anything replicates from them.

Rebuilding a replica (primary_after = donor): the recipient replicates from exactly the backup's
point (MariaDB: gtid_slave_pos = the backup's GTID; file/position mode: its file and position) and
catches up with what the donor took meanwhile. The write-downtime is the tool's commit lock.

The seed's scenario (primary_after = recipient), where the donor's serving writes would otherwise
be lost when the copy becomes the primary. The choice made here: the donor stays writable during
the whole copy; then the recipient, started from the backup, replicates from the donor as a
temporary replica (`CatchUp`) until it has caught up; only then is the donor frozen
(`FreezeDonor`: read_only, which refuses the application's commits from that instant, then
FLUSH TABLES WITH READ LOCK against every other writer, and its final coordinates captured under
it), the recipient waits until it has applied exactly those coordinates and its replication is
cut (`SwitchOver`), and the plan goes on as for a cold copy: the recipient becomes the new
primary carrying on the donor's GTID history, the donor (read-only since the freeze, so every
write it acknowledged is on the recipient) becomes its replica. An acknowledged write is never
lost: before the freeze it is in the donor's binary log, which the recipient applies up to the
freeze's coordinates; after it, the donor acknowledges none. The write-downtime runs from the
freeze to the new primary's MakeWritable (a replica in sync: about a second), not the copy.
(Setting the donor read-only when the backup starts, as the EBS method does at its snapshot,
would make the whole copy and prepare write-downtime.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from resync.actions.conditions import Answers, AtLeast, Equals, IsSet, Same
from resync.actions.dialect import Dialect, ServerVersion, dialect_for
from resync.actions.types import (
    Action,
    Assert,
    Capture,
    Captured,
    CaptureRows,
    Composite,
    Leaf,
    LockAlive,
    Probe,
    Ref,
    ReleaseLock,
    Shell,
    Sql,
    When,
)
from resync.model.errors import ResyncError
from resync.model.keys import (
    COPY_BYTES,
    COPY_RATE,
    COPY_SECONDS,
    DONOR,
    SOURCE,
    Coordinates,
    Key,
    StepId,
    StepKind,
    preflight_value,
    server_up,
)
from resync.model.runbook import HotCopySettings, LoadedRunbook
from resync.run.executor import CompositeRun
from resync.steps.base import Step
from resync.steps.copy.commands import (
    CopySpec,
    clear_partial,
    copy_notes,
    restore_kept,
    stop_leftovers,
)
from resync.steps.copy.hot_commands import (
    ACCOUNT_HASH,
    BACKUP,
    BACKUP_HOST,
    BACKUP_USER,
    BINLOG_GTID,
    BINLOG_INFO,
    CAUGHT_UP,
    DONOR_SOCKET,
    GRANTS_SQL,
    GTID_CONTAINED,
    LOCK_LINE,
    LOCK_LOG,
    LOCK_REPORT,
    NATIVE_PASSWORD_SQL,
    NONTRANSACTIONAL_LOCK_SECONDS,
    SWITCH_LOCK_SECONDS,
    TOOLS,
    WRITE_LOCK_SECONDS,
    BackupTool,
    ParseBinlogInfo,
    SameGtidPosition,
    backup_account_possible,
    backup_ends,
    donor_tool_fits,
    finish_datadir,
    make_credentials,
    prepare,
    read_binlog_info,
    recipient_tool_fits,
    remove_credentials,
    tool_probe,
    tool_version,
    wire_report,
)
from resync.steps.copy.pipeline import RECEIVED_STREAM, SENT_STREAM, StreamEnds, run_ends
from resync.steps.datadir import MoveDatadirAside
from resync.steps.locking import capture_coordinates, lock_session, read_lock
from resync.steps.replication import PointReplica, TLSDecision, WaitReplicaHealthy, decide_tls
from resync.steps.services import (
    ServerStart,
    StartService,
    StopService,
    answers_probe,
    require_stopped,
)

if TYPE_CHECKING:
    from resync.plan.build import PlanFacts
    from resync.steps.preflight.checks import Check

class BackupStream(Composite):
    """The one-time account and its defaults file, the two ends, the comparison of what they saw;
    the account and the file go in a finally path (the stream failed or not)."""

    def __init__(self, spec: CopySpec, dialect: Dialect, tool: BackupTool, settings: HotCopySettings,
                 *, stall_timeout: float, listen_timeout: float) -> None:
        self.spec, self.host = spec, spec.donor
        self.title = (f"{tool.name} --backup on {spec.donor} -> relay -> {tool.extractor} -x into "
                      f"{spec.recipient}:{spec.recipient_datadir}")
        donor = spec.donor
        self.setup: tuple[Leaf, ...] = (
            make_credentials(donor, ACCOUNT_HASH),
            *(Sql(donor, s.sql, s.params) for s in
              dialect.create_backup_account(BACKUP_USER, BACKUP_HOST, Ref(ACCOUNT_HASH))))
        prelude, recv, send = backup_ends(spec, tool, DONOR_SOCKET, settings.parallel)
        self.ends = StreamEnds(spec, recv, send, listen_timeout=listen_timeout,
                               stall_timeout=stall_timeout, title=self.title, prelude=prelude)
        self.check = Assert(Same(SENT_STREAM, RECEIVED_STREAM),
                            "copy integrity check failed: the two ends saw different streams; "
                            "the recipient will not be started, the old datadir is kept",
                            spec.recipient)
        drop = dialect.drop_backup_account(BACKUP_USER, BACKUP_HOST)
        self.teardown: tuple[Leaf, ...] = (Sql(donor, drop.sql, drop.params),
                                           remove_credentials(donor))

    def parts(self) -> tuple[Leaf, ...]:
        return (*self.setup, *self.ends.parts(), self.check, *self.teardown)

    def execute(self, run: CompositeRun) -> None:
        first_teardown = len(self.setup) + len(self.ends.parts()) + 1
        done = False
        try:
            for index in range(len(self.setup)):
                run.do(index)
            ends = run_ends(CompositeRun(run.executor, run.aid, self.ends, len(self.setup)),
                            self.ends)
            sent_out, recv_out = (ends.sent.stdout + ends.sent.stderr,
                                  ends.received.stdout + ends.received.stderr
                                  if ends.received else "")
            sent, received = wire_report(sent_out, True), wire_report(recv_out, False)
            run.capture(SENT_STREAM, sent or None)
            run.capture(RECEIVED_STREAM, received or None)
            lock = LOCK_REPORT.search(sent_out)
            for key, value in ((WRITE_LOCK_SECONDS, lock.group(1) if lock else "-"),
                               (NONTRANSACTIONAL_LOCK_SECONDS, lock.group(2) if lock else "-")):
                run.capture(key, None if value == "-" else float(value))
            run.capture(LOCK_LOG, "\n".join(LOCK_LINE.findall(sent_out)) or None)
            if not (sent and received):
                raise ResyncError("the backup stream ended but an end did not report its byte "
                                  "count and checksum")
            run.do(first_teardown - 1)
            nbytes = int(sent.split()[0].removeprefix("wire="))
            run.progress(nbytes, nbytes, "copy")
            run.capture(COPY_BYTES, nbytes)
            run.capture(COPY_SECONDS, round(ends.seconds, 3))
            run.capture(COPY_RATE, round(nbytes / ends.seconds) if ends.seconds else None)
            done = True
        finally:
            failed: ResyncError | None = None
            for index in range(first_teardown, len(self.parts())):
                try:
                    run.do(index)
                except ResyncError as exc:
                    failed = failed or exc
            if failed is not None and done:  # else the failure that got here is the one to say
                raise failed


class HotCopy(Step):
    """Stream the running donor's backup into the recipient's empty datadir, prepare it, give it
    to its owner, read and check the backup's coordinates."""

    destructive = True

    def __init__(self, spec: CopySpec, dialect: Dialect, tool: BackupTool,
                 settings: HotCopySettings, at: Coordinates, *, gtid: bool,
                 stall_timeout: float, listen_timeout: float) -> None:
        self.spec, self.dialect, self.tool, self.settings, self.at = spec, dialect, tool, settings, at
        self.gtid = gtid
        self.stream = BackupStream(spec, dialect, tool, settings, stall_timeout=stall_timeout,
                                   listen_timeout=listen_timeout)
        self.id = StepId(StepKind.COPY, f"{spec.donor}->{spec.recipient}", tool.name)
        self.title = (f"Copy {spec.donor}'s datadir hot with {tool.name} (it keeps serving), "
                      f"prepare it on {spec.recipient}")
        self.hosts = (spec.donor, spec.recipient)
        self.summary = (f"{tool.name}: {spec.donor}:{spec.donor_datadir} (serving) → "
                        f"{spec.recipient}:{spec.recipient_datadir} through the relay (port "
                        f"{spec.port}, plaintext, only {spec.donor} with the run's token), "
                        f"prepared on {spec.recipient}; {spec.checked()} on both ends")
        self.notes = copy_notes(spec)
        self.why = (f"{tool.name} takes {dialect.backup_lock().sql} only while it reads the "
                    f"binary log position (timed: {WRITE_LOCK_SECONDS}); the tool logs in with a "
                    f"one-time account '{BACKUP_USER}'@'{BACKUP_HOST}' whose password never leaves "
                    f"{spec.donor}; the stream's byte counts and {spec.digest} are compared; "
                    f"the coordinates are read into {at.file} / {at.pos} / {at.gtid} and checked "
                    "against the donor's binary log")

    def plan(self) -> tuple[Action, ...]:
        s, d, at = self.spec, self.dialect, self.at
        events = d.binlog_events_at(Ref(at.file), Ref(at.pos))
        return (stop_leftovers(s.donor), stop_leftovers(s.recipient),  # of a killed attempt
                *require_stopped(s.recipient, s.recipient_datadir, "the copy needs it stopped"),
                clear_partial(s),
                Capture(s.donor, "SELECT @@GLOBAL.socket AS socket",
                        columns=(("socket", DONOR_SOCKET),),
                        missing="did not say where its socket is (the tool connects there)"),
                self.stream,
                prepare(s, self.tool, self.settings.prepare_memory_mb),
                finish_datadir(s),
                restore_kept(s),
                read_binlog_info(s, self.tool, BINLOG_INFO),
                ParseBinlogInfo(host=s.recipient, source=BINLOG_INFO, at=at),
                # the donor still has that coordinate, at an event boundary: replication can start
                Sql(s.donor, events.sql, events.params),
                *self._gtid_check())

    def _gtid_check(self) -> tuple[Leaf, ...]:
        if not self.gtid:
            return ()
        s, d, at = self.spec, self.dialect, self.at
        need = Assert(IsSet(at.gtid), "the backup recorded no GTID position: the replica cannot "
                      "start by GTID (set replication.mode: file_pos)", s.recipient)
        at_pos = d.gtid_at_binlog_position(Ref(at.file), Ref(at.pos))
        if at_pos is not None:  # MariaDB: the binary log's own GTID position at that coordinate
            return (need, Capture(s.donor, at_pos.sql, at_pos.params,
                                  columns=(("gtid", BINLOG_GTID),)),
                    Assert(SameGtidPosition(at.gtid, BINLOG_GTID),
                           "the backup's GTID position is not the donor's binary log's at the "
                           "backup's file and position: refusing to start replication there",
                           s.donor))
        contained = d.gtid_contained(Ref(at.gtid))
        return (need, Capture(s.donor, contained.sql, contained.params,
                              columns=(("contained", GTID_CONTAINED),)),
                Assert(Equals(GTID_CONTAINED, 1), "the backup's GTID set is not the donor's: "
                       "refusing to start replication from it", s.donor))

    def undo_plan(self) -> tuple[Action, ...]:
        # what a run killed during the stream may have left on the donor
        drop = self.dialect.drop_backup_account(BACKUP_USER, BACKUP_HOST)
        return (Sql(self.spec.donor, drop.sql, drop.params), remove_credentials(self.spec.donor))


class CatchUp(PointReplica):
    """The seed's scenario: the recipient replicates from the donor from the backup's point."""

    def __init__(self, recipient: str, dialect: Dialect, donor: str, *, address: str, port: int,
                 user: str, password_env: str, gtid: bool, tls: TLSDecision,
                 donor_dialect: Dialect | None = None) -> None:
        super().__init__(recipient, dialect, source_address=address, source_port=port, user=user,
                         password_env=password_env, mode="gtid" if gtid else "file_pos", tls=tls,
                         start_at=BACKUP,
                         source=(donor, donor_dialect) if donor_dialect else None)
        self.id = StepId(StepKind.POINT_REPLICA, recipient, "catch-up")
        self.title = (f"Let {recipient} catch up: replicate from {donor} (for now) from the "
                      "backup's point")
        self.why = (f"{donor} served on during the copy: what it took since is in its binary "
                    f"log after {BACKUP.file} / {BACKUP.pos} / {BACKUP.gtid}")


class CaughtUp(WaitReplicaHealthy):
    def __init__(self, recipient: str, dialect: Dialect, timeout: float, donor: str) -> None:
        super().__init__(recipient, dialect, timeout)
        self.id = StepId(StepKind.WAIT_REPLICA, recipient, "catch-up")
        self.title = f"Wait until {recipient} replicates and has caught up with {donor}"


class FreezeDonor(Step):
    """The seed's scenario, the start of the write-downtime: the donor refuses the application's
    commits (read_only), then every other writer (FLUSH TABLES WITH READ LOCK, held), and its
    last coordinates are captured. Its kind is read-lock: the write-downtime is timed from here."""

    def __init__(self, donor: str, dialect: Dialect, timeout: int, released_by: StepId,
                 start_if_down: tuple[Action, ...]) -> None:
        self.donor, self.dialect, self.timeout = donor, dialect, timeout
        self.start_if_down, self.released_by = start_if_down, released_by
        self.session = lock_session(donor, "donor")
        self.holds_session = self.session
        self.id = StepId(StepKind.READ_LOCK, donor, "donor")
        self.title = f"Freeze {donor}: read-only and read-locked, its last coordinates recorded"
        self.hosts = (donor,)
        self.why = ("the recipient has caught up: from here the donor acknowledges no write, and "
                    f"the recipient takes over at exactly {DONOR.file} / {DONOR.pos} / "
                    f"{DONOR.gtid}; the donor stays read-only (it becomes the replica)")

    def plan(self) -> tuple[Action, ...]:
        host, d = self.donor, self.dialect
        up = server_up(host)
        return (Probe(answers_probe(host), Answers(), up),
                When(Equals(up, 0), self.start_if_down, otherwise_note="it runs: nothing to start"),
                *(Sql(host, s.sql) for s in d.set_read_only(True)),
                read_lock(host, self.session, self.timeout),
                *capture_coordinates(host, d, DONOR, self.session))

    def undo_plan(self) -> tuple[Action, ...]:
        # the donor served the application before the run: it does again
        return (ReleaseLock(self.donor, self.session),
                *(Sql(self.donor, s.sql) for s in self.dialect.set_read_only(False)))


class SwitchOver(Step):
    """The seed's scenario: the recipient has applied exactly the frozen donor's coordinates; its
    replication from the donor ends; the donor's lock goes (it stays read-only)."""

    def __init__(self, recipient: str, donor: str, dialect: Dialect, *, gtid: bool,
                 session: str, timeout: int) -> None:
        self.recipient, self.donor, self.dialect, self.gtid = recipient, donor, dialect, gtid
        self.session, self.timeout = session, timeout
        self.id = StepId(StepKind.STOP_REPLICATION, recipient, "caught-up")
        self.title = f"Stop {recipient}'s replication from {donor} once it has all of {donor}"
        self.hosts = (recipient, donor)
        self.why = (f"{recipient} holds every write {donor} acknowledged; it becomes the primary "
                    "next (its binary logs reset, carrying on the donor's GTID history)")
        self.no_undo = "its datadir (and replication) go back with the recipient's old datadir"

    def plan(self) -> tuple[Action, ...]:
        d, r = self.dialect, self.recipient
        wait = (d.wait_for_gtid(Ref(DONOR.gtid), self.timeout) if self.gtid
                else d.wait_for_file_pos(Ref(DONOR.file), Ref(DONOR.pos), self.timeout))
        return (LockAlive(self.donor, self.session),
                Capture(r, wait.sql, wait.params, columns=(("reached", CAUGHT_UP),)),
                Assert(AtLeast(CAUGHT_UP, 0), f"{r} did not reach {self.donor}'s last "
                       f"coordinates within {self.timeout}s: it cannot take over", r),
                Sql(r, d.stop_replica().sql), Sql(r, d.reset_replica_all().sql),
                ReleaseLock(self.donor, self.session, into=SWITCH_LOCK_SECONDS))


def hot_copy_steps(loaded: LoadedRunbook, facts: PlanFacts, spec: CopySpec,
                   recheck: tuple[Action, ...], restart_donor: tuple[Action, ...]) -> list[Step]:
    """From the recipient's stop to its start read-only (and, in the seed's scenario, to its
    replication from the donor cut at the donor's frozen coordinates). The donor never stops."""
    from resync.plan.build import resolve_mode  # build imports this module

    rb = loaded.model
    donor, recipient = rb.donor, rb.recipient
    d_host, r_host = rb.hosts[donor], rb.hosts[recipient]
    dialects: Mapping[str, Dialect] = {h: dialect_for(facts.versions[h]) for h in (donor, recipient)}
    gtid = resolve_mode(loaded, facts) == "gtid"
    rebuild_primary = rb.primary_after == recipient
    copy = HotCopy(spec, dialects[donor], TOOLS[rb.copy_.method], rb.copy_.hot,
                   BACKUP if rebuild_primary else SOURCE, gtid=gtid,
                   stall_timeout=rb.copy_.stall_timeout, listen_timeout=rb.copy_.listen_timeout)
    steps: list[Step] = [
        StopService(recipient, r_host.db_service, r_host.datadir, "recipient"),
        MoveDatadirAside(recipient, r_host.datadir, r_host.owner, gate=recheck),
        copy,
        StartService(ServerStart(recipient, r_host.db_service, r_host.datadir, "recipient",
                                 dialects[recipient]))]
    if not rebuild_primary:
        return steps
    repl = rb.replication
    switch = StepId(StepKind.STOP_REPLICATION, recipient, "caught-up")
    freeze = FreezeDonor(donor, dialects[donor], rb.locks.lock_wait_timeout, switch, restart_donor)
    return [*steps,
            CatchUp(recipient, dialects[recipient], donor, address=d_host.address,
                    port=d_host.mysql.port, user=repl.user, password_env=repl.password_env,
                    gtid=gtid, tls=decide_tls(repl, facts.tls.get(donor)),
                    donor_dialect=dialects[donor]),
            CaughtUp(recipient, dialects[recipient], repl.healthy_timeout, donor),
            freeze,
            SwitchOver(recipient, donor, dialects[recipient], gtid=gtid, session=freeze.session,
                       timeout=max(1, int(repl.healthy_timeout)))]



def hot_copy_checks(loaded: LoadedRunbook, spec: CopySpec) -> list[Check]:
    """The hot copy's preflight checks (read-only): the tool on both hosts, of the donor server's
    release; the donor's user able to make the tool's one-time account."""
    # imported here: the preflight package imports this module (its checklist, these checks)
    from resync.steps.preflight.checks import Check
    from resync.steps.preflight.verdicts import server_version

    rb = loaded.model
    tool = TOOLS[rb.copy_.method]
    donor, recipient, user = spec.donor, spec.recipient, rb.hosts[spec.donor].mysql.user
    d_probe, r_probe = preflight_value(donor, "backup_tool"), preflight_value(recipient,
                                                                                 "backup_tool")
    grants, native = preflight_value(donor, "backup_grants"), preflight_value(donor,
                                                                               "native_password")

    def probed(c: Captured, key: Key) -> str:
        return str(c.get(str(key)) or "")

    def donor_tool(c: Captured) -> str:
        return donor_tool_fits(probed(c, d_probe), tool, donor, server_version(c, donor, {}))

    def recipient_tool(c: Captured) -> str:
        try:
            made_by: ServerVersion | None = tool_version(probed(c, d_probe), tool, donor)
        except ResyncError:
            made_by = None
        return recipient_tool_fits(probed(c, r_probe), tool, recipient, made_by)

    def account(c: Captured) -> str:
        needed = dialect_for(server_version(c, donor, {})).backup_privileges()
        return backup_account_possible(c.get(str(grants)), c.get(str(native)), user, needed)

    return [
        Check(f"{donor}: {tool.name}", f"{tool.name} (and openssl) installed, built for the "
              "server's release", (Shell.line(donor, tool_probe(tool, tool.name, "openssl"),
                                              into=d_probe),), donor_tool),
        Check(f"{recipient}: {tool.name}", f"{tool.name} and {tool.extractor} installed, the "
              f"release of {donor}'s (it prepares what that one made)",
              (Shell.line(recipient, tool_probe(tool, tool.name, tool.extractor), into=r_probe),),
              recipient_tool),
        Check(f"{donor}: backup account", f"'{user}' may make the one-time account "
              f"'{BACKUP_USER}'@'{BACKUP_HOST}' (CREATE USER; the tool's privileges WITH GRANT "
              "OPTION; mysql_native_password active)",
              (CaptureRows(donor, GRANTS_SQL, into=grants),
               Capture(donor, NATIVE_PASSWORD_SQL, columns=(("status", native),))), account),
    ]
