"""The physical copy step: host to host, checked on both ends, watched for progress and stalls.

Bulk data flows from the donor's tar straight into the recipient's tar (a relay on each end over
one TCP connection, or the OpenSSH client on the donor); the controller only starts the ends,
polls the bytes landed in the recipient's datadir, stops both ends when nothing moves for
`stall_timeout`, and compares what the two ends saw (tar's byte totals; with the relay also its
byte count and checksum of the wire stream) before the recipient may start.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from resync.actions.conditions import ProbeAnswer, ProbeCondition, Same
from resync.actions.quoting import q
from resync.actions.types import Action, Assert, Composite, Leaf, Poll, Shell
from resync.model.errors import HostError, ResyncError
from resync.model.keys import (
    COPY_BYTES,
    COPY_RATE,
    COPY_SECONDS,
    DONOR_BYTES,
    PROBE_RATE,
    Key,
    StepId,
    StepKind,
)
from resync.run.executor import CompositeRun, Started
from resync.run.waiting import Clock
from resync.steps.base import Step
from resync.steps.copy.commands import (
    TAR_READ,
    TAR_WRITTEN,
    CopySpec,
    bandwidth_probe,
    clear_partial,
    copy_notes,
    receiver,
    relay_prelude,
    restore_kept,
    sender,
    stop_leftovers,
)
from resync.steps.copy.relay import PROBE_TOKEN_SHA256, REPORT
from resync.steps.services import require_stopped
from resync.transport.local import CommandResult

POLL_SECONDS = 1.0
# what each end saw: "tar=<bytes> wire=<bytes> crc32=<hex>" (ssh: "tar=<bytes>")
SENT_STREAM = Key("copy.sent")
RECEIVED_STREAM = Key("copy.received")
# the connections the receiving relay turned away ("<ip>: why; ..."; None: none), the copy's
# and the bandwidth probe's
REJECTED_PEERS = Key("copy.rejected_peers")
PROBE_REJECTED_PEERS = Key("probe.rejected_peers")
REJECTED = re.compile(r"^RESYNC rejected peer (.*)$", re.MULTILINE)
PROBE_TIMEOUT = 120.0  # seconds: a probe slower than ~1 MB/s says enough


@dataclass(frozen=True)
class Watching(ProbeCondition):
    """Rendered in the plan; the composite's own loop decides (it also watches the ends)."""

    what: str

    def describe(self) -> str:
        return self.what

    def holds(self, answer: ProbeAnswer) -> bool:
        return False


def listening_poll(spec: CopySpec, timeout: float) -> Poll:
    return Poll(Shell.line(spec.recipient, f"ss -Hltn 'sport = :{spec.port}'", check=False),
                Watching(f"something listens on port {spec.port} (the receiver, while it runs)"),
                timeout, 0.05)


def progress_poll(spec: CopySpec, stall_timeout: float) -> Poll:
    return Poll(Shell.line(spec.recipient, f"du -sb {q(spec.recipient_datadir)} | cut -f1",
                           privileged=True, check=False),
                Watching(f"both ends have exited; no growth for {stall_timeout:g}s stops both"),
                stall_timeout, POLL_SECONDS)


class StreamEnds(Composite):
    """The two ends of a copy (or of a bandwidth probe): receiver first, then the sender.
    `prelude`: run first, one after the other (the relay written on each host, the run's token
    made on the donor)."""

    def __init__(self, spec: CopySpec, recv: Shell | None, send: Shell, *, listen_timeout: float,
                 stall_timeout: float | None, title: str, prelude: tuple[Shell, ...] = ()) -> None:
        self.spec, self.recv, self.send, self.prelude = spec, recv, send, prelude
        self.listen_timeout, self.stall_timeout = listen_timeout, stall_timeout
        # without a watch (a probe), the ends are given this long (None: a watched copy)
        self.wait_timeout: float | None = None
        self.host, self.title = spec.donor, title
        self.rejected_into = REJECTED_PEERS

    def parts(self) -> tuple[Leaf, ...]:
        out: list[Leaf] = list(self.prelude)
        if self.recv is not None:
            out += [self.recv, listening_poll(self.spec, self.listen_timeout)]
        out.append(self.send)
        if self.stall_timeout is not None:
            out.append(progress_poll(self.spec, self.stall_timeout))
        return tuple(out)

    def execute(self, run: CompositeRun) -> None:
        self.results = run_ends(run, self)


@dataclass(frozen=True)
class EndResults:
    sent: CommandResult
    received: CommandResult | None
    seconds: float


