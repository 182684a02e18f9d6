"""The shell pipelines of a physical copy, as data: which tools, which flags, on which end.

stream: the recipient listens (`nc -l`, or socat), the donor's `tar c` connects to it.
ssh:    the donor runs `tar c | ssh recipient 'tar x'` with the OpenSSH client (encrypted).
Both ends hash what crosses the wire (`openssl dgst -sha256` in a fifo beside the pipe) and tar
reports its byte totals, so the two ends can be compared before the recipient is started.
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

Method = Literal["stream", "ssh", "ebs"]
Compress = Literal["none", "zstd", "lz4"]

# Never copied: the donor's binary/relay logs and replication state (the recipient gets its own),
# identity (auto.cnf: MySQL server_uuid must stay unique), run-time files.
COMMON_EXCLUDES = (
    "./*-bin.[0-9]*", "./*-bin.index", "./*-bin.state", "./*relay-bin.*", "./*relay-log.*",
    "./master.info", "./relay-log.info", "./multi-master.info", "./master-*.info",
    "./relay-log-*.info", "./*.pid", "./*.sock", "./*.sock.lock", "./ibtmp1",
)
FLAVOR_EXCLUDES = {
    # MySQL 8 names its binary logs binlog.NNNNNN by default; #innodb_temp is recreated at start
    "mysql": ("./auto.cnf", "./mysqld-auto.cnf", "./binlog.[0-9]*", "./binlog.index",
              "./#innodb_temp"),
    "mariadb": (),
}

# what each end may use to carry the stream, best first
LISTENERS = ("nc-openbsd", "socat")
CONNECTORS = ("nc-openbsd", "socat", "bash-tcp")
TOOL_PROBE = ("nc -h 2>&1 | grep -q OpenBSD && echo nc-openbsd; command -v socat >/dev/null && "
              "echo socat; command -v bash >/dev/null && echo bash-tcp; for t in zstd lz4 pv ssh; "
              "do command -v $t >/dev/null && echo $t; done; true")

SENT = re.compile(r"^RESYNC sent sha256=([0-9a-f]{64})$", re.MULTILINE)
RECEIVED = re.compile(r"^RESYNC received sha256=([0-9a-f]{64})$", re.MULTILINE)
TAR_WRITTEN = re.compile(r"Total bytes written: (\d+)")
TAR_READ = re.compile(r"Total bytes read: (\d+)")

_HASH_FIFO = (
    't=$(mktemp -d /tmp/resync-copy.XXXXXX); trap "rm -rf -- $t" EXIT; mkfifo "$t/h"; '
    'openssl dgst -sha256 -r < "$t/h" > "$t/sum" & hp=$!; '
)


def _report(direction: str) -> str:
    return f'wait $hp; echo "RESYNC {direction} sha256=$(cut -d" " -f1 "$t/sum")"'


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
    listener: str = "nc-openbsd"
    connector: str = "nc-openbsd"
    ssh_target: str = ""  # user@host the donor's ssh client reaches the recipient as
    ssh_options: tuple[str, ...] = ()
    ssh_cipher: str | None = "aes128-gcm@openssh.com"
    ssh_sudo: bool = False
    rate_limit_mb_per_s: float | None = None  # pv -L on the donor: leave bandwidth for others

    def label(self) -> str:
        how = (f"tar | {self.connector} -> {self.listener} | tar" if self.method == "stream"
               else f"tar | ssh ({self.ssh_cipher or 'default cipher'}) | tar")
        if self.compress != "none":
            how += f", {self.compress}"
        return how + (f", limited to {self.rate_limit_mb_per_s:g} MB/s" if self.rate_limit_mb_per_s
                      else "")


def _compress(spec: CopySpec) -> str:
    if spec.compress == "zstd":
        return f"zstd -q -{spec.compress_level} -T{spec.compress_threads} -c | "
    if spec.compress == "lz4":
        return f"lz4 -q -{spec.compress_level} -c | "
    return ""


def _decompress(spec: CopySpec) -> str:
    return {"zstd": "zstd -q -d -c | ", "lz4": "lz4 -q -d -c | "}.get(spec.compress, "")


def _socat_host(address: str) -> str:
    """socat reads `host:port`: an IPv6 address goes in brackets."""
    return f"[{address}]" if ":" in address else address


def listen(tool: str, address: str, port: int) -> str:
    if tool == "nc-openbsd":
        return f"nc -d -l {q(address)} {port}"
    if tool == "socat":
        return argv("socat", "-u", f"TCP-LISTEN:{port},bind={_socat_host(address)},reuseaddr",
                    "STDOUT")
    raise ResyncError(f"no listener tool '{tool}' (need OpenBSD nc or socat on the recipient)")


def connect(tool: str, address: str, port: int) -> str:
    if tool == "nc-openbsd":
        return f"nc -N {q(address)} {port}"
    if tool == "socat":
        return argv("socat", "-u", "STDIN", f"TCP:{_socat_host(address)}:{port}")
    if tool == "bash-tcp":
        return f"cat > {q(f'/dev/tcp/{address}/{port}')}"
    raise ResyncError(f"no connector tool '{tool}'")


def pick(available: frozenset[str] | set[str], wanted: tuple[str, ...], host: str, role: str) -> str:
    for tool in wanted:
        if tool in available:
            return tool
    raise ResyncError(f"{host} has none of {', '.join(wanted)} to {role} the stream: "
                      "apt-get install netcat-openbsd (or socat)")


def clear_partial(spec: CopySpec) -> Shell:
    """Empty the recipient's new datadir (an earlier attempt's partial copy), but only while the
    old datadir is safely aside: the one copy that matters is never touched here."""
    d = q(spec.recipient_datadir)
    return Shell.line(spec.recipient, "set -e; test -d ", Ref(OLD_DATADIR),
                      f"; find {d} -mindepth 1 -delete", privileged=True)


def _unpack(spec: CopySpec, source: str) -> str:
    d = q(spec.recipient_datadir)
    return (f"set -euo pipefail; {_HASH_FIFO}{source} | tee \"$t/h\" | {_decompress(spec)}"
            f"tar -x -f - --totals --no-same-owner -C {d}; chown -R {q(spec.owner)} {d}; "
            + _report("received"))


def _pack(spec: CopySpec) -> str:
    excludes = " ".join(f"--exclude={q(p)}" for p in spec.excludes)
    limit = (f"pv -q -L {int(spec.rate_limit_mb_per_s * 1_000_000)} | "
             if spec.rate_limit_mb_per_s else "")
    return (f"tar -c -f - --totals {excludes} -C {q(spec.donor_datadir)} . | {limit}"
            f"{_compress(spec)}tee \"$t/h\"")


# The two ends carry this tag (a no-op `:` command) so that a resumed run can find and stop
# the ends a killed run left behind, before it clears the datadir and copies again.
MARK = "resync-copy-run"


def tagged(host: str, *script: str | Ref) -> Shell:
    """A copy end, tagged with the run id so that `stop_leftovers` finds it after a crash."""
    return Shell.line(host, f": {MARK} ", Ref(RUN_ID), "; ", *script, privileged=True)


def stop_leftovers(host: str) -> Shell:
    """Stop the copy ends of this run still running on host (after a crash of resync)."""
    # 'resync-copy-ru[n] ' matches the tag but not this command line, which holds the brackets
    # each end runs in its own process group: stop the group, wait (10 s at most) until it is gone
    return Shell.line(host, f"for p in $(pgrep -f '{MARK[:-1]}[{MARK[-1]}] '", Ref(RUN_ID),
                      "); do g=$(ps -o pgid= -p $p | tr -d ' '); [ -n \"$g\" ] || continue; "
                      "kill -TERM -- -$g 2>/dev/null; for i in $(seq 100); do "
                      "kill -0 -- -$g 2>/dev/null || break; sleep 0.1; done; done; true",
                      privileged=True)


def receiver(spec: CopySpec) -> Shell | None:
    if spec.method == "ssh":
        return None  # the donor's ssh client runs the receiving half
    return tagged(spec.recipient, _unpack(spec, listen(spec.listener, spec.listen_address,
                                                        spec.port)))


def _ssh_to_recipient(spec: CopySpec, remote_script: str) -> str:
    """The donor's OpenSSH client running `remote_script` (fed from stdin) on the recipient."""
    remote = "bash -c " + shlex.quote(remote_script)
    if spec.ssh_sudo:
        remote = "sudo -n " + remote
    cipher = ["-c", spec.ssh_cipher] if spec.ssh_cipher else []
    return argv("ssh", "-o", "BatchMode=yes", *cipher, *spec.ssh_options, spec.ssh_target, remote)


