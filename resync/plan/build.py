"""Runbook -> the ordered list of step objects. `plan` renders it, `run` executes the same list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from resync.actions.dialect import DEFAULT_VERSION, Dialect, ServerVersion, dialect_for
from resync.actions.types import Action, LockAlive, Sql
from resync.model.errors import BadInputError
from resync.model.keys import (
    DISCARD_ERRANT,
    DONOR,
    OLD_DATADIR,
    RUN_ID,
    SOURCE,
    StepId,
    StepKind,
    fact_down,
    fact_gtid,
    fact_tools,
    fact_version,
)
from resync.model.runbook import LoadedRunbook
from resync.plan.estimate import EbsEstimate, Estimate
from resync.steps.base import Step
from resync.steps.copy.commands import CONNECTORS, LISTENERS, CopySpec, excludes_for, pick
from resync.steps.copy.ebs.keys import EbsTargets
from resync.steps.copy.ebs.steps import (
    BuildVolume,
    CopyFromVolume,
    ReleaseVolume,
    SnapshotDonor,
    thaw,
)
from resync.steps.copy.ebs.swap import PrewarmData, SwapVolume
from resync.steps.copy.hot import hot_copy_steps
from resync.steps.copy.hot_commands import HOT_METHODS
from resync.steps.copy.pipeline import CopyDatadir
from resync.steps.datadir import MoveDatadirAside, old_datadir_path
from resync.steps.direction import errant_recheck
from resync.steps.direction.recheck import RecheckRecipient
from resync.steps.lb import DrainMemberships, RestoreMemberships
from resync.steps.locking import ReadLockAndCapture, Unlock
from resync.steps.maintenance import MaintenanceOff, MaintenanceOn
from resync.steps.preflight import Preflight
from resync.steps.replication import (
    PointReplica,
    ResetBinlogs,
    StopReplication,
    WaitReplicaHealthy,
    decide_tls,
    fact_tls,
)
from resync.steps.services import (
    PreflushDonor,
    ServerStart,
    StartService,
    StopService,
    start_read_only,
)
from resync.steps.verify import VerifyData
from resync.steps.window import with_window
from resync.steps.writable import MakeWritable

if TYPE_CHECKING:
    pass

Mode = Literal["gtid", "file_pos"]
ASSUMED_TOOLS = frozenset({"nc-openbsd", "bash-tcp", "ssh", "zstd", "lz4", "pv"})


@dataclass(frozen=True)
class PlanFacts:
    """What the SQL is rendered for: server versions per host, and where they came from."""

    versions: Mapping[str, ServerVersion]
    source: str  # "detected", "given", or "assumed"
    gtid_enabled: Mapping[str, bool] = field(default_factory=dict)
    tools: Mapping[str, frozenset[str]] = field(default_factory=dict)  # per host; empty: assumed
    estimate: Estimate | EbsEstimate | None = None
    down: frozenset[str] = frozenset()  # hosts whose server was found stopped (the recipient only)
    # not a fact but the operator's decision, kept with them so that resume rebuilds the same plan
    discard_errant: bool = False
    tls: Mapping[str, bool] = field(default_factory=dict)  # per host: its server offers TLS

    def tools_of(self, host: str) -> frozenset[str]:
        return self.tools.get(host, ASSUMED_TOOLS)


@dataclass(frozen=True)
class Plan:
    loaded: LoadedRunbook
    facts: PlanFacts
    mode: Mode
    steps: tuple[Step, ...]

    def dialect(self, host: str) -> Dialect:
        return dialect_for(self.facts.versions[host])

    def initial_values(self, run_id: str) -> dict[str, str | int]:
        """Values fixed when a run starts (captured into the journal before the first step).

        The server facts are among them: resume and rollback rebuild the same plan from the
        journal, while the servers may be down.
        """
        rb = self.loaded.model
        values: dict[str, str | int] = {
            str(RUN_ID): run_id,
            str(OLD_DATADIR): old_datadir_path(rb.hosts[rb.recipient].datadir, run_id)}
        for host, version in self.facts.versions.items():
            values[str(fact_version(host))] = str(version)
        for host, on in self.facts.gtid_enabled.items():
            values[str(fact_gtid(host))] = int(on)
        for host, tools in self.facts.tools.items():
            values[str(fact_tools(host))] = ",".join(sorted(tools))
        for host in self.facts.down:
            values[str(fact_down(host))] = 1
        for host, offered in self.facts.tls.items():
            values[str(fact_tls(host))] = int(offered)
        values[str(DISCARD_ERRANT)] = int(self.facts.discard_errant)
        return values

    def step(self, kind: StepKind) -> Step | None:
        """The first step of a kind (the plan's own objects: nothing parses their names)."""
        return next((s for s in self.steps if s.id.kind is kind), None)


def journaled_facts(loaded: LoadedRunbook, captured: Mapping[str, object]) -> PlanFacts:
    """The facts a run started with, read back from its journal."""
    rb = loaded.model
    try:
        versions = {h: ServerVersion.parse(str(captured[str(fact_version(h))]))
                    for h in (rb.donor, rb.recipient)}
    except (KeyError, ValueError) as exc:
        raise BadInputError(f"the journal lacks the server facts of the run: {exc}") from None
    gtid = {h: bool(captured[str(fact_gtid(h))]) for h in versions
            if str(fact_gtid(h)) in captured}
    tools = {h: frozenset(str(captured[str(fact_tools(h))]).split(",")) for h in versions
             if str(fact_tools(h)) in captured}
    down = frozenset(h for h in versions if captured.get(str(fact_down(h))))
    tls = {h: bool(captured[str(fact_tls(h))]) for h in versions if str(fact_tls(h)) in captured}
    return PlanFacts(versions, "detected", gtid, tools, down=down,
                     discard_errant=bool(captured.get(str(DISCARD_ERRANT))), tls=tls)


def copy_spec(loaded: LoadedRunbook, facts: PlanFacts) -> CopySpec:
    rb = loaded.model
    c = rb.copy_
    d_host, r_host = rb.hosts[rb.donor], rb.hosts[rb.recipient]
    donor_tools, recipient_tools = facts.tools_of(rb.donor), facts.tools_of(rb.recipient)
    needed = ([c.compress] if c.compress != "none" else []) + (["pv"] if c.rate_limit_mb_per_s else [])
    if c.method == "ebs":  # the recipient copies from a volume: neither stream tools nor pv
        needed = []
    for tool in needed:
        for host, tools in ((rb.donor, donor_tools), (rb.recipient, recipient_tools)):
            if tool not in tools:
                raise BadInputError(f"the copy settings need {tool} but {host} has none "
                                    f"(apt-get install {tool})")
    spec = CopySpec(
        donor=rb.donor, recipient=rb.recipient, donor_datadir=d_host.datadir,
        recipient_datadir=r_host.datadir.rstrip("/"), listen_address=r_host.address, port=c.port,
        owner=r_host.owner,
        excludes=excludes_for(facts.versions[rb.donor].flavor, c.exclude, c.keep_on_recipient),
        # a hot copy's stream rides the stream method's transport
        method="stream" if c.method == "mariabackup" or c.method == "xtrabackup" else c.method,
        compress=c.compress, compress_level=c.compress_level,
        compress_threads=c.compress_threads, rate_limit_mb_per_s=c.rate_limit_mb_per_s,
        digest=c.checksum, donor_address=d_host.address, listen_timeout=c.listen_timeout,
        keep_on_recipient=c.keep_on_recipient)
    if c.method == "ebs":
        return spec
    if c.method == "ssh":
        user = (r_host.ssh.user if r_host.ssh else None)
        target = c.ssh.target or (f"{user}@{r_host.address}" if user else r_host.address)
        return replace(spec, ssh_target=target, ssh_options=c.ssh.options,
                       ssh_cipher=c.ssh.cipher, ssh_sudo=c.ssh.sudo)
    return replace(spec,
                   listener=pick(recipient_tools, LISTENERS, rb.recipient, "receive"),
                   connector=pick(donor_tools, CONNECTORS, rb.donor, "send"))


def parse_version_overrides(text: str | None, loaded: LoadedRunbook) -> dict[str, ServerVersion]:
    """`donor=mariadb-10.11,recipient=mysql-8.4` (roles or host names) -> versions by host."""
    rb = loaded.model
    out: dict[str, ServerVersion] = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, version = item.partition("=")
        host = {"donor": rb.donor, "recipient": rb.recipient}.get(name.strip(), name.strip())
        if not sep or host not in rb.hosts:
            raise BadInputError(f"--server-version: '{item}' is not ROLE=VERSION with ROLE one of "
                                f"donor, recipient, {', '.join(rb.hosts)}")
        try:
            out[host] = ServerVersion.parse(version.strip())
            dialect_for(out[host])
        except ValueError as exc:
            raise BadInputError(f"--server-version: {exc}") from None
    return out


def assumed_facts(loaded: LoadedRunbook, given: Mapping[str, ServerVersion]) -> PlanFacts:
    rb = loaded.model
    versions = {h: given.get(h, DEFAULT_VERSION) for h in (rb.donor, rb.recipient)}
    return PlanFacts(versions, "given" if given else "assumed")


def resolve_mode(loaded: LoadedRunbook, facts: PlanFacts) -> Mode:
    setting = loaded.model.replication.mode
    if setting != "auto":
        return setting
    flavors = {v.flavor for v in facts.versions.values()}
    if flavors == {"mariadb"}:
        return "gtid"  # MariaDB GTIDs are always on
    if facts.gtid_enabled and all(facts.gtid_enabled.values()):
        return "gtid"
    return "file_pos"


def build_plan(loaded: LoadedRunbook, facts: PlanFacts) -> Plan:
    rb = loaded.model
    donor, recipient = rb.donor, rb.recipient
    primary, replica = rb.primary_after, rb.replica_after
    d_host = rb.hosts[donor]
    dialects = {h: dialect_for(v) for h, v in facts.versions.items()}
    mode = resolve_mode(loaded, facts)
    timeout = rb.locks.lock_wait_timeout
    rebuild_primary = primary == recipient  # the seed's scenario: the old primary is rebuilt

    spec = copy_spec(loaded, facts)
    steps: list[Step] = [Preflight(loaded, spec, facts.down, facts.versions,
                                   discard_errant=facts.discard_errant,
                                   gtid_enabled=facts.gtid_enabled)]
    page = rb.maintenance
    if page is not None:  # the first change of the run; its undo ends a rollback
        steps.append(MaintenanceOn(page))
    # members leave their load balancers before any lock or stop: a drain can take minutes
    members = [h for h in (donor, recipient) if rb.hosts[h].lb]
    steps += [DrainMemberships(h, rb.hosts[h]) for h in members]
    # the point of no return: once the recipient is stopped (it cannot change any more) and
    # before its datadir goes aside, the recipient is checked again for transactions the donor
    # lacks (the donor serves on: it can only gain transactions)
    recheck = errant_recheck(loaded, facts.versions, facts.discard_errant, donor_up=True,
                             down=facts.down, gtid_enabled=facts.gtid_enabled)
    # a donor found stopped when its lock must be taken again (a run killed while stopping it)
    # is started read-only first: locked and captured again, it is then stopped again
    restart_donor = start_read_only((ServerStart(donor, d_host.db_service, d_host.datadir, "donor",
                                                 dialects[donor]),))
    stop_replication: list[Step] = [
        StopReplication(donor, dialects[donor], "donor, replica of the old primary",
                        user=rb.replication.user, password_env=rb.replication.password_env,
                        tls=decide_tls(rb.replication, facts.tls.get(recipient)).tls)
    ] if rebuild_primary else []
    if rb.copy_.method == "ebs":
        steps += ebs_copy_steps(loaded, facts, spec, recheck, restart_donor, stop_replication)
    elif rb.copy_.method in HOT_METHODS:  # the donor serves throughout (resync.steps.copy.hot)
        steps += [*stop_replication, *hot_copy_steps(loaded, facts, spec, recheck, restart_donor)]
    else:
        steps += cold_copy_steps(loaded, facts, spec, recheck, restart_donor, stop_replication)
    lock_needed: tuple[Action, ...] = ()
    if rebuild_primary:
        lock = ReadLockAndCapture(primary, dialects[primary], "source", timeout,
                                  "the replica will start from here",
                                  StepId(StepKind.UNLOCK, primary), recapture=False)
        lock_needed = (LockAlive(primary, lock.session),)
        steps += [ResetBinlogs(primary, dialects[primary],
                               gtid_from=DONOR if mode == "gtid" else None), lock]
    p_host = rb.hosts[primary]
    steps += [
        PointReplica(replica, dialects[replica], source_address=p_host.address,
                     source_port=p_host.mysql.port, user=rb.replication.user,
                     password_env=rb.replication.password_env, mode=mode,
                     tls=decide_tls(rb.replication, facts.tls.get(primary)), start_at=SOURCE,
                     requires=lock_needed, has_good_data=replica == donor,
                     source=(primary, dialects[primary])),
        WaitReplicaHealthy(replica, dialects[replica], rb.replication.healthy_timeout),
    ]
    if rebuild_primary:
        steps.append(Unlock(primary, lock.session))
    steps.append(MakeWritable(primary, replica, dialects[primary], dialects[replica]))
    steps += [RestoreMemberships(h, rb.hosts[h]) for h in members]
    if page is not None:  # the application is served again
        steps.append(MaintenanceOff(page))
    # out of the downtime: chunked checksums at one position at a time, no long lock; a
    # difference fails the run (the old datadir is still kept)
    steps.append(VerifyData(primary, replica, dialects[primary], dialects[replica], mode, timeout))
    if rb.copy_.method == "ebs":  # off the application's path: the temporary volume goes last
        steps.append(ReleaseVolume(recipient, rb.copy_.ebs, EbsTargets.of(rb.copy_.ebs)))
    return Plan(loaded, facts, mode, tuple(with_window(steps, loaded)))


def cold_copy_steps(loaded: LoadedRunbook, facts: PlanFacts, spec: CopySpec,
                    recheck: tuple[Action, ...], restart_donor: tuple[Action, ...],
                    stop_replication: list[Step]) -> list[Step]:
    """Only the donor inside the lock window: the recipient is stopped (checked again for
    errant transactions) and its datadir moved aside first, and the donor's dirty pages flushed
    while it still serves; then lock, stop, copy, start both."""
    rb = loaded.model
    donor, recipient = rb.donor, rb.recipient
    d_host, r_host = rb.hosts[donor], rb.hosts[recipient]
    d_dialect, r_dialect = dialect_for(facts.versions[donor]), dialect_for(facts.versions[recipient])
    stop_donor = StepId(StepKind.STOP_SERVICE, donor)
    if rb.primary_after == recipient:
        lock = ReadLockAndCapture(donor, d_dialect, "donor", rb.locks.lock_wait_timeout,
                                  "stop writes before shutdown", stop_donor, recapture=True,
                                  start_if_down=restart_donor)
    else:  # the copy is exactly the donor's state at these coordinates: the replica starts here
        lock = ReadLockAndCapture(donor, d_dialect, "source", rb.locks.lock_wait_timeout,
                                  "the replica will start from here", stop_donor, recapture=True,
                                  start_if_down=restart_donor)
    return [
        StopService(recipient, r_host.db_service, r_host.datadir, "recipient"),
        MoveDatadirAside(recipient, r_host.datadir, r_host.owner, gate=recheck),
        *stop_replication,
        PreflushDonor(donor, d_dialect),
        lock,
        # read-only under the lock, before the stop: the shutdown ends the lock's session, and
        # a commit waiting behind the lock would otherwise land in the copy after its coordinates
        # (found by bench/downtime_bench.py: the replica then stops on a duplicate)
        StopService(donor, d_host.db_service, d_host.datadir, "donor",
                    requires=(LockAlive(donor, lock.session),
                              *(Sql(donor, s.sql, session=lock.session)
                                for s in d_dialect.set_read_only(True)))),
        CopyDatadir(spec, stall_timeout=rb.copy_.stall_timeout,
                    listen_timeout=rb.copy_.listen_timeout),
        # both in the write-downtime: started together, in the time of the slower one
        StartService(ServerStart(recipient, r_host.db_service, r_host.datadir, "recipient",
                                 r_dialect),
                     ServerStart(donor, d_host.db_service, d_host.datadir, "donor", d_dialect))]


def ebs_copy_steps(loaded: LoadedRunbook, facts: PlanFacts, spec: CopySpec,
                   recheck: tuple[Action, ...], restart_donor: tuple[Action, ...],
                   stop_replication: list[Step]) -> list[Step]:
    """The recipient stopped and checked again for errant transactions first (a refusal leaves
    the donor as it was); then the donor locked only while its snapshot starts: it keeps
    running. Mode copy: the datadir moved aside, the volume made and copied from; mode swap: the
    volume made and swapped in (pre-warmed if asked) before the recipient starts."""
    rb = loaded.model
    donor, recipient = rb.donor, rb.recipient
    r_host = rb.hosts[recipient]
    d_dialect, r_dialect = dialect_for(facts.versions[donor]), dialect_for(facts.versions[recipient])
    settings, targets = rb.copy_.ebs, EbsTargets.of(rb.copy_.ebs)
    rebuild_primary = rb.primary_after == recipient
    snapshot = StepId(StepKind.EBS_SNAPSHOT, donor)
    # the snapshot is the donor's state at these coordinates; a filesystem a killed attempt left
    # frozen is thawed before the lock (FLUSH TABLES would wait on it)
    lock = ReadLockAndCapture(donor, d_dialect, "donor" if rebuild_primary else "source",
                              rb.locks.lock_wait_timeout, "the snapshot's coordinates", snapshot,
                              recapture=True, start_if_down=restart_donor,
                              before=(thaw(donor),) if settings.freeze else ())
    copy = settings.mode == "copy"
    steps: list[Step] = [
        StopService(recipient, r_host.db_service, r_host.datadir, "recipient"),
        MoveDatadirAside(recipient, r_host.datadir, r_host.owner, gate=recheck) if copy
        else RecheckRecipient(recipient, recheck),
        *stop_replication,
        lock,
        SnapshotDonor(donor, recipient, d_dialect, settings, targets, rb.name, lock.session,
                      donor_becomes_replica=rebuild_primary),
        BuildVolume(recipient, settings, targets, rb.name, donor)]
    if copy:
        steps.append(CopyFromVolume(spec, rb.copy_.stall_timeout))
    else:  # the new volume becomes the data volume: pre-warmed (if asked) before the start
        steps += [SwapVolume(spec, settings, targets),
                  *([PrewarmData(spec, rb.copy_.stall_timeout)] if settings.prewarm else [])]
    return [*steps,
            StartService(ServerStart(recipient, r_host.db_service, r_host.datadir, "recipient",
                                     r_dialect))]
