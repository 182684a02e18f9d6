"""The physical copy step: host to host, hashed on both ends, watched for progress and stalls.

Bulk data flows from the donor's tar straight into the recipient's tar (a TCP stream or the
OpenSSH client on the donor); the controller only starts the ends, polls the bytes landed in the
recipient's datadir, stops both ends when nothing moves for `stall_timeout`, and compares what
the two ends saw (tar's byte totals, SHA-256 of the stream) before the recipient may start.
"""

from __future__ import annotations

import time
from dataclasses import replace

from resync.actions.types import Action, Check, Shell, q
from resync.model.errors import HostError, ResyncError
from resync.run.waiting import Clock, wait_until
from resync.steps.base import Step, StepContext
from resync.steps.copy.commands import (
    RECEIVED,
    SENT,
    TAR_READ,
    TAR_WRITTEN,
    CopySpec,
    bandwidth_probe,
    clear_partial,
    receiver,
    sender,
    stop_leftovers,
)
from resync.steps.services import require_stopped
from resync.transport.local import Background, CommandResult

DONOR_BYTES = "donor.datadir_bytes"
POLL_SECONDS = 0.5


class CopyDatadir(Step):
    destructive = True

    def __init__(self, spec: CopySpec, *, stall_timeout: float, listen_timeout: float) -> None:
        self.spec, self.stall_timeout, self.listen_timeout = spec, stall_timeout, listen_timeout
        self.key = f"copy-datadir:{spec.donor}->{spec.recipient}"
        self.title = f"Copy the datadir {spec.donor} -> {spec.recipient} ({spec.label()}, hashed)"
        self.hosts = (spec.donor, spec.recipient)
        self.why = ("cold physical copy into the recipient's empty datadir; " +
                    ("plaintext on the wire: only across trusted networks" if spec.method == "stream"
                     else "encrypted by OpenSSH"))

    def plan(self) -> tuple[Action, ...]:
        s = self.spec
        recv = receiver(s)
        first = ([Check(s.recipient, f"receiver listens on {s.listen_address}:{s.port} first")]
                 if recv else [])
        return (stop_leftovers(s.donor), stop_leftovers(s.recipient), clear_partial(s), *first,
                *([recv] if recv else []), sender(s),
                Check(s.recipient, f"progress: bytes in {s.recipient_datadir} (du -sb) against the "
                      f"donor's datadir size; no progress for {self.stall_timeout:g}s stops both "
                      "ends; byte totals and SHA-256 of both ends must match"))

    def run(self, ctx: StepContext) -> None:
        for host in self.hosts:  # the ends of an attempt whose controller died may still run
            ctx.shell(stop_leftovers(host))
        for host, datadir in ((self.spec.donor, self.spec.donor_datadir),
                              (self.spec.recipient, self.spec.recipient_datadir)):
            require_stopped(ctx, host, datadir, "a cold copy needs both servers stopped")
        ctx.shell(clear_partial(self.spec))
        sent, received, seconds = run_pipeline(ctx, self.spec, receiver(self.spec),
                                               sender(self.spec), stall_timeout=self.stall_timeout,
                                               listen_timeout=self.listen_timeout)
        nbytes = compare_ends(sent.stdout + sent.stderr,
                              (received.stdout + received.stderr) if received else "")
        ctx.progress(nbytes, nbytes, "copy")  # the bar ends full: every byte arrived and matched
        ctx.capture("copy.bytes", nbytes)
        ctx.capture("copy.seconds", round(seconds, 3))
        ctx.capture("copy.bytes_per_second", round(nbytes / seconds) if seconds else None)


def run_pipeline(ctx: StepContext, spec: CopySpec, recv: Shell | None, send: Shell, *,
                 stall_timeout: float, listen_timeout: float,
                 watch: bool = True) -> tuple[CommandResult, CommandResult | None, float]:
    """Start the receiver (if any), wait for its listener, start the sender, watch, reap both."""
    receiving: Background | None = None
    sending: Background | None = None
    try:
        if recv is not None:
            receiving = ctx.host(spec.recipient).start(recv.bind(ctx.captured),
                                                       privileged=recv.privileged)
            _wait_listening(ctx, spec, receiving, listen_timeout)
        started = time.monotonic()
        sending = ctx.host(spec.donor).start(send.bind(ctx.captured), privileged=send.privileged)
        if watch:
            _watch(ctx, spec, receiving, sending, stall_timeout)
        sent = sending.wait()
        received = receiving.wait() if receiving else None
        seconds = time.monotonic() - started
    except BaseException:
        for end in (sending, receiving):
            if end is not None:
                end.kill()
        raise
    ctx.record_shell(send, sent.exit_code, sent.tail())
    if recv is not None and received is not None:
        ctx.record_shell(recv, received.exit_code, received.tail())
    for name, result in (("sender", sent), ("receiver", received)):
        if result is not None and not result.ok:
            raise HostError(result.host, f"copy {name}", result.exit_code, result.tail())
    return sent, received, seconds


