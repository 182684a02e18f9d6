"""The physical copy, stream method: the seed's `tar c | nc` -> `nc | tar x`, host to host.

Bulk data flows from the donor's tar straight into the recipient's tar; the controller only
starts the two ends, watches progress (bytes on the recipient's disk), detects stalls and
compares what both ends saw: tar's byte totals and a SHA-256 of the stream computed on each side
(`openssl dgst`, ~4x faster here than coreutils sha256sum, so it does not cap the copy).
"""

from __future__ import annotations

import re
import time

from resync.actions import Action, Check, Ref, Shell, q
from resync.errors import HostError, ResyncError
from resync.hosts import Background
from resync.steps.base import Step, StepContext
from resync.steps.datadir import OLD_DATADIR
from resync.steps.services import server_answers
from resync.waiting import wait_until

# Never copied: the donor's binary/relay logs and replication state (the recipient gets its own),
# identity (auto.cnf: MySQL server_uuid must stay unique), run-time files.
COMMON_EXCLUDES = (
    "./*-bin.[0-9]*", "./*-bin.index", "./*-bin.state", "./*relay-bin.*", "./*relay-log.*",
    "./master.info", "./relay-log.info", "./multi-master.info", "./master-*.info",
    "./relay-log-*.info", "./*.pid", "./*.sock", "./*.sock.lock", "./ibtmp1",
)
FLAVOR_EXCLUDES = {"mysql": ("./auto.cnf", "./mysqld-auto.cnf"), "mariadb": ()}

DONOR_BYTES = "donor.datadir_bytes"
_RESULT = re.compile(r"^RESYNC sha256=([0-9a-f]{64})$", re.MULTILINE)
_TOTAL = re.compile(r"Total bytes (?:written|read): (\d+)")

_HASHED_PIPE = (
    't=$(mktemp -d /tmp/resync-copy.XXXXXX); trap \'rm -rf "$t"\' EXIT; mkfifo "$t/h"; '
    'openssl dgst -sha256 -r < "$t/h" > "$t/sum" & hp=$!; '
)
_REPORT = 'wait $hp; echo "RESYNC sha256=$(cut -d" " -f1 "$t/sum")"'


