"""Preflight: every check that must pass before anything is changed (`resync check` runs it alone).

Each check is a list of read-only leaf actions (queries, commands: journaled like any other)
and a verdict over what they captured. All checks run, so one refusal lists every problem.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from resync.actions.dialect import DEFAULT_VERSION, ServerVersion
from resync.actions.quoting import argv, q
from resync.actions.types import (
    Action,
    Capture,
    Captured,
    CaptureRows,
    Composite,
    Leaf,
    Login,
    Shell,
    Template,
)
from resync.model.errors import PreflightFailed, ResyncError
from resync.model.keys import DONOR_BYTES, Key, StepId, StepKind, preflight_value
from resync.model.runbook import LoadedRunbook
from resync.plan.estimate import PROBE_BYTES, Estimate
from resync.run.executor import CompositeRun
from resync.steps.base import Step
from resync.steps.copy.commands import CopySpec, parent_dir, ssh_reachability
from resync.steps.copy.pipeline import PROBE_RATE, BandwidthProbe
from resync.steps.direction import NotCaptured, errant_gate
from resync.steps.layout import (
    ENCRYPTION_VARIABLES,
    KEY_PLUGINS_SQL,
    LAYOUT_VARIABLES,
    LOG_VARIABLES,
    files_inside,
    global_variables_sql,
    innodb_dirs_inside,
    layout_of,
    links_command,
    logs_placement,
    no_encryption,
    own_files,
    settings_match,
    tablespace_files_sql,
)

DISK_FACTOR = 1.1
DONOR_TOOLS = ("tar", "nc", "openssl", "du")
RECIPIENT_TOOLS = ("tar", "nc", "openssl", "ss", "du", "df", "find")
RESULTS = Key("preflight.results")  # JSON [[name, ok, detail], ...]
SERVER_FACTS = ("server_id", "log_bin", "datadir", "version", "comment")


class Skip(NotCaptured):
    """A verdict that cannot be given because an earlier check failed."""


Judge = Callable[[Captured], str]


@dataclass(frozen=True)
class Verdict(Leaf):
    """The decision of one check over what its actions captured (a journal record of its own)."""

    name: str
    criterion: str
    host: str = "-"
    kind = "check"

    def template(self) -> Template:
        return (f"check {self.name}: {self.criterion}",)


@dataclass(frozen=True)
class Check:
    name: str
    criterion: str
    actions: tuple[Leaf | Composite, ...]
    judge: Judge
    only_if_all_passed: bool = False  # e.g. the bandwidth probe: it needs the copy port free

    def verdict(self) -> Verdict:
        return Verdict(self.name, self.criterion)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


class Checks(Composite):
    def __init__(self, host: str, checks: tuple[Check, ...]) -> None:
        self.host, self.checks = host, checks
        self.title = f"{len(checks)} preflight checks (read-only)"

    def parts(self) -> tuple[Leaf, ...]:
        out: list[Leaf] = []
        for check in self.checks:
            for action in check.actions:
                out += action.parts() if isinstance(action, Composite) else [action]
            out.append(check.verdict())
        return tuple(out)

    def execute(self, run: CompositeRun) -> None:
        results: list[CheckResult] = []
        index = 0
        for check in self.checks:
            started = time.monotonic()
            failure: str | None = None
            if check.only_if_all_passed and not all(r.ok for r in results):
                failure = "not run: an earlier check failed"
                index += sum(len(a.parts()) if isinstance(a, Composite) else 1
                             for a in check.actions)
                results.append(CheckResult(check.name, False, failure))
                run.record(index, False, started, failure)
                index += 1
                continue
            for action in check.actions:
                width = len(action.parts()) if isinstance(action, Composite) else 1
                if failure is None:
                    try:
                        if isinstance(action, Composite):
                            action.execute(CompositeRun(run.executor, run.aid, action, index))
                        else:
                            run.do(index)
                    except ResyncError as exc:
                        failure = str(exc)
                index += width
            result = _judge(check, run.captured, failure)
            results.append(result)
            run.record(index, result.ok, started, result.detail)
            index += 1
        run.capture(RESULTS, json.dumps([[r.name, r.ok, r.detail] for r in results]))
        failures = [f"{r.name}: {r.detail}" for r in results if not r.ok]
        if failures:
            raise PreflightFailed(failures)


def _judge(check: Check, captured: Captured, failure: str | None) -> CheckResult:
    if failure is not None:
        return CheckResult(check.name, False, failure)
    try:
        return CheckResult(check.name, True, check.judge(captured))
    except NotCaptured as exc:
        return CheckResult(check.name, False, f"not checked: {exc}")
    except (ResyncError, ValueError) as exc:
        return CheckResult(check.name, False, str(exc))


def results_of(captured: Captured) -> list[CheckResult]:
    raw = captured.get(str(RESULTS))
    return [CheckResult(str(n), bool(ok), str(d)) for n, ok, d in json.loads(str(raw))] if raw else []


class Preflight(Step):
    why = "read-only: refuses the run (exit 3) before anything is changed; it cannot be skipped"

    def __init__(self, loaded: LoadedRunbook, spec: CopySpec, down: frozenset[str] = frozenset(),
                 versions: Mapping[str, ServerVersion] | None = None,
                 discard_errant: bool = False,
                 gtid_enabled: Mapping[str, bool] | None = None) -> None:
        self.loaded, self.spec, self.down = loaded, spec, down
        self.versions = dict(versions or {})
        self.discard_errant = discard_errant
        self.gtid_enabled = None if gtid_enabled is None else dict(gtid_enabled)
        rb = loaded.model
        self.id = StepId(StepKind.PREFLIGHT)
        self.title = "Preflight checks (read-only)"
        self.hosts = (rb.donor, rb.recipient)

    def plan(self) -> tuple[Action, ...]:
        return (Checks(self.loaded.model.recipient, build_checks(
            self.loaded, self.spec, self.down, self.versions,
            discard_errant=self.discard_errant, gtid_enabled=self.gtid_enabled)),)


def donor_tools(spec: CopySpec) -> tuple[str, ...]:
    extra = (["ssh"] if spec.method == "ssh" else []) + (
        [spec.compress] if spec.compress != "none" else []) + (
        ["pv"] if spec.rate_limit_mb_per_s else [])
    return (*DONOR_TOOLS, *extra)


def recipient_tools(spec: CopySpec) -> tuple[str, ...]:
    return (*RECIPIENT_TOOLS, *([spec.compress] if spec.compress != "none" else []))


def _value(captured: Captured, host: str, name: str) -> object:
    key = str(preflight_value(host, name))
    if key not in captured:
        raise Skip(f"{host} did not answer")
    return captured[key]


def _version(captured: Captured, host: str, known: Mapping[str, ServerVersion]) -> ServerVersion:
    if host in known:
        return known[host]
    return ServerVersion.from_server(str(_value(captured, host, "version")),
                                     str(_value(captured, host, "comment")))


def build_checks(loaded: LoadedRunbook, spec: CopySpec, down: frozenset[str],
                 versions: Mapping[str, ServerVersion], *, discard_errant: bool = False,
                 gtid_enabled: Mapping[str, bool] | None = None) -> tuple[Check, ...]:
    rb = loaded.model
    donor, recipient = rb.donor, rb.recipient
    up = [h for h in (donor, recipient) if h not in down]
    stopped = {h: v for h, v in versions.items() if h in down}
    checks: list[Check] = []
    for host in (donor, recipient):
        if host in down:
            seen = (f"not running and its datadir is not in use: accepted as the recipient; "
                    f"version {versions.get(host)} read from its binary; server_id and log_bin "
                    "are only known once it starts")
            checks.append(Check(f"{host}: server down", "not running, its datadir not in use",
                                (), lambda c, s=seen: s))  # type: ignore[misc]
            continue
        checks.append(Check(
            f"{host}: connect", "answers; its datadir is the runbook's",
            (Capture(host, "SELECT @@GLOBAL.server_id AS server_id, @@GLOBAL.log_bin AS log_bin, "
                           "@@GLOBAL.datadir AS datadir, @@GLOBAL.version AS version, "
                           "@@GLOBAL.version_comment AS comment",
                     columns=tuple((n, preflight_value(host, n)) for n in SERVER_FACTS)),),
            lambda c, h=host: _server(c, h, rb.hosts[h].datadir, stopped)))  # type: ignore[misc]
    checks.append(Check("versions compatible", "same flavor; the recipient not older (MySQL: "
                        "not even by a patch release; MariaDB: not an older major.minor)", (),
                        lambda c: _compatible(_version(c, donor, stopped),
                                              _version(c, recipient, stopped))))
    primary, replica = rb.primary_after, rb.replica_after
    checks.append(Check(
        "replica not older than its primary", f"afterwards {replica} replicates from {primary}: "
        f"its release not older than {primary}'s (the same rule)", (),
        lambda c: _replication_compatible(primary, _version(c, primary, stopped),
                                          replica, _version(c, replica, stopped))))
    gate = errant_gate(loaded, versions, down, discard_errant, gtid_enabled)
    checks.append(Check(f"no errant transactions on {recipient}", gate.criterion(),
                        gate.preflight_actions(), gate.judge))
    if not down:
        checks.append(Check("distinct server_id", "the two servers differ", (), lambda c: _distinct(
            _value(c, donor, "server_id"), _value(c, recipient, "server_id"))))
        checks.append(Check(f"{rb.primary_after}: log_bin on", "the new primary logs binary logs",
                            (), lambda c: _true(_value(c, rb.primary_after, "log_bin"),
                                                "binary logging is off; the new primary needs "
                                                "log_bin (set it in my.cnf and restart)")))
    for host in up:
        checks.append(Check(
            f"{host}: InnoDB files in the datadir", "data, redo and undo directories inside it",
            (CaptureRows(host, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                               + ", ".join(["%s"] * len(LAYOUT_VARIABLES)) + ")",
                         LAYOUT_VARIABLES, into=preflight_value(host, "layout")),),
            lambda c, h=host: innodb_dirs_inside(_layout(c, h), rb.hosts[h].datadir, h)))  # type: ignore[misc]
    if not down:
        checks.append(Check("physical settings match", "page size, case sensitivity, ibdata",
                            (), lambda c: settings_match(_layout(c, donor), _layout(c, recipient))))
    checks += _surroundings(loaded, spec, up, versions)
    datadir = rb.hosts[recipient].datadir.rstrip("/")
    checks.append(Check(
        f"{recipient}: datadir not a mount point", "it is renamed aside, so it must be a directory",
        (Shell.line(recipient, f"if mountpoint -q {q(datadir)}; then echo mount; else echo dir; fi",
                    into=preflight_value(recipient, "datadir_kind")),),
        lambda c: _not_a_mount_point(c, recipient, datadir)))
    if donor not in down:
        checks.append(_replication_user_check(loaded))
    for host, tools in ((donor, donor_tools(spec)), (recipient, recipient_tools(spec))):
        checks.append(Check(
            f"{host}: tools", f"{', '.join(tools)} installed",
            (Shell.line(host, "; ".join(f"command -v {t} >/dev/null || echo {t}" for t in tools),
                        into=preflight_value(host, "missing_tools")),),
            lambda c, h=host, t=tools: _tools(c, h, t)))  # type: ignore[misc]
    skip = " ".join(f"--exclude={q(p.removeprefix('./'))}" for p in spec.excludes)
    checks.append(Check(
        "disk space", f"free space on {recipient} >= {DISK_FACTOR} x the donor's datadir as copied",
        (Shell.line(donor, f"du -sb {skip} {q(spec.donor_datadir)} | cut -f1", privileged=True,
                    into=DONOR_BYTES),
         Shell.line(recipient, f"df -B1 --output=avail {q(parent_dir(spec.recipient_datadir))} "
                               "| tail -1", into=preflight_value(recipient, "free_bytes"))),
        lambda c: _disk(c, recipient, parent_dir(spec.recipient_datadir))))
    if spec.method == "ssh":
        checks.append(Check(
            f"{donor}: ssh to {recipient}", "the donor's ssh client logs in without a prompt",
            (ssh_reachability(spec, preflight_value(donor, "ssh_probe")),),
            lambda c: _ssh_reachable(c, spec)))
    else:
        checks.append(Check(
            f"{recipient}: copy port {spec.port} free", "nothing listens on it",
            (Shell.line(recipient, f"ss -Hltn 'sport = :{spec.port}'",
                        into=preflight_value(recipient, "port_listeners")),),
            lambda c: _port_free(c, recipient, spec.port)))
    declared = rb.copy_.bandwidth_mb_per_s
    probe: tuple[Leaf | Composite, ...] = () if declared else (BandwidthProbe(spec, PROBE_BYTES),)
    checks.append(Check("downtime estimate", "datadir size / copy bandwidth (" +
                        (f"{declared:g} MB/s from the runbook)" if declared else
                         f"a {PROBE_BYTES // 2**20} MB probe)"), probe,
                        lambda c: _estimate(c, declared), only_if_all_passed=True))
    return tuple(checks)


def _surroundings(loaded: LoadedRunbook, spec: CopySpec, up: list[str],
                  versions: Mapping[str, ServerVersion]) -> list[Check]:
    """What lies around each live server's datadir: files a copy of it would miss, keys it could
    not open without; where the recipient's logs are; a MySQL recipient's own files."""
    rb = loaded.model
    recipient = rb.recipient
    checks: list[Check] = []
    for host in up:
        datadir = rb.hosts[host].datadir.rstrip("/")
        version = versions.get(host, DEFAULT_VERSION)
        spaces, links = preflight_value(host, "tablespaces"), preflight_value(host, "links")
        checks.append(Check(
            f"{host}: table files in the datadir",
            "no tablespace file, .isl link file or symbolic link leading out of it",
            (CaptureRows(host, tablespace_files_sql(version.flavor, version.number), into=spaces),
             Shell.line(host, links_command(datadir), privileged=True, into=links)),
            lambda c, h=host, d=datadir: files_inside(  # type: ignore[misc]
                str(_value(c, h, "tablespaces")), str(_value(c, h, "links") or ""), d, h)))
        plugins, encryption = preflight_value(host, "key_plugins"), preflight_value(host, "encryption")
        checks.append(Check(
            f"{host}: no encryption keys needed",
            "no active keyring or key management plugin; InnoDB/Aria encryption off",
            (CaptureRows(host, KEY_PLUGINS_SQL, into=plugins),
             CaptureRows(host, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                               + ", ".join(["%s"] * len(ENCRYPTION_VARIABLES)) + ")",
                         ENCRYPTION_VARIABLES, into=encryption)),
            lambda c, h=host: no_encryption(str(_value(c, h, "key_plugins")),  # type: ignore[misc]
                                            str(_value(c, h, "encryption")), h)))
    if recipient in up:
        datadir = rb.hosts[recipient].datadir.rstrip("/")
        flavor = versions.get(recipient, DEFAULT_VERSION).flavor
        checks.append(Check(
            f"{recipient}: binary and relay logs", "where they are: never refused; outside the "
            "datadir they are moved aside with it",
            (Capture(recipient, global_variables_sql(flavor, LOG_VARIABLES),
                     columns=tuple((n, preflight_value(recipient, n)) for n in LOG_VARIABLES)),),
            lambda c: logs_placement({n: _value(c, recipient, n) for n in LOG_VARIABLES},
                                     datadir, recipient)))
    if versions.get(recipient, DEFAULT_VERSION).flavor == "mysql":
        datadir = rb.hosts[recipient].datadir.rstrip("/")
        checks.append(Check(
            f"{recipient}: its own TLS keys and persisted settings",
            "informational: what becomes of the *.pem and mysqld-auto.cnf in its datadir",
            (Shell.line(recipient, f"find {q(datadir)} -maxdepth 1 -type f \\( -name '*.pem' -o "
                                   "-name mysqld-auto.cnf \\) -printf '%f\\n' 2>/dev/null; true",
                        privileged=True, into=preflight_value(recipient, "own_files")),),
            lambda c: own_files(str(_value(c, recipient, "own_files") or ""), spec.excludes,
                                recipient)))
    return checks


def _server(captured: Captured, host: str, datadir: str,
            known: Mapping[str, ServerVersion]) -> str:
    found = str(_value(captured, host, "datadir")).rstrip("/")
    if found != datadir.rstrip("/"):
        raise ResyncError(f"the server's datadir is {found}, the runbook says {datadir}")
    return (f"{_version(captured, host, {})}, server_id {_value(captured, host, 'server_id')}, "
            f"log_bin {_value(captured, host, 'log_bin')}")


def _layout(captured: Captured, host: str) -> dict[str, str]:
    return layout_of(str(_value(captured, host, "layout")))


def _not_a_mount_point(captured: Captured, host: str, datadir: str) -> str:
    if _value(captured, host, "datadir_kind") == "mount":
        raise ResyncError(
            f"{datadir} on {host} is a mount point: resync moves the old datadir aside "
            "with a rename, which cannot move a mount point. Mount the volume one level up "
            f"(e.g. {datadir}-vol) with the datadir a directory inside it")
    return f"{datadir} is a directory (renamed aside, kept on the same filesystem)"


def _replication_user_check(loaded: LoadedRunbook) -> Check:
    rb = loaded.model
    user = rb.replication.user
    return Check(
        "replication user", f"'{user}' exists on {rb.donor} with REPLICATION SLAVE and can log in",
        (Capture(rb.donor, "SELECT COUNT(*) AS n FROM mysql.user WHERE User = %s "
                           "AND Repl_slave_priv = 'Y'", (user,),
                 columns=(("n", preflight_value(rb.donor, "replication_users")),)),
         Login(rb.donor, user, rb.replication.password_env)),
        lambda c: _replication_user(c, rb.donor, user))


def _replication_user(captured: Captured, donor: str, user: str) -> str:
    if int(str(_value(captured, donor, "replication_users") or 0)) == 0:
        raise ResyncError(f"no user '{user}' with REPLICATION SLAVE on {donor} (the copy "
                          f"carries the donor's users): CREATE USER and GRANT REPLICATION SLAVE")
    return f"'{user}' can log in to {donor} with REPLICATION SLAVE"


def _tools(captured: Captured, host: str, tools: tuple[str, ...]) -> str:
    missing = str(_value(captured, host, "missing_tools") or "").split()
    if missing:
        raise ResyncError(f"missing on {host}: {', '.join(missing)} "
                          "(Debian: apt-get install tar netcat-openbsd openssl iproute2)")
    return ", ".join(tools)


def _disk(captured: Captured, recipient: str, parent: str) -> str:
    try:
        size = int(str(captured.get(str(DONOR_BYTES))))
        avail = int(str(_value(captured, recipient, "free_bytes")))
    except ValueError:
        raise ResyncError("could not read the donor's datadir size or the recipient's free "
                          "space") from None
    need, gib = int(size * DISK_FACTOR), 1024 ** 3
    if avail < need:
        raise ResyncError(f"{recipient} has {avail / gib:.2f} GiB free under {parent}, needs "
                          f"{need / gib:.2f} GiB (donor datadir x {DISK_FACTOR}; the old datadir "
                          "is kept beside it)")
    return (f"to copy: {size / gib:.2f} GiB of the donor's datadir; {avail / gib:.2f} GiB free on "
            f"{recipient}")


def _ssh_reachable(captured: Captured, spec: CopySpec) -> str:
    out = str(_value(captured, spec.donor, "ssh_probe") or "")
    if not out.endswith("RESYNC-SSH-OK"):
        raise ResyncError(
            f"{spec.donor} cannot ssh to {spec.ssh_target} without a prompt: "
            f"{out.strip()[-300:]}. The ssh copy runs `tar c | ssh {spec.ssh_target} "
            f"'tar x'` on {spec.donor}: give {spec.donor} a key the recipient accepts (or forward "
            "your agent), accept the recipient's host key there (ssh-keyscan), or set "
            "copy.ssh.options / copy.ssh.target")
    return f"{spec.donor} reaches {spec.ssh_target} over SSH"


def _port_free(captured: Captured, recipient: str, port: int) -> str:
    out = str(_value(captured, recipient, "port_listeners") or "").strip()
    if out:
        raise ResyncError(f"something already listens on port {port}: {out}; "
                          "choose another copy.port")
    return "free"


def _estimate(captured: Captured, declared: float | None) -> str:
    size = captured.get(str(DONOR_BYTES))
    if declared:
        estimate = Estimate(int(str(size or 0)), declared * 1e6, "runbook")
    else:
        estimate = Estimate(int(str(size or 0)), float(str(captured[str(PROBE_RATE)])), "probe")
    return estimate.describe()


def _distinct(a: object, b: object) -> str:
    if a == b:
        raise ResyncError(f"donor and recipient have the same server_id {a}: replication "
                          "between them would not work")
    return f"{a} / {b}"


def release(version: ServerVersion) -> tuple[int, ...]:
    """What "older" compares: MySQL changes its on-disk format even between patch releases of
    5.7 and 8.0 (and is taken as strictly elsewhere); MariaDB keeps it within a major.minor
    series (10.11.5 opens 10.11.2's files and the other way round)."""
    return version.number[:2] if version.flavor == "mariadb" else version.number


def older(version: ServerVersion, than: ServerVersion) -> bool:
    return release(version) < release(than)


def _compatible(donor: ServerVersion, recipient: ServerVersion) -> str:
    if donor.flavor != recipient.flavor:
        raise ResyncError(f"a physical copy needs one flavor: donor {donor}, recipient {recipient}")
    if older(recipient, donor):
        step = "major.minor" if donor.flavor == "mariadb" else "patch"
        raise ResyncError(f"the recipient ({recipient}) is older than the donor ({donor}) at "
                          f"{step} level: its server cannot open a newer datadir; upgrade it first")
    return f"{donor} -> {recipient}"


def _replication_compatible(primary: str, primary_version: ServerVersion, replica: str,
                            replica_version: ServerVersion) -> str:
    if primary_version.flavor != replica_version.flavor:
        raise ResyncError(f"{replica} ({replica_version}) cannot replicate from {primary} "
                          f"({primary_version}): different flavors")
    if older(replica_version, primary_version):
        raise ResyncError(f"afterwards {replica} ({replica_version}) replicates from {primary} "
                          f"({primary_version}), which is newer: a replica older than its primary "
                          "may not read its binary log; upgrade the replica, or swap the roles")
    return f"{primary} ({primary_version}) -> {replica} ({replica_version})"


def _true(value: object, why: str) -> str:
    if str(value) not in ("1", "ON"):
        raise ResyncError(why)
    return "on"


__all__ = ["Check", "CheckResult", "Checks", "Preflight", "argv", "results_of"]
