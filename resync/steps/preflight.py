"""Preflight: every check that must pass before anything is changed (`resync check` runs it alone)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resync.actions.dialect import ServerVersion
from resync.actions.types import Action, Check, q
from resync.model.errors import DatabaseError, HostError, PreflightFailed, ResyncError
from resync.model.runbook import LoadedRunbook
from resync.plan.estimate import PROBE_BYTES, Estimate
from resync.steps.base import Step, StepContext

if TYPE_CHECKING:
    from resync.transport.local import Host
from resync.steps.copy.commands import CopySpec, parent_dir, ssh_reachability
from resync.steps.copy.pipeline import DONOR_BYTES, measure_bandwidth
from resync.steps.layout import innodb_dirs_inside, not_a_mount_point, server_layout, settings_match

if TYPE_CHECKING:
    from resync.transport.mysql import ConnectionSpec

DISK_FACTOR = 1.1
DONOR_TOOLS = ("tar", "nc", "openssl", "du")
RECIPIENT_TOOLS = ("tar", "nc", "openssl", "ss", "du", "df", "find")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


class Preflight(Step):
    why = "read-only: refuses the run (exit 3) before anything is changed"

    def __init__(self, loaded: LoadedRunbook, spec: CopySpec, down: frozenset[str] = frozenset(),
                 versions: Mapping[str, ServerVersion] | None = None) -> None:
        self.loaded, self.spec, self.down = loaded, spec, down
        self.versions = dict(versions or {})
        rb = loaded.model
        self.key = "preflight"
        self.title = "Preflight checks (read-only)"
        self.hosts = (rb.donor, rb.recipient)

    def plan(self) -> tuple[Action, ...]:
        rb = self.loaded.model
        return tuple(Check(host, text) for host, text in (
            (rb.donor, "connect; read version, server_id, log_bin, datadir"),
            (rb.recipient, "connect; read version, server_id, log_bin, datadir"),
            (rb.donor, f"replication user '{rb.replication.user}' exists with REPLICATION SLAVE "
                       "and its password works"),
            (rb.recipient, "server_id differs from the donor's; version not older than the "
                           "donor's; same flavor"),
            (rb.primary_after, "log_bin is ON (it will be the replication source)"),
            (rb.donor, "InnoDB data/redo/undo directories inside the datadir (the copy carries "
                       "only the datadir); innodb_page_size, lower_case_table_names, "
                       "innodb_data_file_path equal on both"),
            (rb.recipient, "the datadir is not a mount point (it is renamed aside)"),
            (rb.donor, f"tools present: {', '.join(donor_tools(self.spec))}; datadir size "
                       "(du -sb)"),
            (rb.recipient, f"tools present: {', '.join(recipient_tools(self.spec))}; free disk >= "
                           f"{DISK_FACTOR} x donor datadir; copy port {rb.copy_.port} free"),
            *([(rb.donor, f"ssh -o BatchMode=yes {self.spec.ssh_target} true: the donor reaches "
                          "the recipient over SSH without a prompt")]
              if self.spec.method == "ssh" else []),
            (rb.recipient, "estimate: bandwidth probe of "
                           f"{PROBE_BYTES // 2**20} MB over the copy transport (or "
                           "copy.bandwidth_mb_per_s), datadir size -> copy time, write-downtime"),
        ))

    def results(self, ctx: StepContext) -> list[CheckResult]:
        return run_checks(ctx, self.loaded, self.spec, self.down, self.versions)

    def run(self, ctx: StepContext) -> None:
        results = self.results(ctx)
        failures = [f"{r.name}: {r.detail}" for r in results if not r.ok]
        if failures:
            raise PreflightFailed(failures)


def donor_tools(spec: CopySpec) -> tuple[str, ...]:
    extra = (["ssh"] if spec.method == "ssh" else []) + (
        [spec.compress] if spec.compress != "none" else []) + (
        ["pv"] if spec.rate_limit_mb_per_s else [])
    return (*DONOR_TOOLS, *extra)


def recipient_tools(spec: CopySpec) -> tuple[str, ...]:
    return (*RECIPIENT_TOOLS, *([spec.compress] if spec.compress != "none" else []))


def run_checks(ctx: StepContext, loaded: LoadedRunbook, spec: CopySpec,
               down: frozenset[str] = frozenset(), versions: Mapping[str, ServerVersion] | None = None,
               connector: Callable[[ConnectionSpec], object] | None = None) -> list[CheckResult]:
    from resync.transport.mysql import connect

    rb = loaded.model
    connector = connector or connect
    results: list[CheckResult] = []

    def check(name: str, fn: Callable[[], str]) -> None:
        try:
            results.append(CheckResult(name, True, fn()))
        except (ResyncError, ValueError) as exc:
            results.append(CheckResult(name, False, str(exc)))

    facts: dict[str, dict[str, object]] = {}

    def read_facts(host: str) -> str:
        row = ctx.query(host, "SELECT @@GLOBAL.server_id AS server_id, @@GLOBAL.log_bin AS log_bin, "
                              "@@GLOBAL.datadir AS datadir, @@GLOBAL.version AS version, "
                              "@@GLOBAL.version_comment AS comment")[0]
        row["parsed"] = ServerVersion.from_server(str(row["version"]), str(row["comment"]))
        facts[host] = row
        datadir = str(row["datadir"]).rstrip("/")
        if datadir != rb.hosts[host].datadir.rstrip("/"):
            raise ResyncError(f"the server's datadir is {datadir}, the runbook says "
                              f"{rb.hosts[host].datadir}")
        return f"{row['parsed']}, server_id {row['server_id']}, log_bin {row['log_bin']}"

    for host in (rb.donor, rb.recipient):
        if host in down:
            version = (versions or {}).get(host)
            check(f"{host}: server down", lambda v=version: (  # type: ignore[misc]
                f"not running and its datadir is not in use: accepted as the recipient; version "
                f"{v} read from its binary; server_id and log_bin are only known once it starts"))
            continue
        check(f"{host}: connect", lambda h=host: read_facts(h))  # type: ignore[misc]
    # what the servers said, else (a stopped recipient) what its binary said when the plan was built
    known = {**(versions or {}), **{h: f["parsed"] for h, f in facts.items()}}
    if rb.donor in known and rb.recipient in known:
        check("versions compatible",
              lambda: _compatible(known[rb.donor], known[rb.recipient]))  # type: ignore[arg-type]
    if len(facts) == 2:
        d, r = facts[rb.donor], facts[rb.recipient]
        check("distinct server_id", lambda: _distinct(d["server_id"], r["server_id"]))
        check(f"{rb.primary_after}: log_bin on",
              lambda: _true(facts[rb.primary_after]["log_bin"], "binary logging is off; the new "
                            "primary needs log_bin (set it in my.cnf and restart)"))
    layouts: dict[str, dict[str, str]] = {}

    def layout_of(host: str) -> str:
        layouts[host] = server_layout(ctx, host)
        return innodb_dirs_inside(layouts[host], rb.hosts[host].datadir, host)

    for host in list(facts):
        check(f"{host}: InnoDB files in the datadir", lambda h=host: layout_of(h))  # type: ignore[misc]
    if len(layouts) == 2:
        check("physical settings match",
              lambda: settings_match(layouts[rb.donor], layouts[rb.recipient]))
    check(f"{rb.recipient}: datadir not a mount point", lambda: not_a_mount_point(ctx, loaded))
    if rb.donor in facts:
        check("replication user", lambda: _replication_user(ctx, loaded, connector))
    check(f"{rb.donor}: tools", lambda: _tools(ctx, rb.donor, donor_tools(spec)))
    check(f"{rb.recipient}: tools", lambda: _tools(ctx, rb.recipient, recipient_tools(spec)))
    check("disk space", lambda: _disk(ctx, loaded, spec))
    if spec.method == "ssh":
        check(f"{rb.donor}: ssh to {rb.recipient}", lambda: _ssh_reachable(ctx, spec))
    else:
        check(f"{rb.recipient}: copy port {rb.copy_.port} free", lambda: _port_free(ctx, loaded))
    if all(r.ok for r in results):
        check("downtime estimate", lambda: _estimate(ctx, loaded, spec))
    return results


def _ssh_reachable(ctx: StepContext, spec: CopySpec) -> str:
    result = ctx.shell(ssh_reachability(spec), check=False)
    if not result.ok:
        raise ResyncError(
            f"{spec.donor} cannot ssh to {spec.ssh_target} without a prompt: "
            f"{result.tail().strip()[-300:]}. The ssh copy runs `tar c | ssh {spec.ssh_target} "
            f"'tar x'` on {spec.donor}: give {spec.donor} a key the recipient accepts (or forward "
            "your agent), accept the recipient's host key there (ssh-keyscan), or set "
            "copy.ssh.options / copy.ssh.target")
    return f"{spec.donor} reaches {spec.ssh_target} over SSH"


def estimate_copy(ctx: StepContext, loaded: LoadedRunbook, spec: CopySpec, size: int) -> Estimate:
    """The copy's duration from the datadir size and the declared or probed bandwidth."""
    declared = loaded.model.copy_.bandwidth_mb_per_s
    if declared:
        return Estimate(size, declared * 1e6, "runbook")
    return Estimate(size, measure_bandwidth(ctx, spec, PROBE_BYTES), "probe")