def excludes_for(flavor: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return COMMON_EXCLUDES + FLAVOR_EXCLUDES.get(flavor, ()) + extra


class StreamCopy(Step):
    destructive = True
    why = ("cold physical copy of the donor's datadir into the recipient's empty datadir; "
           "plaintext on the wire: only across trusted networks")

    def __init__(self, donor: str, recipient: str, *, donor_datadir: str, recipient_datadir: str,
                 listen_address: str, port: int, owner: str, excludes: tuple[str, ...],
                 stall_timeout: float, listen_timeout: float) -> None:
        self.donor, self.recipient = donor, recipient
        self.donor_datadir, self.recipient_datadir = donor_datadir, recipient_datadir.rstrip("/")
        self.listen_address, self.port, self.owner = listen_address, port, owner
        self.excludes, self.stall_timeout = excludes, stall_timeout
        self.listen_timeout = listen_timeout
        self.key = f"copy-datadir:{donor}->{recipient}"
        self.title = f"Copy the datadir {donor} -> {recipient} (tar | nc stream, hashed)"
        self.hosts = (donor, recipient)

    def receiver(self) -> Shell:
        d = q(self.recipient_datadir)
        # a partial copy from an earlier attempt is cleared, but only while the old datadir is
        # safely aside: the one copy that matters is never touched here
        return Shell.line(
            self.recipient,
            "set -euo pipefail; test -d ", Ref(OLD_DATADIR), f"; find {d} -mindepth 1 -delete; ",
            _HASHED_PIPE,
            f"nc -d -l {q(self.listen_address)} {self.port} | tee \"$t/h\" | "
            f"tar -x -f - --totals --no-same-owner -C {d}; ",
            f"chown -R {q(self.owner)} {d}; ", _REPORT,
            privileged=True)

    def sender(self) -> Shell:
        excludes = " ".join(f"--exclude={q(p)}" for p in self.excludes)
        return Shell.line(
            self.donor,
            "set -euo pipefail; ", _HASHED_PIPE,
            f"tar -c -f - --totals {excludes} -C {q(self.donor_datadir)} . | tee \"$t/h\" | "
            f"nc -N {q(self.listen_address)} {self.port}; ", _REPORT,
            privileged=True)

    def plan(self) -> tuple[Action, ...]:
        return (
            Check(self.recipient, f"port {self.port} is free; receiver listens first"),
            self.receiver(),
            self.sender(),
            Check(self.recipient, f"progress: bytes in {self.recipient_datadir} (du -sb) against "
                  f"the donor's datadir size; no progress for {self.stall_timeout:g}s kills "
                  "both ends; byte totals and SHA-256 of both ends must match"),
        )

    def run(self, ctx: StepContext) -> None:
        for host in self.hosts:
            if server_answers(ctx, host):
                raise ResyncError(f"MySQL on {host} is running: a cold copy needs it stopped")
        recipient_host = ctx.host(self.recipient)
        receiver = recipient_host.start(self.receiver().bind(ctx.captured), privileged=True)
        sender: Background | None = None
        try:
            self._wait_listening(ctx, receiver)
            sender = ctx.host(self.donor).start(self.sender().bind(ctx.captured), privileged=True)
            started = time.monotonic()
            self._watch(ctx, receiver, sender)
            sent, received = sender.wait(), receiver.wait()
            seconds = time.monotonic() - started
        except BaseException:
            for proc in (sender, receiver):
                if proc is not None:
                    proc.kill()
            raise
        ctx.record_shell(self.sender(), sent.exit_code, sent.tail())
        ctx.record_shell(self.receiver(), received.exit_code, received.tail())
        for end, result in (("sender", sent), ("receiver", received)):
            if not result.ok:
                raise HostError(result.host, f"copy {end}", result.exit_code, result.tail())
        self._compare(ctx, sent.stdout + sent.stderr, received.stdout + received.stderr, seconds)

    def _wait_listening(self, ctx: StepContext, receiver: Background) -> None:
        host = ctx.host(self.recipient)

        def listening() -> bool:
            if receiver.poll() is not None:
                result = receiver.wait()
                raise HostError(self.recipient, "copy receiver (nc -l)", result.exit_code,
                                result.tail() or f"could not listen on port {self.port}")
            probe = host.run(f"ss -Hltn 'sport = :{self.port}'", check=False)
            return bool(probe.stdout.strip())

        wait_until(listening, what=f"the receiver to listen on {self.listen_address}:{self.port}",
                   timeout=self.listen_timeout, interval=0.05, clock=ctx.clock)
        if receiver.poll() is not None:  # someone else holds the port and ours died
            result = receiver.wait()
            raise HostError(self.recipient, "copy receiver (nc -l)", result.exit_code, result.tail())

    def _watch(self, ctx: StepContext, receiver: Background, sender: Background) -> None:
        host = ctx.host(self.recipient)
        total = ctx.captured.get(DONOR_BYTES)
        total_bytes = int(total) if isinstance(total, int | float) else None
        last_bytes, last_change = -1, ctx.clock.now()
        while receiver.poll() is None or sender.poll() is None:
            probe = host.run(f"du -sb {q(self.recipient_datadir)} | cut -f1", check=False,
                             privileged=True)
            done = int(probe.stdout.strip() or 0) if probe.ok else last_bytes
            if done != last_bytes:
                last_bytes, last_change = done, ctx.clock.now()
                ctx.progress(done, total_bytes, "copy")
            elif ctx.clock.now() - last_change > self.stall_timeout:
                raise ResyncError(f"copy stalled: no progress for {self.stall_timeout:g}s at "
                                  f"{done} bytes; both ends stopped, old datadir kept")
            if sender.poll() not in (None, 0) and receiver.poll() is None:
                receiver.kill()  # the sender died: the receiver would wait for ever
            ctx.clock.sleep(0.5)
        ctx.progress(last_bytes, total_bytes, "copy")

    def _compare(self, ctx: StepContext, sent: str, received: str, seconds: float) -> None:
        s_hash, r_hash = _RESULT.search(sent), _RESULT.search(received)
        s_total, r_total = _TOTAL.search(sent), _TOTAL.search(received)
        if not (s_hash and r_hash and s_total and r_total):
            raise ResyncError("copy finished but an end did not report its byte total and hash")
        if s_hash.group(1) != r_hash.group(1) or s_total.group(1) != r_total.group(1):
            raise ResyncError(
                f"copy integrity check failed: donor sent {s_total.group(1)} bytes sha256 "
                f"{s_hash.group(1)}, recipient received {r_total.group(1)} bytes sha256 "
                f"{r_hash.group(1)}; the recipient will not be started, old datadir kept")
        nbytes = int(s_total.group(1))
        ctx.capture("copy.bytes", nbytes)
        ctx.capture("copy.sha256", s_hash.group(1))
        ctx.capture("copy.seconds", round(seconds, 3))
        ctx.capture("copy.bytes_per_second", round(nbytes / seconds) if seconds else None)
