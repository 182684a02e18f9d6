"""Which checks a runbook's preflight runs: each one's read-only actions (data) and its verdict.

A server found stopped is asked nothing: only what can be read without it (its datadir, its
binary log) is checked, and what needs both servers (server_id, settings) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping

from resync.actions.dialect import DEFAULT_VERSION, ServerVersion
from resync.actions.quoting import q
from resync.actions.types import Capture, CaptureRows, Composite, Leaf, Login, Shell
from resync.model.keys import DONOR_BYTES, Key, preflight_value
from resync.model.runbook import LoadedRunbook
from resync.plan.estimate import PROBE_BYTES
from resync.steps.copy.commands import CopySpec, parent_dir, ssh_reachability
from resync.steps.copy.ebs.checks import ebs_checks, ebs_tools
from resync.steps.copy.hot import hot_copy_checks
from resync.steps.copy.hot_commands import HOT_METHODS
from resync.steps.copy.pipeline import BandwidthProbe
from resync.steps.direction import errant_gate
from resync.steps.preflight.checks import Check
from resync.steps.preflight.layout import (
    ENCRYPTION_VARIABLES,
    KEY_PLUGINS_SQL,
    LAYOUT_VARIABLES,
    LOG_VARIABLES,
    files_inside,
    global_variables_sql,
    innodb_dirs_inside,
    links_command,
    logs_placement,
    no_encryption,
    own_files,
    settings_match,
    tablespace_files_sql,
)
from resync.steps.preflight.tls import replication_tls_check
from resync.steps.preflight.verdicts import (
    DISK_FACTOR,
    captured_layout,
    captured_value,
    distinct_server_ids,
    downtime_estimate,
    enough_disk_space,
    not_a_mount_point,
    port_free,
    replica_not_older,
    replication_user_exists,
    server_matches_runbook,
    server_version,
    ssh_reachable,
    switched_on,
    tools_installed,
    versions_compatible,
)

DONOR_TOOLS = ("tar", "du")
RECIPIENT_TOOLS = ("tar", "ss", "du", "df", "find")
SERVER_FACTS = ("server_id", "log_bin", "datadir", "version", "comment")


def _carrier(spec: CopySpec) -> list[str]:
    """The stream method's relay runs under python3 on both ends; ssh needs the donor's client."""
    return ["python3"] if spec.method == "stream" else []


def donor_tools(spec: CopySpec) -> tuple[str, ...]:
    extra = _carrier(spec) + (["ssh"] if spec.method == "ssh" else []) + (
        [spec.compress] if spec.compress != "none" else []) + (
        ["pv"] if spec.rate_limit_mb_per_s else [])
    return (*DONOR_TOOLS, *extra)


def recipient_tools(spec: CopySpec) -> tuple[str, ...]:
    return (*RECIPIENT_TOOLS, *_carrier(spec),
            *([spec.compress] if spec.compress != "none" else []))


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
            lambda c, h=host: server_matches_runbook(  # type: ignore[misc]
                c, h, rb.hosts[h].datadir, stopped)))
    checks.append(Check("versions compatible", "same flavor; the recipient not older (MySQL: "
                        "not even by a patch release; MariaDB: not an older major.minor)", (),
                        lambda c: versions_compatible(server_version(c, donor, stopped),
                                                      server_version(c, recipient, stopped))))
    primary, replica = rb.primary_after, rb.replica_after
    checks.append(Check(
        "replica not older than its primary", f"afterwards {replica} replicates from {primary}: "
        f"its release not older than {primary}'s (the same rule)", (),
        lambda c: replica_not_older(primary, server_version(c, primary, stopped),
                                    replica, server_version(c, replica, stopped))))
    gate = errant_gate(loaded, versions, down, discard_errant, gtid_enabled)
    checks.append(Check(f"no errant transactions on {recipient}", gate.criterion(),
                        gate.preflight_actions(), gate.judge))
    if not down:
        checks.append(Check("distinct server_id", "the two servers differ", (),
                            lambda c: distinct_server_ids(captured_value(c, donor, "server_id"),
                                                          captured_value(c, recipient, "server_id"))))
        checks.append(Check(f"{rb.primary_after}: log_bin on", "the new primary logs binary logs",
                            (), lambda c: switched_on(captured_value(c, rb.primary_after, "log_bin"),
                                                      "binary logging is off; the new primary needs "
                                                      "log_bin (set it in my.cnf and restart)")))
    for host in up:
        checks.append(Check(
            f"{host}: InnoDB files in the datadir", "data, redo and undo directories inside it",
            (_show_variables(host, LAYOUT_VARIABLES, preflight_value(host, "layout")),),
            lambda c, h=host: innodb_dirs_inside(  # type: ignore[misc]
                captured_layout(c, h), rb.hosts[h].datadir, h)))
    if not down:
        checks.append(Check("physical settings match", "page size, case sensitivity, ibdata", (),
                            lambda c: settings_match(captured_layout(c, donor),
                                                     captured_layout(c, recipient))))
    checks += _surroundings(loaded, spec, up, versions)
    datadir = _datadir(loaded, recipient)
    # mode swap replaces the recipient's data volume: nothing is renamed, nothing copied into it
    swap = spec.method == "ebs" and rb.copy_.ebs.mode == "swap"
    if not swap:
        checks.append(Check(
            f"{recipient}: datadir not a mount point", "it is renamed aside, so it must be a "
            "directory",
            (Shell.line(recipient, f"if mountpoint -q {q(datadir)}; then echo mount; else echo "
                                   "dir; fi", into=preflight_value(recipient, "datadir_kind")),),
            lambda c: not_a_mount_point(c, recipient, datadir)))
    if donor not in down:
        checks.append(_replication_user_check(loaded))
    if (tls := replication_tls_check(loaded, down, versions)) is not None:
        checks.append(tls)
    tools_of = (ebs_tools(loaded) if spec.method == "ebs"
                else (donor_tools(spec), recipient_tools(spec)))
    for host, tools in zip((donor, recipient), tools_of, strict=True):
        checks.append(Check(
            f"{host}: tools", f"{', '.join(tools)} installed",
            (Shell.line(host, "; ".join(f"command -v {t} >/dev/null || echo {t}" for t in tools),
                        into=preflight_value(host, "missing_tools")),),
            lambda c, h=host, t=tools: tools_installed(c, h, t)))  # type: ignore[misc]
    skip = " ".join(f"--exclude={q(p.removeprefix('./'))}" for p in spec.excludes)
    size = Shell.line(donor, f"du -sb {skip} {q(spec.donor_datadir)} | cut -f1", privileged=True,
                      into=DONOR_BYTES)
    if swap:
        checks.append(Check("datadir size", "the donor's datadir as a pre-warm would read it",
                            (size,), lambda c: f"{int(str(c[str(DONOR_BYTES)])) / 1e9:.2f} GB"))
    else:
        checks.append(Check(
            "disk space", f"free space on {recipient} >= {DISK_FACTOR} x the donor's datadir as "
            "copied",
            (size, Shell.line(recipient, f"df -B1 --output=avail "
                                         f"{q(parent_dir(spec.recipient_datadir))} | tail -1",
                              into=preflight_value(recipient, "free_bytes"))),
            lambda c: enough_disk_space(c, recipient, parent_dir(spec.recipient_datadir))))
    if spec.method == "ebs":
        return (*checks, *ebs_checks(loaded))
    if spec.method == "ssh":
        checks.append(Check(
            f"{donor}: ssh to {recipient}", "the donor's ssh client logs in without a prompt",
            (ssh_reachability(spec, preflight_value(donor, "ssh_probe")),),
            lambda c: ssh_reachable(c, spec)))
    else:
        checks.append(Check(
            f"{recipient}: copy port {spec.port} free", "nothing listens on it",
            (Shell.line(recipient, f"ss -Hltn 'sport = :{spec.port}'",
                        into=preflight_value(recipient, "port_listeners")),),
            lambda c: port_free(c, recipient, spec.port)))
    declared = rb.copy_.bandwidth_mb_per_s
    probe: tuple[Leaf | Composite, ...] = () if declared else (BandwidthProbe(spec, PROBE_BYTES),)
    checks.append(Check("downtime estimate", "datadir size / copy bandwidth (" +
                        (f"{declared:g} MB/s from the runbook)" if declared else
                         f"a {PROBE_BYTES // 2**20} MB probe)"), probe,
                        lambda c: downtime_estimate(c, declared, rb.primary_after == recipient,
                                                    hot=rb.copy_.method in HOT_METHODS),
                        only_if_all_passed=True))
    if rb.copy_.method in HOT_METHODS:
        return (*checks, *hot_copy_checks(loaded, spec))
    return tuple(checks)


def _surroundings(loaded: LoadedRunbook, spec: CopySpec, up: list[str],
                  versions: Mapping[str, ServerVersion]) -> list[Check]:
    """What lies around each live server's datadir: files a copy of it would miss, keys it could
    not open without; where the recipient's logs are; a MySQL recipient's own files."""
    recipient = loaded.model.recipient
    checks: list[Check] = []
    for host in up:
        datadir = _datadir(loaded, host)
        version = versions.get(host, DEFAULT_VERSION)
        spaces, links = preflight_value(host, "tablespaces"), preflight_value(host, "links")
        checks.append(Check(
            f"{host}: table files in the datadir",
            "no tablespace file, .isl link file or symbolic link leading out of it",
            (CaptureRows(host, tablespace_files_sql(version.flavor, version.number), into=spaces),
             Shell.line(host, links_command(datadir), privileged=True, into=links)),
            lambda c, h=host, d=datadir: files_inside(  # type: ignore[misc]
                str(captured_value(c, h, "tablespaces")), str(captured_value(c, h, "links") or ""),
                d, h)))
        checks.append(Check(
            f"{host}: no encryption keys needed",
            "no active keyring or key management plugin; InnoDB/Aria encryption off",
            (CaptureRows(host, KEY_PLUGINS_SQL, into=preflight_value(host, "key_plugins")),
             _show_variables(host, ENCRYPTION_VARIABLES, preflight_value(host, "encryption"))),
            lambda c, h=host: no_encryption(  # type: ignore[misc]
                str(captured_value(c, h, "key_plugins")), str(captured_value(c, h, "encryption")),
                h)))
    if recipient in up:
        datadir = _datadir(loaded, recipient)
        flavor = versions.get(recipient, DEFAULT_VERSION).flavor
        checks.append(Check(
            f"{recipient}: binary and relay logs", "where they are: never refused; outside the "
            "datadir they are moved aside with it",
            (Capture(recipient, global_variables_sql(flavor, LOG_VARIABLES),
                     columns=tuple((n, preflight_value(recipient, n)) for n in LOG_VARIABLES)),),
            lambda c: logs_placement({n: captured_value(c, recipient, n) for n in LOG_VARIABLES},
                                     datadir, recipient)))
    if versions.get(recipient, DEFAULT_VERSION).flavor == "mysql":
        datadir = _datadir(loaded, recipient)
        checks.append(Check(
            f"{recipient}: its own TLS keys and persisted settings",
            "informational: what becomes of the *.pem and mysqld-auto.cnf in its datadir",
            (Shell.line(recipient, f"find {q(datadir)} -maxdepth 1 -type f \\( -name '*.pem' -o "
                                   "-name mysqld-auto.cnf \\) -printf '%f\\n' 2>/dev/null; true",
                        privileged=True, into=preflight_value(recipient, "own_files")),),
            lambda c: own_files(str(captured_value(c, recipient, "own_files") or ""), spec.excludes,
                                recipient)))
    return checks


def _replication_user_check(loaded: LoadedRunbook) -> Check:
    rb = loaded.model
    user = rb.replication.user
    return Check(
        "replication user", f"'{user}' exists on {rb.donor} with REPLICATION SLAVE and can log in",
        (Capture(rb.donor, "SELECT COUNT(*) AS n FROM mysql.user WHERE User = %s "
                           "AND Repl_slave_priv = 'Y'", (user,),
                 columns=(("n", preflight_value(rb.donor, "replication_users")),)),
         Login(rb.donor, user, rb.replication.password_env)),
        lambda c: replication_user_exists(c, rb.donor, user))


def _show_variables(host: str, names: tuple[str, ...], into: Key) -> CaptureRows:
    """SHOW GLOBAL VARIABLES of `names`, captured as rows: a name the server lacks is no row."""
    return CaptureRows(host, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                             + ", ".join(["%s"] * len(names)) + ")", names, into=into)


def _datadir(loaded: LoadedRunbook, host: str) -> str:
    return loaded.model.hosts[host].datadir.rstrip("/")