def _estimate(ctx: StepContext, loaded: LoadedRunbook, spec: CopySpec) -> str:
    size = ctx.captured.get(DONOR_BYTES)
    estimate = estimate_copy(ctx, loaded, spec, int(size) if isinstance(size, int | float) else 0)
    for key, value in estimate.as_values().items():
        ctx.capture(key, value)
    return estimate.describe()


def datadir_bytes(host: Host, datadir: str, excludes: tuple[str, ...] = ()) -> int:
    """Bytes the copy will carry: the datadir without what the copy leaves out (binlogs...)."""
    skip = " ".join(f"--exclude={q(p.removeprefix('./'))}" for p in excludes)
    out = host.run(f"du -sb {skip} {q(datadir)} | cut -f1", privileged=True).stdout.strip()
    try:
        return int(out)
    except ValueError:
        raise ResyncError(f"could not read the size of {datadir} on {host.name}: {out!r}") from None


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


def _replication_user(ctx: StepContext, loaded: LoadedRunbook,
                      connector: Callable[[ConnectionSpec], object]) -> str:
    rb = loaded.model
    user = rb.replication.user
    rows = ctx.query(rb.donor, "SELECT COUNT(*) AS n FROM mysql.user WHERE User = %s "
                               "AND Repl_slave_priv = 'Y'", (user,))
    if not rows or int(str(rows[0]["n"])) == 0:
        raise ResyncError(f"no user '{user}' with REPLICATION SLAVE on {rb.donor} (the copy "
                          f"carries the donor's users): CREATE USER and GRANT REPLICATION SLAVE")
    password = loaded.secret(rb.replication.password_env, "replication", "password_env")
    donor = rb.hosts[rb.donor]
    from resync.transport.mysql import ConnectionSpec

    spec = ConnectionSpec(name=f"{rb.donor} as {user}", host=donor.address, port=donor.mysql.port,
                          user=user, password=password, connect_timeout=5)
    try:
        session = connector(spec)
    except DatabaseError as exc:
        raise ResyncError(f"the replication user cannot log in to {rb.donor}: {exc}") from None
    close = getattr(session, "close", None)
    if close:
        close()
    return f"'{user}' can log in to {donor.address}:{donor.mysql.port} with REPLICATION SLAVE"


