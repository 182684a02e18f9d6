"""The preflight's verdicts: pure functions over captured values, each returning the detail of a
check that passes or raising ResyncError with what is wrong and how to put it right.

The datadir layout's verdicts are in `layout.py`; the errant-transaction gate's in
`resync.steps.direction`.
"""

from __future__ import annotations

from collections.abc import Mapping

from resync.actions.dialect import ServerVersion
from resync.actions.types import Captured
from resync.model.errors import ResyncError
from resync.model.keys import DONOR_BYTES, preflight_value
from resync.plan.estimate import measured_estimate
from resync.steps.copy.commands import CopySpec
from resync.steps.direction import NotCaptured
from resync.steps.preflight.layout import layout_of

DISK_FACTOR = 1.1  # the copy and a margin: the old datadir is kept beside it, none of it is freed


class Skip(NotCaptured):
    """A verdict that cannot be given because an earlier check failed."""


def captured_value(captured: Captured, host: str, name: str) -> object:
    key = str(preflight_value(host, name))
    if key not in captured:
        raise Skip(f"{host} did not answer")
    return captured[key]


def server_version(captured: Captured, host: str,
                   known: Mapping[str, ServerVersion]) -> ServerVersion:
    """`known` (a stopped server's, read from its binary) or what the server said it runs."""
    if host in known:
        return known[host]
    return ServerVersion.from_server(str(captured_value(captured, host, "version")),
                                     str(captured_value(captured, host, "comment")))


def server_matches_runbook(captured: Captured, host: str, datadir: str,
                           known: Mapping[str, ServerVersion]) -> str:
    found = str(captured_value(captured, host, "datadir")).rstrip("/")
    if found != datadir.rstrip("/"):
        raise ResyncError(f"the server's datadir is {found}, the runbook says {datadir}")
    return (f"{server_version(captured, host, {})}, server_id "
            f"{captured_value(captured, host, 'server_id')}, "
            f"log_bin {captured_value(captured, host, 'log_bin')}")


def captured_layout(captured: Captured, host: str) -> dict[str, str]:
    return layout_of(str(captured_value(captured, host, "layout")))


def not_a_mount_point(captured: Captured, host: str, datadir: str) -> str:
    if captured_value(captured, host, "datadir_kind") == "mount":
        raise ResyncError(
            f"{datadir} on {host} is a mount point: resync moves the old datadir aside "
            "with a rename, which cannot move a mount point. Mount the volume one level up "
            f"(e.g. {datadir}-vol) with the datadir a directory inside it")
    return f"{datadir} is a directory (renamed aside, kept on the same filesystem)"


def replication_user_exists(captured: Captured, donor: str, user: str) -> str:
    if int(str(captured_value(captured, donor, "replication_users") or 0)) == 0:
        raise ResyncError(f"no user '{user}' with REPLICATION SLAVE on {donor} (the copy "
                          f"carries the donor's users): CREATE USER and GRANT REPLICATION SLAVE")
    return f"'{user}' can log in to {donor} with REPLICATION SLAVE"


# the Debian package of a command, where its name differs
PACKAGES = {"ss": "iproute2", "du": "coreutils", "df": "coreutils", "realpath": "coreutils",
            "dd": "coreutils", "find": "findutils", "findmnt": "util-linux",
            "lsblk": "util-linux", "fsfreeze": "util-linux", "mountpoint": "util-linux",
            "blkid": "util-linux", "umount": "mount", "awk": "gawk", "mbstream": "mariadb-backup",
            "mariabackup": "mariadb-backup"}


def tools_installed(captured: Captured, host: str, tools: tuple[str, ...]) -> str:
    missing = str(captured_value(captured, host, "missing_tools") or "").split()
    if missing:
        packages = " ".join(dict.fromkeys(PACKAGES.get(t, t) for t in missing))
        raise ResyncError(f"missing on {host}: {', '.join(missing)} "
                          f"(Debian: apt-get install {packages})")
    return ", ".join(tools)


def enough_disk_space(captured: Captured, recipient: str, parent: str) -> str:
    try:
        size = int(str(captured.get(str(DONOR_BYTES))))
        avail = int(str(captured_value(captured, recipient, "free_bytes")))
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