def run_ends(run: CompositeRun, ends: StreamEnds) -> EndResults:
    """Start the receiver (if any), wait for its listener, start the sender, watch, reap both."""
    receiving: Started | None = None
    sending: Started | None = None
    for index in range(len(ends.prelude)):
        run.do(index)
    index = len(ends.prelude)
    try:
        if ends.recv is not None:
            receiving = run.start(index)
            _wait_listening(run, index + 1, ends, receiving)
            index += 2
        started = time.monotonic()
        sending = run.start(index)
        if ends.stall_timeout is not None:
            _watch(run, index + 1, ends, receiving, sending, ends.stall_timeout)
        sent = sending.handle.wait(timeout=ends.wait_timeout)
        received = receiving.handle.wait(timeout=ends.wait_timeout) if receiving else None
        seconds = time.monotonic() - started
    except BaseException as exc:
        for end in (sending, receiving):
            if end is not None:
                end.handle.kill()
                end.killed(f"stopped: {exc}")
        raise
    sending.finish(sent)
    if receiving is not None and received is not None:
        receiving.finish(received)
        rejected = REJECTED.findall(received.stderr)
        run.capture(ends.rejected_into, "; ".join(rejected) if rejected else None)
    failed = [(name, r) for name, r in (("sender", sent), ("receiver", received))
              if r is not None and not r.ok]
    if failed:  # both: the sender's complaint (a reset) is often the receiver's failure seen
        name, result = failed[0]
        tail = result.tail() + "".join(f"\n[{r.host}] the {n} exited {r.exit_code}: {r.tail()}"
                                       for n, r in failed[1:])
        raise HostError(result.host, f"copy {name}", result.exit_code, tail)
    return EndResults(sent, received, seconds)


def _wait_listening(run: CompositeRun, index: int, ends: StreamEnds, receiving: Started) -> None:
    poll = run.parts[index]
    assert isinstance(poll, Poll) and isinstance(poll.probe, Shell)
    started, deadline = time.monotonic(), run.clock.now() + ends.listen_timeout
    looks = 0
    while True:
        if receiving.handle.poll() is not None:  # died: port taken, tool missing
            result = receiving.handle.wait()
            run.record(index, False, started, f"the receiver exited {result.exit_code}")
            raise HostError(ends.spec.recipient, "copy receiver", result.exit_code,
                            result.tail() or f"could not listen on port {ends.spec.port}")
        answer = run.probe(poll.probe)
        looks += 1
        if answer.output.strip():
            run.record(index, True, started, f"{looks} look(s): {answer.output.strip()[:200]}")
            return
        if run.clock.now() >= deadline:
            run.record(index, False, started, f"{looks} look(s): nothing listens")
            raise ResyncError(f"the receiver did not listen on {ends.spec.listen_address}:"
                              f"{ends.spec.port} within {ends.listen_timeout:g}s")
        run.clock.sleep(poll.interval)


def _watch(run: CompositeRun, index: int, ends: StreamEnds, receiving: Started | None,
           sending: Started, stall_timeout: float) -> None:
    poll = run.parts[index]
    assert isinstance(poll, Poll) and isinstance(poll.probe, Shell)
    total = run.captured.get(str(DONOR_BYTES))
    total_bytes = int(total) if isinstance(total, int | float) else None
    stall = StallDetector(stall_timeout, run.clock)
    started, looks, done = time.monotonic(), 0, 0

    def running() -> bool:
        return sending.handle.poll() is None or (receiving is not None
                                                 and receiving.handle.poll() is None)

    while running():
        answer = run.probe(poll.probe)
        looks += 1
        if answer.exit_code == 0 and answer.output.strip().isdigit():
            done = int(answer.output.strip())
            run.progress(done, total_bytes, "copy")
        if stall.stalled(done):
            run.record(index, False, started, f"{looks} look(s); stalled at {done} bytes")
            raise ResyncError(f"copy stalled: no progress for {stall_timeout:g}s at {done} bytes; "
                              "both ends stopped, the old datadir is kept")
        if sending.handle.poll() not in (None, 0) and receiving is not None and running():
            receiving.handle.kill()  # the sender died: the receiver would wait for ever
        _nap(run.clock, poll.interval, running)
    run.record(index, True, started, f"{looks} look(s); last: {done} bytes in the datadir")


def _nap(clock: Clock, interval: float, running: Callable[[], bool]) -> None:
    """Sleep until the next look, but wake as soon as the ends have exited: the copy's time (and
    the step) ends when they do, not up to a poll interval later."""
    slept, slice_ = 0.0, min(interval, 0.02)
    while slept < interval and running():
        clock.sleep(slice_)
        slept += slice_


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