def sender(spec: CopySpec) -> Shell:
    sink = (connect(spec.connector, spec.listen_address, spec.port) if spec.method == "stream"
            else _ssh_to_recipient(spec, _unpack(spec, "cat")))
    return tagged(spec.donor, f"set -euo pipefail; {_HASH_FIFO}{_pack(spec)} | {sink}; "
                   + _report("sent"))


def ssh_reachability(spec: CopySpec, into: Key) -> Shell:
    """Run on the donor: can its ssh client reach the recipient without a password or prompt?
    Prints the client's complaint, or RESYNC-SSH-OK last."""
    line = argv("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *spec.ssh_options,
                spec.ssh_target, "true")
    return Shell.line(spec.donor, f"{line} 2>&1 && echo RESYNC-SSH-OK", privileged=True,
                      timeout=30, check=False, into=into)


def bandwidth_probe(spec: CopySpec, nbytes: int) -> tuple[Shell | None, Shell]:
    """A short probe through the copy's own pipeline: `nbytes` of zeros, hashed on both ends as
    the copy is, written to a scratch file beside the recipient's datadir (same filesystem) and
    deleted. It leaves out the donor's disk reads and tar, so it is an upper bound."""
    scratch = f"{q(parent_dir(spec.recipient_datadir))}/.resync-probe.$$"

    def sink(source: str) -> str:
        # the scratch file goes whatever happens (no set -e before the rm)
        return (f"set -uo pipefail; {_HASH_FIFO}{source} | tee \"$t/h\" > {scratch}; rc=$?; "
                f"rm -f {scratch}; wait $hp; exit $rc")

    def send(to: str) -> Shell:
        return Shell.line(spec.donor, f"set -euo pipefail; {_HASH_FIFO}head -c {nbytes} /dev/zero"
                          f" | tee \"$t/h\" | {to}; wait $hp")

    if spec.method == "ssh":
        return None, send(_ssh_to_recipient(spec, sink("cat")))
    listener = listen(spec.listener, spec.listen_address, spec.port)
    return (Shell.line(spec.recipient, sink(listener), privileged=True),
            send(connect(spec.connector, spec.listen_address, spec.port)))


def parent_dir(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] or "/"