def ssh_reachable(captured: Captured, spec: CopySpec) -> str:
    out = str(captured_value(captured, spec.donor, "ssh_probe") or "")
    if not out.endswith("RESYNC-SSH-OK"):
        raise ResyncError(
            f"{spec.donor} cannot ssh to {spec.ssh_target} without a prompt: "
            f"{out.strip()[-300:]}. The ssh copy runs `tar c | ssh {spec.ssh_target} "
            f"'tar x'` on {spec.donor}: give {spec.donor} a key the recipient accepts (or forward "
            "your agent), accept the recipient's host key there (ssh-keyscan), or set "
            "copy.ssh.options / copy.ssh.target")
    return f"{spec.donor} reaches {spec.ssh_target} over SSH"


def port_free(captured: Captured, recipient: str, port: int) -> str:
    out = str(captured_value(captured, recipient, "port_listeners") or "").strip()
    if out:
        raise ResyncError(f"something already listens on port {port}: {out}; "
                          "choose another copy.port")
    return "free"


# a hot copy: the backup tool's commit lock (measured here 0.03-0.67 s up to 1.1 GB) and, when
# the donor becomes the replica, the switch (freeze, catch-up, reset, re-point: 1.7-2.6 s)
HOT_LOCK_SECONDS, HOT_SWITCH_SECONDS = 1.0, 3.0


def downtime_estimate(captured: Captured, declared: float | None, rebuild_primary: bool,
                      hot: bool = False) -> str:
    """From the runbook's bandwidth when it declares one, else the probe's measured rate."""
    estimate = measured_estimate(captured, rebuild_primary, declared)
    if estimate is None:
        raise ResyncError("the datadir size or the link's rate was not measured")
    size, rate = estimate.datadir_bytes, estimate.bandwidth
    if hot:
        return (f"datadir {size / 1e9:.2f} GB at {rate / 1e6:.0f} MB/s: the backup streams for "
                f"~{estimate.copy_seconds:.0f}s while the donor serves; write-downtime ~"
                f"{HOT_SWITCH_SECONDS if rebuild_primary else HOT_LOCK_SECONDS:g}s (" +
                ("the switch: the donor frozen, caught up, the roles swapped)" if rebuild_primary
                 else "the backup tool's commit lock)"))
    return estimate.describe()


def distinct_server_ids(a: object, b: object) -> str:
    if a == b:
        raise ResyncError(f"donor and recipient have the same server_id {a}: replication "
                          "between them would not work")
    return f"{a} / {b}"


def switched_on(value: object, why: str) -> str:
    """A server switch (log_bin) is on; else `why` is the refusal."""
    if str(value) not in ("1", "ON"):
        raise ResyncError(why)
    return "on"


# -- versions --------------------------------------------------------------------------------------

def release(version: ServerVersion) -> tuple[int, ...]:
    """What "older" compares: MySQL changes its on-disk format even between patch releases of
    5.7 and 8.0 (and is taken as strictly elsewhere); MariaDB keeps it within a major.minor
    series (10.11.5 opens 10.11.2's files and the other way round)."""
    return version.number[:2] if version.flavor == "mariadb" else version.number


def older(version: ServerVersion, than: ServerVersion) -> bool:
    return release(version) < release(than)


def versions_compatible(donor: ServerVersion, recipient: ServerVersion) -> str:
    if donor.flavor != recipient.flavor:
        raise ResyncError(f"a physical copy needs one flavor: donor {donor}, recipient {recipient}")
    if older(recipient, donor):
        step = "major.minor" if donor.flavor == "mariadb" else "patch"
        raise ResyncError(f"the recipient ({recipient}) is older than the donor ({donor}) at "
                          f"{step} level: its server cannot open a newer datadir; upgrade it first")
    return f"{donor} -> {recipient}"


def replica_not_older(primary: str, primary_version: ServerVersion, replica: str,
                      replica_version: ServerVersion) -> str:
    if primary_version.flavor != replica_version.flavor:
        raise ResyncError(f"{replica} ({replica_version}) cannot replicate from {primary} "
                          f"({primary_version}): different flavors")
    if older(replica_version, primary_version):
        raise ResyncError(f"afterwards {replica} ({replica_version}) replicates from {primary} "
                          f"({primary_version}), which is newer: a replica older than its primary "
                          "may not read its binary log; upgrade the replica, or swap the roles")
    return f"{primary} ({primary_version}) -> {replica} ({replica_version})"