def end_report(output: str, sent: bool, relayed: bool) -> str:
    """What one end saw, "tar=<bytes> wire=<bytes> <digest>=<hex>" ("tar=<bytes>" without the
    relay), from tar's totals and the relay's last line; "" when the end did not say."""
    total = (TAR_WRITTEN if sent else TAR_READ).search(output)
    if not total:
        return ""
    if not relayed:
        return f"tar={total.group(1)}"
    role = "sent" if sent else "received"
    wire = next((m for m in REPORT.finditer(output) if m.group(1) == role), None)
    return f"tar={total.group(1)} wire={wire.group(2)} {wire.group(3)}={wire.group(4)}" if wire \
        else ""


class CopyEnds(StreamEnds):
    """The copy's ends; afterwards what each end saw is captured and compared."""

    def parts(self) -> tuple[Leaf, ...]:
        return (*super().parts(), Assert(
            Same(SENT_STREAM, RECEIVED_STREAM),
            "copy integrity check failed: the two ends saw different streams; the recipient "
            "will not be started, the old datadir is kept", self.spec.recipient))

    def execute(self, run: CompositeRun) -> None:
        ends = run_ends(run, self)
        sent_out = ends.sent.stdout + ends.sent.stderr
        # with method ssh the receiving half runs under the sender's ssh: one output holds both
        recv_out = (ends.received.stdout + ends.received.stderr) if ends.received else sent_out
        relayed = self.spec.method == "stream"
        sent, received = end_report(sent_out, True, relayed), end_report(recv_out, False, relayed)
        run.capture(SENT_STREAM, sent or None)
        run.capture(RECEIVED_STREAM, received or None)
        if not (sent and received):
            raise ResyncError("copy finished but an end did not report its byte total" +
                              (" and checksum" if relayed else ""))
        run.do(len(self.parts()) - 1)
        nbytes = int(sent.split()[0].removeprefix("tar="))
        run.progress(nbytes, nbytes, "copy")  # the bar ends full: every byte arrived and matched
        run.capture(COPY_BYTES, nbytes)
        run.capture(COPY_SECONDS, round(ends.seconds, 3))
        run.capture(COPY_RATE, round(nbytes / ends.seconds) if ends.seconds else None)


class CopyDatadir(Step):
    destructive = True

    def __init__(self, spec: CopySpec, *, stall_timeout: float, listen_timeout: float) -> None:
        self.spec, self.stall_timeout, self.listen_timeout = spec, stall_timeout, listen_timeout
        self.id = StepId(StepKind.COPY, f"{spec.donor}->{spec.recipient}")
        self.title = f"Copy the datadir {spec.donor} -> {spec.recipient} ({spec.label()})"
        self.hosts = (spec.donor, spec.recipient)
        self.summary = spec.summary()
        self.notes = copy_notes(spec)
        self.why = ("cold physical copy into the recipient's empty datadir; " +
                    ("plaintext on the wire: only across trusted networks; the receiver lets in "
                     "only the donor's address with the run's one-time token"
                     if spec.method == "stream" else "encrypted by OpenSSH") +
                    f"; both ends' {spec.checked()}; the recipient keeps its own keys")

    def plan(self) -> tuple[Action, ...]:
        s = self.spec
        why = "a cold copy needs both servers stopped"
        return (stop_leftovers(s.donor), stop_leftovers(s.recipient),  # of a killed attempt
                *require_stopped(s.donor, s.donor_datadir, why),
                *require_stopped(s.recipient, s.recipient_datadir, why),
                clear_partial(s),
                CopyEnds(s, receiver(s), sender(s), listen_timeout=self.listen_timeout,
                         stall_timeout=self.stall_timeout, prelude=relay_prelude(s),
                         title=f"copy {s.donor}:{s.donor_datadir} -> "
                               f"{s.recipient}:{s.recipient_datadir}"),
                restore_kept(s))


class BandwidthProbe(StreamEnds):
    """Bytes/s of the copy transport between donor and recipient (zeros, no disk involved)."""

    def __init__(self, spec: CopySpec, nbytes: int) -> None:
        probe_spec = replace(spec, compress="none")
        recv, send = bandwidth_probe(probe_spec, nbytes)
        super().__init__(probe_spec, recv, send, listen_timeout=10, stall_timeout=None,
                         prelude=relay_prelude(probe_spec, PROBE_TOKEN_SHA256),
                         title=f"bandwidth probe: {nbytes // 2**20} MB of zeros through the copy "
                               "transport")
        self.nbytes = nbytes
        self.wait_timeout = PROBE_TIMEOUT
        self.rejected_into = PROBE_REJECTED_PEERS

    def execute(self, run: CompositeRun) -> None:
        ends = run_ends(run, self)
        rate = self.nbytes / ends.seconds if ends.seconds > 0 else float("inf")
        run.capture(PROBE_RATE, round(rate))