def _wait_listening(ctx: StepContext, spec: CopySpec, receiving: Background, timeout: float) -> None:
    host = ctx.host(spec.recipient)

    def listening() -> bool:
        if receiving.poll() is not None:
            result = receiving.wait()
            raise HostError(spec.recipient, "copy receiver", result.exit_code,
                            result.tail() or f"could not listen on port {spec.port}")
        probe = host.run(f"ss -Hltn 'sport = :{spec.port}'", check=False)
        return bool(probe.stdout.strip())

    wait_until(listening, what=f"the receiver to listen on {spec.listen_address}:{spec.port}",
               timeout=timeout, interval=0.05, clock=ctx.clock)
    if receiving.poll() is not None:  # someone else holds the port and ours died
        result = receiving.wait()
        raise HostError(spec.recipient, "copy receiver", result.exit_code,
                        result.tail() or f"port {spec.port} is taken")


def _watch(ctx: StepContext, spec: CopySpec, receiving: Background | None, sending: Background,
           stall_timeout: float) -> None:
    host = ctx.host(spec.recipient)
    total = ctx.captured.get(DONOR_BYTES)
    total_bytes = int(total) if isinstance(total, int | float) else None
    stall = StallDetector(stall_timeout, ctx.clock)
    done = 0
    while sending.poll() is None or (receiving is not None and receiving.poll() is None):
        probe = host.run(f"du -sb {q(spec.recipient_datadir)} | cut -f1", check=False,
                         privileged=True)
        if probe.ok and probe.stdout.strip().isdigit():
            done = int(probe.stdout.strip())
            ctx.progress(done, total_bytes, "copy")
        if stall.stalled(done):
            raise ResyncError(f"copy stalled: no progress for {stall_timeout:g}s at {done} bytes; "
                              "both ends stopped, the old datadir is kept")
        if sending.poll() not in (None, 0) and receiving is not None and receiving.poll() is None:
            receiving.kill()  # the sender died: the receiver would wait for ever
        ctx.clock.sleep(POLL_SECONDS)


class StallDetector:
    def __init__(self, timeout: float, clock: Clock) -> None:
        self.timeout, self.clock = timeout, clock
        self.last: int | None = None
        self.since = clock.now()

    def stalled(self, value: int) -> bool:
        now = self.clock.now()
        if value != self.last:
            self.last, self.since = value, now
            return False
        return now - self.since > self.timeout


def compare_ends(sent: str, received: str) -> int:
    """Both ends must report the same byte total and SHA-256; returns the byte count."""
    s_hash, r_hash = SENT.search(sent), RECEIVED.search(received) or RECEIVED.search(sent)
    s_total = TAR_WRITTEN.search(sent)
    r_total = TAR_READ.search(received) or TAR_READ.search(sent)
    if not (s_hash and r_hash and s_total and r_total):
        raise ResyncError("copy finished but an end did not report its byte total and hash")
    if s_hash.group(1) != r_hash.group(1) or s_total.group(1) != r_total.group(1):
        raise ResyncError(
            f"copy integrity check failed: donor sent {s_total.group(1)} bytes sha256 "
            f"{s_hash.group(1)}, recipient received {r_total.group(1)} bytes sha256 "
            f"{r_hash.group(1)}; the recipient will not be started, the old datadir is kept")
    return int(s_total.group(1))


def measure_bandwidth(ctx: StepContext, spec: CopySpec, nbytes: int = 256 * 1024 * 1024) -> float:
    """Bytes/s of the copy transport between donor and recipient (zeros, no disk involved)."""
    probe_spec = replace(spec, compress="none")
    recv, send = bandwidth_probe(probe_spec, nbytes)
    _, _, seconds = run_pipeline(ctx, probe_spec, recv, send, stall_timeout=30, listen_timeout=10,
                                 watch=False)
    return nbytes / seconds if seconds > 0 else float("inf")
