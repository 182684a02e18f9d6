"""The shell pipelines of a physical copy, as data: which tools, which flags, on which end.

stream: the recipient's relay listens, the donor's `tar c` feeds its relay, which connects to it
        (`relay.py`: one process per end moves, counts and checksums the bytes in one pass).
ssh:    the donor runs `tar c | ssh recipient 'tar x'` with the OpenSSH client (encrypted).
tar reports its byte totals on both ends, and with the stream method each relay its count and
CRC-32 of what crossed the wire, so that the two ends can be compared before the recipient is
started. SSH's AEAD cipher already authenticates every byte: there the totals are compared.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal

from resync.actions.quoting import argv, q
from resync.actions.types import Ref, Shell
from resync.model.errors import ResyncError
from resync.model.keys import OLD_DATADIR, RUN_ID, Key
from resync.steps.copy import relay

Method = Literal["stream", "ssh", "ebs"]
Compress = Literal["none", "zstd", "lz4"]

# Never copied, group by group with the reason a plan shows (the order is the tar command's).
EXCLUDE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the donor's binary and relay logs and replication state: the recipient starts its own",
     ("./*-bin.[0-9]*", "./*-bin.index", "./*-bin.state", "./*relay-bin.*", "./*relay-log.*",
      "./master.info", "./relay-log.info", "./multi-master.info", "./master-*.info",
      "./relay-log-*.info")),
    ("run-time files of the donor's server process, recreated at start",
     ("./*.pid", "./*.sock", "./*.sock.lock", "./ibtmp1")),
)
COMMON_EXCLUDES = tuple(p for _, patterns in EXCLUDE_GROUPS for p in patterns)
FLAVOR_EXCLUDE_GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "mysql": (("the donor's identity: a MySQL server_uuid must stay unique",
               ("./auto.cnf", "./mysqld-auto.cnf")),
              ("MySQL 8's default binary log names", ("./binlog.[0-9]*", "./binlog.index")),
              ("run-time files of the donor's server process, recreated at start",
               ("./#innodb_temp",))),
    "mariadb": (),
}
FLAVOR_EXCLUDES = {flavor: tuple(p for _, patterns in groups for p in patterns)
                   for flavor, groups in FLAVOR_EXCLUDE_GROUPS.items()}


def exclusion_notes(excludes: tuple[str, ...]) -> tuple[str, ...]:
    """The copy's exclusions as a reviewer reads them: one line per reason."""
    reasons: dict[str, list[str]] = {}
    known = {p: why for groups in (EXCLUDE_GROUPS, *FLAVOR_EXCLUDE_GROUPS.values())
             for why, patterns in groups for p in patterns}
    for pattern in excludes:
        reasons.setdefault(known.get(pattern, "the runbook's copy.exclude"), []).append(pattern)
    return tuple(f"not copied: {' '.join(p.removeprefix('./') for p in patterns)} — {why}"
                 for why, patterns in reasons.items())


# What carries the stream on each end: the relay, run by python3 (3.5 or later). TOOL_PROBE
# (`plan --detect`) names what a host has; its first word says that it was probed.
LISTENERS = CONNECTORS = ("python3",)
PROBED = "tools-probed"
TOOL_PROBE = (f"echo {PROBED}; python3 -c 'import sys; sys.exit(sys.version_info < (3, 5))' "
              "2>/dev/null && echo python3; for t in zstd lz4 pv ssh; do command -v $t >/dev/null "
              "&& echo $t; done; true")

TAR_WRITTEN = re.compile(r"Total bytes written: (\d+)")
TAR_READ = re.compile(r"Total bytes read: (\d+)")