def _tools(ctx: StepContext, host: str, tools: tuple[str, ...]) -> str:
    script = "; ".join(f"command -v {t} >/dev/null || echo {t}" for t in tools)
    missing = ctx.host(host).run(script, check=False).stdout.split()
    if missing:
        raise ResyncError(f"missing on {host}: {', '.join(missing)} "
                          "(Debian: apt-get install tar netcat-openbsd openssl iproute2)")
    return ", ".join(tools)


def _disk(ctx: StepContext, loaded: LoadedRunbook, spec: CopySpec) -> str:
    rb = loaded.model
    size = datadir_bytes(ctx.host(rb.donor), spec.donor_datadir, spec.excludes)
    parent = parent_dir(spec.recipient_datadir)
    free = ctx.host(rb.recipient).run(f"df -B1 --output=avail {q(parent)} | tail -1").stdout
    try:
        need, avail = int(size * DISK_FACTOR), int(free.strip())
    except ValueError:
        raise ResyncError(f"could not read the free space on {rb.recipient}: {free.strip()!r}") from None
    ctx.capture(DONOR_BYTES, size)
    gib = 1024 ** 3
    if avail < need:
        raise ResyncError(f"{rb.recipient} has {avail / gib:.2f} GiB free under {parent}, needs "
                          f"{need / gib:.2f} GiB (donor datadir x {DISK_FACTOR}; the old datadir "
                          "is kept beside it)")
    return (f"to copy: {size / gib:.2f} GiB of the donor's datadir; {avail / gib:.2f} GiB free on "
            f"{rb.recipient}")


def _port_free(ctx: StepContext, loaded: LoadedRunbook) -> str:
    rb = loaded.model
    try:
        out = ctx.host(rb.recipient).run(f"ss -Hltn 'sport = :{rb.copy_.port}'").stdout
    except HostError as exc:
        raise ResyncError(str(exc)) from None
    if out.strip():
        raise ResyncError(f"something already listens on port {rb.copy_.port}: {out.strip()}; "
                          "choose another copy.port")
    return "free"
