"""Preflight: every check that must pass before anything is changed (`resync check` runs it alone).

Each check is a list of read-only leaf actions (queries, commands: journaled like any other)
and a verdict over what they captured. All checks run, so one refusal lists every problem.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from resync.actions.dialect import ServerVersion
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
from resync.steps.layout import (
    LAYOUT_VARIABLES,
    innodb_dirs_inside,
    layout_of,
    settings_match,
)

DISK_FACTOR = 1.1
DONOR_TOOLS = ("tar", "nc", "openssl", "du")
RECIPIENT_TOOLS = ("tar", "nc", "openssl", "ss", "du", "df", "find")
RESULTS = Key("preflight.results")  # JSON [[name, ok, detail], ...]
SERVER_FACTS = ("server_id", "log_bin", "datadir", "version", "comment")


class Skip(Exception):
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
    except Skip as exc:
        return CheckResult(check.name, False, f"not checked: {exc}")
    except (ResyncError, ValueError) as exc:
        return CheckResult(check.name, False, str(exc))


def results_of(captured: Captured) -> list[CheckResult]:
    raw = captured.get(str(RESULTS))
    return [CheckResult(str(n), bool(ok), str(d)) for n, ok, d in json.loads(str(raw))] if raw else []


class Preflight(Step):
    why = "read-only: refuses the run (exit 3) before anything is changed; it cannot be skipped"

    def __init__(self, loaded: LoadedRunbook, spec: CopySpec, down: frozenset[str] = frozenset(),
                 versions: Mapping[str, ServerVersion] | None = None) -> None:
        self.loaded, self.spec, self.down = loaded, spec, down
        self.versions = dict(versions or {})
        rb = loaded.model
        self.id = StepId(StepKind.PREFLIGHT)
        self.title = "Preflight checks (read-only)"
        self.hosts = (rb.donor, rb.recipient)

    def plan(self) -> tuple[Action, ...]:
        return (Checks(self.loaded.model.recipient, build_checks(self.loaded, self.spec,
                                                                 self.down, self.versions)),)


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
                 versions: Mapping[str, ServerVersion]) -> tuple[Check, ...]:
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
    checks.append(Check("versions compatible", "same flavor; the recipient not older", (),
                        lambda c: _compatible(_version(c, donor, stopped),
                                              _version(c, recipient, stopped))))
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
                        lambda c: _estimate(c, declared)))
    return tuple(checks)


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


def _compatible(donor: ServerVersion, recipient: ServerVersion) -> str:
    if donor.flavor != recipient.flavor:
        raise ResyncError(f"a physical copy needs one flavor: donor {donor}, recipient {recipient}")
    if recipient.number[:2] < donor.number[:2]:
        raise ResyncError(f"the recipient ({recipient}) is older than the donor ({donor}): its "
                          "server cannot open a newer datadir")
    return f"{donor} -> {recipient}"


def _true(value: object, why: str) -> str:
    if str(value) not in ("1", "ON"):
        raise ResyncError(why)
    return "on"


__all__ = ["Check", "CheckResult", "Checks", "Preflight", "argv", "results_of"]
