"""The shell pipelines of a physical copy, as data: which tools, which flags, on which end.

stream: the recipient's relay listens, the donor's `tar c` feeds its relay, which connects to it
        (`relay.py`: one process per end moves, counts and checksums the bytes in one pass; the
        receiver lets in only the donor's address presenting the run's one-time token).
ssh:    the donor runs `tar c | ssh recipient 'tar x'` with the OpenSSH client (encrypted).
tar reports its byte totals on both ends, and with the stream method each relay its count and
CRC-32 of what crossed the wire, so that the two ends can be compared before the recipient is
started. SSH's AEAD cipher already authenticates every byte: there the totals are compared.

Whatever the method, the recipient keeps its own keys: the donor's TLS and RSA key files (and
the runbook's `copy.keep_on_recipient`) are not copied, and the recipient's own are put back from
its old datadir after the copy (`restore_kept`), owner and mode as they were.
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

# MySQL's auto-generated key material (auto_generate_certs, sha256/caching_sha2 RSA keys): the
# recipient keeps its own of these names (MariaDB makes none; a site may put its own there)
KEY_FILES = ("ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "client-cert.pem",
             "client-key.pem", "private_key.pem", "public_key.pem")
KEEP_REASON = "the runbook's copy.keep_on_recipient: the recipient keeps its own"

# Never copied, group by group with the reason a plan shows (the order is the tar command's).
EXCLUDE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the donor's binary and relay logs and replication state: the recipient starts its own",
     ("./*-bin.[0-9]*", "./*-bin.index", "./*-bin.state", "./*relay-bin.*", "./*relay-log.*",
      "./master.info", "./relay-log.info", "./multi-master.info", "./master-*.info",
      "./relay-log-*.info")),
    ("run-time files of the donor's server process, recreated at start",
     ("./*.pid", "./*.sock", "./*.sock.lock", "./ibtmp1")),
    ("the donor's TLS and RSA keys and certificates (MySQL makes them in the datadir): two "
     "servers never share private keys; the recipient keeps its own",
     tuple(f"./{name}" for name in KEY_FILES)),
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


def exclusion_notes(excludes: tuple[str, ...], kept: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The copy's exclusions as a reviewer reads them: one line per reason (`kept`: the runbook's
    copy.keep_on_recipient)."""
    reasons: dict[str, list[str]] = {}
    known = {p: why for groups in (EXCLUDE_GROUPS, *FLAVOR_EXCLUDE_GROUPS.values())
             for why, patterns in groups for p in patterns}
    known |= {f"./{path}": KEEP_REASON for path in kept if f"./{path}" not in known}
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