def excludes_for(flavor: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return COMMON_EXCLUDES + FLAVOR_EXCLUDES.get(flavor, ()) + extra


@dataclass(frozen=True)
class CopySpec:
    donor: str
    recipient: str
    donor_datadir: str
    recipient_datadir: str
    listen_address: str
    port: int
    owner: str
    excludes: tuple[str, ...]
    method: Method = "stream"
    compress: Compress = "none"
    compress_level: int = 1
    compress_threads: int = 0  # zstd -T0: all cores
    listener: str = "python3"  # runs the relay (stream)
    connector: str = "python3"
    digest: str = "crc32"  # the relay's checksum (stream): relay.DIGESTS
    ssh_target: str = ""  # user@host the donor's ssh client reaches the recipient as
    ssh_options: tuple[str, ...] = ()
    ssh_cipher: str | None = "aes128-gcm@openssh.com"
    ssh_sudo: bool = False
    rate_limit_mb_per_s: float | None = None  # pv -L on the donor: leave bandwidth for others

    def label(self) -> str:
        how = ("tar | relay -> relay | tar" if self.method == "stream"
               else f"tar | ssh ({self.ssh_cipher or 'default cipher'}) | tar")
        if self.compress != "none":
            how += f", {self.compress}"
        return how + (f", limited to {self.rate_limit_mb_per_s:g} MB/s" if self.rate_limit_mb_per_s
                      else "")

    def summary(self) -> str:
        """The copy in plain words: what moves from where to where, how, how it is checked."""
        how = {"stream": f"over a TCP stream (port {self.port}, the relay on both ends, plaintext)",
               "ssh": f"over ssh ({self.ssh_cipher or 'default cipher'})",
               "ebs": "from a volume made of the donor's snapshot"}[self.method]
        extra = (f", {self.compress}-compressed" if self.compress != "none" else "") + \
            (f", at most {self.rate_limit_mb_per_s:g} MB/s" if self.rate_limit_mb_per_s else "")
        return (f"{self.method}: {self.donor}:{self.donor_datadir} → {self.recipient}:"
                f"{self.recipient_datadir} {how}{extra}; {self.checked()} on both ends")

    def checked(self) -> str:
        """What the two ends' reports compare."""
        if self.method == "ssh":
            return "byte counts compared; ssh authenticates every byte"
        return f"byte counts and {'CRC-32' if self.digest == 'crc32' else self.digest} compared"


def _compress(spec: CopySpec) -> str:
    if spec.compress == "zstd":
        return f"zstd -q -{spec.compress_level} -T{spec.compress_threads} -c | "
    if spec.compress == "lz4":
        return f"lz4 -q -{spec.compress_level} -c | "
    return ""


def _decompress(spec: CopySpec) -> str:
    return {"zstd": "zstd -q -d -c | ", "lz4": "lz4 -q -d -c | "}.get(spec.compress, "")


def pick(available: frozenset[str] | set[str], wanted: tuple[str, ...], host: str, role: str) -> str:
    """The tool of `wanted` the host has. Tools that were not probed (a plan without --detect) are
    assumed there: preflight checks them before anything changes."""
    for tool in wanted:
        if tool in available or PROBED not in available:
            return tool
    raise ResyncError(f"{host} has no {' or '.join(wanted)} (3.5 or later) to {role} the stream: "
                      "apt-get install python3")


def clear_partial(spec: CopySpec) -> Shell:
    """Empty the recipient's new datadir (an earlier attempt's partial copy), but only while the
    old datadir is safely aside: the one copy that matters is never touched here."""
    d = q(spec.recipient_datadir)
    return Shell.line(spec.recipient, "set -e; test -d ", Ref(OLD_DATADIR),
                      f"; find {d} -mindepth 1 -delete", privileged=True)


def _unpack(spec: CopySpec, source: str | None) -> str:
    """The recipient's half: `source |` (none: its stdin) into tar x, then the owner."""
    d = q(spec.recipient_datadir)
    head = f"{source} | " if source else ""
    return (f"set -euo pipefail; {head}{_decompress(spec)}tar -x -f - --totals --no-same-owner "
            f"-C {d}; chown -R {q(spec.owner)} {d}")


def _pack(spec: CopySpec) -> str:
    excludes = " ".join(f"--exclude={q(p)}" for p in spec.excludes)
    limit = (f"pv -q -L {int(spec.rate_limit_mb_per_s * 1_000_000)} | "
             if spec.rate_limit_mb_per_s else "")
    return (f"tar -c -f - --totals {excludes} -C {q(spec.donor_datadir)} . | {limit}"
            f"{_compress(spec)}")


def _relay(spec: CopySpec, role: str) -> str:
    return relay.relay(role, spec.listen_address, spec.port, spec.digest)


def relay_installs(spec: CopySpec) -> tuple[Shell, ...]:
    """The relay written on both hosts (stream), the recipient's first: it starts first."""
    return (relay.install(spec.recipient), relay.install(spec.donor)) if spec.method == "stream" \
        else ()


# The two ends carry this tag (a no-op `:` command) so that a resumed run can find and stop
# the ends a killed run left behind, before it clears the datadir and copies again.
MARK = "resync-copy-run"


def tagged(host: str, *script: str | Ref) -> Shell:
    """A copy end, tagged with the run id so that `stop_leftovers` finds it after a crash."""
    return Shell.line(host, f": {MARK} ", Ref(RUN_ID), "; ", *script, privileged=True)


def stop_leftovers(host: str) -> Shell:
    """Stop the copy ends of this run still running on host (after a crash of resync)."""
    # 'resync-copy-ru[n] <id>;' matches the tag (and not another run whose id starts with this
    # one's) but not this command line, which holds the brackets; each end runs in its own
    # process group: stop the group, wait (10 s at most) until it is gone
    return Shell.line(host, f"for p in $(pgrep -f '{MARK[:-1]}[{MARK[-1]}] '", Ref(RUN_ID),
                      "';'); do g=$(ps -o pgid= -p $p | tr -d ' '); [ -n \"$g\" ] || continue; "
                      "kill -TERM -- -$g 2>/dev/null; for i in $(seq 100); do "
                      "kill -0 -- -$g 2>/dev/null || break; sleep 0.1; done; done; true",
                      privileged=True)


def receiver(spec: CopySpec) -> Shell | None:
    if spec.method == "ssh":
        return None  # the donor's ssh client runs the receiving half
    return tagged(spec.recipient, _unpack(spec, _relay(spec, "receive")))


def _ssh_to_recipient(spec: CopySpec, remote_script: str) -> str:
    """The donor's OpenSSH client running `remote_script` (fed from stdin) on the recipient."""
    remote = "bash -c " + shlex.quote(remote_script)
    if spec.ssh_sudo:
        remote = "sudo -n " + remote
    cipher = ["-c", spec.ssh_cipher] if spec.ssh_cipher else []
    return argv("ssh", "-o", "BatchMode=yes", *cipher, *spec.ssh_options, spec.ssh_target, remote)


def sender(spec: CopySpec) -> Shell:
    sink = (_relay(spec, "send") if spec.method == "stream"
            else _ssh_to_recipient(spec, _unpack(spec, None)))
    return tagged(spec.donor, f"set -euo pipefail; {_pack(spec)}{sink}")


def ssh_reachability(spec: CopySpec, into: Key) -> Shell:
    """Run on the donor: can its ssh client reach the recipient without a password or prompt?
    Prints the client's complaint, or RESYNC-SSH-OK last."""
    line = argv("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *spec.ssh_options,
                spec.ssh_target, "true")
    return Shell.line(spec.donor, f"{line} 2>&1 && echo RESYNC-SSH-OK", privileged=True,
                      timeout=30, check=False, into=into)


def bandwidth_probe(spec: CopySpec, nbytes: int) -> tuple[Shell | None, Shell]:
    """A short probe through the copy's own transport: `nbytes` of zeros (checksummed by the
    relays as the copy is), written to a scratch file beside the recipient's datadir (same
    filesystem) and deleted. It leaves out the donor's disk reads and tar: an upper bound."""
    scratch = f"{q(parent_dir(spec.recipient_datadir))}/.resync-probe.$$"

    def sink(source: str) -> str:
        # the scratch file goes whatever happens (no set -e before the rm)
        return f"set -uo pipefail; {source} > {scratch}; rc=$?; rm -f {scratch}; exit $rc"

    zeros = f"set -euo pipefail; head -c {nbytes} /dev/zero | "
    if spec.method == "ssh":
        return None, Shell.line(spec.donor, zeros + _ssh_to_recipient(spec, sink("cat")))
    return (Shell.line(spec.recipient, sink(_relay(spec, "receive")), privileged=True),
            Shell.line(spec.donor, zeros + _relay(spec, "send")))


def parent_dir(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] or "/"