def excludes_for(flavor: str, extra: tuple[str, ...] = (),
                 keep_on_recipient: tuple[str, ...] = ()) -> tuple[str, ...]:
    kept = tuple(f"./{path}" for path in keep_on_recipient if f"./{path}" not in COMMON_EXCLUDES)
    return COMMON_EXCLUDES + FLAVOR_EXCLUDES.get(flavor, ()) + extra + kept


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
    donor_address: str = ""  # the only peer the receiving relay lets in (stream; "": any)
    listen_timeout: float = 30.0  # seconds the receiving relay waits for the donor's
    keep_on_recipient: tuple[str, ...] = ()  # the runbook's: paths relative to the datadir

    @property
    def kept(self) -> tuple[str, ...]:
        """The recipient's own files that stay: the key files, the runbook's list."""
        return tuple(dict.fromkeys((*KEY_FILES, *self.keep_on_recipient)))

    def label(self) -> str:
        how = ("tar | relay -> relay | tar" if self.method == "stream"
               else f"tar | ssh ({self.ssh_cipher or 'default cipher'}) | tar")
        if self.compress != "none":
            how += f", {self.compress}"
        return how + (f", limited to {self.rate_limit_mb_per_s:g} MB/s" if self.rate_limit_mb_per_s
                      else "")

    def summary(self) -> str:
        """The copy in plain words: what moves from where to where, how, how it is checked."""
        peer = f"{self.donor} ({self.donor_address})" if self.donor_address else self.donor
        how = {"stream": f"over a TCP stream (port {self.port}, the relay on both ends, plaintext; "
                         f"only {peer} with the run's one-time token may feed it)",
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


def _unpack(spec: CopySpec) -> str:
    """The recipient's half: its stdin into tar x, then the owner."""
    d = q(spec.recipient_datadir)
    return (f"{_decompress(spec)}tar -x -f - --totals --no-same-owner -C {d}; "
            f"chown -R {q(spec.owner)} {d}")


def _pack(spec: CopySpec) -> str:
    excludes = " ".join(f"--exclude={q(p)}" for p in spec.excludes)
    limit = (f"pv -q -L {int(spec.rate_limit_mb_per_s * 1_000_000)} | "
             if spec.rate_limit_mb_per_s else "")
    return (f"tar -c -f - --totals {excludes} -C {q(spec.donor_datadir)} . | {limit}"
            f"{_compress(spec)}")


def relay_receiver(spec: CopySpec, token: Key = relay.TOKEN_SHA256) -> tuple[str | Ref, ...]:
    """The recipient's relay: it lets in only the donor, with the token `token` verifies."""
    return relay.receive(spec.listen_address, spec.port, spec.digest, peer=spec.donor_address,
                         timeout=spec.listen_timeout, token=token)


def relay_sender(spec: CopySpec, token: Key = relay.TOKEN_SHA256) -> tuple[str | Ref, ...]:
    return relay.send(spec.listen_address, spec.port, spec.digest, source=spec.donor_address,
                      token=token)


def relay_prelude(spec: CopySpec, token: Key = relay.TOKEN_SHA256) -> tuple[Shell, ...]:
    """The relay written on both hosts (stream), the recipient's first: it starts first; then a
    new one-time token on the donor (one per attempt: a sender uses its token up), its sha256
    captured into `token`."""
    if spec.method != "stream":
        return ()
    return (relay.install(spec.recipient), relay.install(spec.donor),
            relay.new_token(spec.donor, token))


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
    return tagged(spec.recipient, "set -euo pipefail; ", *relay_receiver(spec),
                  f" | {_unpack(spec)}")


def _ssh_to_recipient(spec: CopySpec, remote_script: str) -> str:
    """The donor's OpenSSH client running `remote_script` (fed from stdin) on the recipient."""
    remote = "bash -c " + shlex.quote(remote_script)
    if spec.ssh_sudo:
        remote = "sudo -n " + remote
    cipher = ["-c", spec.ssh_cipher] if spec.ssh_cipher else []
    return argv("ssh", "-o", "BatchMode=yes", *cipher, *spec.ssh_options, spec.ssh_target, remote)


def sender(spec: CopySpec) -> Shell:
    sink = (relay_sender(spec) if spec.method == "stream"
            else (_ssh_to_recipient(spec, f"set -euo pipefail; {_unpack(spec)}"),))
    return tagged(spec.donor, f"set -euo pipefail; {_pack(spec)}", *sink)


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

    # the scratch file goes whatever happens (no set -e before the rm)
    into_scratch = f" > {scratch}; rc=$?; rm -f {scratch}; exit $rc"
    zeros = f"set -euo pipefail; head -c {nbytes} /dev/zero | "
    if spec.method == "ssh":
        return None, Shell.line(spec.donor, zeros + _ssh_to_recipient(
            spec, f"set -uo pipefail; cat{into_scratch}"))
    token = relay.PROBE_TOKEN_SHA256  # its own: the copy's is captured later in the run
    return (Shell.line(spec.recipient, "set -uo pipefail; ", *relay_receiver(spec, token),
                       into_scratch, privileged=True),
            Shell.line(spec.donor, zeros, *relay_sender(spec, token)))


def parent_dir(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] or "/"


# -- the recipient's own files stay (copy.keep_on_recipient and the key files) --------------------

KEPT = Key("copy.kept_on_recipient")  # which of them it had, put back


def copy_kept(spec: CopySpec, source: tuple[str | Ref, ...],
              target: tuple[str | Ref, ...]) -> tuple[str | Ref, ...]:
    """A script: each of `spec.kept` found in `source` copied into `target` as it is (cp -a:
    owner, mode, times; its directories too) and its name printed; a missing `source` copies
    nothing. Each name is one quoted word."""
    names = " ".join(q(n) for n in spec.kept)
    return ("set -euo pipefail; s=", *source, "; t=", *target, "; [ -d \"$s\" ] || { echo \"no "
            "$s: nothing to keep\" >&2; exit 0; }; cd -- \"$s\"; for f in ", names, "; do if "
            "[ -e \"$f\" ] || [ -L \"$f\" ]; then cp -a --parents -- \"$f\" \"$t\"/; printf "
            "'%s ' \"$f\"; fi; done")


def restore_kept(spec: CopySpec, source: tuple[str | Ref, ...] = (Ref(OLD_DATADIR),)) -> Shell:
    """After the copy, before the recipient starts: its own key files (and the runbook's
    keep_on_recipient) back from its old datadir; a name it had none of stays absent (MySQL makes
    new keys at start). The donor's were not copied. Safe to repeat."""
    return Shell.line(spec.recipient, *copy_kept(spec, source, (q(spec.recipient_datadir),)),
                      privileged=True, into=KEPT)


def kept_note(spec: CopySpec, whence: str = "its old datadir") -> str:
    return (f"kept on {spec.recipient}: its own {' '.join(spec.kept)} — put back from {whence} "
            "after the copy, owner and mode as they were; a name it has no file of stays absent "
            "(MySQL makes new keys at start)")


def copy_notes(spec: CopySpec, whence: str = "its old datadir") -> tuple[str, ...]:
    """What the plan says the copy leaves out, and what stays on the recipient."""
    return (*exclusion_notes(spec.excludes, spec.keep_on_recipient), kept_note(spec, whence))
